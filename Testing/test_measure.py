"""Measurement on analytic shapes with known answers."""
import json

import numpy as np
import pytest

from conftest import ball_volume
from petar import InputError, Volume, measure
from petar.lesion.measure import measurement_document
from petar.lesion.peak import PEAK_RADIUS_MM, sphere_kernel


def _cuboid(values=None, spacing=(2.0, 3.0, 4.0)):
    """10 (x) × 6 (y) × 5 (z) voxel cuboid inside a 30 × 20 × 16 grid."""
    pet = np.full((16, 20, 30), 1.0, dtype=np.float32)
    mask = np.zeros(pet.shape, dtype=np.uint8)
    sl = (slice(5, 10), slice(7, 13), slice(10, 20))
    mask[sl] = 1
    pet[sl] = 5.0 if values is None else values
    vol = Volume(pet, spacing, (10.0, -20.0, 30.0))
    return vol, Volume.from_array(mask, like=vol)


def test_cuboid_volume_stats_and_diameters_are_exact():
    pet, mask = _cuboid()
    (m,) = measure(pet, mask)
    assert m.voxels == 300
    assert m.mtv_ml == pytest.approx(300 * 2 * 3 * 4 / 1000)
    assert m.suv_max == m.suv_mean == 5.0 and m.suv_sd == 0.0
    assert m.tlg == pytest.approx(5.0 * m.mtv_ml)
    a, b = 10 * 2.0, 6 * 3.0                         # edge-to-edge extent in x and y (mm)
    d = np.hypot(a, b)
    assert m.diameter_long_mm == pytest.approx(d)
    assert m.diameter_short_mm == pytest.approx(d * min(a / b, b / a))   # chord ⟂ the diagonal through the centre
    assert m.components == 1


def test_hottest_voxel_centroid_and_slice():
    rng = np.random.default_rng(0)
    values = rng.uniform(2, 4, size=(5, 6, 10)).astype(np.float32)
    values[3, 2, 7] = 9.5
    pet, mask = _cuboid(values)
    (m,) = measure(pet, mask)
    assert m.hottest_ijk == [17, 9, 8]                       # (x, y, z) = (10+7, 7+2, 5+3)
    np.testing.assert_allclose(m.hottest_lps, [10 + 17 * 2.0, -20 + 9 * 3.0, 30 + 8 * 4.0])
    np.testing.assert_allclose(m.hottest_ras, [-(10 + 17 * 2.0), -(-20 + 9 * 3.0), 30 + 8 * 4.0])
    assert m.axial_slice == 16 - 8                           # slice = nz − k from the superior end
    np.testing.assert_allclose(m.centroid_lps, [10 + 14.5 * 2.0, -20 + 9.5 * 3.0, 30 + 7 * 4.0])
    assert m.suv_mean == pytest.approx(values.mean(), rel=1e-6)
    assert m.suv_sd == pytest.approx(values.std(), rel=1e-5)


def test_suv_peak_of_a_uniform_ball_is_its_value():
    pet, mask = ball_volume(radius_mm=15.0, inside=8.0, outside=1.0)
    (m,) = measure(pet, mask)
    assert m.suv_peak == pytest.approx(8.0, abs=1e-9)


def test_sphere_kernel_has_the_volume_of_1_ml_for_anisotropic_voxels():
    for spacing in [(4.0, 4.0, 2.0), (1.0, 1.0, 1.0), (2.7, 2.7, 3.3), (0.9, 0.9, 5.0)]:
        k = sphere_kernel(spacing)
        assert k.sum() * np.prod(spacing) == pytest.approx(1000.0, rel=0.01), spacing
    assert PEAK_RADIUS_MM == pytest.approx(6.2035, abs=1e-4)


def test_suv_peak_on_a_thin_hot_slab_uses_a_true_sphere_with_anisotropic_voxels():
    """One hot plane 5 mm thick: the 1 cm³ sphere centred in it keeps the fraction of its volume inside
    |z| ≤ 2.5 mm, π(r²·2h − 2h³/3) / (4/3 π r³) — an index-space ball would get this badly wrong."""
    spacing = (1.0, 1.0, 5.0)
    pet = np.zeros((9, 40, 40), dtype=np.float32)
    pet[4] = 10.0
    mask = np.zeros(pet.shape, dtype=np.uint8)
    mask[4, 20, 20] = 1
    vol = Volume(pet, spacing)
    (m,) = measure(vol, Volume.from_array(mask, like=vol))
    r, h = PEAK_RADIUS_MM, 2.5
    fraction = np.pi * (r * r * 2 * h - 2 * h ** 3 / 3) / (4 / 3 * np.pi * r ** 3)
    assert m.suv_peak == pytest.approx(10.0 * fraction, rel=0.01)


def _oracle_peak(pet: np.ndarray, mask: np.ndarray, spacing, sub=0.1):
    """Independent SUVpeak: partial-volume sphere weights by fine supersampling, then scipy correlation."""
    from scipy import ndimage

    r = PEAK_RADIUS_MM
    half = [int(np.ceil(r / s)) for s in spacing[::-1]]
    grids = [np.arange(-h * s - s / 2 + sub / 2, h * s + s / 2, sub) for h, s in zip(half, spacing[::-1])]
    zz, yy, xx = np.meshgrid(*grids, indexing="ij")
    inside = (zz ** 2 + yy ** 2 + xx ** 2) <= r * r
    counts = [int(round(s / sub)) for s in spacing[::-1]]
    k = inside.reshape(2 * half[0] + 1, counts[0], 2 * half[1] + 1, counts[1], 2 * half[2] + 1, counts[2])
    k = k.mean(axis=(1, 3, 5))
    means = ndimage.correlate(pet.astype(float), k, mode="constant") / ndimage.correlate(
        np.ones_like(pet, dtype=float), k, mode="constant")
    return means[mask > 0].max()


def test_suv_peak_matches_an_independent_oracle_and_ignores_a_single_hot_voxel():
    """A one-voxel spike at the lesion edge sets SUVmax but barely moves SUVpeak."""
    pet, mask = ball_volume(shape=(24, 30, 30), spacing=(2.0, 2.5, 3.0), radius_mm=12.0, inside=6.0)
    arr = pet.array.copy()
    arr[tuple(np.argwhere(mask.array)[0])] = 20.0
    arr += np.random.default_rng(1).normal(0, 0.3, arr.shape).astype(np.float32)
    vol = Volume.from_array(arr, like=pet)
    (m,) = measure(vol, mask)
    assert m.suv_max > 19
    assert m.suv_peak == pytest.approx(_oracle_peak(arr, mask.array, pet.spacing), rel=2e-3)
    assert m.suv_peak < 6.5


def test_labels_are_lesions_and_components_are_counted():
    pet = Volume(np.ones((10, 30, 30), dtype=np.float32) * 2)
    mask = np.zeros(pet.shape, dtype=np.uint8)
    mask[2:4, 2:5, 2:5] = 1
    mask[6:8, 20:25, 20:25] = 1          # same label, second blob
    mask[5, 10:14, 10:14] = 3
    ms = measure(pet, Volume.from_array(mask, like=pet))
    assert [m.label for m in ms] == [1, 3]
    assert [m.components for m in ms] == [2, 1]
    assert [m.voxels for m in ms] == [18 + 50, 16]
    (only3,) = measure(pet, Volume.from_array(mask, like=pet), label=3)
    assert only3.voxels == 16


def test_missing_label_and_empty_mask_are_input_errors():
    pet, mask = ball_volume()
    with pytest.raises(InputError, match=r"label 7 is not in the mask; it has label\(s\) 1"):
        measure(pet, mask, label=7)
    with pytest.raises(InputError, match="no foreground"):
        measure(pet, Volume.from_array(np.zeros(pet.shape, np.uint8), like=pet))


def test_ct_mean_hu_and_json_document():
    pet, mask = ball_volume()
    ct = Volume.from_array(np.where(mask.array > 0, 45.0, -100.0).astype(np.float32), like=pet)
    (m,) = measure(pet, mask, ct=ct)
    doc = measurement_document([m])
    assert doc["suv_type"] == "bw" and doc["units"] == "g/ml"
    d = doc["lesions"][0]
    assert d["ct_mean_hu"] == 45.0
    expected = {"label", "suv_max", "suv_peak", "suv_mean", "suv_sd", "mtv_ml", "tlg", "voxels", "diameter_long_mm",
                "diameter_short_mm", "centroid_lps", "centroid_ras", "hottest_lps", "hottest_ras", "hottest_ijk",
                "axial_slice", "slice_origin", "components"}
    assert expected <= set(d)
    json.dumps(doc)


def test_inferior_slice_origin_is_reported():
    pet, mask = ball_volume()
    (sup,) = measure(pet, mask)
    (inf,) = measure(pet, mask, slice_origin="inferior")
    assert inf.slice_origin == "inferior" and sup.axial_slice + inf.axial_slice == pet.shape[0] + 1


def test_mask_on_another_grid_is_resampled_before_measuring():
    pet, mask = ball_volume(spacing=(4.0, 4.0, 4.0), shape=(30, 30, 30), radius_mm=16.0)
    fine, fine_mask = ball_volume(spacing=(2.0, 2.0, 2.0), shape=(60, 60, 60), radius_mm=16.0)
    (a,) = measure(pet, mask)
    (b,) = measure(pet, fine_mask)
    assert abs(a.voxels - b.voxels) <= 0.05 * a.voxels   # nearest-neighbour ties on a half-voxel offset
