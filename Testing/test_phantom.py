"""The synthetic PET/CT phantom: deterministic, anatomically oriented, and its truth matches its own arrays."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from petar.errors import InputError
from petar.phantom import Phantom, make_phantom

SMALL = {"shape": (120, 64, 64), "spacing": (4.0, 4.0, 4.0)}


@pytest.fixture(scope="module")
def small() -> Phantom:
    return make_phantom(seed=3, **SMALL)


def _near(vol, point_lps, half=1):
    """Values in a (2*half+1)^3 cube around an LPS point."""
    i, j, k = np.rint(vol.world_to_index(point_lps)).astype(int)
    return vol.array[k - half:k + half + 1, j - half:j + half + 1, i - half:i + half + 1].astype(float)


def test_grid_types_and_geometry(small):
    for vol in (small.pet, small.ct, small.lesions):
        assert vol.shape == SMALL["shape"]
        assert vol.same_grid(small.pet)
        assert np.array_equal(vol.direction, np.eye(3))
    assert small.pet.array.dtype == np.float32
    assert small.ct.array.dtype == np.int16
    assert small.lesions.array.dtype in (np.uint8, np.uint16)
    centre = small.pet.index_to_world((np.array(small.pet.size) - 1) / 2.0)
    assert np.allclose(centre[:2], 0.0)
    assert small.pet.superior_axis_sign() == 1          # k = 0 is the feet


def test_pet_is_finite_and_non_negative(small):
    assert np.all(np.isfinite(small.pet.array))
    assert small.pet.array.min() >= 0.0
    assert small.pet.array.max() > 10.0                 # the bladder survives blur


def test_same_seed_is_identical_and_other_seed_differs(small):
    again = make_phantom(seed=3, **SMALL)
    other = make_phantom(seed=4, **SMALL)
    for attr in ("pet", "ct", "lesions"):
        assert np.array_equal(getattr(again, attr).array, getattr(small, attr).array)
    assert again.truth == small.truth
    assert not np.array_equal(other.pet.array, small.pet.array)
    assert not np.array_equal(other.ct.array, small.ct.array)
    assert np.array_equal(other.lesions.array, small.lesions.array)   # only the noise depends on the seed


def test_truth_matches_the_arrays(small):
    pet, labels = small.pet.array, small.lesions.array
    nz = pet.shape[0]
    assert [t["label"] for t in small.truth] == list(range(1, len(small.truth) + 1))
    for t in small.truth:
        inside = labels == t["label"]
        assert inside.sum() == t["voxels"] > 0
        assert t["volume_ml"] == pytest.approx(t["voxels"] * small.pet.voxel_volume_ml, abs=1e-3)
        assert float(pet[inside].max()) == t["suv_max"]
        i, j, k = t["hottest_ijk"]
        assert labels[k, j, i] == t["label"] and float(pet[k, j, i]) == t["suv_max"]
        assert t["axial_slice"] == nz - k
        assert t["center_ras"] == pytest.approx([-t["center_lps"][0], -t["center_lps"][1], t["center_lps"][2]])


def test_labels_are_the_true_ellipsoids_and_do_not_overlap(small):
    labels = small.lesions.array
    assert set(np.unique(labels)) == set(range(len(small.truth) + 1))
    nz, ny, nx = labels.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    world = small.pet.index_to_world(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
    claimed = np.zeros(labels.size, int)
    for t in small.truth:
        d = (world - np.array(t["center_lps"])) / np.array(t["radii_mm"])
        shape = (d ** 2).sum(axis=1) <= 1.0 + 1e-6
        assert np.array_equal(shape.reshape(labels.shape), labels == t["label"])
        claimed += shape
    assert claimed.max() == 1


def test_default_lesions_are_varied_and_oriented(small):
    names = [t["name"] for t in small.truth]
    assert 6 <= len(names) <= 8 and len(set(names)) == len(names)
    assert {t["region"] for t in small.truth} >= {"head_neck", "chest", "abdomen", "pelvis"}
    for t in small.truth:
        x = t["center_lps"][0]
        assert {"left": x > 0, "right": x < 0, "midline": abs(x) < 5}[t["laterality"]], t
        side = t["name"].split()[0]
        assert side not in ("left", "right") or t["laterality"] == side, t
        # the label's centroid lies on the same side as the truth says
        centroid_k, centroid_j, centroid_i = ndimage.center_of_mass(small.lesions.array == t["label"])
        cx = small.pet.index_to_world((centroid_i, centroid_j, centroid_k))[0]
        assert np.sign(round(cx, 1)) == np.sign(round(x, 1))


def test_organs_are_where_anatomy_puts_them():
    small = make_phantom(seed=3, lesions=[], **SMALL)       # no lesion sits on an organ centre
    anchors = small.meta["anchors_lps"]
    liver = anchors["liver"]
    assert liver[0] < 0                                           # patient's right
    assert anchors["right_lung"][2] > liver[2]                     # under the right lung
    assert _near(small.pet, liver).mean() == pytest.approx(2.2, abs=0.3)
    assert _near(small.ct, liver).mean() == pytest.approx(60, abs=10)
    mirrored = [-liver[0], liver[1], liver[2]]
    assert _near(small.pet, mirrored).mean() < 1.5                # no liver on the left
    for lung in ("left_lung", "right_lung"):
        assert _near(small.ct, anchors[lung]).mean() < -700       # air-like
        assert _near(small.pet, anchors[lung]).mean() < 0.8
    assert _near(small.pet, anchors["brain"]).mean() > 5.0
    assert _near(small.pet, anchors["bladder"], 0).mean() > 12.0
    assert _near(small.pet, anchors["heart"]).mean() == pytest.approx(1.8, abs=0.3)
    corner = small.ct.array[:3, :3, :3]
    assert corner.mean() < -950 and small.pet.array[:3, :3, :3].max() < 0.1     # air outside the body
    assert set(small.meta["organs"]) >= {"liver", "lung", "brain", "bladder", "blood_pool", "bone", "fat"}


def test_noise_and_blur_free_lesion_has_its_nominal_uptake():
    lesion = {"name": "test node", "anchor": "liver", "offset_mm": (-5, 0, -5), "radii_mm": 9, "suv": 6.5}
    ph = make_phantom(seed=0, lesions=[lesion], noise=0.0, psf_fwhm_mm=0.0, **SMALL)
    (t,) = ph.truth
    assert t["suv_max"] == pytest.approx(6.5) and t["nominal_suv"] == 6.5
    assert t["region"] == "abdomen" and t["laterality"] == "right"
    liver = np.array(ph.meta["anchors_lps"]["liver"])
    assert t["center_lps"] == pytest.approx((liver + [-5, 0, -5]).tolist(), abs=0.02)
    inside = ph.lesions.array == 1
    assert np.all(ph.pet.array[inside] == np.float32(6.5))


def test_ras_centre_and_overrides():
    lesion = {"name": "n", "center_ras": (-20.0, 0.0, 80.0), "radii_mm": (6, 5, 7), "suv": 3.0,
              "region": "chest", "laterality": "midline"}
    (t,) = make_phantom(seed=0, lesions=[lesion], **SMALL).truth
    assert t["center_lps"] == pytest.approx([20.0, 0.0, 80.0])
    assert (t["region"], t["laterality"]) == ("chest", "midline")
    assert make_phantom(seed=0, lesions=[], **SMALL).truth == []


@pytest.mark.parametrize("lesion, message", [
    ({"name": "in air", "center_lps": (0.0, -120.0, 0.0), "radii_mm": 5, "suv": 5}, "outside the body"),
    ({"name": "past the edge", "center_lps": (0.0, 0.0, 235.0), "radii_mm": 8, "suv": 5}, "outside the volume"),
    ({"name": "far away", "center_lps": (900.0, 0.0, 0.0), "radii_mm": 5, "suv": 5}, "outside the volume"),
    ({"name": "nowhere", "anchor": "pancreas", "radii_mm": 5, "suv": 5}, "unknown anchor"),
    ({"name": "flat", "anchor": "liver", "radii_mm": (5, 0, 5), "suv": 5}, "radii_mm"),
    ({"name": "tiny", "anchor": "liver", "offset_mm": (2, 2, 2), "radii_mm": 0.5, "suv": 5}, "no voxel"),
    ({"name": "no uptake", "anchor": "liver", "radii_mm": 5}, "suv"),
])
def test_bad_lesions_are_input_errors(lesion, message):
    with pytest.raises(InputError, match=message):
        make_phantom(seed=0, lesions=[lesion], **SMALL)


def test_overlapping_lesions_are_refused():
    a = {"name": "a", "anchor": "liver", "radii_mm": 8, "suv": 5}
    b = {"name": "b", "anchor": "liver", "offset_mm": (10, 0, 0), "radii_mm": 8, "suv": 5}
    with pytest.raises(InputError, match="'a' and 'b' overlap"):
        make_phantom(seed=0, lesions=[a, b], **SMALL)


def test_bad_grid_is_an_input_error():
    with pytest.raises(InputError):
        make_phantom(shape=(4, 64, 64))
    with pytest.raises(InputError):
        make_phantom(spacing=(0.0, 4.0, 4.0), shape=(120, 64, 64))


def test_write_reads_back_identically(small, tmp_path):
    out = tmp_path / "phantom"
    paths = small.write(out)
    assert {p.name for p in paths.values()} == {"pet.nii.gz", "ct.nii.gz", "lesions.nii.gz", "truth.json"}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())   # no temp files left
    for key in ("pet", "ct", "lesions"):
        vol = getattr(small, key)
        image = sitk.ReadImage(str(paths[key]))
        assert np.array_equal(sitk.GetArrayFromImage(image), vol.array)
        assert sitk.GetArrayFromImage(image).dtype == vol.array.dtype
        assert np.allclose(image.GetSpacing(), vol.spacing) and np.allclose(image.GetOrigin(), vol.origin)
        assert np.allclose(np.array(image.GetDirection()).reshape(3, 3), vol.direction)
    doc = json.loads(paths["truth"].read_text())
    assert doc["seed"] == 3 and doc["shape"] == [120, 64, 64] and doc["spacing"] == [4.0, 4.0, 4.0]
    assert doc["slice_origin"] == "superior" and doc["organs"]["liver"] == 2.2
    assert doc["lesions"] == small.truth
    small.write(out)                                                    # overwriting is fine
    assert len(list(out.iterdir())) == 4


def test_default_whole_body_phantom():
    ph = make_phantom()
    assert ph.pet.shape == (350, 200, 200) and ph.pet.spacing == (3.0, 3.0, 3.0)
    assert len(ph.truth) == 8
    by_name = {t["name"]: t for t in ph.truth}
    assert by_name["liver lesion"]["region"] == "abdomen"
    assert by_name["left supraclavicular node"]["region"] == "head_neck"
    assert by_name["right iliac bone lesion"]["region"] == "pelvis"
    assert by_name["left axillary node"]["radii_mm"] == [8.0, 8.0, 8.0]
    for t in ph.truth:
        assert 0.5 * t["nominal_suv"] < t["suv_max"] < 1.6 * t["nominal_suv"], t
