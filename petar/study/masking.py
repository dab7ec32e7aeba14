"""Number masking for blinded reading: SUV values, sizes and image/slice numbers become ``[#]``.

PETAR's reader study masked the numbers because a model writes plausible SUVs and sizes it never measured: a
physician who sees "SUVmax 31.4" rates the number, not the localisation and interpretation the study asks about —
and a too-precise or too-round number unblinds the source. Only measurement numbers are masked; numbers that are
anatomy ("L4", "7th rib", "segment 4", "level II") or counts stay, because they are part of what is rated.

Categories (each can be switched off): ``suv`` (a number in the value chain after SUVmax/SUVpeak/SUVmean/SUV,
including "previously 5.2" and "from 8.2 to 4.1"), ``size`` (numbers with mm/cm/mL/cc, "1.2 x 0.8 cm" chains), and
``slice`` (image/slice/series numbers, "(3:104)" series:image pairs, "images 100-110").
"""
from __future__ import annotations

import re

MASK = "[#]"
CATEGORIES = ("suv", "size", "slice")

_NUM = r"\d+(?:[.,]\d+)?"
_SUV_KEY = re.compile(
    r"(?i)\b(?:suv\s*[-_ ]?\s*(?:max(?:imum)?|peak|mean|bw|lbm)?|max(?:imum)?\s+suv|peak\s+suv|mean\s+suv)\b"
    r"|\bsuv(?:max|peak|mean)\b")
# Words allowed inside an SUV value chain ("SUVmax of 7.1, previously 5.2, now 4.0"); any other word ends it.
_CHAIN_WORDS = {"of", "to", "from", "previously", "prior", "now", "and", "vs", "versus", "was", "is", "measuring",
                "measures", "measured", "currently", "approximately", "about", "up", "down", "increased",
                "decreased", "compared", "with", "on", "the", "previous", "exam", "study", "today", "then",
                "value", "values", "max", "maximum", "peak", "g/ml", "g/ml)", "bw", "range", "ranging", "between",
                "at", "by", "suv", "suvmax", "suvpeak", "suvmean", "or", "nearly", "almost", "roughly", "unchanged",
                "stable", "previous:", "prior:"}
_COUNT_LEAD = {"and", "with", "of"}
_TOKEN = re.compile(r"\s+|\[#\]|" + _NUM + r"|[A-Za-z][A-Za-z/]*\)?|.", re.S)
_SIZE = re.compile(r"(?i)(?<![\w.])(" + _NUM + r")(?:\s*(?:cm|mm))?(\s*[x×*]\s*(" + _NUM + r")(?:\s*(?:cm|mm))?)*"
                   r"\s*(?:cm|mm|ml|mL|cc|cm3|cm³|mm3|mm³)\b")
_SLICE = re.compile(r"(?i)\b((?:axial\s+|coronal\s+|sagittal\s+|key\s+)?(?:images?|slices?|series|img|im|se)"
                    r"\s*(?:#|no\.?|number|nos\.?)?\s*[:=]?\s*)(\d+(?:\s*(?:-|–|to|and|,)\s*\d+)*)\b")
_SERIES_IMAGE = re.compile(r"(?<![\w.])\d{1,3}\s*:\s*\d{1,4}(?![\w.])")


def _is_count(number: str, rest) -> bool:
    """An integer followed by a word that cannot continue an SUV chain ("3 nodes") is a count."""
    if not number.isdigit():
        return False
    for tok in rest:
        t = tok.group(0)
        if not t.isspace():
            return t[0].isalpha() and t.lower().rstrip(")") not in _CHAIN_WORDS
    return False


def _mask_numbers_in(span: str) -> str:
    return re.sub(_NUM, MASK, span)


def _mask_suv_chains(text: str) -> str:
    out, pos = [], 0
    for key in _SUV_KEY.finditer(text):
        if key.start() < pos:
            continue
        out.append(text[pos:key.end()])
        pos = key.end()
        last_num_end, seen_number, previous_word = pos, False, ""
        tokens = [t for t in _TOKEN.finditer(text, pos)]
        for i, tok in enumerate(tokens):
            t = tok.group(0)
            if t == MASK:
                seen_number = True
                continue
            if t.isspace() or (len(t) == 1 and t in ",:=()/~≈<>-–"):
                continue
            if re.fullmatch(_NUM, t):
                if seen_number and previous_word in _COUNT_LEAD and _is_count(t, tokens[i + 1:]):
                    break                        # "SUVmax 7.1 and 3 other nodes": a count, not an SUV
                last_num_end, seen_number = tok.end(), True
                continue
            if t.lower().rstrip(")") in _CHAIN_WORDS:
                previous_word = t.lower()
                continue
            break
        out.append(_mask_numbers_in(text[pos:last_num_end]))
        pos = last_num_end
    out.append(text[pos:])
    return "".join(out)


def mask_numbers(text: str, categories=CATEGORIES) -> str:
    """`text` with the chosen categories of measurement numbers replaced by ``[#]``; everything else unchanged."""
    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown masking categories {sorted(unknown)}; choose from {', '.join(CATEGORIES)}")
    if "slice" in categories:
        text = _SERIES_IMAGE.sub(MASK, text)
        text = _SLICE.sub(lambda m: m.group(1) + _mask_numbers_in(m.group(2)), text)
    if "size" in categories:
        text = _SIZE.sub(lambda m: _mask_numbers_in(m.group(0)), text)
    if "suv" in categories:
        text = _mask_suv_chains(text)
    return text
