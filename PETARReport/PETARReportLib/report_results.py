"""Turn a report JSON (petar report --json / the service's result) into table rows, streamed text and exports."""
from __future__ import annotations

import json
import os
import tempfile

TABLE_COLUMNS = ("Segment", "SUVmax", "SUVpeak", "MTV (mL)", "TLG", "Slice", "Finding")


def _fmt(value, digits):
    return "" if value is None else f"{float(value):.{digits}f}"


def findings_rows(report: dict, segment_names: dict | None = None) -> list[dict]:
    """One row per finding: display strings for TABLE_COLUMNS plus `label` and `center_ras` (to centre views)."""
    names = segment_names or {}
    rows = []
    for f in report.get("findings", []):
        m = f.get("measurement") or {}
        label = int(f.get("label", m.get("label", 0)))
        rows.append({
            "label": label,
            "center_ras": m.get("centroid_ras") or m.get("hottest_ras"),
            "cells": (names.get(label, f"label {label}"), _fmt(m.get("suv_max"), 2), _fmt(m.get("suv_peak"), 2),
                      _fmt(m.get("mtv_ml"), 2), _fmt(m.get("tlg"), 1),
                      "" if m.get("axial_slice") is None else str(m["axial_slice"]), f.get("text", "")),
        })
    return rows


def streamed_text(doc: dict, segment_names: dict | None = None) -> str:
    """The text generated so far, one block per lesion, from a job progress document."""
    names = segment_names or {}
    parts = []
    for key, text in sorted((doc.get("text") or {}).items(), key=lambda kv: str(kv[0])):
        try:
            name = names.get(int(key), f"label {key}")
        except (TypeError, ValueError):
            name = str(key)
        parts.append(f"{name}: {text}")
    return "\n".join(parts)


def progress_percent(doc: dict, max_tokens: int, lesions: int) -> int:
    """A progress value 0..100 from a job document (tokens against the budget; stage-based otherwise)."""
    stage = doc.get("stage", "")
    if stage == "done":
        return 100
    if doc.get("tokens") and max_tokens > 0:
        return max(10, min(99, int(100 * doc["tokens"] / (max_tokens * max(1, lesions)))))
    return {"starting": 2, "loading model": 5, "preprocessing": 8, "measuring": 50, "grounding": 50}.get(stage, 1)


def findings_text(report: dict, segment_names: dict | None = None) -> str:
    names = segment_names or {}
    return "\n".join(f"{names.get(int(f['label']), 'label ' + str(f['label']))}: {f.get('text', '')}"
                     for f in report.get("findings", []))


def _atomic_write(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".petar-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def export_text(path: str, findings: str, report: dict | None = None) -> None:
    """The (possibly edited) findings text, with the engine and slice convention stated."""
    header = ""
    if report:
        header = (f"# engine: {report.get('engine', '?')}; SUV: {report.get('suv_type', 'bw')}; axial slice numbers "
                  f"counted from the {report.get('slice_origin', 'superior')} end, 1-based\n")
    _atomic_write(path, header + findings.rstrip("\n") + "\n")


def export_json(path: str, report: dict, edited_text: str | None = None, segment_names: dict | None = None) -> None:
    """The report JSON, plus the user's edited findings text and segment names when given."""
    doc = dict(report)
    if edited_text is not None:
        doc["edited_text"] = edited_text
    if segment_names:
        doc["segment_names"] = {str(k): v for k, v in segment_names.items()}
    _atomic_write(path, json.dumps(doc, indent=2, default=float) + "\n")
