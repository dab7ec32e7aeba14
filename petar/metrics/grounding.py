"""Grounding metrics: lesion-level TP/FP/FN, F1 and Dice of predicted masks against reference masks.

Every connected component (26-connectivity) of a mask is one finding; label values only separate foreground from
background (two touching labels are one finding). For each case the reference components are matched one-to-one
to predicted components under a rule:

- ``"suvmax"`` (the paper's rule): the predicted component overlaps the reference component (≥ 1 shared voxel) and
  the two components' SUVmax (PET maximum over each *whole* component) differ by at most ``suv_tolerance`` (0.1,
  inclusive; float32 rounding of stored values is forgiven: 1e-6 × max(1, |SUV|)).
- ``"any_overlap"``: the components share at least one voxel; predicted components of at most
  ``min_voxels_any_overlap`` voxels (default 3) are ignored under this rule — they count neither as TP nor as FP.
- ``"dice>0.5"``: the Dice of the two whole components exceeds 0.5 (such pairs are one-to-one by construction).

Counting: TP = the size of a maximum one-to-one matching between reference and predicted components over the pairs
that satisfy the rule (a reference component is TP when it gets a partner; one predicted component can serve only
one reference component). FN = reference components without a partner; FP = (considered) predicted components
without a partner. The matching is order-independent; it equals the paper's greedy count (reference components in
label order, first qualifying overlapping prediction) whenever the greedy choice is not ambiguous.

F1 = TP / (TP + ½(FP + FN)); when TP = FP = FN = 0 (no finding anywhere, none predicted) F1 is defined as 1.0 —
nothing to find and nothing claimed is perfect agreement. Case Dice is computed on the whole binary masks; two empty
masks have Dice 1.0 by the same convention. Totals are micro-averaged (summed TP/FP/FN); mean Dice is the mean of
case Dice values.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..lesion.components import label_components

log = logging.getLogger("petar.metrics")

RULES = ("suvmax", "any_overlap", "dice>0.5")
RULE_DESCRIPTIONS = {
    "suvmax": "overlapping predicted component whose SUVmax is within the tolerance of the reference's",
    "any_overlap": "any overlap; predicted components of <= N voxels ignored",
    "dice>0.5": "Dice of the component pair > 0.5",
}


@dataclass
class CaseCounts:
    """Lesion-level counts of one case under one rule, with the case's whole-mask Dice."""

    tp: int
    fp: int
    fn: int
    dice: float
    tracer: str | None = None
    case: str = ""

    @property
    def f1(self) -> float:
        return f1(self.tp, self.fp, self.fn)


def f1(tp, fp, fn) -> float:
    """TP / (TP + ½(FP + FN)); 1.0 when there is nothing to find and nothing was predicted (0/0)."""
    denom = tp + 0.5 * (fp + fn)
    return 1.0 if denom == 0 else float(tp / denom)


def dice(pred, ref) -> float:
    """Dice of two binary masks (non-zero = foreground); 1.0 when both are empty."""
    p, r = np.asarray(pred) != 0, np.asarray(ref) != 0
    total = int(p.sum()) + int(r.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(p & r)) / total


# ---- component statistics -----------------------------------------------------------------------------------------
def _label_max(labels: np.ndarray, n: int, pet: np.ndarray) -> np.ndarray:
    """Per-label maximum of `pet` (index 0 unused)."""
    out = np.full(n + 1, -np.inf)
    flat = labels.ravel()
    inside = flat > 0
    lab = flat[inside]
    if lab.size:
        vals = pet.ravel()[inside].astype(np.float64)
        order = np.argsort(lab, kind="stable")
        lab, vals = lab[order], vals[order]
        starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        out[lab[starts]] = np.maximum.reduceat(vals, starts)
    return out


class _Components:
    """Components of the reference and prediction of one case, their sizes, SUVmax and pairwise overlaps."""

    def __init__(self, pred: np.ndarray, ref: np.ndarray, pet: np.ndarray):
        pred_b, ref_b = pred != 0, ref != 0
        self.dice = dice(pred_b, ref_b)
        rl, self.n_ref = label_components(ref_b, full_connectivity=True)
        pl, self.n_pred = label_components(pred_b, full_connectivity=True)
        self.ref_size = np.bincount(rl[ref_b], minlength=self.n_ref + 1)
        self.pred_size = np.bincount(pl[pred_b], minlength=self.n_pred + 1)
        self.ref_max = _label_max(rl, self.n_ref, pet)
        self.pred_max = _label_max(pl, self.n_pred, pet)
        both = ref_b & pred_b
        keys = rl[both].astype(np.int64) * (self.n_pred + 1) + pl[both]
        uniq, counts = np.unique(keys, return_counts=True)
        self.overlaps = {(int(k) // (self.n_pred + 1), int(k) % (self.n_pred + 1)): int(c)
                         for k, c in zip(uniq, counts)}

    def counts(self, rule: str, suv_tolerance: float, min_voxels_any_overlap: int) -> tuple[int, int, int]:
        considered = set(range(1, self.n_pred + 1))
        if rule == "any_overlap":
            considered = {p for p in considered if self.pred_size[p] > min_voxels_any_overlap}
        adj: dict[int, list[int]] = {}
        for (r, p), ov in sorted(self.overlaps.items()):
            if p not in considered:
                continue
            if rule == "suvmax":
                a, b = self.ref_max[r], self.pred_max[p]
                ok = abs(a - b) <= suv_tolerance + 1e-6 * max(1.0, abs(a), abs(b))
            elif rule == "dice>0.5":
                ok = 2.0 * ov / (self.ref_size[r] + self.pred_size[p]) > 0.5
            else:
                ok = True
            if ok:
                adj.setdefault(r, []).append(p)
        tp = _max_matching(adj)
        return tp, len(considered) - tp, self.n_ref - tp


def _max_matching(adj: dict[int, list[int]]) -> int:
    """Size of a maximum bipartite matching (Kuhn's augmenting paths, iterative: no recursion limit)."""
    match: dict[int, int] = {}            # predicted component -> reference component
    for root in sorted(adj):
        visited: set[int] = set()
        stack = [(root, iter(adj[root]))]
        path: list[tuple[int, int]] = []  # (reference, predicted) edges from the root to the top of the stack
        while stack:
            u, it = stack[-1]
            nxt = next((p for p in it if p not in visited), None)
            if nxt is None:
                stack.pop()
                if path:
                    path.pop()
                continue
            visited.add(nxt)
            path.append((u, nxt))
            if nxt not in match:         # free: flip the path
                for r, p in path:
                    match[p] = r
                break
            owner = match[nxt]
            stack.append((owner, iter(adj.get(owner, ()))))
    return len(match)


def _as_array(x, name: str) -> np.ndarray:
    arr = np.asarray(getattr(x, "array", x))
    if arr.ndim != 3:
        raise InputError(f"{name} must be a 3D array, got shape {arr.shape}")
    return arr


def _check(pred, ref, pet, rule=None):
    pred, ref, pet = _as_array(pred, "pred"), _as_array(ref, "ref"), _as_array(pet, "pet")
    if not (pred.shape == ref.shape == pet.shape):
        raise InputError(f"pred {pred.shape}, ref {ref.shape} and pet {pet.shape} must be on one grid")
    if rule is not None and rule not in RULES:
        raise InputError(f"unknown grounding rule {rule!r}: use one of {', '.join(RULES)}")
    return pred, ref, pet


def match_components(pred, ref, pet, rule: str = "suvmax", suv_tolerance: float = 0.1,
                     min_voxels_any_overlap: int = 3, *, tracer: str | None = None, case: str = "") -> CaseCounts:
    """Lesion-level TP/FP/FN of `pred` against `ref` (label or binary masks, one grid with `pet` in SUV) under `rule`.

    See the module docstring for the rules and the counting. Arrays or `Volume`s are accepted.
    """
    pred, ref, pet = _check(pred, ref, pet, rule)
    comps = _Components(pred, ref, pet)
    tp, fp, fn = comps.counts(rule, suv_tolerance, min_voxels_any_overlap)
    return CaseCounts(tp, fp, fn, comps.dice, tracer, case)


def match_all_rules(pred, ref, pet, suv_tolerance: float = 0.1, min_voxels_any_overlap: int = 3, *,
                    tracer: str | None = None, case: str = "") -> dict[str, CaseCounts]:
    """`match_components` under every rule of RULES, labelling the components once."""
    pred, ref, pet = _check(pred, ref, pet)
    comps = _Components(pred, ref, pet)
    return {rule: CaseCounts(*comps.counts(rule, suv_tolerance, min_voxels_any_overlap), comps.dice, tracer, case)
            for rule in RULES}


# ---- manifest -----------------------------------------------------------------------------------------------------
def read_manifest(manifest_path) -> list[dict]:
    """Entries {line, pet, pred, ref (resolved Paths), tracer, case} of a JSONL grounding manifest."""
    path = Path(manifest_path)
    if not path.is_file():
        raise InputError(f"manifest {path} not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read manifest {path.name}: {exc}") from None
    entries = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"manifest {path.name} line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where}: expected a JSON object with pet, pred, ref and tracer")
        entry = {"line": n}
        for key in ("pet", "pred", "ref"):
            value = obj.get(key)
            if key not in obj:
                raise InputError(f"{where}: field '{key}' is missing")
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{where}: field '{key}' must be a non-empty path string")
            p = Path(value).expanduser()
            entry[key] = p if p.is_absolute() else path.parent / p
        tracer = obj.get("tracer")
        if tracer is not None and not isinstance(tracer, str):
            raise InputError(f"{where}: field 'tracer' must be a string (e.g. \"FDG\") or null")
        entry["tracer"] = tracer.strip() if tracer and tracer.strip() else None
        case = obj.get("case", obj.get("case_id"))
        if case is not None and not isinstance(case, (str, int)):
            raise InputError(f"{where}: field 'case' must be a string")
        entry["case"] = str(case) if case is not None else str(obj["pred"])
        entries.append(entry)
    if not entries:
        raise InputError(f"manifest {path.name} has no cases: one JSON object per line with pet, pred, ref, tracer")
    missing = [f"line {e['line']} {k}: {e[k]}" for e in entries for k in ("pet", "pred", "ref") if not e[k].exists()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(f"manifest {path.name}: missing files: {'; '.join(missing[:5])}{more}")
    return entries


def _summary(cases: list[dict]) -> dict:
    rules = {}
    for rule in RULES:
        tp, fp, fn = (sum(c["rules"][rule][k] for c in cases) for k in ("tp", "fp", "fn"))
        rules[rule] = {"tp": tp, "fp": fp, "fn": fn, "f1": f1(tp, fp, fn)}
    return {"cases": len(cases), "mean_dice": float(np.mean([c["dice"] for c in cases])) if cases else None,
            "rules": rules}


UNSPECIFIED_TRACER = "unspecified"


def evaluate_grounding(manifest_path, suv_tolerance: float = 0.1, min_voxels_any_overlap: int = 3) -> dict:
    """Evaluate every case of a JSONL manifest ({"pet", "pred", "ref", "tracer"} per line, paths relative to it).

    Returns {"manifest", "suv_tolerance", "min_voxels_any_overlap", "rules": {rule: description}, "f1_definition",
    "overall": summary, "by_tracer": {tracer: summary}, "cases": [...]}, where a summary is {"cases", "mean_dice",
    "rules": {rule: {"tp", "fp", "fn", "f1"}}} (micro totals) and each case is {"case", "line", "tracer", "dice",
    "ref_components", "pred_components", "rules": {rule: {"tp", "fp", "fn", "f1"}}}.
    """
    from ..io import read_mask, read_pet

    if not suv_tolerance >= 0:
        raise InputError(f"SUV tolerance must be >= 0, got {suv_tolerance}")
    entries = read_manifest(manifest_path)
    cases = []
    for e in entries:
        try:
            pet = read_pet(e["pet"])
            pred = read_mask(e["pred"], pet)
            ref = read_mask(e["ref"], pet)
        except InputError as exc:
            raise InputError(f"manifest line {e['line']}: {exc}") from None
        comps = _Components(pred.array, ref.array, pet.array)
        rules = {}
        for rule in RULES:
            tp, fp, fn = comps.counts(rule, suv_tolerance, min_voxels_any_overlap)
            rules[rule] = {"tp": tp, "fp": fp, "fn": fn, "f1": f1(tp, fp, fn)}
        cases.append({"case": e["case"], "line": e["line"], "tracer": e["tracer"], "dice": comps.dice,
                      "ref_components": comps.n_ref, "pred_components": comps.n_pred, "rules": rules})
        log.info("case %s: dice %.3f, suvmax TP/FP/FN %s", e["case"], comps.dice,
                 "/".join(str(rules["suvmax"][k]) for k in ("tp", "fp", "fn")))
    tracers = sorted({c["tracer"] or UNSPECIFIED_TRACER for c in cases})
    by_tracer = {t: _summary([c for c in cases if (c["tracer"] or UNSPECIFIED_TRACER) == t]) for t in tracers}
    rule_text = dict(RULE_DESCRIPTIONS)
    rule_text["suvmax"] += f" (tolerance {suv_tolerance:g})"
    rule_text["any_overlap"] = rule_text["any_overlap"].replace("N", str(min_voxels_any_overlap))
    return {"manifest": str(manifest_path), "suv_tolerance": suv_tolerance,
            "min_voxels_any_overlap": min_voxels_any_overlap, "rules": rule_text,
            "f1_definition": "TP / (TP + (FP + FN) / 2), micro-averaged; 1.0 when TP = FP = FN = 0",
            "overall": _summary(cases), "by_tracer": by_tracer, "cases": cases}


__all__ = ["RULES", "CaseCounts", "dice", "evaluate_grounding", "f1", "match_all_rules", "match_components",
           "read_manifest"]
