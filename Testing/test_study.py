"""Reader studies: manifest checks, seeded balanced blinded design, ratings, audit, resume, export, CLI.

Crash safety, concurrency and schema migration are in test_study_faults.py.
"""
import csv
import json
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from petar.errors import InputError
from petar.study import SCALES, Study, load_manifest
from petar.study.export import export_tables, write_export

WORDING = {"reference": "Hypermetabolic", "petar": "FDG-avid", "template": "Focal uptake in"}
GOOD = {"anatomy": 4, "interpretation": 5, "utility": 4}


def write_case_files(folder: Path) -> None:
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))
    for name in ("pet.nii.gz", "ct.nii.gz", "mask.nii.gz"):
        sitk.WriteImage(img, str(folder / name))


def make_manifest(folder: Path, n: int = 6, sources=("reference", "petar"), **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_case_files(folder)
    cases = [{"case_id": f"c{i:03d}", "pet": "pet.nii.gz", "ct": "ct.nii.gz", "mask": "mask.nii.gz", "label": 1,
              "tracer": "FDG", "texts": {s: f"{WORDING.get(s, s)} left axillary node {i}, SUVmax {i + 2}.{i}, "
                                            f"image {100 + i}" for s in sources}} for i in range(n)]
    path = folder / "manifest.json"
    path.write_text(json.dumps({"cases": cases, **extra}))
    return path


def rate_all(session, pref="A"):
    while (item := session.next_item()) is not None:
        session.rate(item, {s: GOOD for s in item.slots}, preference=pref if len(item.slots) == 2 else None)


@pytest.fixture
def study(tmp_path):
    manifest = make_manifest(tmp_path / "s")
    with Study.create(tmp_path / "s" / "study.sqlite", manifest, ["r1", "r2", "r3"], seed=7) as st:
        yield st


# ---- manifest ------------------------------------------------------------------------------------------------------
def test_manifest_lists_every_problem_at_once(tmp_path):
    manifest = make_manifest(tmp_path)
    doc = json.loads(manifest.read_text())
    doc["cases"][1]["case_id"] = "c000"                       # duplicate
    doc["cases"][2]["pet"] = "missing_pet.nii.gz"             # missing file
    doc["cases"][3]["texts"] = {}                             # no texts
    doc["cases"][4]["label"] = "x"                            # bad label
    doc["cases"][5]["case_id"] = "John Smith"                 # not a pseudonymous id
    manifest.write_text(json.dumps(doc))
    with pytest.raises(InputError) as exc:
        load_manifest(manifest)
    msg = str(exc.value)
    assert "5 problem(s)" in msg and "\n" not in msg
    for part in ("duplicate case_id", "PET file not found (missing_pet.nii.gz)", "c003: no candidate texts",
                 "label 'x'", "'John Smith' is not a pseudonymous id"):
        assert part in msg


def test_csv_manifest_with_text_columns(tmp_path):
    write_case_files(tmp_path)
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "pet", "ct", "mask", "label", "tracer", "text_reference", "text_petar"])
        w.writerow(["a1", "pet.nii.gz", "", "mask.nii.gz", "2", "PSMA", "ref a1", "model a1"])
        w.writerow(["a2", "pet.nii.gz", "ct.nii.gz", "mask.nii.gz", "", "", "ref a2", "model a2"])
    cases = load_manifest(path)
    assert [c.case_id for c in cases] == ["a1", "a2"]
    assert cases[0].ct is None and cases[0].label == 2 and cases[0].tracer == "PSMA"
    assert cases[1].texts == {"reference": "ref a2", "petar": "model a2"} and cases[1].label is None
    assert cases[1].pet == tmp_path.resolve() / "pet.nii.gz"


def test_paired_needs_two_sources_and_every_case_needs_both(tmp_path):
    manifest = make_manifest(tmp_path, sources=("reference", "petar", "template"))
    with pytest.raises(InputError, match="choose two with --sources"):
        Study.create(tmp_path / "a.sqlite", manifest, ["r1"])
    assert not (tmp_path / "a.sqlite").exists()
    doc = json.loads(manifest.read_text())
    del doc["cases"][2]["texts"]["petar"]
    manifest.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="c002: no 'petar' text"):
        Study.create(tmp_path / "b.sqlite", manifest, ["r1"], sources="reference,petar")
    assert not (tmp_path / "b.sqlite").exists()


def test_existing_database_is_never_overwritten(study, tmp_path):
    size = study.path.stat().st_size
    with pytest.raises(InputError, match="already exists"):
        Study.create(study.path, tmp_path / "s" / "manifest.json", ["x"])
    assert study.path.stat().st_size == size and study.readers == ["r1", "r2", "r3"]


# ---- design --------------------------------------------------------------------------------------------------------
def _plan(st):
    return st._conn.execute("SELECT reader, position, case_id, source_a, source_b FROM items").fetchall()


def test_orders_are_seeded_reproducible_and_differ_between_readers(tmp_path):
    manifest = make_manifest(tmp_path, n=10)
    a = Study.create(tmp_path / "a.sqlite", manifest, ["r1", "r2"], seed=3)
    b = Study.create(tmp_path / "b.sqlite", manifest, ["r1", "r2"], seed=3)
    c = Study.create(tmp_path / "c.sqlite", manifest, ["r1", "r2"], seed=4)
    assert _plan(a) == _plan(b) != _plan(c)
    order = {r: [case for rr, _, case, _, _ in sorted(_plan(a), key=lambda x: x[1]) if rr == r] for r in ("r1", "r2")}
    assert order["r1"] != order["r2"] and sorted(order["r1"]) == sorted(order["r2"])


@pytest.mark.parametrize("n_cases,n_readers", [(10, 4), (7, 3), (1, 2)])
def test_a_b_placement_is_balanced_per_reader_and_per_case(tmp_path, n_cases, n_readers):
    manifest = make_manifest(tmp_path, n=n_cases)
    st = Study.create(tmp_path / "s.sqlite", manifest, [f"r{k}" for k in range(n_readers)], seed=1)
    plan = _plan(st)
    for r in st.readers:
        ref_as_a = sum(1 for rr, _, _, a, _ in plan if rr == r and a == "reference")
        assert abs(2 * ref_as_a - n_cases) <= 1
    for case in st.case_ids:
        ref_as_a = sum(1 for _, _, cc, a, _ in plan if cc == case and a == "reference")
        assert abs(2 * ref_as_a - n_readers) <= 1


def test_single_design_rates_every_text_and_spreads_a_case(tmp_path):
    manifest = make_manifest(tmp_path, n=5, sources=("reference", "petar", "template"))
    st = Study.create(tmp_path / "s.sqlite", manifest, ["r1"], design="single", seed=2)
    plan = sorted(_plan(st), key=lambda x: x[1])
    assert Counter((c, a) for _, _, c, a, _ in plan) == Counter((c, s) for c in st.case_ids
                                                                for s in ("reference", "petar", "template"))
    assert all(p[2] != q[2] for p, q in zip(plan, plan[1:]))       # never the same case twice in a row
    item = st.session("r1").next_item()
    assert item.slots == ("A",)
    with pytest.raises(InputError, match="no preference"):
        st.session("r1").rate(item, {"A": GOOD}, preference="A")


def test_items_are_blinded_and_numbers_masked(study):
    item = study.session("r2").next_item()
    doc = json.dumps(item.to_dict())
    assert "reference" not in doc and "petar" not in doc
    assert set(item.texts) == {"A", "B"}
    for text in item.texts.values():
        assert "SUVmax [#]" in text and "image [#]" in text and "left axillary node" in text
    assert Path(item.pet).is_file() and Path(item.mask).is_file() and item.label == 1 and item.total == 6


def test_numbers_shown_when_masking_is_off(tmp_path):
    manifest = make_manifest(tmp_path)
    st = Study.create(tmp_path / "s.sqlite", manifest, ["r1"], mask_numbers=False)
    assert "[#]" not in "".join(st.session("r1").next_item().texts.values())
    st2 = Study.create(tmp_path / "t.sqlite", manifest, ["r1"], mask_numbers=["slice"])
    text = st2.session("r1").next_item().texts["A"]
    assert "image [#]" in text and "SUVmax [#]" not in text


def test_paths_inside_the_study_folder_are_stored_relative(tmp_path):
    manifest = make_manifest(tmp_path / "s")
    Study.create(tmp_path / "s" / "study.sqlite", manifest, ["r1"]).close()
    (tmp_path / "s").rename(tmp_path / "moved")                 # the study folder copied to a reader's machine
    with Study.open(tmp_path / "moved" / "study.sqlite") as st:
        assert Path(st.session("r1").next_item().pet) == (tmp_path / "moved" / "pet.nii.gz").resolve()


# ---- ratings -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scores,pref,match", [
    ({"A": GOOD, "B": {**GOOD, "utility": 6}}, "A", "utility must be a whole number 1–5, not 6"),
    ({"A": GOOD, "B": {**GOOD, "anatomy": 0}}, "A", "not 0"),
    ({"A": GOOD, "B": {**GOOD, "anatomy": 3.5}}, "A", "not 3.5"),
    ({"A": GOOD, "B": {**GOOD, "anatomy": True}}, "A", "not True"),
    ({"A": GOOD, "B": {**GOOD, "anatomy": "4"}}, "A", "not '4'"),
    ({"A": GOOD, "B": {"anatomy": 3}}, "A", "text B: rate interpretation accuracy, overall clinical utility"),
    ({"A": GOOD, "B": {**GOOD, "clarity": 3}}, "A", "unknown scale"),
    ({"A": GOOD, "B": GOOD}, None, "choose a preference: A, tie or B"),
    ({"A": GOOD, "B": GOOD}, "a", "preference must be A, tie or B"),
    ({"A": GOOD, "C": GOOD}, "A", "scores must be given for text"),
])
def test_bad_ratings_are_refused_and_nothing_is_saved(study, scores, pref, match):
    s = study.session("r1")
    item = s.next_item()
    with pytest.raises(InputError, match=match) as exc:
        s.rate(item, scores, preference=pref)
    assert "\n" not in str(exc.value)
    assert s.progress() == (0, 6) and s.saved(item) is None


def test_reader_not_in_study_and_items_of_another_reader(study):
    with pytest.raises(InputError, match="reader 'r9' is not in this study; readers: r1, r2, r3"):
        study.session("r9")
    item = study.session("r1").next_item()
    with pytest.raises(InputError, match="belongs to reader 'r1'"):
        study.session("r2").rate(item, {"A": GOOD, "B": GOOD}, "A")


def test_cannot_assess_needs_a_reason_and_needs_no_scores(study):
    s = study.session("r1")
    item = s.next_item()
    with pytest.raises(InputError, match="needs a reason"):
        s.rate(item, cannot_assess="  ")
    s.rate(item, cannot_assess="lesion not visible on CT", seconds=12.5)
    assert s.saved(item) == {"scores": {}, "preference": None, "comment": "", "cannot_assess": "lesion not visible on CT",
                             "seconds": 12.5}
    assert s.next_item().position == 2 and study.status()[0]["cannot_assess"] == 1


def test_edits_are_audited_and_the_audit_is_append_only(study):
    s = study.session("r1")
    item = s.next_item()
    s.rate(item, {"A": GOOD, "B": GOOD}, "A", comment="first")
    s.rate(item, {"A": GOOD, "B": {**GOOD, "utility": 2}}, "B", comment="second look")
    assert s.saved(item)["scores"]["B"]["utility"] == 2 and s.saved(item)["preference"] == "B"
    rows = study._conn.execute("SELECT action, old, new, reader FROM audit ORDER BY audit_id").fetchall()
    assert [r[0] for r in rows] == ["rate", "edit"]
    assert json.loads(rows[1][1])["comment"] == "first" and json.loads(rows[1][2])["comment"] == "second look"
    assert s.progress() == (1, 6)
    for statement in ("UPDATE audit SET new = '{}'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            study._conn.execute(statement)


def test_resume_at_the_first_unrated_item_after_reopening(study):
    s = study.session("r1")
    first, second = s.next_item(), None
    s.rate(first, {"A": GOOD, "B": GOOD}, "tie")
    second = s.next_item()
    assert second.position == 2
    s.rate(s.item_at(3), {"A": GOOD, "B": GOOD}, "A")        # skipped ahead with "next", came back later
    path = study.path
    study.close()
    with Study.open(path) as again:
        s2 = again.session("r1")
        assert s2.next_item().position == 2 and s2.progress() == (2, 6)
        assert again.session("r2").next_item().position == 1
        with pytest.raises(InputError, match="positions are 1–6"):
            s2.item_at(7)


# ---- export and CLI ------------------------------------------------------------------------------------------------
def test_export_unblinds_in_long_format(study, tmp_path):
    s = study.session("r1")
    item = s.next_item()
    s.rate(item, {"A": {"anatomy": 5, "interpretation": 4, "utility": 3}, "B": {"anatomy": 1, "interpretation": 2,
                                                                                "utility": 2}}, "A", seconds=30)
    tables = export_tables(study)
    source_a = next(i["source_A"] for i in tables["items"] if i["reader"] == "r1" and i["position"] == 1)
    rows = [r for r in tables["ratings"] if r["reader"] == "r1"]
    assert len(rows) == 6 and {r["source"] for r in rows if r["slot"] == "A"} == {source_a}
    assert {r["scale"]: r["score"] for r in rows if r["slot"] == "A"} == {"anatomy": 5, "interpretation": 4,
                                                                          "utility": 3}
    (pref,) = tables["preferences"]
    assert pref["preferred"] == source_a and pref["seconds"] == 30
    assert len(tables["items"]) == 18 and tables["study"]["sources"] == ["reference", "petar"]
    paths = write_export(tables, tmp_path / "out")
    with open(tmp_path / "out" / "ratings.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert {p.name for p in paths} == {"ratings.csv", "preferences.csv", "items.csv", "audit.csv", "study.json"}


def test_cli_create_status_export(tmp_path, cli):
    manifest = make_manifest(tmp_path / "s")
    db = tmp_path / "s" / "study.sqlite"
    r = cli("study", "create", "--manifest", str(manifest), "--db", str(db), "--readers", "r1,r2", "--seed", "5")
    assert r.code == 0 and "6 cases, 2 reader(s), paired design (reference vs petar)" in r.out
    with Study.open(db) as st:
        rate_all(st.session("r1"))
    r = cli("study", "status", "--db", str(db), "--json", "-")
    assert r.code == 0 and [x["done"] for x in json.loads(r.out)["readers"]] == [6, 0]
    r = cli("study", "export", "--db", str(db), "--out", str(tmp_path / "exp"))
    assert r.code == 0 and (tmp_path / "exp" / "items.csv").is_file()
    r = cli("study", "create", "--manifest", str(manifest), "--db", str(db), "--readers", "r1")
    assert r.code == 2 and "already exists" in r.err
    r = cli("study", "status", "--db", str(manifest))
    assert r.code == 2 and "not a SQLite database" in r.err or "not a petar study" in r.err
    r = cli("study", "create", "--manifest", str(manifest), "--db", str(tmp_path / "x.sqlite"), "--readers",
            "r1,r1")
    assert r.code == 2 and "reader ids repeat: r1" in r.err and not (tmp_path / "x.sqlite").exists()


def test_a_foreign_sqlite_file_is_not_taken_for_a_study(tmp_path):
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(InputError, match="not a petar study database"):
        Study.open(other)
    with pytest.raises(InputError, match="not found; create it with `petar study create`"):
        Study.open(tmp_path / "nope.sqlite")


def test_scales_are_the_papers_three():
    assert SCALES == ("anatomy", "interpretation", "utility")


def test_cli_analyze_writes_the_report_and_refuses_an_unread_study(tmp_path, cli):
    manifest = make_manifest(tmp_path / "s", n=4)
    db = tmp_path / "s" / "study.sqlite"
    Study.create(db, manifest, ["r1", "r2"]).close()
    r = cli("study", "analyze", "--db", str(db), "--out", str(tmp_path / "a"))
    assert r.code == 2 and "no ratings yet" in r.err and not (tmp_path / "a").exists()
    with Study.open(db) as st:
        for reader in st.readers:
            rate_all(st.session(reader), pref="B")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"samples": [{"id": f"c{i:03d}", "bleu4": i / 10} for i in range(4)]}))
    r = cli("study", "analyze", "--db", str(db), "--out", str(tmp_path / "a"), "--metrics", str(metrics),
            "--bootstrap", "50")
    assert r.code == 0, r.err
    doc = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert doc["counts"]["readers"] == 2 and doc["describe"]["scales"]["anatomy"]["petar"]["mean"] == 4.0
    assert (tmp_path / "a" / "report.md").read_text().startswith("# Reader study report")
    r = cli("study", "analyze", "--db", str(db), "--out", str(tmp_path / "b"), "--metrics", str(manifest))
    assert r.code == 2 and "no per-sample scores" in r.err
