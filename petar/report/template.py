"""The template findings engine: one finding per lesion, written from measurements alone (no model, no weights).

Every number in the text comes from the measurement of the mask; the wording says what was estimated and how
("region estimated from CT"), so a reader never takes a heuristic for a model's reading.
"""
from __future__ import annotations

import numpy as np

from ..lesion.measure import LesionMeasurement
from ..volume import Volume
from .regions import REGION_WORDS, BodyMap, body_map, laterality
from .result import Finding


def _fmt_suv(v: float) -> str:
    return f"{v:.1f}"


def _fmt_ml(v: float) -> str:
    return f"{v:.2f}" if v < 1 else f"{v:.1f}"


def _midline_from_pet(pet: Volume, k: int) -> float:
    body = pet.array[k] > 0.3
    if not body.any():
        return float("nan")
    i = np.nonzero(body)[1].mean()
    return float(pet.index_to_world([i, pet.shape[1] / 2, k])[0])


def _site(m: LesionMeasurement, zyx, bmap: BodyMap | None, pet: Volume) -> tuple[str, str, str]:
    """(site words, region key, laterality) for a lesion's hottest voxel."""
    k = int(zyx[0])
    mid = bmap.midline_x_lps[k] if bmap is not None else _midline_from_pet(pet, k)
    side = laterality(m.hottest_lps[0], mid)
    if bmap is None:
        return (f"{side} side" if side != "midline" else "midline"), "unknown", side
    region = bmap.region_of_plane(k)
    if region == "chest" and bmap.in_lung(zyx):
        words = f"{side} lung" if side != "midline" else "lung"
    elif region == "unknown":
        words = f"{side} side" if side != "midline" else "midline"
    else:
        words = (f"{side} {REGION_WORDS[region]}" if side != "midline"
                 else f"midline {REGION_WORDS[region]}")
    return words, region, side


def finding_text(m: LesionMeasurement, site: str, region_source: str, nz: int, suv_type: str = "bw") -> str:
    """One sentence (plus provenance) for one lesion."""
    suv = "SUV" if suv_type == "bw" else f"SUV{suv_type}"
    size = f"{m.diameter_long_mm:.0f} × {m.diameter_short_mm:.0f} mm (axial)"
    parts = [f"Hypermetabolic lesion, {site}: {suv}max {_fmt_suv(m.suv_max)}, {suv}peak {_fmt_suv(m.suv_peak)}, "
             f"{suv}mean {_fmt_suv(m.suv_mean)}, MTV {_fmt_ml(m.mtv_ml)} mL, TLG {m.tlg:.1f}, {size}, "
             f"axial image {m.axial_slice} of {nz} (from the {m.slice_origin} end)."]
    if m.components > 1:
        parts.append(f"The segmentation has {m.components} separate parts.")
    parts.append("Region estimated from CT." if region_source == "ct" else "Region not estimated (no CT).")
    return " ".join(parts)


def template_findings(pet: Volume, ct: Volume | None, measurements: list[LesionMeasurement],
                      suv_type: str = "bw") -> list[Finding]:
    """Findings for measured lesions; `ct` on the PET grid or None."""
    bmap = body_map(ct) if ct is not None else None
    source = "ct" if ct is not None else "none"
    out = []
    for m in measurements:
        zyx = m.hottest_ijk[::-1]
        site, region, side = _site(m, zyx, bmap, pet)
        out.append(Finding(label=m.label, text=finding_text(m, site, source, pet.shape[0], suv_type), site=site,
                           region=region, laterality=side, region_source=source, measurement=m))
    return out
