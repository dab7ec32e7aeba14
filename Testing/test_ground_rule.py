"""Rule grounding: sentences with SUVmax and slice find the right phantom lesion; ambiguity is reported, never
picked; partial text ranks candidates; negatives, impossible values and bad slices are handled."""
import json

import numpy as np
import pytest

import petar
from conftest import assert_one_line_error
from petar import InputError, Volume


def _sentence(t):
    return f"FDG-avid {t['name']}, SUVmax {t['suv_max']:.2f}, image {t['axial_slice']}."


def test_every_phantom_lesion_is_found_from_suvmax_and_slice(small_phantom):
    ph = small_phantom
    for t in ph.truth:
        res = petar.ground(_sentence(t), ph.pet)
        assert res.status == "found", (t["name"], res.message, [c.to_dict() for c in res.candidates])
        truth = ph.lesions.array == t["label"]
        got = res.mask.array > 0
        assert got[truth].mean() > 0.5, t["name"]                    # most of the true lesion
        assert res.lesion.suv_max == pytest.approx(t["suv_max"], abs=1e-4)
        assert res.lesion.axial_slice == t["axial_slice"]


def _two_spheres(suv_left=7.0, suv_right=7.0):
    """Two equal hot balls on the same planes, one on each side of the body (LPS +x = patient's left)."""
    pet = np.ones((40, 40, 60), dtype=np.float32)
    zz, yy, xx = np.mgrid[:40, :40, :60]
    for cx, v in ((15, suv_right), (45, suv_left)):
        pet[(zz - 20) ** 2 + (yy - 20) ** 2 + (xx - cx) ** 2 <= 9] = v
    pet[:, :, :] = np.where(pet == 1.0, 1.0, pet)
    return Volume(pet, (4.0, 4.0, 4.0), (-118.0, -78.0, -78.0))


def test_two_matches_are_ambiguous_with_ranked_candidates_and_no_mask():
    pet = _two_spheres()
    res = petar.ground("Hypermetabolic node, SUVmax 7.0, image 21", pet)
    assert res.status == "ambiguous" and res.mask is None
    assert len(res.candidates) == 2
    assert {c.side for c in res.candidates} == {"left", "right"}
    d = res.to_dict()
    assert d["status"] == "ambiguous" and len(d["candidates"]) == 2 and d["lesion"] is None


def test_the_stated_side_disambiguates():
    pet = _two_spheres()
    res = petar.ground("Hypermetabolic left axillary node, SUVmax 7.0, image 21", pet)
    assert res.status == "found", res.message
    assert res.lesion.hottest_lps[0] > 0                      # patient's left
    res = petar.ground("Right axillary node, SUVmax 7.0, image 21", pet)
    assert res.status == "found" and res.lesion.hottest_lps[0] < 0


def test_partial_text_ranks_candidates():
    pet = _two_spheres(suv_left=9.0, suv_right=6.0)
    only_suv = petar.ground("Left axillary node with SUVmax 9.0", pet)
    assert only_suv.status == "found" and "only" in only_suv.message
    nothing = petar.ground("Hypermetabolic left axillary node", pet)
    assert nothing.status == "needs_model" and nothing.mask is None
    assert nothing.candidates[0].side == "left"              # ranked by side


def test_negative_finding_is_not_found_with_the_reason(small_phantom):
    res = petar.ground("No FDG-avid lymphadenopathy.", small_phantom.pet)
    assert res.status == "not_found" and "negative" in res.message


def test_suvmax_above_the_pet_maximum_says_so(small_phantom):
    res = petar.ground("Left axillary node, SUVmax 95.0, image 20", small_phantom.pet)
    assert res.status == "not_found" and "above this PET's maximum" in res.message


def test_no_region_matching_lists_the_closest(small_phantom):
    t = small_phantom.truth[0]
    res = petar.ground(f"Node, SUVmax {t['suv_max'] - 0.5:.2f}, image {t['axial_slice']}", small_phantom.pet)
    assert res.status == "not_found" and res.candidates


def test_several_lesions_in_one_sentence_are_ambiguous(small_phantom):
    t1, t2 = small_phantom.truth[:2]
    res = petar.ground(f"Two nodes with SUVmax {t1['suv_max']:.1f} (image {t1['axial_slice']}) and "
                       f"{t2['suv_max']:.1f} (image {t2['axial_slice']})", small_phantom.pet)
    assert res.status == "ambiguous" and "lesions" in res.message


def test_slice_beyond_the_volume_and_empty_text_are_input_errors(small_phantom):
    with pytest.raises(InputError, match="outside this volume"):
        petar.ground("Node, SUVmax 5.0, image 999", small_phantom.pet)
    with pytest.raises(InputError, match="empty"):
        petar.ground("   ", small_phantom.pet)


def test_inferior_slice_origin_is_honoured(small_phantom):
    ph = small_phantom
    t = ph.truth[2]
    inferior = ph.pet.shape[0] + 1 - t["axial_slice"]
    res = petar.ground(f"Node, SUVmax {t['suv_max']:.2f}, image {inferior}", ph.pet, slice_origin="inferior")
    assert res.status == "found" and res.lesion.axial_slice == inferior and res.lesion.slice_origin == "inferior"


def test_cli_ground_writes_mask_and_json_only_when_found(cli, phantom_files, small_phantom, tmp_path):
    t = small_phantom.truth[1]
    f = phantom_files
    r = cli("ground", "--pet", f / "pet.nii.gz", "--text", _sentence(t), "--out", tmp_path / "m.nii.gz",
            "--json", tmp_path / "g.json")
    assert r.code == 0, r.err
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["status"] == "found" and doc["parsed"]["suv_max"] == pytest.approx(round(t["suv_max"], 2))
    assert petar.read_volume(tmp_path / "m.nii.gz").array.sum() == doc["lesion"]["voxels"]
    r = cli("ground", "--pet", f / "pet.nii.gz", "--text", "No suspicious uptake.", "--out", tmp_path / "n.nii.gz")
    assert r.code == 0 and "not_found" in r.out and not (tmp_path / "n.nii.gz").exists()
    r = cli("ground", "--pet", f / "pet.nii.gz", "--text", " ", "--out", tmp_path / "e.nii.gz")
    assert_one_line_error(r, "empty")
    r = cli("ground", "--pet", f / "pet.nii.gz", "--text", "node SUVmax 4, image 5000", "--out", tmp_path / "e.nii.gz")
    assert_one_line_error(r, "outside this volume")
    assert not (tmp_path / "e.nii.gz").exists()


def test_an_index_lesion_among_several_is_grounded(small_phantom):
    t = small_phantom.truth[0]
    res = petar.ground(f"Multiple left axillary nodes, the largest with SUVmax {t['suv_max']:.2f} "
                       f"(image {t['axial_slice']}).", small_phantom.pet)
    assert res.parsed.lesion_count > 1
    assert res.status == "found" and res.lesion.axial_slice == t["axial_slice"]
