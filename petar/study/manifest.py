"""The study manifest: which cases, which images, which candidate texts — checked completely before anything is made.

A study lead assembles a manifest by hand or script; a typo in one of 120 rows must not cost a reading session.
Every problem (missing file, duplicate or empty case id, missing text, a source absent from some cases) is collected
and reported in one error, so the lead fixes the manifest once. Paths are relative to the manifest's folder.
Formats (DESIGN.md §4): JSON ``{"cases": [{"case_id", "pet", "ct", "mask", "label", "tracer", "texts": {..}}]}``
or CSV with the same columns and one ``text_<source>`` column per source.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHOWN_PROBLEMS = 12


@dataclass(frozen=True)
class Case:
    case_id: str
    pet: Path
    mask: Path
    ct: Path | None = None
    label: int | None = None
    tracer: str | None = None
    texts: dict = field(default_factory=dict)        # source -> text


def check_identifier(value: str, what: str) -> str:
    """Case and reader ids are pseudonyms: short, path- and CSV-safe (letters, digits, _ . -)."""
    value = str(value or "").strip()
    if not _ID_RE.match(value):
        raise InputError(f"{what} {value!r} is not a valid id: use 1-64 letters, digits, '_', '.' or '-' "
                         "(a pseudonym, not a patient name or MRN)")
    return value


def _rows_from_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        texts = {k[5:]: v for k, v in row.items() if k.startswith("text_") and v}
        out.append({k: v for k, v in row.items() if not k.startswith("text_") and v != ""} | {"texts": texts})
    return out


def _rows_from_json(path: Path) -> list:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"manifest is not valid JSON ({exc}); fix it or give a CSV manifest") from None
    cases = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(cases, list):
        raise InputError('manifest JSON must be {"cases": [...]} (DESIGN.md §4); see `petar study create --help`')
    return cases


def _resolve(base: Path, value, case: str, what: str, problems: list, required: bool) -> Path | None:
    if value in (None, ""):
        if required:
            problems.append(f"{case}: no {what} path")
        return None
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        problems.append(f"{case}: {what} file not found ({value})")
    return path


def load_manifest(path) -> list[Case]:
    """Read and check a JSON or CSV manifest; raise one InputError listing every problem found."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path.name!r} not found; give the JSON or CSV file that lists the study cases")
    rows = _rows_from_csv(path) if path.suffix.lower() == ".csv" else _rows_from_json(path)
    base = path.resolve().parent
    problems: list[str] = []
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            problems.append(f"case #{n}: not an object")
            continue
        raw_id = str(row.get("case_id") or "").strip()
        name = raw_id or f"case #{n}"
        if not raw_id:
            problems.append(f"case #{n}: no case_id")
        elif not _ID_RE.match(raw_id):
            problems.append(f"case #{n}: case_id {raw_id!r} is not a pseudonymous id (letters, digits, _ . -)")
        elif raw_id in seen:
            problems.append(f"{raw_id}: duplicate case_id (rows {seen[raw_id]} and {n})")
        else:
            seen[raw_id] = n
        pet = _resolve(base, row.get("pet"), name, "PET", problems, required=True)
        mask = _resolve(base, row.get("mask"), name, "mask", problems, required=True)
        ct = _resolve(base, row.get("ct"), name, "CT", problems, required=False)
        label = row.get("label")
        if label not in (None, ""):
            try:
                label = int(str(label))
                if label < 1:
                    raise ValueError
            except ValueError:
                problems.append(f"{name}: label {row.get('label')!r} must be a positive integer")
                label = None
        else:
            label = None
        texts = row.get("texts") or {}
        if not isinstance(texts, dict):
            problems.append(f"{name}: texts must map source names to texts")
            texts = {}
        texts = {str(k).strip(): str(v).strip() for k, v in texts.items() if v is not None and str(v).strip()}
        if not texts:
            problems.append(f"{name}: no candidate texts")
        cases.append(Case(case_id=raw_id, pet=pet, mask=mask, ct=ct, label=label,
                          tracer=(str(row["tracer"]).strip() or None) if row.get("tracer") else None, texts=texts))
    if not rows:
        problems.append("no cases")
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = f"; … and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
        raise InputError(f"manifest has {len(problems)} problem(s): {shown}{more} — fix the manifest and run again")
    return cases


def sources_of(cases: list[Case]) -> list[str]:
    """Every source name, in first-seen order."""
    out: list[str] = []
    for c in cases:
        out.extend(s for s in c.texts if s not in out)
    return out


def check_sources(cases: list[Case], wanted: list[str]) -> None:
    """Every case must carry every wanted source's text (a missing one would silently unbalance the design)."""
    problems = [f"{c.case_id}: no '{s}' text" for c in cases for s in wanted if s not in c.texts]
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = f"; … and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
        raise InputError(f"manifest has {len(problems)} missing text(s): {shown}{more} — add them or choose "
                         "other sources with --sources")
