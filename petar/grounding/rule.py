"""Rule engine: a report sentence with SUVmax and axial slice → the lesion it describes, exactly, no weights.

The PETARSeg weak-label algorithm: components of the PET above 0.617 + 0.316·SUVmax (Jentzen's threshold with
background 1; 6-connected) are candidates; one is accepted when its planes cover the reported axial slice and its
maximum is within ±0.1 of the reported SUVmax (components spanning > 50 planes are refused when SUVmax < 5); it is
grown from its hottest voxel with the iterative threshold (published semantics, `petar.lesion.threshold`) and
checked: the label's maximum within 0.2 of the reported SUVmax, the reported slice covered, the stated side right
(10-voxel buffer). Several survivors are never picked silently: status "ambiguous" with ranked candidates. Without
SUVmax or slice, what the text has (SUV, slice window, side) ranks the candidates; with nothing to decide on, the
status is "needs_model".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..lesion.components import label_components
from ..lesion.measure import _foreground_indices, measure
from ..lesion.threshold import ThresholdFailure, iterative_threshold
from ..report.regions import laterality
from ..slices import index_to_slice, slice_to_index
from ..volume import Volume
from .result import Candidate, GroundingResult

SUV_TOLERANCE = 0.1          # candidate match (PETARSeg)
QC_TOLERANCE = 0.2           # grown label's max vs the text
SIDE_BUFFER_VOXELS = 10
FALLBACK_THRESHOLD = 2.5     # candidate threshold when the text has no SUVmax
GROW_MARGIN_MM = 60.0
MAX_CANDIDATES = 10


@dataclass
class _Component:
    zyx: np.ndarray            # (N, 3) voxel indices
    suv_max: float
    hottest: np.ndarray        # zyx
    z_lo: int
    z_hi: int


def uptake_components(pet: Volume, threshold: float) -> list[_Component]:
    """6-connected components of PET > threshold, with their maxima and plane ranges."""
    labels, n = label_components(pet.array > threshold, full_connectivity=False)
    if n == 0:
        return []
    zyx = _foreground_indices(labels)
    ids = labels[tuple(zyx.T)]
    order = np.argsort(ids, kind="stable")
    zyx, ids = zyx[order], ids[order]
    values = pet.array[tuple(zyx.T)]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    out = []
    for part, vals in zip(np.split(zyx, cuts), np.split(values, cuts)):
        i = int(np.argmax(vals))
        out.append(_Component(part, float(vals[i]), part[i], int(part[:, 0].min()), int(part[:, 0].max())))
    return out


def _midline_x(pet: Volume, k: int) -> float:
    body = pet.array[k] > 0.3
    if not body.any():
        return float(pet.index_to_world([pet.shape[2] / 2, pet.shape[1] / 2, k])[0])
    return float(pet.index_to_world([np.nonzero(body)[1].mean(), pet.shape[1] / 2, k])[0])


def _wrong_side(pet: Volume, c: _Component, side: str | None) -> bool:
    """True when a left/right sentence points at a lesion clearly on the other side (centroid beyond the buffer)."""
    if side not in ("left", "right"):
        return False
    centre = pet.index_to_world(c.zyx[:, ::-1].mean(axis=0))
    offset = centre[0] - _midline_x(pet, int(c.hottest[0]))          # LPS x: + is the patient's left
    buffer = SIDE_BUFFER_VOXELS * pet.spacing[0]
    return offset < -buffer if side == "left" else offset > buffer


def _candidate(pet: Volume, c: _Component, parsed, k_reported, slice_origin) -> Candidate:
    hot_ijk = c.hottest[::-1].astype(float)
    side = laterality(pet.index_to_world(hot_ijk)[0], _midline_x(pet, int(c.hottest[0])))
    terms, reasons = [], []
    if parsed.suv_max is not None:
        delta = abs(c.suv_max - parsed.suv_max)
        terms.append(math.exp(-delta / 0.5))
        reasons.append(f"SUVmax {c.suv_max:.2f} ({'+' if c.suv_max >= parsed.suv_max else '−'}{delta:.2f})")
    if k_reported is not None:
        dist = 0 if c.z_lo <= k_reported <= c.z_hi else min(abs(k_reported - c.z_lo), abs(k_reported - c.z_hi))
        terms.append(math.exp(-dist / 5.0))
        reasons.append("covers the slice" if dist == 0 else f"{dist} slice(s) from the reported one")
    if parsed.laterality in ("left", "right"):
        ok = not _wrong_side(pet, c, parsed.laterality)
        terms.append(1.0 if ok else 0.0)
        reasons.append(f"{side} side" + ("" if ok else " (text says " + parsed.laterality + ")"))
    score = sum(terms) / len(terms) if terms else c.suv_max / max(float(pet.array.max()), 1e-6)
    slices = sorted(index_to_slice(pet, k, slice_origin) for k in (c.z_lo, c.z_hi))
    return Candidate(score, c.suv_max, index_to_slice(pet, int(c.hottest[0]), slice_origin),
                     pet.index_to_world(hot_ijk, "ras").tolist(), [int(v) for v in hot_ijk], slices, len(c.zyx),
                     side, reasons)


def _passes(pet, c: _Component, parsed, k_reported, tolerance) -> bool:
    if parsed.suv_max is not None:
        if abs(c.suv_max - parsed.suv_max) > tolerance:
            return False
        if parsed.suv_max < 5 and c.z_hi - c.z_lo + 1 > 50:
            return False
    if k_reported is not None and not c.z_lo <= k_reported <= c.z_hi:
        return False
    return not _wrong_side(pet, c, parsed.laterality)


def _grow(pet: Volume, c: _Component, suv_max: float) -> tuple[np.ndarray, str]:
    """Full-size boolean mask of the grown lesion and a note (empty when the published growth worked)."""
    half = np.array([int(math.ceil(GROW_MARGIN_MM / s)) for s in (pet.spacing[2], pet.spacing[1], pet.spacing[0])])
    lo = np.maximum(c.zyx.min(axis=0) - half, 0)
    hi = np.minimum(c.zyx.max(axis=0) + half + 1, pet.shape)
    block = pet.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    full = np.zeros(pet.shape, dtype=bool)
    try:
        res = iterative_threshold(block, c.hottest - lo, suv_max, pet.voxel_volume_ml)
        full[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = res.mask
        return full, ""
    except (ThresholdFailure, InputError) as exc:
        full[tuple(c.zyx.T)] = True
        return full, f"iterative growth did not converge ({exc}); the mask is the detection component"


def _qc(pet: Volume, mask: np.ndarray, parsed, k_reported) -> str:
    """The reason a grown label is rejected, or '' when it passes."""
    values = pet.array[mask]
    if parsed.suv_max is not None and abs(float(values.max()) - parsed.suv_max) > QC_TOLERANCE:
        return f"the grown lesion's SUVmax {float(values.max()):.2f} is more than {QC_TOLERANCE} from the text's"
    if k_reported is not None and not mask[k_reported].any():
        return "the grown lesion misses the reported slice"
    return ""


def ground_rule(parsed, pet: Volume, slice_origin: str = "superior", suv_tolerance: float = SUV_TOLERANCE,
                max_candidates: int = MAX_CANDIDATES) -> GroundingResult:
    """Ground a parsed finding on an SUV PET volume (see the module docstring)."""
    def result(status, message, mask=None, candidates=(), **info):
        lesion = measure(pet, Volume.from_array(mask.astype(np.uint8), like=pet), slice_origin=slice_origin)[0] \
            if mask is not None else None
        return GroundingResult(parsed, "rule", status, Volume.from_array(mask.astype(np.uint8), like=pet)
                               if mask is not None else None, lesion, list(candidates)[:max_candidates], message,
                               {"slice_origin": slice_origin, **info})

    if parsed.negative:
        return result("not_found", "the sentence is a negative finding: it describes no lesion to segment")
    pet_max = float(pet.array.max())
    if parsed.suv_max is not None and parsed.suv_max > pet_max + QC_TOLERANCE:
        return result("not_found", f"the text's SUVmax {parsed.suv_max:g} is above this PET's maximum "
                                   f"{pet_max:.2f}: is it the right scan, SUV type or units?")
    k_reported = slice_to_index(pet, parsed.axial_slice, slice_origin) if parsed.axial_slice is not None else None
    threshold = 0.617 + 0.316 * parsed.suv_max if parsed.suv_max is not None else FALLBACK_THRESHOLD
    comps = uptake_components(pet, threshold)
    cands = sorted(((_candidate(pet, c, parsed, k_reported, slice_origin), c) for c in comps),
                   key=lambda t: -t[0].score)
    ranked = [cd for cd, _ in cands]
    matches = [(cd, c) for cd, c in cands if _passes(pet, c, parsed, k_reported, suv_tolerance)]
    info = {"threshold": round(threshold, 4), "components": len(comps)}
    if parsed.lesion_count > 1 and not getattr(parsed, "index_lesion", False):   # "the largest …" singles one out
        return result("ambiguous", f"the sentence describes {parsed.lesion_count} lesions: split it, or pick a "
                                   "candidate", candidates=ranked, **info)
    if parsed.suv_max is None and parsed.axial_slice is None:
        return result("needs_model", "the text has no SUVmax and no axial slice: nothing here can decide between "
                                     f"{len(ranked)} uptake region(s); use the contextual engine or pick a candidate",
                      candidates=ranked, **info)
    if not matches:
        return result("not_found", "no uptake region matches " + _what(parsed) + "; the closest are listed",
                      candidates=ranked, **info)
    if len(matches) > 1:
        return result("ambiguous", f"{len(matches)} uptake regions match {_what(parsed)}: pick one",
                      candidates=[cd for cd, _ in matches], **info)
    cand, comp = matches[0]
    suv = parsed.suv_max if parsed.suv_max is not None else comp.suv_max
    mask, note = _grow(pet, comp, suv)
    reason = _qc(pet, mask, parsed, k_reported)
    if reason:
        return result("not_found", f"the matching region failed quality control: {reason}", candidates=[cand],
                      **info)
    exact = parsed.suv_max is not None and parsed.axial_slice is not None
    message = ("matched on SUVmax and axial slice" if exact else "matched on " + _what(parsed) + " only")
    return result("found", message + (f"; {note}" if note else ""), mask=mask, candidates=[cand], **info)


def _what(parsed) -> str:
    parts = []
    if parsed.suv_max is not None:
        parts.append(f"SUVmax {parsed.suv_max:g}")
    if parsed.axial_slice is not None:
        parts.append(f"axial slice {parsed.axial_slice}")
    if parsed.laterality in ("left", "right"):
        parts.append(f"the {parsed.laterality} side")
    return ", ".join(parts) or "the text"
