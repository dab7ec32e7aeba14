"""Grounding results for the widget: a segment name from the parsed site, a summary, stepping through candidates.

A grounding result is the Grounding JSON (DESIGN.md §4) plus the mask Volume (or None). `status` is one of
found | ambiguous | not_found | needs_model; for `ambiguous` the ranked candidates are offered one by one and the
accepted one becomes a new segment (grown from its hottest voxel with the click segmentation).
"""
from __future__ import annotations

import re

MAX_TEXT = 2000


def validate_text(text: str) -> tuple[bool, str]:
    text = (text or "").strip()
    if not text:
        return False, "type the finding sentence to localize"
    if len(text) > MAX_TEXT:
        return False, f"the finding is {len(text)} characters long: give one sentence (at most {MAX_TEXT})"
    return True, ""


def segment_name(result: dict, existing=()) -> str:
    """'<laterality> <site>' from the parsed finding (e.g. 'left axillary node'), unique among `existing`."""
    parsed = result.get("parsed") or {}
    site, side = parsed.get("site") or "", parsed.get("laterality") or ""
    if side in ("left", "right", "bilateral") and side not in site.split():
        site = f"{side} {site}"
    base = re.sub(r"\s+", " ", site).strip() or "grounded lesion"
    name, n = base, 2
    taken = set(existing)
    while name in taken:
        name = f"{base} ({n})"
        n += 1
    return name


def result_summary(result: dict) -> str:
    """Status, message, parsed fields and the lesion's measurements as short lines for the results box."""
    lines = [f"Status: {result.get('status', '?')} ({result.get('engine', '?')} engine)"]
    if result.get("message"):
        lines.append(result["message"])
    parsed = result.get("parsed") or {}
    shown = {k: v for k, v in parsed.items() if v not in (None, [], "", False)}
    if shown:
        lines.append("Parsed: " + "; ".join(f"{k} = {v}" for k, v in shown.items()))
    lesion = result.get("lesion")
    if lesion:
        lines.append(f"SUVmax {lesion.get('suv_max', 0):.2f}, SUVpeak {lesion.get('suv_peak', 0):.2f}, "
                     f"MTV {lesion.get('mtv_ml', 0):.2f} mL, TLG {lesion.get('tlg', 0):.1f}, "
                     f"slice {lesion.get('axial_slice')} (from the {lesion.get('slice_origin', 'superior')} end)")
    return "\n".join(lines)


class CandidateList:
    """Ranked candidates of an ambiguous result: step with next()/previous(), accept() the current one."""

    def __init__(self, result: dict):
        self.candidates = list(result.get("candidates") or [])
        self.index = 0 if self.candidates else -1

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def current(self):
        return self.candidates[self.index] if self.index >= 0 else None

    def next(self):
        if self.candidates:
            self.index = (self.index + 1) % len(self.candidates)
        return self.current

    def previous(self):
        if self.candidates:
            self.index = (self.index - 1) % len(self.candidates)
        return self.current

    def select(self, index: int):
        if not 0 <= index < len(self.candidates):
            raise IndexError(f"candidate {index + 1} does not exist (there are {len(self.candidates)})")
        self.index = index
        return self.current

    def labels(self) -> list[str]:
        return [f"{i + 1}. SUVmax {c.get('suv_max', 0):.2f}, slice {c.get('axial_slice')}, {c.get('side', '?')}, "
                f"score {c.get('score', 0):.2f}" for i, c in enumerate(self.candidates)]

    def accept(self):
        """The chosen candidate (its `hottest_ras` seeds the segmentation); None when there is none."""
        return self.current


def candidate_mask(pet, candidate: dict, segment=None):
    """The mask for an accepted candidate: click segmentation seeded at its hottest voxel (RAS)."""
    if segment is None:
        import petar

        segment = petar.segment_click
    return segment(pet, candidate["hottest_ras"], space="ras", method="percent")
