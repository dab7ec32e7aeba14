"""Volume geometry: world↔index in LPS and RAS exactly as ITK computes it; slice numbering by anatomy."""
import numpy as np
import pytest
import SimpleITK as sitk

from petar import InputError, Volume
from petar.slices import index_to_slice, slice_to_index


def _oblique_image():
    img = sitk.Image(7, 9, 11, sitk.sitkFloat32)
    img.SetSpacing((0.8, 1.3, 2.5))
    img.SetOrigin((-120.5, 33.25, 410.0))
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    img.SetDirection(tuple(rot.ravel()))
    return img


def test_index_to_world_matches_itk_for_oblique_anisotropic_grid():
    img = _oblique_image()
    vol = Volume.from_sitk(img)
    for ijk in [(0, 0, 0), (3, 4.5, 7), (6, 8, 10), (-1.5, 2, 12.25)]:
        expected = img.TransformContinuousIndexToPhysicalPoint(ijk)
        np.testing.assert_allclose(vol.index_to_world(ijk), expected, atol=1e-9)
        ras = vol.index_to_world(ijk, "ras")
        np.testing.assert_allclose(ras, [-expected[0], -expected[1], expected[2]], atol=1e-9)
        np.testing.assert_allclose(vol.world_to_index(ras, space="ras"), ijk, atol=1e-9)


def test_batched_points_round_trip():
    vol = Volume.from_sitk(_oblique_image())
    ijk = np.random.default_rng(0).uniform(0, 8, size=(50, 3))
    np.testing.assert_allclose(vol.world_to_index(vol.index_to_world(ijk)), ijk, atol=1e-9)


def test_sitk_round_trip_keeps_geometry_and_values():
    img = _oblique_image()
    arr = np.random.default_rng(1).random((11, 9, 7)).astype(np.float32)
    img2 = sitk.GetImageFromArray(arr)
    img2.CopyInformation(img)
    back = Volume.from_sitk(img2).to_sitk()
    assert back.GetSpacing() == img.GetSpacing()
    assert back.GetOrigin() == img.GetOrigin()
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 4, 5)])
def test_non_3d_array_is_rejected(shape):
    with pytest.raises(InputError, match="3D"):
        Volume(np.zeros(shape))


def test_from_array_requires_the_same_shape():
    vol = Volume(np.zeros((4, 5, 6)))
    with pytest.raises(InputError, match="does not match"):
        Volume.from_array(np.zeros((4, 5, 7)), like=vol)


def test_unknown_space_is_an_input_error():
    with pytest.raises(InputError, match="lps"):
        Volume(np.zeros((2, 2, 2))).index_to_world((0, 0, 0), space="xyz")


def test_slice_numbers_count_from_the_head_whatever_the_storage_order():
    head_last = Volume(np.zeros((10, 2, 2)))                         # k increases toward the head (+z LPS)
    head_first = Volume(np.zeros((10, 2, 2)), direction=np.diag([1.0, 1.0, -1.0]))
    # Most superior plane is slice 1 in both.
    assert index_to_slice(head_last, 9) == 1 and index_to_slice(head_last, 0) == 10
    assert index_to_slice(head_first, 0) == 1 and index_to_slice(head_first, 9) == 10
    assert index_to_slice(head_last, 9, "inferior") == 10
    for vol in (head_last, head_first):
        for origin in ("superior", "inferior"):
            for k in range(10):
                assert slice_to_index(vol, index_to_slice(vol, k, origin), origin) == k


def test_slice_out_of_range_says_the_valid_range():
    with pytest.raises(InputError, match="1..10"):
        slice_to_index(Volume(np.zeros((10, 2, 2))), 11)
