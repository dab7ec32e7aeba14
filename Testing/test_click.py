"""Click-to-segment: snapping, the three methods, the leak guard and clear refusals."""
import numpy as np
import pytest

import petar

from conftest import ball_volume
from petar import InputError, LeakError, Volume, click_segment, segment_click
from petar.lesion.threshold import ThresholdFailure, iterative_threshold


def _blurred_ball(radius_mm=12.0, inside=8.0, outside=1.0, spacing=(3.0, 3.0, 3.0), shape=(40, 40, 40)):
    import SimpleITK as sitk

    pet, mask = ball_volume(shape=shape, spacing=spacing, radius_mm=radius_mm, inside=inside, outside=outside)
    blurred = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(pet.to_sitk(), 2.5))
    return Volume.from_array(blurred.astype(np.float32), like=pet), mask


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_percent_segments_the_ball_and_reports_the_threshold():
    pet, mask = _blurred_ball()
    seg = click_segment(pet, (4.0, -3.0, 2.0), space="ras")          # near, not on, the centre
    assert seg.method == "percent"
    assert seg.threshold == pytest.approx(0.41 * seg.suv_max)
    assert seg.suv_max == pytest.approx(pet.array.max())
    assert _dice(seg.mask.array > 0, mask.array > 0) > 0.85
    assert seg.mask.same_grid(pet) and seg.mask.array.dtype == np.uint8


@pytest.mark.parametrize("method", ["fixed", "adaptive"])
def test_fixed_and_adaptive_find_the_same_lesion(method):
    pet, mask = _blurred_ball()
    out = segment_click(pet, (0.0, 0.0, 0.0), method=method)
    assert _dice(out.array > 0, mask.array > 0) > 0.8


def test_fixed_threshold_is_exactly_the_suv_cut():
    pet, mask = ball_volume(shape=(20, 20, 20), spacing=(2.0, 2.0, 2.0), radius_mm=8.0, inside=3.0, outside=1.0)
    out = segment_click(pet, (0, 0, 0), method="fixed", threshold=2.5)
    np.testing.assert_array_equal(out.array > 0, mask.array > 0)


def test_the_click_snaps_to_the_hottest_voxel_within_7_mm_and_not_beyond():
    pet = Volume(np.ones((30, 30, 30), dtype=np.float32), (2.0, 2.0, 2.0))
    arr = pet.array
    arr[15, 15, 18] = 9.0          # 6 mm from the click at index (15, 15, 15)
    arr[15, 15, 5] = 30.0          # 20 mm away: must not be taken
    seg = click_segment(pet, (15, 15, 15), space="ijk", method="fixed", threshold=5.0)
    assert seg.seed_ijk == [18, 15, 15] and seg.clicked_ijk == [15, 15, 15]
    assert seg.mask.array.sum() == 1
    with pytest.raises(InputError, match="nothing hot near the click"):
        click_segment(pet, (15, 15, 15), space="ijk", method="fixed", threshold=5.0, snap_mm=0)


def test_ras_lps_and_ijk_clicks_agree():
    pet, _ = _blurred_ball()
    ijk = (20, 21, 19)
    lps = pet.index_to_world(ijk)
    ras = pet.index_to_world(ijk, "ras")
    masks = [segment_click(pet, p, space=s).array for p, s in ((ijk, "ijk"), (lps, "lps"), (ras, "ras"))]
    assert all(np.array_equal(masks[0], m) for m in masks[1:])


def test_point_outside_the_volume_is_refused_with_the_space_named():
    pet, _ = _blurred_ball()
    with pytest.raises(InputError, match=r"outside the PET volume.*--space"):
        click_segment(pet, (500.0, 0.0, 0.0), space="ras")


def test_click_on_background_says_nothing_hot():
    pet, _ = _blurred_ball()
    with pytest.raises(InputError, match="nothing hot near the click"):
        click_segment(pet, (45.0, 45.0, 45.0), space="lps")


def test_click_in_the_air_outside_the_body_is_refused():
    """Air around a whole-body PET is ~0 SUV with noise: every method must refuse, not outline 13 voxels of noise."""
    ph = petar.make_phantom(seed=3, shape=(120, 64, 64), spacing=(5.0, 5.0, 5.0))
    for method in ("percent", "adaptive"):
        with pytest.raises(InputError, match="outside the body"):
            click_segment(ph.pet, (1, 1, 1), space="ijk", method=method)


def test_leak_into_a_long_hot_structure_stops_with_advice():
    """A lesion touching a hot tube (ureter/vessel-like) that runs out of the guard radius."""
    pet = np.ones((60, 40, 40), dtype=np.float32)
    pet[25:35, 15:25, 15:25] = 8.0                      # lesion
    pet[:, 18:22, 18:22] = np.maximum(pet[:, 18:22, 18:22], 4.0)   # tube through it, along z
    vol = Volume(pet, (3.0, 3.0, 3.0))
    with pytest.raises(LeakError, match=r"leaked into adjacent uptake.*try `fixed` or a smaller radius"):
        click_segment(vol, (20, 20, 30), space="ijk", method="percent", max_radius_mm=45)
    with pytest.raises(LeakError, match="mL"):
        click_segment(vol, (20, 20, 30), space="ijk", method="percent", max_radius_mm=500, max_volume_ml=5)
    ok = click_segment(vol, (20, 20, 30), space="ijk", method="fixed", threshold=5.0, max_radius_mm=45)
    assert ok.mask.array.sum() == 10 * 10 * 10


def test_percent_refuses_a_lesion_merged_with_hotter_uptake():
    pet = np.ones((30, 30, 60), dtype=np.float32)
    pet[10:20, 10:20, 10:20] = 5.0          # lesion
    pet[10:20, 10:20, 20:40] = 20.0         # touching, hotter (bladder-like)
    vol = Volume(pet, (3.0, 3.0, 3.0))
    with pytest.raises(LeakError, match="hotter uptake"):
        click_segment(vol, (12, 15, 15), space="ijk", method="percent", snap_mm=0)


def test_a_lesion_at_the_volume_edge_is_not_a_leak():
    pet = np.ones((20, 20, 20), dtype=np.float32)
    pet[0:4, 8:12, 8:12] = 7.0
    vol = Volume(pet, (3.0, 3.0, 3.0))
    seg = click_segment(vol, (10, 10, 1), space="ijk")
    assert seg.mask.array.sum() == 4 * 4 * 4


def test_adaptive_follows_jentzen_and_fails_without_contrast():
    """ITM on a uniform ball: the published one-layer-per-iteration growth stops inside the ball once T settles;
    filled to its final threshold it is the ball. A flat region (T/S > 0.9) fails with a reason."""
    pet, mask = ball_volume(shape=(30, 30, 30), spacing=(3.0, 3.0, 3.0), radius_mm=15.0, inside=8.0, outside=1.0)
    published = iterative_threshold(pet.array, (15, 15, 15), 8.0, pet.voxel_volume_ml)
    assert published.mask.sum() < mask.array.sum() and not (published.mask & (mask.array == 0)).any()
    res = iterative_threshold(pet.array, (15, 15, 15), 8.0, pet.voxel_volume_ml, fill_to_threshold=True)
    np.testing.assert_array_equal(res.mask, mask.array > 0)
    assert res.background == pytest.approx(1.0)
    assert published.threshold == res.threshold
    # T = (0.078/V + 0.617·B/S + 0.316)·S with B = 1, S = 8, V the contour (a whole number of voxels) before the
    # last growth step: solve for V and check it is such a contour.
    v = 0.078 / (res.threshold / 8.0 - 0.617 / 8.0 - 0.316)
    voxels = v / pet.voxel_volume_ml
    assert voxels == pytest.approx(round(voxels), abs=1e-6) and 1 <= round(voxels) <= published.mask.sum()
    flat = np.full((20, 20, 20), 3.0, dtype=np.float32)
    flat[10, 10, 10] = 3.1
    with pytest.raises(ThresholdFailure, match="of SUVmax"):
        iterative_threshold(flat, (10, 10, 10), 3.1, 0.027)


def test_bad_parameters_are_input_errors():
    pet, _ = _blurred_ball()
    with pytest.raises(InputError, match="unknown method"):
        click_segment(pet, (0, 0, 0), method="magic")
    with pytest.raises(InputError, match="percent"):
        click_segment(pet, (0, 0, 0), percent=140)
    with pytest.raises(InputError, match="three finite numbers"):
        click_segment(pet, (0, np.nan, 0))


def test_every_phantom_lesion_can_be_clicked(small_phantom):
    pet = small_phantom.pet
    for t in small_phantom.truth:
        seg = click_segment(pet, t["hottest_ijk"], space="ijk", method="adaptive")
        truth = small_phantom.lesions.array == t["label"]
        got = seg.mask.array > 0
        assert got[truth].mean() > 0.5, t["name"]           # covers most of the true lesion
        assert seg.suv_max == pytest.approx(t["suv_max"]), t["name"]
