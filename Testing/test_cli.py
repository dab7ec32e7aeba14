"""The `petar` CLI: each command end to end, DESIGN.md flags, exit codes, one-line errors, no partial outputs."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import assert_one_line_error, ball_volume
from petar import Volume, read_volume, write_volume


@pytest.fixture
def case(tmp_path):
    """PET with a hot ball at LPS (−30, 20, −10) (RAS (30, −20, −10)), its mask, a CT."""
    pet, mask = ball_volume(shape=(30, 40, 40), spacing=(3.0, 3.0, 3.0), center_mm=(-30.0, 20.0, -10.0),
                            radius_mm=9.0)
    write_volume(pet, tmp_path / "pet.nii.gz")
    write_volume(mask, tmp_path / "mask.nii.gz")
    write_volume(Volume.from_array(np.full(pet.shape, 40.0, np.float32), like=pet), tmp_path / "ct.nii.gz")
    return tmp_path


def test_help_lists_every_command(cli):
    r = cli("--help")
    assert r.code == 0
    for cmd in ("demo", "phantom", "measure", "segment", "report"):
        assert cmd in r.out
        assert cli(cmd, "--help").code == 0


def test_measure_writes_the_measurement_json(cli, case):
    r = cli("measure", "--pet", case / "pet.nii.gz", "--mask", case / "mask.nii.gz", "--json", case / "m.json")
    assert r.code == 0, r.err
    doc = json.loads((case / "m.json").read_text())
    assert doc["suv_type"] == "bw" and doc["units"] == "g/ml"
    (les,) = doc["lesions"]
    assert les["suv_max"] == 8.0 and les["label"] == 1
    np.testing.assert_allclose(les["centroid_ras"], [30.0, -20.0, -10.0], atol=0.1)   # digitised ball
    assert "SUVmax" in r.out


def test_measure_json_to_stdout_is_pure_json(cli, case):
    r = cli("measure", "--pet", case / "pet.nii.gz", "--mask", case / "mask.nii.gz", "--json", "-")
    assert r.code == 0
    assert json.loads(r.out)["lesions"][0]["voxels"] > 0


def test_segment_takes_negative_coordinates_as_typed(cli, case):
    out = case / "seg.nii.gz"
    r = cli("segment", "--pet", case / "pet.nii.gz", "--point", "30,-20,-10", "--out", out, "--json", case / "s.json")
    assert r.code == 0, r.err
    r2 = cli("segment", "--pet", case / "pet.nii.gz", "--point", "-30,20,-10", "--space", "lps",
             "--out", case / "seg2.nii.gz")
    assert r2.code == 0, r2.err
    a, b = read_volume(out).array, read_volume(case / "seg2.nii.gz").array
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a > 0, read_volume(case / "mask.nii.gz").array > 0)
    details = json.loads((case / "s.json").read_text())
    assert details["segmentation"]["method"] == "percent" and details["lesion"]["suv_max"] == 8.0


def test_report_prints_findings_and_writes_json_and_txt(cli, case):
    r = cli("report", "--pet", case / "pet.nii.gz", "--ct", case / "ct.nii.gz", "--mask", case / "mask.nii.gz",
            "--json", case / "r.json", "--txt", case / "r.txt")
    assert r.code == 0, r.err
    assert "SUVmax 8.0" in r.out
    assert json.loads((case / "r.json").read_text())["findings"][0]["label"] == 1
    assert (case / "r.txt").read_text().startswith("1. ")


def test_phantom_command_writes_the_four_files(cli, tmp_path, monkeypatch):
    import petar.phantom as ph

    real = ph.make_phantom
    monkeypatch.setattr(ph, "make_phantom", lambda seed=0: real(seed=seed, shape=(80, 48, 48), spacing=(6, 6, 6)))
    r = cli("phantom", "--out", tmp_path / "ph", "--seed", "5")
    assert r.code == 0, r.err
    assert sorted(p.name for p in (tmp_path / "ph").iterdir()) == ["ct.nii.gz", "lesions.nii.gz", "pet.nii.gz",
                                                                   "truth.json"]
    assert json.loads((tmp_path / "ph" / "truth.json").read_text())["seed"] == 5


@pytest.mark.slow
def test_demo_finds_every_phantom_lesion(cli, tmp_path):
    r = cli("demo", "--out", tmp_path / "demo")
    assert r.code == 0, r.err
    truth = json.loads((tmp_path / "demo" / "truth.json").read_text())["lesions"]
    rep = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert len(rep["findings"]) == len(truth)
    for f, t in zip(rep["findings"], truth):
        assert f["measurement"]["suv_max"] == pytest.approx(t["suv_max"], abs=1e-3)
        assert f["measurement"]["axial_slice"] == t["axial_slice"]
        assert f["laterality"] == t["laterality"]
        assert f"SUVmax {t['suv_max']:.1f}" in r.out
    assert "Dice" in r.out


# ---- bad input: exit 2, one line, no output file -----------------------------------------------------------------
def _no_outputs(folder, *names):
    for n in names:
        assert not (folder / n).exists(), n
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_mask_not_overlapping_the_pet(cli, case):
    far, far_mask = ball_volume(origin=(4000.0, 0.0, 0.0), center_mm=(4030.0, 30.0, 30.0))
    write_volume(far_mask, case / "far.nii.gz")
    r = cli("measure", "--pet", case / "pet.nii.gz", "--mask", case / "far.nii.gz", "--json", case / "o.json")
    assert_one_line_error(r, "do not overlap")
    _no_outputs(case, "o.json")


def test_mask_with_no_foreground(cli, case):
    write_volume(Volume.from_array(np.zeros((30, 40, 40), np.uint8), like=read_volume(case / "pet.nii.gz")),
                 case / "empty.nii.gz")
    r = cli("measure", "--pet", case / "pet.nii.gz", "--mask", case / "empty.nii.gz", "--json", case / "o.json")
    assert_one_line_error(r, "no foreground")
    _no_outputs(case, "o.json")


def test_mask_label_that_does_not_exist(cli, case):
    r = cli("report", "--pet", case / "pet.nii.gz", "--ct", case / "ct.nii.gz", "--mask", case / "mask.nii.gz",
            "--label", "4", "--json", case / "o.json")
    assert_one_line_error(r, "label 4 is not in the mask")
    _no_outputs(case, "o.json")


@pytest.mark.parametrize("value, fragment", [(np.nan, "NaN/Inf"), (np.inf, "NaN/Inf"), (-3.0, "negative")])
def test_nan_inf_and_negative_pet(cli, case, value, fragment):
    pet = read_volume(case / "pet.nii.gz")
    pet.array[5, 5, 5] = value
    write_volume(pet, case / "bad.nii.gz")
    r = cli("segment", "--pet", case / "bad.nii.gz", "--point", "30,-20,-10", "--out", case / "o.nii.gz")
    assert_one_line_error(r, fragment)
    _no_outputs(case, "o.nii.gz")


def test_2d_and_4d_pet(cli, case):
    sitk.WriteImage(sitk.Image(16, 16, sitk.sitkFloat32) + 1.0, str(case / "flat.nii.gz"))
    sitk.WriteImage(sitk.JoinSeries([sitk.Image(8, 8, 8, sitk.sitkFloat32) + 1.0] * 2), str(case / "dyn.nii.gz"))
    for name in ("flat.nii.gz", "dyn.nii.gz"):
        r = cli("measure", "--pet", case / name, "--mask", case / "mask.nii.gz", "--json", case / "o.json")
        assert_one_line_error(r, "3D")
        _no_outputs(case, "o.json")


def test_truncated_nifti(cli, case):
    data = (case / "pet.nii.gz").read_bytes()
    (case / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    r = cli("measure", "--pet", case / "cut.nii.gz", "--mask", case / "mask.nii.gz", "--json", case / "o.json")
    assert_one_line_error(r, "truncated or corrupt")
    _no_outputs(case, "o.json")


def test_ct_missing_when_required(cli, case):
    r = cli("report", "--pet", case / "pet.nii.gz", "--mask", case / "mask.nii.gz", "--json", case / "o.json")
    assert_one_line_error(r, "--ct")
    _no_outputs(case, "o.json")


@pytest.mark.parametrize("point, fragment", [("900,0,0", "outside the PET volume"),
                                             ("-50,50,-35", "nothing hot near the click")])
def test_bad_clicks(cli, case, point, fragment):
    r = cli("segment", "--pet", case / "pet.nii.gz", "--point", point, "--out", case / "o.nii.gz")
    assert_one_line_error(r, fragment)
    _no_outputs(case, "o.nii.gz")


def test_malformed_point_and_bad_output_name(cli, case):
    r = cli("segment", "--pet", case / "pet.nii.gz", "--point", "1,2", "--out", case / "o.nii.gz")
    assert_one_line_error(r, "three numbers")
    r = cli("segment", "--pet", case / "pet.nii.gz", "--point", "30,-20,-10", "--out", case / "o.png")
    assert_one_line_error(r, ".nii.gz")
    _no_outputs(case, "o.nii.gz", "o.png")


def test_existing_output_survives_a_failed_run(cli, case):
    (case / "keep.json").write_text('{"earlier": true}')
    r = cli("measure", "--pet", case / "pet.nii.gz", "--mask", case / "mask.nii.gz", "--label", "9",
            "--json", case / "keep.json")
    assert r.code == 2
    assert json.loads((case / "keep.json").read_text()) == {"earlier": True}
