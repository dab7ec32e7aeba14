"""Model text → a finding whose numbers are measured, not generated.

PETAR-4B was trained on findings restructured into fields — Region, Anatomy, Finding (numbers removed), SUV Max,
Axial Slice — and, like any language model, it writes plausible numbers that were never measured. Here the fields
are parsed when present, every SUV, size and slice number the model wrote is replaced by the measurement of the
mask, and each replacement is recorded as [model, measured] so a reader can audit it. The raw text is kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..lesion.measure import LesionMeasurement

FIELDS = {"region": r"region", "anatomy": r"anatomy|location|site", "finding": r"findings?|description",
          "suv_max": r"suv\s*[-_ ]?\s*max(?:imum)?|max(?:imum)?\s+suv", "axial_slice": r"axial\s+(?:slice|image)|slice|image"}
_FIELD_RE = re.compile(r"(?im)(?:^|(?<=[\n;|.,]))\s*[-*•]?\s*(" + "|".join(f"(?P<{k}>{v})" for k, v in FIELDS.items())
                       + r")\s*[:=]\s*")
_NUM = r"(\d+(?:\.\d+)?)"
_SUV_RE = re.compile(r"(?i)\b(suv\s*[-_ ]?\s*max(?:imum)?|max(?:imum)?\s+suv|suv\s*peak|suv)\b(\s*(?:of|=|:|is|was)?\s*)"
                     + _NUM)
_SLICE_RE = re.compile(r"(?i)\b((?:axial\s+)?(?:slice|image))(\s*(?:#|no\.?|number)?\s*)" + r"(\d+)\b")
_SERIES_RE = re.compile(r"(?i)\bseries\s+\d+\b")
_SERIES_IMAGE_RE = re.compile(r"\b\d{1,2}\s*:\s*(\d{1,4})\b")     # "(3:104)" = series 3, image 104
_GONE = "\x00"
_SIZE_RE = re.compile(r"(?i)\b" + _NUM + r"(?:\s*(?:cm|mm))?\s*[x×]\s*" + _NUM + r"\s*(cm|mm)\b|\b" + _NUM
                      + r"\s*(cm|mm)\b")


@dataclass
class ComposedFinding:
    finding: str
    fields: dict
    replaced: dict = field(default_factory=dict)


def parse_fields(text: str) -> dict:
    """{region, anatomy, finding, suv_max, axial_slice} from 'Name: value' fields in any order; {} when none."""
    matches = list(_FIELD_RE.finditer(text))
    out: dict = {}
    for i, m in enumerate(matches):
        key = next(k for k in FIELDS if m.group(k))
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end():end].strip().strip(";|,").strip()
        if value and key not in out:
            out[key] = value.rstrip(".").strip()
    return out


def _first_number(text) -> float | None:
    m = re.search(_NUM, str(text or ""))
    return float(m.group(1)) if m else None


def _measured_size(m: LesionMeasurement) -> str:
    return f"{m.diameter_long_mm:.0f} × {m.diameter_short_mm:.0f} mm"


def strip_numbers(text: str, m: LesionMeasurement, replaced: dict) -> str:
    """Remove every SUV value, size and slice phrase from free text (recording [model, measured] in `replaced`);
    the measured numbers are appended once by `compose`, so nothing appears twice."""
    def suv(match):
        peak = "peak" in match.group(1).lower()
        key, measured = ("suv_peak", m.suv_peak) if peak else ("suv_max", m.suv_max)
        replaced.setdefault(key, [float(match.group(3)), round(measured, 2)])
        return _GONE

    def size(match):
        replaced.setdefault("size", [match.group(0).strip(), _measured_size(m)])
        return _GONE

    def slice_(match):
        replaced.setdefault("axial_slice", [int(match.group(3)), m.axial_slice])
        return _GONE

    text = _SUV_RE.sub(suv, text)
    text = _SIZE_RE.sub(size, text)
    text = _SERIES_RE.sub(_GONE, text)
    text = _SLICE_RE.sub(slice_, text)
    text = _SERIES_IMAGE_RE.sub(lambda mm: (replaced.setdefault("axial_slice", [int(mm.group(1)), m.axial_slice]),
                                            _GONE)[1], text)
    # drop the words that only introduced a removed number ("measuring", "with an", "on", ...), then the husk
    text = re.sub(r"(?i)\b(?:measuring|with(?:\s+an?)?|of|at|on|in)\s+(?=" + _GONE + ")", "", text)
    text = re.sub(r"[\s,;]*" + _GONE + r"(?:[\s,;]*" + _GONE + ")*", _GONE, text)
    text = re.sub(r"\(\s*" + _GONE + r"\s*\)", "", text).replace(_GONE, " ")
    return re.sub(r"\s{2,}", " ", text).strip(" ,;.")


def compose(raw_text: str, m: LesionMeasurement) -> ComposedFinding:
    """The final finding: the model's words, the mask's numbers."""
    fields = parse_fields(raw_text)
    replaced: dict = {}
    for key in ("suv_max", "axial_slice"):
        if key in fields:
            model_value = _first_number(fields[key])
            if key == "axial_slice" and model_value is not None:
                model_value = int(model_value)
            measured = round(m.suv_max, 2) if key == "suv_max" else m.axial_slice
            replaced[key] = [model_value, measured]
    if fields.get("finding") or fields.get("anatomy"):
        what = strip_numbers(fields.get("finding") or "", m, replaced) or "Hypermetabolic lesion"
        where = ", ".join(w for w in (strip_numbers(fields[k], m, replaced) for k in ("anatomy", "region")
                                      if fields.get(k)) if w)
        head = f"{what}{' — ' + where if where else ''}"
    else:
        head = strip_numbers(raw_text, m, replaced) or "Hypermetabolic lesion"
    head = head[:1].upper() + head[1:]
    tail = (f"SUVmax {m.suv_max:.1f}, {_measured_size(m)} (axial), axial image {m.axial_slice} "
            f"(from the {m.slice_origin} end)")
    return ComposedFinding(f"{head}: {tail}. Numbers measured from the segmentation.", fields, replaced)
