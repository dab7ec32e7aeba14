"""PETARStudyLib (the reader panel of a blinded reader study) without Slicer: an in-memory fake session, a fake clock,
phantom image files; plus the real petar.study end to end."""
from __future__ import annotations

import ast
import copy
import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import slicer_paths  # noqa: F401  (sys.path for the module Lib packages)

import petar
import PETARReportLib as L
import PETARStudyLib as S
from petar.errors import InputError
from petar.study.session import Item, validate_rating

ROOT = Path(__file__).resolve().parents[2]
SECRET = "/data/Doe_John_1957/petar_output"


# ---- fakes ---------------------------------------------------------------------------------------------------------
def study_item(position, total, case_id, pet, mask, ct, label, tracer, texts) -> Item:
    """A real petar.study.Item, as a fake session hands it out."""
    return Item("r1", position, total, case_id, pet, mask, ct, label, tracer, texts, item_id=position)


class FakeSession:
    """The petar.study reader-session interface in memory; `fail[name] = exc` makes the next call to `name` raise.
    Ratings are validated by petar.study's own validator, so what the panel sends is what the real store accepts."""

    def __init__(self, n=3, design="paired", rated=()):
        self.design = design
        texts = (lambda k: {"A": f"text one {k}", "B": f"text two {k}"}) if design == "paired" else \
            (lambda k: {"A": f"text one {k}"})
        self.items = [study_item(k, n, f"c{k:03d}", f"{SECRET}/pet_{k}.nii.gz", f"{SECRET}/mask_{k}.nii.gz",
                               f"{SECRET}/ct_{k}.nii.gz", 1, "FDG", texts(k)) for k in range(1, n + 1)]
        self.ratings = {}
        self.rate_calls = []
        self.fail = {}
        self.closed = False
        for pos in rated:
            self.ratings[pos] = validate_rating(design, *_good(design), "", None, 30.0)

    def _maybe_fail(self, name):
        exc = self.fail.pop(name, None)
        if exc is not None:
            raise exc

    def next_item(self):
        self._maybe_fail("next_item")
        return next((i for i in self.items if i.position not in self.ratings), None)

    def item_at(self, position):
        self._maybe_fail("item_at")
        if not 1 <= position <= len(self.items):
            raise InputError(f"no item {position}; positions are 1–{len(self.items)}")
        return self.items[position - 1]

    def saved(self, item):
        self._maybe_fail("saved")
        return copy.deepcopy(self.ratings.get(item.position))

    def rate(self, item, scores=None, preference=None, comment="", cannot_assess=None, seconds=None):
        self._maybe_fail("rate")
        new = validate_rating(self.design, scores, preference, comment, cannot_assess, seconds)
        self.rate_calls.append((item.position, new))
        self.ratings[item.position] = new

    def progress(self):
        self._maybe_fail("progress")
        return len(self.ratings), len(self.items)

    def close(self):
        self.closed = True


def _good(design, score=4, preference="A"):
    slots = ("A", "B") if design == "paired" else ("A",)
    return {s: {k: score for k in S.SCALES} for s in slots}, (preference if design == "paired" else None)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def panel(session=None, **kw):
    session = session or FakeSession(**kw)
    clock = Clock()
    return S.ReaderPanelLogic(lambda: session, clock=clock), session, clock


def fill(form, score=4, preference="A"):
    for slot in form.slots:
        for scale in S.SCALES:
            form.scores[slot][scale] = score
    if form.paired:
        form.preference = preference
    return form


# ---- form and validation --------------------------------------------------------------------------------------------
def test_names_match_petar_study():
    import petar.study as study

    assert S.SCALES == study.SCALES and S.PREFERENCES == study.PREFERENCES
    assert {k: v.lower() for k, v in study.SCALE_TITLES.items()} == S.SCALE_LABELS


def test_nothing_is_preselected():
    reader, _, _ = panel()
    step = reader.start()
    assert step.kind == "case" and step.form.is_blank()
    assert all(v is None for slot in step.form.scores.values() for v in slot.values())
    assert step.form.preference is None and not step.form.cannot_assess


def test_ui_rating_controls_exist_and_none_is_checked():
    root = ET.parse(ROOT / "PETARStudy" / "Resources" / "UI" / "PETARStudy.ui").getroot()
    widgets = {w.get("name"): w for w in root.iter("widget")}
    names = [f"score{slot}_{scale}_{v}" for slot in ("A", "B") for scale in S.SCALES for v in S.SCORES]
    names += ["preferA", "preferTie", "preferB"]
    for name in names:                          # the module addresses these with getattr(self.ui, ...)
        assert widgets[name].get("class") == "QRadioButton", name
    checked = [w.get("name") for w in widgets.values()
               if any(p.get("name") == "checked" and p.findtext("bool") == "true" for p in w.findall("property"))]
    assert checked == []


def test_validation_names_what_is_missing_in_one_line():
    form = S.RatingForm.empty(("A", "B"))
    ok, msg = form.validate()
    assert not ok and "\n" not in msg
    assert msg == ("Missing: Text A anatomical accuracy, interpretation accuracy, overall clinical utility; "
                   "Text B anatomical accuracy, interpretation accuracy, overall clinical utility; "
                   "preference (A / tie / B).")
    form.scores["A"] = {"anatomy": 4, "interpretation": 5, "utility": 3}
    form.scores["B"]["anatomy"] = 2
    assert form.validate() == (False, "Missing: Text B interpretation accuracy, overall clinical utility; "
                                      "preference (A / tie / B).")
    fill(form, 3, "tie")
    assert form.validate() == (True, "")
    form.scores["B"]["utility"] = 7
    assert "overall clinical utility 7 (1-5)" in form.validate()[1]


def test_cannot_assess_needs_a_reason_and_sends_no_scores():
    form = S.RatingForm.empty(("A", "B"))
    form.scores["A"]["anatomy"] = 2                     # partly rated, then "cannot assess"
    form.cannot_assess = True
    assert form.validate() == (False, "Missing: a reason for 'cannot assess'.")
    form.reason = "  images do not load "
    assert form.validate() == (True, "")
    payload = form.payload()
    assert payload == {"scores": {}, "preference": None, "comment": "", "cannot_assess": "images do not load"}
    validate_rating("paired", seconds=None, **payload)   # the real validator accepts it


# ---- walking through the study ---------------------------------------------------------------------------------------
def test_save_and_next_commits_with_seconds_and_advances():
    reader, session, clock = panel()
    step = reader.start()
    assert (step.item.position, reader.progress_text()) == (1, "Case 1 of 3 · 0 rated")
    clock.t += 30.0                                     # loading time does not count
    reader.case_loaded()
    clock.t += 12.5
    fill(step.form, 4, "B").comment = "  B misses the node  "
    nxt = reader.save_and_next(step.form)
    assert nxt.kind == "case" and nxt.item.position == 2 and nxt.message == "Saved."
    assert nxt.form.is_blank()
    pos, saved = session.rate_calls[-1]
    assert pos == 1 and saved["seconds"] == 12.5 and saved["preference"] == "B"
    assert saved["comment"] == "B misses the node" and saved["scores"]["B"]["utility"] == 4
    assert reader.progress_text() == "Case 2 of 3 · 1 rated" and reader.progress() == (1, 3)


def test_invalid_form_is_not_sent_and_stays():
    reader, session, _ = panel()
    step = reader.start()
    step.form.scores["A"]["anatomy"] = 5
    out = reader.save_and_next(step.form)
    assert out.kind == "invalid" and out.message.startswith("Missing: Text A interpretation accuracy")
    assert out.form is step.form and session.rate_calls == [] and reader.item.position == 1


def test_failed_save_keeps_the_form_and_retry_counts_all_the_time():
    reader, session, clock = panel()
    step = reader.start()
    reader.case_loaded()
    clock.t += 20
    form = fill(step.form, 2, "tie")
    form.comment = "typed carefully"
    session.fail["rate"] = sqlite3.OperationalError("database is locked")
    out = reader.save_and_next(form)
    assert out.kind == "error" and out.message == "Could not save the rating: database is locked"
    assert out.form is form and form.comment == "typed carefully" and form.scores["A"]["anatomy"] == 2
    assert reader.item.position == 1 and session.rate_calls == []
    clock.t += 5
    out = reader.save_and_next(form)
    assert out.kind == "case" and out.item.position == 2
    assert session.rate_calls[-1][1]["seconds"] == 25


def test_session_errors_never_raise():
    reader, session, _ = panel()
    reader.start()
    session.fail["saved"] = RuntimeError("service unavailable (503)")
    out = reader.save_and_next(fill(S.RatingForm.empty(("A", "B"))))
    assert out.kind == "error" and "503" in out.message and reader.item.position == 1
    session.fail["item_at"] = ConnectionError("connection reset")
    out = reader.save_and_next(fill(S.RatingForm.empty(("A", "B"))))
    assert out.kind == "error" and out.message == "Saved. Could not open the next case: connection reset"
    assert session.rate_calls and reader.item.position == 1          # saved; the reader stays on it
    out = reader.save_and_next(fill(S.RatingForm.empty(("A", "B"))))  # unchanged: just moves on
    assert out.kind == "case" and out.item.position == 2 and len(session.rate_calls) == 1
    form = S.RatingForm.empty(("A", "B"))
    form.comment = "half done"
    session.fail["item_at"] = OSError("disk I/O error")
    out = reader.previous(form)
    assert out.kind == "error" and out.form is form and reader.item.position == 2


def test_previous_prefills_and_unsaved_work_survives_the_trip():
    reader, session, clock = panel()
    step = reader.start()
    reader.case_loaded()
    step = reader.save_and_next(fill(step.form, 5, "A"))
    reader.case_loaded()
    clock.t += 7
    draft = step.form
    draft.scores["B"]["anatomy"] = 1
    draft.comment = "not finished"
    back = reader.previous(draft)
    assert back.kind == "case" and back.item.position == 1
    assert back.form == S.RatingForm.from_saved(session.ratings[1], ("A", "B"))
    assert back.form.scores["A"]["utility"] == 5 and back.form.preference == "A"
    assert not reader.previous(back.form).kind == "case"             # first case: nowhere to go
    reader.case_loaded()
    fwd = reader.save_and_next(back.form)                             # unchanged: not re-saved
    assert fwd.message == "No changes." and len(session.rate_calls) == 1
    assert fwd.item.position == 2 and fwd.form.scores["B"]["anatomy"] == 1 and fwd.form.comment == "not finished"
    reader.case_loaded()
    clock.t += 3
    fill(fwd.form, 3, "tie")
    reader.save_and_next(fwd.form)
    assert session.rate_calls[-1] == (2, session.ratings[2]) and session.ratings[2]["seconds"] == 10


def test_editing_a_saved_rating_adds_the_edit_time():
    reader, session, clock = panel(rated=(1, 2))
    step = reader.start()
    assert step.item.position == 3
    back = reader.previous(step.form)
    reader.case_loaded()
    clock.t += 4
    back.form.scores["A"]["anatomy"] = 1
    out = reader.save_and_next(back.form)
    assert out.item.position == 3
    assert session.rate_calls[-1][0] == 2 and session.ratings[2]["seconds"] == 34.0
    assert session.ratings[2]["scores"]["A"]["anatomy"] == 1


def test_resume_at_first_unrated_and_done_state():
    reader, session, _ = panel(rated=(1,))
    step = reader.start()
    assert step.item.position == 2 and reader.progress_text() == "Case 2 of 3 · 1 rated"
    step = reader.save_and_next(fill(step.form))
    done = reader.save_and_next(fill(step.form))
    assert done.kind == "done" and done.message == "Saved. All 3 cases rated."
    assert reader.progress_text() == "All 3 cases rated" and reader.progress() == (3, 3)
    assert not reader.can_save and reader.can_previous
    assert reader.save_and_next(fill(S.RatingForm.empty(("A", "B")))).kind == "invalid"
    last = reader.previous(None)
    assert last.item.position == 3 and last.form.preference == "A"

    again, _, _ = panel(session)
    out = again.start()
    assert out.kind == "done" and again.finished and again.progress_text() == "All 3 cases rated"


def test_single_design_has_only_text_a_and_no_preference():
    reader, session, clock = panel(design="single", n=2)
    step = reader.start()
    assert step.form.slots == ("A",) and not step.form.paired and not reader.paired
    step.form.scores["A"].update(anatomy=3, interpretation=4)
    assert step.form.validate() == (False, "Missing: Text A overall clinical utility.")
    step.form.scores["A"]["utility"] = 5
    step.form.preference = "A"                                        # ignored: there is nothing to prefer
    reader.case_loaded()
    out = reader.save_and_next(step.form)
    assert out.kind == "case", out.message
    assert session.ratings[1]["preference"] is None and set(session.ratings[1]["scores"]) == {"A"}


def test_open_failures_are_reported_not_raised():
    def opener():
        raise InputError("reader 'r9' is not in this study; readers: r1, r2")

    reader = S.ReaderPanelLogic(opener)
    out = reader.start()
    assert out.kind == "error" and out.message.endswith("readers: r1, r2") and not reader.is_open
    assert not reader.can_save and not reader.can_previous and reader.progress_text() == "No study open"


def test_close_closes_session_and_opener():
    session = FakeSession()

    class Opener:
        closed = False

        def __call__(self):
            return session

        def close(self):
            Opener.closed = True

    reader = S.ReaderPanelLogic(Opener())
    reader.start()
    reader.close()
    assert session.closed and Opener.closed and not reader.is_open


# ---- settings and openers --------------------------------------------------------------------------------------------
def test_settings_round_trip_validate_and_openers():
    backend = L.DictBackend()
    s = S.StudySettings(source="service", database="studies/s1.db", service_url="https://gpu:8765",
                        service_token="t0k", reader="r2")
    s.save(backend)
    assert S.StudySettings.load(backend) == s and s.validate() == (True, "")
    assert "reader" in S.StudySettings(database="x.db").validate()[1]
    assert "database" in S.StudySettings(reader="r1").validate()[1]
    assert "http" in S.StudySettings(source="service", database="x.db", reader="r1", service_url="gpu").validate()[1]
    backend.data["PETAR/study_source"] = "carrier pigeon"
    assert S.StudySettings.load(backend).source == "database file"

    calls = []

    class Client:
        def __init__(self, url, token):
            calls.append(("client", url, token))

        def study_session(self, db, reader):
            calls.append(("session", db, reader))
            return FakeSession()

        def close(self):
            calls.append(("close",))

    opener = s.opener(client_factory=Client)
    reader = S.ReaderPanelLogic(opener)
    assert reader.start().kind == "case"
    reader.close()
    assert calls == [("client", "https://gpu:8765", "t0k"), ("session", "studies/s1.db", "r2"), ("close",)]
    assert isinstance(S.StudySettings(database="a.db", reader="r1").opener(), S.DatabaseOpener)


# ---- images ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study_case")
    phantom = petar.make_phantom(seed=3, shape=(120, 64, 64), spacing=(5.0, 5.0, 5.0))
    phantom.write(out)
    return out, phantom


def _item(folder, label=2, ct=True, **kw):
    return study_item(1, 1, "c001", str(folder / "pet.nii.gz"), str(folder / "lesions.nii.gz"),
                    str(folder / "ct.nii.gz") if ct else None, label, "FDG", {"A": "x", "B": "y"}, **kw)


def test_case_job_reads_only_the_item_label(phantom_dir):
    folder, phantom = phantom_dir
    job = S.case_job(_item(folder, label=2))
    images = job(lambda doc: None, lambda: False, lambda hook: None)
    assert images.error == "" and not images.empty and images.ct is not None
    assert np.array_equal(images.lesion.array > 0, phantom.lesions.array == 2)
    all_labels = S.read_case(_item(folder, label=None, ct=False))
    assert np.array_equal(all_labels.lesion.array > 0, phantom.lesions.array > 0) and all_labels.ct is None
    assert S.read_case(_item(folder, label=99)).empty


def test_case_job_errors_are_blinded_and_cancel_stops(phantom_dir, tmp_path):
    folder, _ = phantom_dir
    secret = tmp_path / "Doe_John_1957"
    secret.mkdir()
    (secret / "Doe_pet.nii.gz").write_bytes(b"not an image")
    item = study_item(4, 9, "c004", str(secret / "Doe_pet.nii.gz"), str(folder / "lesions.nii.gz"), None, 1, None,
                    {"A": "x"})
    images = S.case_job(item)(lambda doc: None, lambda: False, lambda hook: None)
    assert images.position == 4 and images.pet is None and images.error
    assert "Doe" not in images.error and "nii" not in images.error, images.error
    with pytest.raises(L.runner.Cancelled):
        S.case_job(_item(folder))(lambda doc: None, lambda: True, lambda hook: None)


def test_blind_message_replaces_paths_and_names():
    item = study_item(1, 1, "c1", "/x/Doe_John/pet.nii.gz", "/x/Doe_John/m.nii.gz", None, 1, None, {"A": ""})
    msg = S.blind_message("cannot read /x/Doe_John/pet.nii.gz; m.nii.gz is empty (in /x/Doe_John)", item)
    assert msg == "cannot read the PET image; the lesion mask is empty (in the case)"


def test_module_never_shows_case_ids_or_paths():
    """The widget shows texts only: no case id, no image path, nothing naming a source."""
    tree = ast.parse((ROOT / "PETARStudy" / "PETARStudy.py").read_text(encoding="utf-8"))
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PETARStudyWidget")
    attrs = {n.attr for n in ast.walk(widget) if isinstance(n, ast.Attribute)}
    assert not attrs & {"case_id", "pet", "ct", "mask", "tracer", "sources", "source_a", "source_b"}
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PETARStudyLogic")
    names = [n.value for n in ast.walk(logic) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert {"Study PET", "Study CT", "Study lesion", "Lesion"} <= set(names)


# ---- the real petar.study, end to end --------------------------------------------------------------------------------
def test_real_study_read_rate_resume(phantom_dir, tmp_path):
    from petar.study import Study

    folder, phantom = phantom_dir
    cases = [{"case_id": f"c{k:03d}", "pet": str(folder / "pet.nii.gz"), "ct": str(folder / "ct.nii.gz"),
              "mask": str(folder / "lesions.nii.gz"), "label": int(phantom.truth[k]["label"]), "tracer": "FDG",
              "texts": {"reference": f"Reference {k}: SUVmax 7.1.", "petar": f"Model {k}: SUVmax 6.9."}}
             for k in range(3)]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"cases": cases}), encoding="utf-8")
    db = tmp_path / "study.db"
    Study.create(db, manifest, readers=["r1", "r2"], design="paired", mask_numbers=True, seed=0).close()
    assert S.study_readers(str(db)) == ["r1", "r2"]

    clock = Clock()
    reader = S.ReaderPanelLogic(S.DatabaseOpener(str(db), "r1"), clock=clock)
    step = reader.start()
    assert step.kind == "case" and step.item.total == 3 and step.form.is_blank() and reader.paired
    images = S.case_job(step.item)(lambda doc: None, lambda: False, lambda hook: None)
    assert images.error == "" and not images.empty
    reader.case_loaded()
    clock.t += 9
    step = reader.save_and_next(fill(step.form, 4, "A"))
    assert step.kind == "case" and step.item.position == 2, step.message
    reader.close()

    reader = S.ReaderPanelLogic(S.DatabaseOpener(str(db), "r1"), clock=clock)
    step = reader.start()
    assert step.item.position == 2                          # resumed
    back = reader.previous(step.form)
    assert back.form.preference == "A" and back.form.scores["B"]["anatomy"] == 4
    step = reader.save_and_next(back.form)
    reader.case_loaded()
    cannot = step.form
    cannot.cannot_assess, cannot.reason = True, "lesion outside the field of view"
    step = reader.save_and_next(cannot)
    done = reader.save_and_next(fill(step.form, 2, "tie"))
    assert done.kind == "done", done.message
    reader.close()
    with Study.open(db) as study:
        session = study.session("r1")
        assert session.progress() == (3, 3)
        first = session.saved(session.item_at(1))
        assert first["seconds"] == 9 and first["preference"] == "A"
        assert session.saved(session.item_at(2))["cannot_assess"] == "lesion outside the field of view"

    bad = S.ReaderPanelLogic(S.DatabaseOpener(str(db), "r9"))
    out = bad.start()
    assert out.kind == "error" and "r1, r2" in out.message
    with pytest.raises(InputError):
        S.study_readers(str(manifest))
