"""The CLI on a real-header PET DICOM series: SUV from the tags, overrides as flags, two series refused."""
import json

import numpy as np
import pytest

from conftest import assert_one_line_error
from dicom_factory import HOTSPOT, SPHERE_SUV, make_pet_series
from petar import Volume, read_pet, write_volume


@pytest.fixture
def series(tmp_path):
    s = make_pet_series(tmp_path / "pet")
    pet = read_pet(s.directory)
    mask = Volume.from_array((np.abs(pet.array - SPHERE_SUV) < 0.05).astype(np.uint8), like=pet)
    write_volume(mask, tmp_path / "mask.nii.gz")
    return s, tmp_path


def test_measure_reads_suv_from_the_dicom_tags(cli, series):
    s, tmp = series
    r = cli("measure", "--pet", s.directory, "--mask", tmp / "mask.nii.gz", "--json", "-")
    assert r.code == 0, r.err
    les = json.loads(r.out)["lesions"][0]
    assert les["suv_max"] == pytest.approx(SPHERE_SUV, abs=0.02)


def test_two_series_in_one_folder_are_listed_not_picked(cli, tmp_path):
    a = make_pet_series(tmp_path / "mixed", prefix="a", description="PET AC")
    b = make_pet_series(tmp_path / "mixed", prefix="b", description="PET NAC")
    r = cli("measure", "--pet", tmp_path / "mixed", "--mask", tmp_path / "m.nii.gz", "--json", tmp_path / "o.json")
    assert_one_line_error(r, "2 PT series", a.series_uid, b.series_uid, "--series")
    assert not (tmp_path / "o.json").exists()
    pet = read_pet(tmp_path / "mixed", series_uid=b.series_uid)
    assert pet.array.max() == pytest.approx(SPHERE_SUV, abs=0.02)


def test_missing_weight_tag_names_the_flag_and_the_flag_fixes_it(cli, tmp_path):
    s = make_pet_series(tmp_path / "pet", modify={"PatientWeight": None})
    mask = np.zeros((8, 32, 32), np.uint8)
    mask[HOTSPOT[0], 10:20, 10:20] = 1
    write_volume(Volume(mask), tmp_path / "m.nii.gz")
    r = cli("measure", "--pet", s.directory, "--mask", tmp_path / "m.nii.gz", "--json", tmp_path / "o.json")
    assert_one_line_error(r, "PatientWeight", "--weight")
    assert not (tmp_path / "o.json").exists()
    pet = read_pet(s.directory, weight=75)
    np.testing.assert_allclose(pet.array, s.suv, atol=0.02)


def test_suv_type_lbm_changes_the_numbers_by_the_lean_body_mass_ratio(series):
    s, _ = series
    bw = read_pet(s.directory)
    lbm = read_pet(s.directory, suv_type="lbm")
    weight, height_cm = 75.0, 180.0                       # the Siemens header: male, 75 kg, 1.80 m
    james = 1.10 * weight - 128 * (weight / height_cm) ** 2
    assert lbm.array.max() / bw.array.max() == pytest.approx(james / weight, rel=1e-6)
