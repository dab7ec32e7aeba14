"""Grounding metrics: hand-counted TP/FP/FN and F1 under the three rules, a scipy oracle, the manifest and the CLI."""
import json
from fractions import Fraction

import numpy as np
import pytest

from conftest import assert_one_line_error
from petar import InputError, Volume, write_volume
from petar.metrics import RULES, dice, evaluate_grounding, f1, match_all_rules, match_components

SHAPE = (20, 20, 40)   # z, y, x


def constructed_case():
    """Four reference lesions and four predicted components, each counted by hand below.

    R1 (27 vx, SUVmax 8.0) — P1 identical.
    R2 (64 vx, SUVmax 6.0) — P2 = R2 shifted one voxel in x (overlap 48, Dice 0.75) reaching a 9.0 voxel: SUVmax off.
    R3 (27 vx, SUVmax 4.0) — P3 a 2-voxel blob on R3's hottest voxel (same SUVmax, Dice 4/29; any-overlap ignores it).
    R4 (27 vx, SUV 7.0)    — missed.
    P4 (27 vx, SUV 1.0)    — false positive far from every lesion.
    """
    pet = np.ones(SHAPE, np.float32)
    ref = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    ref[2:5, 2:5, 2:5] = 1                             # R1
    pet[2:5, 2:5, 2:5] = 5.0
    pet[3, 3, 3] = 8.0
    pred[2:5, 2:5, 2:5] = 1                           # P1
    ref[2:6, 2:6, 10:14] = 2                          # R2
    pet[2:6, 2:6, 10:14] = 4.0
    pet[3, 3, 11] = 6.0
    pred[2:6, 2:6, 11:15] = 1                         # P2
    pet[3, 3, 14] = 9.0
    ref[2:5, 2:5, 20:23] = 3                          # R3
    pet[2:5, 2:5, 20:23] = 3.0
    pet[3, 3, 21] = 4.0
    pred[3, 3, 21:23] = 1                             # P3
    ref[10:13, 10:13, 30:33] = 4                      # R4
    pet[10:13, 10:13, 30:33] = 7.0
    pred[12:15, 12:15, 2:5] = 1                       # P4
    return pred, ref, pet


EXPECTED = {"suvmax": (2, 2, 2), "any_overlap": (2, 1, 2), "dice>0.5": (2, 2, 2)}   # (TP, FP, FN)
EXPECTED_F1 = {"suvmax": 0.5, "any_overlap": 4 / 7, "dice>0.5": 0.5}
EXPECTED_DICE = 2 * (27 + 48 + 2) / ((27 + 64 + 27 + 27) + (27 + 64 + 2 + 27))    # 154/265


def test_constructed_case_matches_the_hand_count_under_each_rule():
    pred, ref, pet = constructed_case()
    for rule in RULES:
        c = match_components(pred, ref, pet, rule=rule, tracer="FDG", case="c1")
        assert (c.tp, c.fp, c.fn) == EXPECTED[rule], rule
        assert f1(c.tp, c.fp, c.fn) == pytest.approx(EXPECTED_F1[rule], abs=1e-15) and c.f1 == f1(c.tp, c.fp, c.fn)
        assert c.dice == pytest.approx(EXPECTED_DICE, abs=1e-15)
        assert (c.tracer, c.case) == ("FDG", "c1")
    together = match_all_rules(pred, ref, pet)
    assert {r: (c.tp, c.fp, c.fn) for r, c in together.items()} == EXPECTED
    # Volumes are accepted as well as arrays
    v = Volume(pet)
    c = match_components(Volume.from_array(pred, v), Volume.from_array(ref, v), v)
    assert (c.tp, c.fp, c.fn) == EXPECTED["suvmax"]


def test_suv_tolerance_is_inclusive_and_forgives_float32_rounding():
    pred, ref, pet = constructed_case()
    pet[3, 3, 14] = 6.1                     # P2's max now 6.1 (float32) against R2's 6.0: within 0.1
    assert (match_components(pred, ref, pet).tp) == 3
    pet[3, 3, 14] = 6.15
    assert match_components(pred, ref, pet).tp == 2
    assert match_components(pred, ref, pet, suv_tolerance=0.2).tp == 3
    pet[3, 3, 14] = 5.9                     # below: P2's max is then R2's own 6.0 voxel → exact
    assert match_components(pred, ref, pet).tp == 3


def test_one_predicted_component_matches_one_reference_and_the_matching_is_maximal():
    pet = np.full((6, 6, 12), 2.0, np.float32)
    ref = np.zeros(pet.shape, np.uint8)
    ref[1:4, 1:4, 1:4] = 1
    ref[1:4, 1:4, 6:9] = 1
    pred = np.zeros(pet.shape, np.uint8)
    pred[2, 2, 1:9] = 1                      # one bar across both lesions
    for rule in ("any_overlap", "suvmax"):
        c = match_components(pred, ref, pet, rule=rule)
        assert (c.tp, c.fp, c.fn) == (1, 0, 1), rule
    # Greedy trap: R_a overlaps P_x and P_y, R_b overlaps P_x only. The paper's greedy loop (references and
    # predictions in raster label order: R_a first, P_x before P_y) pairs R_a-P_x and leaves R_b unmatched; the
    # maximum matching pairs R_a-P_y and R_b-P_x (TP 2)
    ref = np.zeros((6, 6, 20), np.uint8)
    pred = np.zeros_like(ref)
    ref[2, 2:4, 1:8] = 1                     # R_a
    ref[2, 2, 12:15] = 1                     # R_b
    pred[2, 2, 6:13] = 1                     # P_x: overlaps R_a (x 6-7) and R_b (x 12)
    pred[2, 3, 1:3] = 1                      # P_y: overlaps R_a only
    for rule in ("suvmax", "any_overlap"):
        c = match_components(pred, ref, np.ones(ref.shape, np.float32), rule=rule, min_voxels_any_overlap=1)
        assert (c.tp, c.fp, c.fn) == (2, 0, 0), rule


def test_components_are_26_connected_and_labels_do_not_split_findings():
    pet = np.ones((5, 5, 5), np.float32)
    ref = np.zeros(pet.shape, np.uint8)
    ref[1, 1, 1] = 1
    ref[2, 2, 2] = 2                         # corner-touching, another label: still one finding
    c = match_components(np.zeros_like(ref), ref, pet)
    assert (c.tp, c.fp, c.fn) == (0, 0, 1) and c.dice == 0.0


def test_zero_division_conventions():
    assert f1(0, 0, 0) == 1.0
    assert f1(0, 0, 3) == 0.0 and f1(1, 1, 1) == 0.5 and f1(3, 0, 0) == 1.0
    empty = np.zeros((3, 3, 3), np.uint8)
    assert dice(empty, empty) == 1.0
    c = match_components(empty, empty, np.ones((3, 3, 3)))
    assert (c.tp, c.fp, c.fn, c.dice, c.f1) == (0, 0, 0, 1.0, 1.0)


def test_bad_arguments_raise_input_error():
    a = np.zeros((3, 3, 3))
    with pytest.raises(InputError, match="one grid"):
        match_components(a, np.zeros((3, 3, 4)), a)
    with pytest.raises(InputError, match="unknown grounding rule"):
        match_components(a, a, a, rule="iou")


def _oracle(pred, ref, pet, rule):
    """Independent counts: scipy labels, scipy maxima, scipy's assignment solver for the maximum matching."""
    from scipy import ndimage
    from scipy.optimize import linear_sum_assignment

    s = np.ones((3, 3, 3))
    rl, nr = ndimage.label(ref, structure=s)
    pl, npr = ndimage.label(pred, structure=s)
    keep = [p for p in range(1, npr + 1) if rule != "any_overlap" or (pl == p).sum() > 3]
    rmax = ndimage.maximum(pet, rl, range(1, nr + 1))
    pmax = ndimage.maximum(pet, pl, range(1, npr + 1))
    ok = np.zeros((nr, len(keep)))
    for i in range(nr):
        for j, p in enumerate(keep):
            ov = np.sum((rl == i + 1) & (pl == p))
            if ov == 0:
                continue
            if rule == "suvmax":
                ok[i, j] = abs(rmax[i] - pmax[p - 1]) <= 0.1 + 1e-5   # float32 ties (x.y - x.z = 0.1) count
            elif rule == "dice>0.5":
                ok[i, j] = 2 * ov / ((rl == i + 1).sum() + (pl == p).sum()) > 0.5
            else:
                ok[i, j] = 1
    rows, cols = linear_sum_assignment(-ok) if ok.size else ([], [])
    tp = int(sum(ok[r, c] for r, c in zip(rows, cols)))
    return tp, len(keep) - tp, nr - tp


def test_counts_agree_with_a_scipy_oracle_on_random_masks():
    rng = np.random.default_rng(7)
    for trial in range(6):
        shape = (10, 12, 14)
        ref = rng.random(shape) < 0.06
        pred = ref.copy() if trial % 2 else np.zeros(shape, bool)
        pred ^= rng.random(shape) < 0.05     # perturb: drops and additions
        pet = np.round(rng.random(shape) * 4, 1).astype(np.float32)
        got = match_all_rules(pred, ref, pet)
        for rule in RULES:
            assert (got[rule].tp, got[rule].fp, got[rule].fn) == _oracle(pred, ref, pet, rule), (trial, rule)
        from scipy import ndimage
        n = ndimage.label(ref, structure=np.ones((3, 3, 3)))[1]
        assert match_components(np.zeros(shape), ref, pet).fn == n


# ---- manifest and CLI -------------------------------------------------------------------------------------------
@pytest.fixture
def manifest(tmp_path):
    """Three cases: the constructed one (FDG), a perfect one (FDG), a missed one (PSMA); masks under masks/."""
    (tmp_path / "masks").mkdir()
    pred, ref, pet = constructed_case()
    grid = Volume(pet, spacing=(2.0, 2.0, 2.0), origin=(-10.0, 5.0, 0.0))

    def write(name, arr):
        write_volume(Volume.from_array(arr, like=grid), tmp_path / name)

    write("pet.nii.gz", pet)
    write("masks/a_pred.nii.gz", pred)
    write("masks/a_ref.nii.gz", ref)
    one = np.zeros(SHAPE, np.uint8)
    one[10:13, 10:13, 30:33] = 1
    write("masks/b.nii.gz", one)
    write("masks/empty.nii.gz", np.zeros(SHAPE, np.uint8))
    lines = [{"pet": "pet.nii.gz", "pred": "masks/a_pred.nii.gz", "ref": "masks/a_ref.nii.gz", "tracer": "FDG",
              "case": "a"},
             {"pet": "pet.nii.gz", "pred": "masks/b.nii.gz", "ref": "masks/b.nii.gz", "tracer": "FDG", "case": "b"},
             {"pet": "pet.nii.gz", "pred": "masks/empty.nii.gz", "ref": "masks/b.nii.gz", "tracer": "PSMA",
              "case": "c"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    return path


def _check_doc(doc):
    fr = lambda x: float(Fraction(x))  # noqa: E731
    d_a = Fraction(154, 265)
    assert doc["overall"]["cases"] == 3
    assert doc["overall"]["mean_dice"] == pytest.approx(float((d_a + 1) / 3), abs=1e-12)
    tot = doc["overall"]["rules"]
    assert (tot["suvmax"]["tp"], tot["suvmax"]["fp"], tot["suvmax"]["fn"]) == (3, 2, 3)
    assert tot["suvmax"]["f1"] == pytest.approx(fr("6/11"))
    assert (tot["any_overlap"]["tp"], tot["any_overlap"]["fp"], tot["any_overlap"]["fn"]) == (3, 1, 3)
    assert tot["any_overlap"]["f1"] == pytest.approx(0.6)
    assert tot["dice>0.5"]["f1"] == pytest.approx(fr("6/11"))
    fdg, psma = doc["by_tracer"]["FDG"], doc["by_tracer"]["PSMA"]
    assert set(doc["by_tracer"]) == {"FDG", "PSMA"}
    assert fdg["cases"] == 2 and fdg["mean_dice"] == pytest.approx(float((d_a + 1) / 2), abs=1e-12)
    assert fdg["rules"]["suvmax"] == {"tp": 3, "fp": 2, "fn": 2, "f1": pytest.approx(0.6)}
    assert fdg["rules"]["any_overlap"]["f1"] == pytest.approx(fr("2/3"))
    assert psma["rules"]["suvmax"] == {"tp": 0, "fp": 0, "fn": 1, "f1": 0.0} and psma["mean_dice"] == 0.0
    a, b, c = doc["cases"]
    assert (a["case"], a["line"], a["tracer"], a["ref_components"], a["pred_components"]) == ("a", 1, "FDG", 4, 4)
    assert {r: (v["tp"], v["fp"], v["fn"]) for r, v in a["rules"].items()} == EXPECTED
    assert b["dice"] == 1.0 and c["dice"] == 0.0
    assert set(doc["rules"]) == set(RULES) and doc["suv_tolerance"] == 0.1


def test_evaluate_grounding_per_tracer_breakdown(manifest):
    _check_doc(evaluate_grounding(manifest))


@pytest.fixture
def cli_eval(cli):
    """The `cli` fixture; evaluate-grounding is a registered command."""
    return cli


def test_cli_prints_a_table_and_writes_json(cli_eval, manifest, tmp_path):
    out = tmp_path / "out" / "metrics.json"
    r = cli_eval("evaluate-grounding", "--manifest", manifest, "--json", out)
    assert r.code == 0, r.err
    _check_doc(json.loads(out.read_text()))
    assert "overall" in r.out and "tracer PSMA" in r.out and "dice>0.5" in r.out and "0.545" in r.out
    r = cli_eval("evaluate-grounding", "--manifest", manifest, "--json", "-")
    assert r.code == 0
    _check_doc(json.loads(r.out))          # stdout is pure JSON


def test_cli_bad_manifest_lines_are_one_line_errors(cli_eval, manifest, tmp_path):
    good = manifest.read_text().splitlines()[0]
    cases = {"bad.jsonl": ([good, "{not json"], ("line 2", "json")),
             "nofield.jsonl": ([good, good, json.dumps({"pet": "pet.nii.gz", "pred": "masks/b.nii.gz"})],
                               ("line 3", "'ref'")),
             "tracer.jsonl": ([json.dumps({"pet": "pet.nii.gz", "pred": "x", "ref": "y", "tracer": 3})],
                              ("line 1", "'tracer'")),
             "missing.jsonl": ([good, json.dumps({"pet": "pet.nii.gz", "pred": "nope.nii.gz", "ref": "masks/b.nii.gz",
                                                  "tracer": "FDG"})], ("missing files", "line 2 pred", "nope.nii.gz")),
             "empty.jsonl": ([""], ("no cases",))}
    for name, (lines, fragments) in cases.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        out = tmp_path / f"{name}.json"
        r = cli_eval("evaluate-grounding", "--manifest", tmp_path / name, "--json", out)
        assert_one_line_error(r, *fragments)
        assert not out.exists()
    assert_one_line_error(cli_eval("evaluate-grounding", "--manifest", tmp_path / "absent.jsonl"), "not found")
    with pytest.raises(InputError, match="line 2"):
        evaluate_grounding(tmp_path / "bad.jsonl")
