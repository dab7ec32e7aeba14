"""Image I/O: exact geometry through every format; corrupt, truncated and implausible inputs refused."""
import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ball_volume
from petar import InputError, Volume, read_mask, read_pet, read_volume, write_volume


def _oblique_volume(dtype=np.float32):
    arr = (np.random.default_rng(0).random((12, 10, 8)) * 9).astype(dtype)
    a = np.deg2rad(10)
    direction = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return Volume(arr, (3.1, 2.2, 4.05), (-301.25, 12.5, 1003.0), direction)


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.nrrd", "v.mha"])
def test_every_format_round_trips_geometry_and_values(tmp_path, name):
    vol = _oblique_volume()
    write_volume(vol, tmp_path / name)
    back = read_volume(tmp_path / name)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, rtol=1e-6)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [name]      # no temp file left behind


def test_write_refuses_unknown_extension_and_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match=".nii.gz"):
        write_volume(_oblique_volume(), tmp_path / "v.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["pet.nii.gz", "pet.nii"])
@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_nifti_is_refused_not_read_as_zeros(tmp_path, name, fraction):
    pet, _ = ball_volume()
    path = tmp_path / name
    write_volume(pet, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_pet(path)


def test_nifti_gzip_shorter_than_header_says_is_refused(tmp_path):
    """A complete gzip stream whose payload is short (a bad export) is caught by the header check."""
    pet, _ = ball_volume()
    write_volume(pet, tmp_path / "a.nii")
    raw = (tmp_path / "a.nii").read_bytes()
    (tmp_path / "b.nii.gz").write_bytes(gzip.compress(raw[:-1000]))
    with pytest.raises(InputError, match="header needs"):
        read_volume(tmp_path / "b.nii.gz")


def test_garbage_file_is_refused(tmp_path):
    (tmp_path / "x.nrrd").write_bytes(b"definitely not an image" * 20)
    with pytest.raises(InputError, match="cannot read x.nrrd"):
        read_volume(tmp_path / "x.nrrd")


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_pet(tmp_path / "nope.nii.gz")
    with pytest.raises(InputError, match="no DICOM"):
        read_pet(tmp_path)


def test_2d_and_4d_images_are_not_a_pet(tmp_path):
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32) + 1.0, str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match="3D"):
        read_pet(tmp_path / "flat.nii.gz")
    four = sitk.JoinSeries([sitk.Image(6, 6, 6, sitk.sitkFloat32) + 1.0] * 3)
    sitk.WriteImage(four, str(tmp_path / "dyn.nii.gz"))
    with pytest.raises(InputError, match="3D"):
        read_pet(tmp_path / "dyn.nii.gz")
    single = sitk.Image(8, 8, 1, sitk.sitkFloat32) + 1.0
    sitk.WriteImage(single, str(tmp_path / "one.nii.gz"))
    with pytest.raises(InputError, match="single slice"):
        read_pet(tmp_path / "one.nii.gz")


@pytest.mark.parametrize("bad, fragment", [(np.nan, "NaN/Inf"), (np.inf, "NaN/Inf"), (-5.0, "negative"),
                                           (-1000.0, "looks like a CT"), (25000.0, "Bq/mL")])
def test_implausible_pet_values_are_refused(tmp_path, bad, fragment):
    pet, _ = ball_volume()
    arr = pet.array.copy()
    arr[3, 4, 5] = bad
    write_volume(Volume.from_array(arr, like=pet), tmp_path / "p.nii.gz")
    with pytest.raises(InputError, match=fragment):
        read_pet(tmp_path / "p.nii.gz")


def test_small_negative_noise_is_accepted(tmp_path):
    pet, _ = ball_volume()
    arr = pet.array.copy()
    arr[0, 0, 0] = -0.2
    write_volume(Volume.from_array(arr, like=pet), tmp_path / "p.nii.gz")
    assert read_pet(tmp_path / "p.nii.gz").array.min() == pytest.approx(-0.2)


def test_bqml_file_needs_every_override_then_converts(tmp_path):
    """SUVbw = C · W / (D · 2^(−Δt/T½)): 75 kg, 370 MBq, 60 min F-18 uptake."""
    pet, _ = ball_volume(inside=20000.0, outside=5000.0)
    write_volume(pet, tmp_path / "bq.nii.gz")
    with pytest.raises(InputError) as err:
        read_pet(tmp_path / "bq.nii.gz", units="bqml", weight=75)
    for flag in ("--dose", "--injection-time", "--scan-time", "--half-life"):
        assert flag in str(err.value)
    suv = read_pet(tmp_path / "bq.nii.gz", units="bqml", weight=75, dose=370, injection_time="10:00:00",
                   scan_time="11:00", half_life=6586.2)
    factor = 75000.0 / (370e6 * 2 ** (-3600 / 6586.2))
    assert suv.array.max() == pytest.approx(20000.0 * factor, rel=1e-6)


def test_bqml_injection_before_midnight_scan_after(tmp_path):
    pet, _ = ball_volume(inside=20000.0, outside=5000.0)
    write_volume(pet, tmp_path / "bq.nii.gz")
    suv = read_pet(tmp_path / "bq.nii.gz", units="bqml", weight=70, dose=300, injection_time="23:30",
                   scan_time="00:30", half_life=6586.2)
    factor = 70000.0 / (300e6 * 2 ** (-3600 / 6586.2))
    assert suv.array.max() == pytest.approx(20000.0 * factor, rel=1e-6)


def test_mask_on_a_finer_ct_grid_is_resampled_onto_the_pet(tmp_path):
    pet, mask = ball_volume(spacing=(4.0, 4.0, 4.0), shape=(30, 30, 30), radius_mm=16.0)
    fine, fine_mask = ball_volume(spacing=(1.0, 1.0, 2.0), shape=(55, 110, 110), radius_mm=16.0)
    write_volume(fine_mask, tmp_path / "m.nii.gz")
    on_pet = read_mask(tmp_path / "m.nii.gz", pet)
    assert on_pet.same_grid(pet) and on_pet.array.dtype == np.uint16
    agree = (on_pet.array > 0) == (mask.array > 0)
    assert agree.mean() > 0.995


def test_mask_that_does_not_overlap_the_pet_is_refused(tmp_path):
    pet, _ = ball_volume()
    far, far_mask = ball_volume(origin=(5000.0, 5000.0, 5000.0), center_mm=(5050.0, 5050.0, 5050.0))
    write_volume(far_mask, tmp_path / "m.nii.gz")
    with pytest.raises(InputError, match="do not overlap"):
        read_mask(tmp_path / "m.nii.gz", pet)


def test_mask_whose_lesion_lies_outside_the_pet_is_refused(tmp_path):
    pet, _ = ball_volume(shape=(20, 20, 20), spacing=(2.0, 2.0, 2.0))
    big, big_mask = ball_volume(shape=(60, 60, 60), spacing=(2.0, 2.0, 2.0), center_mm=(40.0, 0.0, 0.0))
    write_volume(big_mask, tmp_path / "m.nii.gz")
    with pytest.raises(InputError, match="outside the PET"):
        read_mask(tmp_path / "m.nii.gz", pet)


def test_probability_map_is_not_a_mask(tmp_path):
    pet, mask = ball_volume()
    write_volume(Volume.from_array(mask.array * 0.7, like=pet), tmp_path / "prob.nii.gz")
    with pytest.raises(InputError, match="non-integer"):
        read_mask(tmp_path / "prob.nii.gz", pet)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_single_pass_nifti_gz_reader_equals_simpleitk(tmp_path, dtype):
    """Our one-decompression .nii.gz path gives SimpleITK's own array, pixel type and geometry."""
    vol = _oblique_volume(dtype)
    path = tmp_path / "v.nii.gz"
    write_volume(vol, path)
    ours = read_volume(path)
    ref = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(ours.array, sitk.GetArrayFromImage(ref))
    assert ours.array.dtype == sitk.GetArrayFromImage(ref).dtype
    assert ours.spacing == ref.GetSpacing() and ours.origin == ref.GetOrigin()
    np.testing.assert_array_equal(ours.direction.ravel(), ref.GetDirection())


def test_single_pass_reader_applies_nifti_scaling_like_simpleitk(tmp_path):
    """An int16 CT stored with scl_slope/scl_inter (as the official PETAR stage 1 writes it)."""
    import struct

    vol = _oblique_volume(np.int16)
    write_volume(vol, tmp_path / "a.nii", compress=False)
    raw = bytearray((tmp_path / "a.nii").read_bytes())
    raw[112:120] = struct.pack("<ff", 0.01617, -469.99)
    (tmp_path / "b.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    ours = read_volume(tmp_path / "b.nii.gz")
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b.nii.gz")))
    assert ours.array.dtype == ref.dtype
    np.testing.assert_allclose(ours.array, ref, rtol=1e-6, atol=1e-4)
