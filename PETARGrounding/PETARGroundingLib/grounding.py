"""Grounding results for the widget: a segment name from the parsed site, a summary, stepping through candidates.

A grounding result is the Grounding JSON (DESIGN.md §4) plus the mask Volume (or None). `status` is one of
found | ambiguous | not_found | needs_model; for `ambiguous` the ranked candidates are offered one by one and the
accepted one becomes a new segment (grown from its hottest voxel with the click segmentation: in Slicer's Python
in-process, by the service's `segment` call in service mode, off the main thread).
"""
from __future__ import annotations

import math
import re

from PETARReportLib.runner import Cancelled

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


def candidate_request(candidate: dict, method: str = "percent") -> dict:
    """Keyword arguments of `Client.segment(pet, **request)` for an accepted candidate: its seed point (the hottest
    voxel, RAS), the space and the threshold method."""
    seed = (candidate or {}).get("hottest_ras")
    if seed is None or len(seed) != 3:
        raise ValueError("the candidate has no seed point (hottest_ras)")
    point = [float(v) for v in seed]
    if not all(math.isfinite(v) for v in point):
        raise ValueError(f"the candidate's seed point is not finite: {point}")
    return {"point": point, "space": "ras", "method": method}


def accept_in_service(settings) -> bool:
    """True when an accepted candidate is segmented by the petar service (local or remote service mode, off the
    main thread); False for in-process mode (segmented at once in Slicer's Python)."""
    return settings.service_mode != "inprocess"


def candidate_mask(pet, candidate: dict, segment=None, method: str = "percent"):
    """The mask for an accepted candidate, in-process: click segmentation seeded at its hottest voxel (RAS)."""
    if segment is None:
        import petar

        segment = petar.segment_click
    request = candidate_request(candidate, method)
    return segment(pet, request["point"], space=request["space"], method=request["method"])


def candidate_job(connector, pet, candidate: dict, method: str = "percent"):
    """Runner job for an accepted candidate -> mask Volume on the PET grid: the service's `segment` call when
    `connector.client()` gives a client (it may start a local service: worker thread only), else in-process."""
    request = candidate_request(candidate, method)

    def job(progress, should_stop, set_cancel_hook):
        progress({"stage": "starting"})
        client = connector.client()
        if should_stop():
            raise Cancelled()
        progress({"stage": "segmenting"})
        if client is None:
            return candidate_mask(pet, candidate, method=method)
        mask, _doc = client.segment(pet, **request)
        return mask

    return job


_STAGE_TEXT = {"queued": "waiting in the service queue", "starting": "starting", "loading model": "loading the model",
               "preprocessing": "preprocessing", "grounding": "localizing the finding",
               "segmenting": "segmenting the candidate", "done": "done", "failed": "failed",
               "cancelled": "cancelled"}


def ground_progress(doc: dict):
    """(percent 0..100 or None, status text) for a ground job's progress document (service job or in-process).

    The service's job document has `status`, `stage` (queued, starting, grounding, done, ...) and `queued_s`; a
    `fraction` (0..1), when a job reports one, gives a determinate percent; otherwise the percent is None (an
    indeterminate bar): stage names alone do not say how far a job is. A finished job is 100."""
    stage = str(doc.get("stage") or doc.get("status") or "")
    if stage == "done" or doc.get("status") == "done":
        return 100, _STAGE_TEXT["done"]
    label = _STAGE_TEXT.get(stage, stage or "working")
    if stage == "queued" and isinstance(doc.get("queued_s"), (int, float)) and doc["queued_s"] >= 1:
        label += f" ({doc['queued_s']:.0f} s)"
    fraction = doc.get("fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
        return None, label
    percent = int(round(100 * min(1.0, max(0.0, float(fraction)))))
    percent = min(percent, 99)                    # 100 only once the job is done
    return percent, f"{label} ({percent} %)"
