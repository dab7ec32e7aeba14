"""DICOM series reading and SUV: checked against the real Siemens header, pysuv, SimpleITK and hand arithmetic."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import dicom_factory as fac  # noqa: E402

from petar.errors import InputError  # noqa: E402
from petar.io.dicom import choose_series, find_series, is_dicom_dir, read_dicom_volume  # noqa: E402
from petar.io.suv import (SUV_TYPES, SUVParameters, parse_time, read_dicom_pet, suv_factor,  # noqa: E402
                          suv_parameters_from_dicom)

pysuv = pytest.importorskip("pysuv")
sitk = pytest.importorskip("SimpleITK")

HDR = fac.header_values()
UPTAKE_S = 35 * 60 - 23          # SeriesTime 15:24:19 − RadiopharmaceuticalStartTime 14:49:42 = 2077 s


def expect_error(fn, *needles):
    """Run `fn`, demand an InputError whose one-line message holds every needle and no patient identifier."""
    with pytest.raises(InputError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    for ident in fac.IDENTIFIERS:
        assert ident not in msg
    return msg


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return fac.make_pet_series(tmp_path_factory.mktemp("pet"))


def factor_of(modify=None, suv_type="bw", **overrides):
    return suv_factor(suv_parameters_from_dicom(fac.pet_header(modify), **overrides), suv_type)


# ---- the SUVbw factor on the real header ----------------------------------------------------------------------------
def test_hand_factor_matches_the_recorded_recipe_value():
    assert fac.reference_factor() == pytest.approx(0.000874791374706828, rel=1e-12)


def test_bw_factor_equals_pysuv_and_hand_formula(series):
    ds = pydicom.dcmread(series.files[0])
    ours = suv_factor(suv_parameters_from_dicom(ds))
    assert ours == pytest.approx(pysuv.get_suv_factor(ds).suv_factor, rel=1e-9)
    assert ours == pytest.approx(fac.reference_factor(), rel=1e-12)
    params = suv_parameters_from_dicom(ds)
    assert params.uptake_time_s == UPTAKE_S and params.decay_correction == "START"
    assert (params.weight_kg, params.height_m, params.sex) == (75.0, 1.8, "M")


def test_suv_volume_recovers_the_pattern_with_per_slice_slopes(series):
    assert len(set(series.slopes)) == len(series.slopes)          # every slice has its own RescaleSlope
    suv = read_dicom_pet(series.directory)
    assert suv.array.dtype == np.float32 and suv.shape == series.suv.shape
    quantum = max(series.slopes) * series.factor / 2 + 1e-6
    assert np.abs(suv.array - series.suv).max() <= quantum
    assert suv.array.max() == pytest.approx(fac.SPHERE_SUV, abs=quantum)
    # the SUV-4 voxel lands where the factory put it: file 1 is array slice n-2 (files run head to feet)
    k = len(series.files) - 1 - fac.HOTSPOT[0]
    assert suv.array[k, fac.HOTSPOT[1], fac.HOTSPOT[2]] == pytest.approx(fac.HOTSPOT_SUV, abs=quantum)


def test_suv_volume_equals_pysuv_slice_by_slice(series):
    suv = read_dicom_pet(series.directory)
    n = len(series.files)
    for i, f in enumerate(series.files):
        theirs = pysuv.compute_suv(str(f))
        np.testing.assert_allclose(suv.array[n - 1 - i], theirs, rtol=1e-6, atol=1e-6)


# ---- other normalisations -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sex, lbm_kg, ibw_kg", [("M", 60.277777777777, 77.68), ("F", 54.555555555556, 70.98)])
def test_lbm_bsa_ibw_against_hand_values_and_pysuv(sex, lbm_kg, ibw_kg):
    # hand: W 75 kg, H 180 cm; LBM James 1.10W−128(W/H)² (M), 1.07W−148(W/H)² (F);
    # IBW 48.0+1.06(H−152) (M), 45.5+0.91(H−152) (F); BSA Du Bois 0.007184·75^0.425·180^0.725 = 1.9424056 m²
    ds = fac.pet_header({"PatientSex": sex})
    decay = 2.0 ** (UPTAKE_S / HDR["half_life_s"])
    expected = {"lbm": lbm_kg * 1000, "ibw": ibw_kg * 1000, "bsa": 1.9424056238 * 1e4}
    params = suv_parameters_from_dicom(ds)
    for t, norm in expected.items():
        assert suv_factor(params, t) == pytest.approx(norm * decay / HDR["dose_bq"], rel=1e-9)
    # pysuv uses the same James, Du Bois and IBW formulas; its BSA is in m², ours in cm² (the SUVbsa convention)
    assert suv_factor(params, "lbm") == pytest.approx(pysuv.get_suv_factor(ds, "lbm").suv_factor, rel=1e-9)
    assert suv_factor(params, "ibw") == pytest.approx(pysuv.get_suv_factor(ds, "ibw").suv_factor, rel=1e-9)
    assert suv_factor(params, "bsa") == pytest.approx(pysuv.get_suv_factor(ds, "bsa").suv_factor * 1e4, rel=1e-9)


def test_unknown_suv_type_is_refused():
    assert SUV_TYPES == ("bw", "lbm", "bsa", "ibw")
    expect_error(lambda: factor_of(suv_type="sul"), "unknown SUV type")


# ---- tracer and times -----------------------------------------------------------------------------------------------
def test_header_tracer_is_ge68_and_fdg_half_life_override_applies(series):
    assert HDR["half_life_s"] == 23410100.0
    assert factor_of(half_life=6586.2) == pytest.approx(fac.reference_factor(half_life_s=6586.2), rel=1e-12)
    fdg = read_dicom_pet(series.directory, half_life=6586.2)
    ratio = fac.reference_factor(half_life_s=6586.2) / series.factor
    np.testing.assert_allclose(fdg.array, series.suv * ratio, rtol=1e-3)


MIDNIGHT_NO_DATES = {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": "235000",
                     "SeriesDate": None, "AcquisitionDate": None, "SeriesTime": "004000", "AcquisitionTime": "004000"}


def test_midnight_crossing_without_dates_adds_a_day():
    params = suv_parameters_from_dicom(fac.pet_header(MIDNIGHT_NO_DATES))
    assert params.uptake_time_s == 50 * 60
    expected = 75000.0 * 2.0 ** (3000 / HDR["half_life_s"]) / HDR["dose_bq"]
    assert suv_factor(params) == pytest.approx(expected, rel=1e-12)
    # a scan date but no injection date: the injection was the evening before
    dated_scan = dict(MIDNIGHT_NO_DATES, SeriesDate="20230826", AcquisitionDate="20230826")
    params = suv_parameters_from_dicom(fac.pet_header(dated_scan))
    assert params.injection_datetime == datetime(2023, 8, 25, 23, 50)
    assert params.uptake_time_s == 3000


def test_midnight_crossing_with_dates_uses_the_dates():
    dated = dict(MIDNIGHT_NO_DATES, RadiopharmaceuticalStartDateTime="20230825235000",
                 SeriesDate="20230826", AcquisitionDate="20230826")
    assert suv_parameters_from_dicom(fac.pet_header(dated)).uptake_time_s == 3000
    same_day = dict(dated, SeriesDate="20230825", AcquisitionDate="20230825")   # dates say: scan before injection
    expect_error(lambda: suv_parameters_from_dicom(fac.pet_header(same_day)), "before the injection")
    too_late = dict(dated, SeriesDate="20230827", AcquisitionDate="20230827")
    expect_error(lambda: suv_parameters_from_dicom(fac.pet_header(too_late), half_life=6586.2), "after the injection")


def test_start_datetime_is_preferred_and_contradictions_are_errors():
    params = suv_parameters_from_dicom(fac.pet_header({"RadiopharmaceuticalStartTime": None,
                                                       "RadiopharmaceuticalStartDateTime": "20230825145000"}))
    assert params.injection_datetime == datetime(2023, 8, 25, 14, 50)
    expect_error(lambda: suv_parameters_from_dicom(fac.pet_header(
        {"RadiopharmaceuticalStartDateTime": "20230825145942"})),
        "RadiopharmaceuticalStartDateTime (0018,1078)", "RadiopharmaceuticalStartTime (0018,1072)", "--injection-time")
    # only the start time: used as it is
    params = suv_parameters_from_dicom(fac.pet_header({"RadiopharmaceuticalStartDateTime": None}))
    assert params.uptake_time_s == UPTAKE_S


def test_scan_reference_follows_qiba_series_vs_earliest_acquisition():
    later_series = suv_parameters_from_dicom(fac.pet_header({"SeriesTime": "153000"}))
    assert later_series.scan_datetime == datetime(2023, 8, 25, 15, 24, 19)        # acquisition wins
    earlier_series = suv_parameters_from_dicom(fac.pet_header({"SeriesTime": "152000"}))
    assert earlier_series.scan_datetime == datetime(2023, 8, 25, 15, 20, 0)       # series time wins
    # bed positions with their own AcquisitionTime (GE style): the earliest one counts
    beds = [fac.pet_header({"SeriesTime": "153000", "AcquisitionTime": t}, i=i)
            for i, t in enumerate(["152700", "152419", "152600"])]
    assert suv_parameters_from_dicom(beds).scan_datetime == datetime(2023, 8, 25, 15, 24, 19)


def test_admin_decay_correction_uses_weight_over_dose():
    params = suv_parameters_from_dicom(fac.pet_header({"DecayCorrection": "ADMIN"}))
    assert suv_factor(params) == pytest.approx(75000.0 / HDR["dose_bq"], rel=1e-12)


@pytest.mark.parametrize("text, expected", [
    ("14:49", datetime(1900, 1, 1, 14, 49)), ("14:49:42", datetime(1900, 1, 1, 14, 49, 42)),
    ("144942", datetime(1900, 1, 1, 14, 49, 42)), ("9:05", datetime(1900, 1, 1, 9, 5)),
    ("2023-08-25T14:49:42", datetime(2023, 8, 25, 14, 49, 42)), ("20230825144942", datetime(2023, 8, 25, 14, 49, 42))])
def test_parse_time_formats(text, expected):
    assert parse_time(text) == expected
    assert parse_time("14:49", reference_date=datetime(2023, 8, 25).date()) == datetime(2023, 8, 25, 14, 49)


def test_parse_time_rejects_nonsense():
    expect_error(lambda: parse_time("25:99"), "HH:MM")
    expect_error(lambda: parse_time("noon"), "HH:MM")


# ---- QIBA preconditions and missing tags ----------------------------------------------------------------------------
@pytest.mark.parametrize("modify, needles", [
    ({"Units": "CNTS"}, ("Units (0054,1001)", "CNTS")),
    ({"Units": None}, ("Units (0054,1001)",)),
    ({"Units": "GML"}, ("Units (0054,1001)", "GML")),
    ({"CorrectedImage": ["NORM", "DTIM", "SCAT", "DECY"]}, ("CorrectedImage (0028,0051)", "ATTN")),
    ({"CorrectedImage": ["NORM", "ATTN", "SCAT"]}, ("CorrectedImage (0028,0051)", "DECY")),
    ({"CorrectedImage": None}, ("CorrectedImage (0028,0051)",)),
    ({"DecayCorrection": "NONE"}, ("DecayCorrection (0054,1102)", "NONE")),
    ({"DecayCorrection": None}, ("DecayCorrection (0054,1102)",)),
])
def test_each_violated_precondition_names_its_tag(modify, needles):
    expect_error(lambda: factor_of(modify), *needles)


@pytest.mark.parametrize("modify, suv_type, needles, fix", [
    ({"PatientWeight": None}, "bw", ("PatientWeight (0010,1030)", "--weight KG"), {"weight": 75}),
    ({"PatientWeight": 0}, "bw", ("PatientWeight (0010,1030)", "--weight KG"), {"weight": 75}),
    ({"RadionuclideTotalDose": None}, "bw", ("RadionuclideTotalDose (0018,1074)", "--dose MBQ"), {"dose": 85.74}),
    ({"RadionuclideHalfLife": None}, "bw", ("RadionuclideHalfLife (0018,1075)", "--half-life SECONDS"),
     {"half_life": 23410100}),
    ({"RadiopharmaceuticalStartTime": None, "RadiopharmaceuticalStartDateTime": None}, "bw",
     ("--injection-time HH:MM:SS",), {"injection_time": "14:49:42"}),
    ({"PatientSize": None}, "lbm", ("PatientSize (0010,1020)", "--height M"), {"height": 1.8}),
    ({"PatientSize": None}, "bsa", ("PatientSize (0010,1020)", "--height M"), {"height": 1.8}),
    ({"PatientSex": None}, "ibw", ("PatientSex (0010,0040)", "--sex M|F"), {"sex": "M"}),
    ({"PatientSize": 180}, "bw", ("PatientSize (0010,1020)", "--height M"), {"height": 1.8}),
    ({"RadionuclideTotalDose": 85.74}, "bw", ("RadionuclideTotalDose (0018,1074)", "--dose MBQ"), {"dose": 85.74}),
])
def test_missing_tag_names_the_override_which_fixes_it(modify, suv_type, needles, fix):
    expect_error(lambda: factor_of(modify, suv_type), *needles)
    fixed = factor_of(modify, suv_type, **fix)
    assert fixed == pytest.approx(factor_of(None, suv_type), rel=1e-9)


def test_overrides_replace_tag_values_and_none_means_not_given():
    base = factor_of()
    assert factor_of(weight=150) == pytest.approx(2 * base, rel=1e-12)
    assert factor_of(dose=85.74 / 2) == pytest.approx(2 * base, rel=1e-9)
    assert factor_of(weight=None, dose=None, injection_time=None) == base
    assert factor_of(scan_time="2023-08-25T15:24:19") == pytest.approx(base, rel=1e-12)
    with pytest.raises(TypeError):
        factor_of(wieght=75)
    expect_error(lambda: factor_of(sex="X"), "--sex")


# ---- series-level checks --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keyword, value, tag", [
    ("PatientWeight", 80, "PatientWeight (0010,1030)"),
    ("RadionuclideTotalDose", 9.0e7, "RadionuclideTotalDose (0018,1074)"),
    ("Units", "CNTS", "Units (0054,1001)")])
def test_slices_that_disagree_are_refused(tmp_path, keyword, value, tag):
    s = fac.make_pet_series(tmp_path, modify=lambda ds, i: fac._apply(ds, {keyword: value} if i == 3 else None, i))
    msg = expect_error(lambda: read_dicom_pet(s.directory), tag)
    assert str(tmp_path) not in msg
    if keyword == "PatientWeight":
        assert read_dicom_pet(s.directory, weight=75).array.max() == pytest.approx(8.0, abs=1e-3)


def test_gml_units_are_returned_as_suvbw(tmp_path):
    s = fac.make_pet_series(tmp_path, modify={"Units": "GML"})
    plain, _ = read_dicom_volume(tmp_path)
    gml = read_dicom_pet(tmp_path)
    np.testing.assert_array_equal(gml.array, plain.array)
    expect_error(lambda: read_dicom_pet(tmp_path, suv_type="lbm"), "GML", "bw")
    expect_error(lambda: read_dicom_pet(tmp_path, weight=70), "GML")
    assert s.series_uid == find_series(tmp_path)[0].series_uid


def test_two_series_are_listed_in_one_line_and_series_uid_picks_one(tmp_path):
    a = fac.make_pet_series(tmp_path / "a", prefix="a", description="PET SWB 8MIN")
    b = fac.make_pet_series(tmp_path / "b", prefix="b", description="PET WB RETRO")
    msg = expect_error(lambda: read_dicom_pet(tmp_path), a.series_uid, b.series_uid, "--series UID",
                       "2 PT series", "PET WB RETRO", "8 files")
    assert str(tmp_path) not in msg
    picked = read_dicom_pet(tmp_path, series_uid=b.series_uid)
    assert picked.array.max() == pytest.approx(8.0, abs=1e-3)
    assert choose_series(tmp_path, series_uid=a.series_uid).files[0].startswith(str(tmp_path / "a"))
    expect_error(lambda: choose_series(tmp_path, series_uid="1.2.3"), "1.2.3", a.series_uid)


def test_modality_filter_picks_the_only_pet_series(tmp_path):
    pet = fac.make_pet_series(tmp_path / "pt")
    ct_image = {"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}
    fac.make_pet_series(tmp_path / "ct", prefix="ct", modify=ct_image)
    assert choose_series(tmp_path, modality="PT").series_uid == pet.series_uid
    expect_error(lambda: choose_series(tmp_path), "2 series")
    expect_error(lambda: choose_series(tmp_path / "ct", modality="PT"), "no PT series")
    ct_uid = find_series(tmp_path / "ct")[0].series_uid
    expect_error(lambda: read_dicom_pet(tmp_path, series_uid=ct_uid), ct_uid, "not PT")


def test_dicom_folder_detection(tmp_path, series):
    assert is_dicom_dir(series.directory)
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    assert not is_dicom_dir(tmp_path)
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert not is_dicom_dir(tmp_path)
    expect_error(lambda: choose_series(tmp_path), "no DICOM images")
    fac.make_pet_series(tmp_path / "nested" / "deeper", n_slices=3)
    assert is_dicom_dir(tmp_path) and len(find_series(tmp_path)) == 1


# ---- geometry -------------------------------------------------------------------------------------------------------
def sitk_read(directory):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(directory)))
    return reader.Execute()


def assert_same_as_sitk(volume, image):
    assert volume.size == image.GetSize()
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(volume.direction, np.array(image.GetDirection()).reshape(3, 3), atol=1e-6)
    np.testing.assert_allclose(volume.array, sitk.GetArrayFromImage(image), rtol=1e-6, atol=1e-3)


def test_geometry_and_values_equal_simpleitk(series):
    volume, headers = read_dicom_volume(series.directory)
    assert_same_as_sitk(volume, sitk_read(series.directory))
    assert volume.spacing == (4.0, 4.0, 2.0)
    positions = [float(h.ImagePositionPatient[2]) for h in headers]
    assert positions == sorted(positions) and "PixelData" not in headers[0]


def test_oblique_rectangular_geometry_equals_simpleitk(tmp_path):
    a, b = np.deg2rad(30), 0.4     # rotate about z, then about x: an oblique, orthonormal orientation
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    row, col, normal = (rz @ rx).T

    def tilt(ds, i):
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *col)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.array([10.0, -20.0, 30.0]) - 2.5 * i * normal]
        ds.PixelSpacing = ["3.0", "4.5"]
        ds.Columns = 24  # Rows stay 32: pixels were encoded for 32×32, so keep the data consistent
        ds.PixelData = np.frombuffer(ds.PixelData, np.uint16).reshape(32, 32)[:, :24].copy().tobytes()

    s = fac.make_pet_series(tmp_path, n_slices=5, modify=tilt)
    volume, _ = read_dicom_volume(s.directory)
    assert volume.shape == (5, 32, 24) and volume.spacing == pytest.approx((4.5, 3.0, 2.5))
    assert_same_as_sitk(volume, sitk_read(s.directory))


def test_duplicate_positions_and_missing_slices_are_named(tmp_path):
    dup = fac.make_pet_series(tmp_path / "dup", modify=lambda ds, i: setattr(
        ds, "ImagePositionPatient", [-362.847, -503.29, 160.5]) if i == 5 else None)
    expect_error(lambda: read_dicom_volume(dup.directory), "share a slice position")
    gap = fac.make_pet_series(tmp_path / "gap")
    gap.files[4].unlink()
    expect_error(lambda: read_dicom_volume(gap.directory), "not uniform", "missing")


def test_suv_parameters_dataclass_uptake():
    p = SUVParameters(75, 1.8, "M", 1e8, 6586.2, datetime(2023, 1, 1, 10), datetime(2023, 1, 1, 11), "START")
    assert p.uptake_time_s == 3600
    assert suv_factor(p) == pytest.approx(75000 * 2 ** (3600 / 6586.2) / 1e8, rel=1e-12)
    p.sex = "f"                                           # hand-built parameters: case does not matter
    assert suv_factor(p, "ibw") == pytest.approx(70.98e3 * 2 ** (3600 / 6586.2) / 1e8, rel=1e-12)
    p.scan_datetime = p.injection_datetime - timedelta(minutes=5)
    expect_error(lambda: suv_factor(p), "before the injection")
