"""The physician reader panel of a blinded reader study, without Slicer.

`RatingForm` is the rating on screen as plain data (the widget only maps it to and from Qt controls);
`ReaderPanelLogic` walks one reader through the study: resume at the first unrated case, Save & Next, Previous
(prefilled from the saved rating), progress, time on case. It talks to a reader session (`petar.study` directly,
or `petar.service.Client.study_session` through the service) that an injected *opener* returns, so the same code
serves both and tests use an in-memory fake. Every session call is guarded: a failure (database locked, service
down, rating rejected) becomes an "error" step with a one-line message, and the reader's form is kept.

Session interface used: next_item(), item_at(position), saved(item), rate(item, scores=..., preference=...,
comment=..., cannot_assess=..., seconds=...), progress(). Items carry position (1-based), total and texts
({"A": ..., "B": ...} in the paired design, {"A": ...} in the single design).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, fields

SCALES = ("anatomy", "interpretation", "utility")     # the same names as petar.study.SCALES
SCALE_LABELS = {"anatomy": "anatomical accuracy", "interpretation": "interpretation accuracy",
                "utility": "overall clinical utility"}
PREFERENCES = ("A", "tie", "B")
SCORES = (1, 2, 3, 4, 5)
SOURCES = ("database file", "service")


def slots_of(item) -> tuple:
    """The texts shown for an item, in display order: ("A", "B") (paired) or ("A",) (single)."""
    return tuple(sorted(item.texts))


def one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# ---- the form ----------------------------------------------------------------------------------------------------
@dataclass
class RatingForm:
    """What the reader has entered for one item. A score of None means "not chosen": nothing is preselected."""

    slots: tuple = ("A", "B")
    scores: dict = field(default_factory=dict)      # {slot: {scale: int | None}}
    preference: str | None = None                   # "A" | "tie" | "B" (paired design only)
    comment: str = ""
    cannot_assess: bool = False
    reason: str = ""                                # why the case cannot be assessed (required when ticked)

    def __post_init__(self):
        self.slots = tuple(self.slots)
        given = self.scores or {}
        self.scores = {slot: {scale: (given.get(slot) or {}).get(scale) for scale in SCALES} for slot in self.slots}

    @classmethod
    def empty(cls, slots) -> "RatingForm":
        return cls(slots=tuple(slots))

    @classmethod
    def from_saved(cls, saved: dict | None, slots) -> "RatingForm":
        """The form prefilled from `session.saved(item)` (empty when nothing is saved)."""
        if not saved:
            return cls.empty(slots)
        reason = saved.get("cannot_assess")
        return cls(slots=tuple(slots), scores=saved.get("scores") or {}, preference=saved.get("preference"),
                   comment=saved.get("comment") or "", cannot_assess=reason is not None, reason=reason or "")

    @property
    def paired(self) -> bool:
        return len(self.slots) > 1

    def copy(self) -> "RatingForm":
        return copy.deepcopy(self)

    def is_blank(self) -> bool:
        return (all(v is None for s in self.scores.values() for v in s.values()) and self.preference is None
                and not self.comment.strip() and not self.cannot_assess and not self.reason.strip())

    def problems(self) -> list:
        """What is missing or wrong, as short phrases (empty when the form can be saved)."""
        if self.cannot_assess:
            return [] if self.reason.strip() else ["a reason for 'cannot assess'"]
        out = []
        for slot in self.slots:
            bad = [f"{SCALE_LABELS[k]} {v!r} (1-5)" for k, v in self.scores[slot].items()
                   if v is not None and v not in SCORES]
            missing = [SCALE_LABELS[k] for k, v in self.scores[slot].items() if v is None]
            if missing or bad:
                out.append(f"Text {slot} " + ", ".join(missing + bad))
        if self.paired and self.preference not in PREFERENCES:
            out.append("preference (A / tie / B)")
        return out

    def validate(self) -> tuple:
        """(ok, one-line message naming what is missing)."""
        problems = self.problems()
        return (not problems, "Missing: " + "; ".join(problems) + "." if problems else "")

    def payload(self) -> dict:
        """The keyword arguments of session.rate() (without seconds). 'Cannot assess' sends no scores."""
        comment = self.comment.strip()
        if self.cannot_assess:
            return {"scores": {}, "preference": None, "comment": comment, "cannot_assess": self.reason.strip()}
        return {"scores": {slot: {k: int(v) for k, v in self.scores[slot].items()} for slot in self.slots},
                "preference": self.preference if self.paired else None, "comment": comment, "cannot_assess": None}


# ---- connecting to a study ---------------------------------------------------------------------------------------
@dataclass
class StudySettings:
    """Kept across Slicer sessions under PETAR/study_* (same backend protocol as PETARReportLib.Settings)."""

    source: str = "database file"       # "database file" | "service"
    database: str = ""                  # the study database (on the server in service mode)
    service_url: str = "http://127.0.0.1:8765"
    service_token: str = ""
    reader: str = ""

    PREFIX = "PETAR/study_"

    @classmethod
    def load(cls, backend) -> "StudySettings":
        out = cls()
        for f in fields(cls):
            raw = backend.value(cls.PREFIX + f.name, None)
            if raw is not None:
                setattr(out, f.name, str(raw))
        if out.source not in SOURCES:
            logging.warning("PETAR study source %r is unknown; using %r", out.source, SOURCES[0])
            out.source = SOURCES[0]
        return out

    def save(self, backend) -> None:
        for f in fields(self):
            backend.setValue(self.PREFIX + f.name, getattr(self, f.name))

    def validate(self) -> tuple:
        if self.source not in SOURCES:
            return False, f"the source must be one of {', '.join(SOURCES)}, not {self.source!r}"
        if not self.database.strip():
            return False, "Choose the study database (made by `petar study create`)."
        if self.source == "service" and not self.service_url.strip().startswith(("http://", "https://")):
            return False, f"The service URL must start with http:// or https://, not {self.service_url!r}."
        if not self.reader.strip():
            return False, "Choose your reader id."
        return True, ""

    def opener(self, study_cls=None, client_factory=None):
        if self.source == "service":
            return ServiceOpener(self.service_url.strip(), self.service_token.strip() or None, self.database.strip(),
                                 self.reader.strip(), client_factory=client_factory)
        return DatabaseOpener(self.database.strip(), self.reader.strip(), study_cls=study_cls)


def _study_cls():
    from petar.study import Study

    return Study


def _close(obj) -> None:
    closer = getattr(obj, "close", None)
    if closer is not None:
        try:
            closer()
        except Exception as exc:     # closing is best effort; the study's data is already committed
            logging.warning("PETAR study: close failed: %s", one_line(exc))


class DatabaseOpener:
    """opener() -> petar.study reader session for a local study database; close() closes the database."""

    def __init__(self, database, reader, study_cls=None):
        self.database, self.reader, self._study_cls = database, reader, study_cls
        self.study = None

    def __call__(self):
        self.close()
        study = (self._study_cls or _study_cls()).open(self.database)
        try:
            session = study.session(self.reader)
        except BaseException:
            _close(study)
            raise
        self.study = study
        return session

    def close(self) -> None:
        if self.study is not None:
            _close(self.study)
        self.study = None


class ServiceOpener:
    """opener() -> the same session interface through `petar serve` (Client.study_session)."""

    def __init__(self, url, token, database, reader, client_factory=None):
        self.url, self.token, self.database, self.reader = url, token, database, reader
        self._client_factory = client_factory
        self.client = None

    def __call__(self):
        self.close()
        if self._client_factory is None:
            from petar.service import Client

            self.client = Client(self.url, token=self.token)
        else:
            self.client = self._client_factory(self.url, self.token)
        return self.client.study_session(self.database, self.reader)

    def close(self) -> None:
        if self.client is not None:
            _close(self.client)
        self.client = None


def study_readers(database, study_cls=None) -> list:
    """The reader ids of a local study database (raises petar.errors.InputError when it is not one)."""
    study = (study_cls or _study_cls()).open(database)
    try:
        return list(study.readers)
    finally:
        _close(study)


# ---- walking through the study -----------------------------------------------------------------------------------
@dataclass
class Step:
    """What the widget does next.

    kind "case": show `item` with `form` (the widget loads the images, then calls `case_loaded()`);
    "done": every case is rated, nothing to show; "invalid": the form cannot be saved yet (`message` names what is
    missing; keep the form); "error": a session call failed (show `message` in a dialog; keep the form).
    """

    kind: str
    message: str = ""
    item: object = None
    form: RatingForm | None = None


class ReaderPanelLogic:
    """One reader's walk through a study. `opener()` returns the session; `clock()` gives seconds (monotonic).

    Time on case = seconds the case was on screen (from `case_loaded()` to Save), summed over visits until it is
    saved; editing a saved rating adds the time of the edit to the saved seconds. Unsaved forms are kept per case
    while the reader moves with Previous / Save & Next, so nothing typed is lost.
    """

    def __init__(self, opener, clock=time.monotonic):
        self._opener = opener
        self._clock = clock
        self.session = None
        self.item = None
        self.form = None
        self.total = 0
        self.rated = 0
        self.finished = False
        self._drafts = {}       # position -> RatingForm left on screen without saving
        self._carried = {}      # position -> seconds on screen in earlier, unsaved visits
        self._loaded_at = None

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.session is not None

    @property
    def position(self):
        return self.item.position if self.item is not None else None

    @property
    def slots(self) -> tuple:
        return slots_of(self.item) if self.item is not None else ()

    @property
    def paired(self) -> bool:
        return len(self.slots) > 1

    @property
    def can_save(self) -> bool:
        return self.item is not None

    @property
    def can_previous(self) -> bool:
        return (self.item is not None and self.item.position > 1) or (self.finished and self.total > 0)

    def progress_text(self) -> str:
        if self.item is not None:
            return f"Case {self.item.position} of {self.item.total} · {self.rated} rated"
        if self.finished:
            return f"All {self.total} cases rated" if self.total else "This study has no cases for you"
        return "No study open"

    def progress(self) -> tuple:
        """(rated, total) for the progress bar."""
        return self.rated, self.total

    # -- actions -------------------------------------------------------------------------------------------------
    def start(self) -> Step:
        """Open the session and resume at the first unrated case (or the done state)."""
        self.close()
        session = None
        try:
            session = self._opener()
            item = session.next_item()
        except Exception as exc:
            if session is not None:
                _close(session)
            _close(self._opener)
            return self._error("Could not open the study", exc)
        self.session = session
        self._drafts, self._carried = {}, {}
        self.item, self.form, self.finished = None, None, False
        self._refresh_progress()
        if item is None:
            return self._finish()
        try:
            return self._enter(item, self._form_for(item))
        except Exception as exc:
            return self._error("Could not open the case", exc)

    def case_loaded(self) -> None:
        """The case is on screen (images loaded or failed, texts shown): time on case starts now. Idempotent for the
        case on screen (reloading its images does not restart the clock)."""
        if self.item is not None and self._loaded_at is None:
            self._loaded_at = self._clock()

    def save_and_next(self, form: RatingForm) -> Step:
        if self.item is None:
            return Step("invalid", "No case is open.")
        self.form = form
        ok, message = form.validate()
        if not ok:
            return Step("invalid", message, form=form)
        item = self.item
        try:
            saved = self.session.saved(item)
            unchanged = saved is not None and RatingForm.from_saved(saved, form.slots).payload() == form.payload()
            if not unchanged:
                seconds = self._seconds(saved)
                self.session.rate(item, seconds=seconds, **form.payload())
        except Exception as exc:
            return self._error("Could not save the rating", exc, form)
        self._drafts.pop(item.position, None)
        self._carried.pop(item.position, None)
        self._refresh_progress()
        note = "No changes." if unchanged else "Saved."
        try:
            nxt = self.session.item_at(item.position + 1) if item.position < item.total else self.session.next_item()
            if nxt is None:
                return self._finish(note)
            return self._enter(nxt, self._form_for(nxt), note)
        except Exception as exc:
            self._loaded_at = self._clock()
            return self._error(f"{note} Could not open the next case", exc, form)

    def previous(self, form: RatingForm | None) -> Step:
        """Back one case (from the done state: the last case), prefilled with what was saved or left there."""
        if self.item is None and not (self.finished and self.total):
            return Step("invalid", "No case is open.")
        if self.item is not None and self.item.position <= 1:
            return Step("invalid", "This is the first case.", form=form)
        target = self.item.position - 1 if self.item is not None else self.total
        try:
            item = self.session.item_at(target)
            new_form = self._form_for(item)
        except Exception as exc:
            return self._error("Could not open the previous case", exc, form)
        self._leave(form)
        return self._enter(item, new_form)

    def close(self) -> None:
        """Close the session (a service session removes its downloaded images) and what the opener opened."""
        if self.session is not None:
            _close(self.session)
            _close(self._opener)
        self.session = None

    # -- internals -----------------------------------------------------------------------------------------------
    def _form_for(self, item) -> RatingForm:
        draft = self._drafts.get(item.position)
        if draft is not None:
            return draft.copy()
        return RatingForm.from_saved(self.session.saved(item), slots_of(item))

    def _enter(self, item, form, message="") -> Step:
        self.item, self.form, self.finished = item, form, False
        self.total = item.total
        self._loaded_at = None
        return Step("case", message, item=item, form=form.copy())

    def _leave(self, form) -> None:
        if self.item is None:
            return
        pos = self.item.position
        if form is not None:
            self._drafts[pos] = form.copy()
        if self._loaded_at is not None:
            self._carried[pos] = self._carried.get(pos, 0.0) + max(0.0, self._clock() - self._loaded_at)

    def _seconds(self, saved):
        pos = self.item.position
        visit = max(0.0, self._clock() - self._loaded_at) if self._loaded_at is not None else None
        if visit is None and pos not in self._carried:
            return (saved or {}).get("seconds")
        before = (saved or {}).get("seconds") or 0.0
        return round(float(before) + self._carried.get(pos, 0.0) + (visit or 0.0), 3)

    def _finish(self, message="") -> Step:
        self.item, self.form, self.finished = None, None, True
        self._loaded_at = None
        done = f"All {self.total} cases rated." if self.total else "This study has no cases for you."
        return Step("done", f"{message} {done}".strip())

    def _refresh_progress(self) -> None:
        try:
            self.rated, self.total = (int(v) for v in self.session.progress())
        except Exception as exc:   # progress is cosmetic: keep the last numbers
            logging.warning("PETAR study: progress unavailable: %s", one_line(exc))

    def _error(self, what, exc, form=None) -> Step:
        message = f"{what}: {one_line(exc)}"
        logging.error("PETAR study: %s", message)
        return Step("error", message, form=form)
