"""A study and one reader's session over it: what to read next, saving a rating, progress, resume.

Blinding lives here: an `Item` carries the case's images and the texts as "A"/"B" (number-masked when the study says
so) and nothing that names a source; the source of each slot stays in the database until export. Resume is exact:
the next item is always this reader's first unrated one, read from the database, so a crash, a closed laptop or a
second Slicer window continues where the reader's last *committed* rating left off.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from . import store
from .design import plan_paired, plan_single
from .manifest import check_identifier, check_sources, load_manifest, sources_of
from .masking import CATEGORIES, mask_numbers

SCALES = ("anatomy", "interpretation", "utility")
SCALE_TITLES = {"anatomy": "Anatomical accuracy", "interpretation": "Interpretation accuracy",
                "utility": "Overall clinical utility"}
PREFERENCES = ("A", "tie", "B")
DESIGNS = ("paired", "single")


@dataclass(frozen=True)
class Item:
    """One thing to read: a case and its texts in slots A (and B). Paths are absolute."""
    reader: str
    position: int
    total: int
    case_id: str
    pet: str
    mask: str
    ct: str | None
    label: int | None
    tracer: str | None
    texts: dict = field(default_factory=dict)
    item_id: int = 0

    @property
    def slots(self) -> tuple:
        return tuple(self.texts)

    def to_dict(self) -> dict:
        return {"reader": self.reader, "position": self.position, "total": self.total, "case_id": self.case_id,
                "pet": self.pet, "ct": self.ct, "mask": self.mask, "label": self.label, "tracer": self.tracer,
                "texts": dict(self.texts), "item_id": self.item_id}


def _stored_path(path: Path | None, db_dir: Path) -> str | None:
    """Inside the study folder → relative (the folder can be copied to a reader's machine); else absolute."""
    if path is None:
        return None
    path = path.resolve()
    try:
        return path.relative_to(db_dir).as_posix()
    except ValueError:
        return str(path)


class Study:
    """An open study database. `Study.create` makes one from a manifest; `Study.open` opens (and migrates) one."""

    def __init__(self, path, conn):
        self.path = Path(path)
        self._conn = conn
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        self.design = meta["design"]
        self.sources = json.loads(meta["sources"])
        self.mask_numbers = json.loads(meta["mask_numbers"])
        self.seed = int(meta["seed"])
        self.readers = [r for (r,) in conn.execute("SELECT reader FROM readers ORDER BY rowid")]
        self.case_ids = [c for (c,) in conn.execute("SELECT case_id FROM cases ORDER BY manifest_order")]

    @property
    def slots(self) -> tuple:
        return ("A", "B") if self.design == "paired" else ("A",)

    # ---- making and opening -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, db, manifest, readers, design: str = "paired", mask_numbers=True, seed: int = 0,
               sources=None) -> "Study":
        """Freeze cases, texts (as shown), readers, orders and A/B placement into a new database.

        `mask_numbers`: True (all of suv, size, slice), False, or a list of those categories. `sources`: the two
        sources to compare (paired; default: the manifest's two sources) or the sources to rate (single; default
        all)."""
        if design not in DESIGNS:
            raise InputError(f"design {design!r} is not one of {', '.join(DESIGNS)}")
        readers = [check_identifier(r, "reader") for r in (readers.split(",") if isinstance(readers, str)
                                                           else readers)]
        if not readers:
            raise InputError("no readers; give --readers r1,r2,…")
        if len(set(readers)) != len(readers):
            raise InputError(f"reader ids repeat: {', '.join(sorted({r for r in readers if readers.count(r) > 1}))}")
        if isinstance(mask_numbers, str):
            mask_numbers = [c.strip() for c in mask_numbers.split(",") if c.strip()]
        categories = list(CATEGORIES) if mask_numbers is True else list(mask_numbers or [])
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown:
            raise InputError(f"cannot mask {', '.join(unknown)}: choose from {', '.join(CATEGORIES)}")
        cases = load_manifest(manifest)
        chosen = _choose_sources(cases, design, sources)
        check_sources(cases, chosen)
        db = Path(db)
        conn = store.connect(db, create=True)
        try:
            store.create_schema(conn)
            _fill(conn, db.resolve().parent, Path(manifest), cases, readers, design, chosen, categories, seed)
        except BaseException:
            conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            raise
        return cls(db, conn)

    @classmethod
    def open(cls, db) -> "Study":
        conn = store.connect(db)
        try:
            store.migrate(conn)
            return cls(db, conn)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def session(self, reader: str) -> "ReaderSession":
        if reader not in self.readers:
            raise InputError(f"reader {reader!r} is not in this study; readers: {', '.join(self.readers)}")
        return ReaderSession(self, reader)

    def status(self) -> list[dict]:
        """Per reader: rated, total, cannot-assess count, last activity (UTC)."""
        rows = self._conn.execute(
            "SELECT i.reader, COUNT(*), COUNT(r.item_id), SUM(r.cannot_assess IS NOT NULL), MAX(r.updated_at) "
            "FROM items i LEFT JOIN ratings r USING (item_id) GROUP BY i.reader")
        by = {r: {"reader": r, "done": d, "total": t, "cannot_assess": ca or 0, "last_activity": last}
              for r, t, d, ca, last in rows}
        return [by[r] for r in self.readers]


def _choose_sources(cases, design, sources) -> list[str]:
    present = sources_of(cases)
    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",") if s.strip()]
    if sources:
        unknown = [s for s in sources if s not in present]
        if unknown:
            raise InputError(f"source(s) {', '.join(unknown)} not in the manifest; it has {', '.join(present)}")
        if len(set(sources)) != len(sources):
            raise InputError("a source is named twice in --sources")
    if design == "paired":
        chosen = list(sources) if sources else present
        if len(chosen) != 2:
            raise InputError(f"the paired design compares exactly two sources; the manifest has "
                             f"{', '.join(present)} — choose two with --sources X,Y")
        return sorted(chosen, key=lambda s: (s != "reference", present.index(s)))
    return list(sources) if sources else present


def _fill(conn, db_dir, manifest, cases, readers, design, sources, categories, seed) -> None:
    ids = [c.case_id for c in cases]
    plan = plan_paired(ids, readers, tuple(sources), seed) if design == "paired" else \
        plan_single(ids, readers, sources, seed)
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    meta = {"design": design, "sources": json.dumps(sources), "mask_numbers": json.dumps(categories),
            "seed": str(seed), "created_at": store.now(), "manifest_sha256": digest}
    with store.transaction(conn):
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        conn.executemany("INSERT INTO readers VALUES (?)", [(r,) for r in readers])
        conn.executemany("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(c.case_id, _stored_path(c.pet, db_dir), _stored_path(c.ct, db_dir),
                           _stored_path(c.mask, db_dir), c.label, c.tracer, n) for n, c in enumerate(cases)])
        conn.executemany("INSERT INTO texts VALUES (?, ?, ?, ?)",
                         [(c.case_id, s, t, mask_numbers(t, categories)) for c in cases
                          for s, t in c.texts.items()])
        conn.executemany("INSERT INTO items (reader, position, case_id, source_a, source_b) VALUES (?, ?, ?, ?, ?)",
                         [(p.reader, p.position, p.case_id, p.source_a, p.source_b) for p in plan])


class ReaderSession:
    """One reader's view of the study. Safe to use from several processes at once (each save is a transaction)."""

    def __init__(self, study: Study, reader: str):
        self.study = study
        self.reader = reader
        self._conn = study._conn
        self._dir = study.path.resolve().parent

    def _abs(self, stored: str | None) -> str | None:
        if stored is None:
            return None
        p = Path(stored)
        return str(p if p.is_absolute() else (self._dir / p))

    def _item(self, row) -> Item:
        item_id, position, case_id, source_a, source_b, pet, ct, mask, label, tracer = row
        shown = dict(self._conn.execute("SELECT source, shown FROM texts WHERE case_id = ?", (case_id,)))
        texts = {"A": shown[source_a]} | ({"B": shown[source_b]} if source_b else {})
        return Item(self.reader, position, self.progress()[1], case_id, self._abs(pet), self._abs(mask),
                    self._abs(ct), label, tracer, texts, item_id)

    _SELECT = ("SELECT i.item_id, i.position, i.case_id, i.source_a, i.source_b, c.pet, c.ct, c.mask, c.label, "
               "c.tracer FROM items i JOIN cases c USING (case_id) WHERE i.reader = ? ")

    def next_item(self) -> Item | None:
        """The first item in this reader's order without a rating, or None when the reader is done."""
        row = self._conn.execute(self._SELECT + "AND NOT EXISTS (SELECT 1 FROM ratings r WHERE r.item_id = "
                                 "i.item_id) ORDER BY i.position LIMIT 1", (self.reader,)).fetchone()
        return self._item(row) if row else None

    def item_at(self, position: int) -> Item:
        row = self._conn.execute(self._SELECT + "AND i.position = ?", (self.reader, int(position))).fetchone()
        if row is None:
            raise InputError(f"no item {position} for reader {self.reader!r}; positions are 1–{self.progress()[1]}")
        return self._item(row)

    def progress(self) -> tuple[int, int]:
        done, total = self._conn.execute(
            "SELECT COUNT(r.item_id), COUNT(*) FROM items i LEFT JOIN ratings r USING (item_id) WHERE i.reader = ?",
            (self.reader,)).fetchone()
        return done, total

    def saved(self, item: Item) -> dict | None:
        """The committed rating of `item` (to prefill the form when revisiting), or None."""
        return _read_rating(self._conn, self._check(item))

    def _check(self, item: Item) -> int:
        if item.reader != self.reader:
            raise InputError(f"this item belongs to reader {item.reader!r}, not {self.reader!r}")
        return item.item_id

    def rate(self, item: Item, scores=None, preference=None, comment: str = "", cannot_assess=None,
             seconds=None) -> None:
        """Validate and commit one rating in its own transaction; rating a rated item again is an audited edit."""
        item_id = self._check(item)
        new = validate_rating(self.study.design, scores, preference, comment, cannot_assess, seconds)
        at = store.now()
        with store.transaction(self._conn) as conn:
            old = _read_rating(conn, item_id)
            if old is None:
                conn.execute("INSERT INTO ratings (item_id, preference, comment, cannot_assess, rated_at, seconds, "
                             "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (item_id, new["preference"], new["comment"], new["cannot_assess"], at, new["seconds"],
                              at))
            else:
                conn.execute("UPDATE ratings SET preference = ?, comment = ?, cannot_assess = ?, seconds = ?, "
                             "updated_at = ? WHERE item_id = ?",
                             (new["preference"], new["comment"], new["cannot_assess"], new["seconds"], at, item_id))
                conn.execute("DELETE FROM scores WHERE item_id = ?", (item_id,))
            conn.executemany("INSERT INTO scores VALUES (?, ?, ?, ?)",
                             [(item_id, slot, scale, v) for slot, by in new["scores"].items()
                              for scale, v in by.items()])
            conn.execute("INSERT INTO audit (item_id, reader, at, action, old, new) VALUES (?, ?, ?, ?, ?, ?)",
                         (item_id, self.reader, at, "rate" if old is None else "edit",
                          None if old is None else json.dumps(old, sort_keys=True), json.dumps(new, sort_keys=True)))
            _test_hook("after_write")


def _test_hook(point: str) -> None:
    """Fault-injection point for the crash tests: PETAR_STUDY_TEST_PAUSE=<point> sleeps there (uncommitted)."""
    if os.environ.get("PETAR_STUDY_TEST_PAUSE") == point:
        import time

        print("paused", flush=True)
        time.sleep(60)


def _read_rating(conn, item_id: int) -> dict | None:
    row = conn.execute("SELECT preference, comment, cannot_assess, seconds FROM ratings WHERE item_id = ?",
                       (item_id,)).fetchone()
    if row is None:
        return None
    scores: dict = {}
    for slot, scale, v in conn.execute("SELECT slot, scale, score FROM scores WHERE item_id = ? ORDER BY slot, scale",
                                       (item_id,)):
        scores.setdefault(slot, {})[scale] = v
    return {"scores": scores, "preference": row[0], "comment": row[1], "cannot_assess": row[2], "seconds": row[3]}


def validate_rating(design, scores, preference, comment, cannot_assess, seconds) -> dict:
    """The rating as stored, or an InputError naming the first thing to fix."""
    slots = ("A", "B") if design == "paired" else ("A",)
    if cannot_assess is not None and not (isinstance(cannot_assess, str) and cannot_assess.strip()):
        raise InputError("'cannot assess' needs a reason (e.g. 'lesion not visible', 'images do not load')")
    reason = cannot_assess.strip() if cannot_assess else None
    scores = scores or {}
    if not isinstance(scores, dict) or set(scores) - set(slots):
        raise InputError(f"scores must be given for text(s) {' and '.join(slots)} only")
    clean: dict = {}
    for slot in slots:
        by = scores.get(slot) or {}
        if reason and not by:
            continue
        missing = [s for s in SCALES if s not in by]
        extra = [s for s in by if s not in SCALES]
        if extra:
            raise InputError(f"unknown scale(s) {', '.join(extra)} for text {slot}; scales are {', '.join(SCALES)}")
        if missing:
            raise InputError(f"text {slot}: rate {', '.join(SCALE_TITLES[s].lower() for s in missing)} (1–5)")
        for scale, v in by.items():
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5:
                raise InputError(f"text {slot}: {SCALE_TITLES[scale].lower()} must be a whole number 1–5, "
                                 f"not {v!r}")
        clean[slot] = {s: int(by[s]) for s in SCALES}
    if design == "single" and preference is not None:
        raise InputError("a single-text study has no preference; leave it empty")
    if design == "paired" and preference is None and not reason:
        raise InputError("choose a preference: A, tie or B")
    if preference is not None and preference not in PREFERENCES:
        raise InputError(f"preference must be A, tie or B, not {preference!r}")
    if seconds is not None:
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise InputError(f"seconds on case must be a number, not {seconds!r}") from None
        if not seconds >= 0:
            raise InputError("seconds on case must be ≥ 0")
    return {"scores": clean, "preference": preference, "comment": str(comment or "").strip(),
            "cannot_assess": reason, "seconds": seconds}
