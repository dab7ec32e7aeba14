"""Reader-study faults: a process killed mid-save, several processes rating at once, old and newer schemas.

Real processes (subprocess, SIGKILL), a real SQLite file: what a reading room does to a study database.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from petar.errors import InputError
from petar.study import Study
from petar.study import store
from test_study import GOOD, make_manifest

ROOT = Path(__file__).resolve().parents[1]

# A reader in another process: rates every remaining item, encoding (reader, position) in the scores so that a
# rating stored under the wrong reader or item would be seen; prints each committed position.
READER = r"""
import sys
from petar.study import Study
db, reader = sys.argv[1], sys.argv[2]
code = {"r1": 1, "r2": 2, "r3": 3, "r4": 4}[reader]
with Study.open(db) as st:
    s = st.session(reader)
    while (item := s.next_item()) is not None:
        u = 1 + (item.position % 5)
        s.rate(item, {"A": {"anatomy": code, "interpretation": u, "utility": 5},
                      "B": {"anatomy": code, "interpretation": u, "utility": 1}}, preference="tie",
               comment=f"{reader}:{item.position}")
        print(item.position, flush=True)
"""


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    return env


@pytest.fixture
def db(tmp_path):
    manifest = make_manifest(tmp_path / "s", n=12)
    path = tmp_path / "s" / "study.sqlite"
    Study.create(path, manifest, ["r1", "r2", "r3", "r4"], seed=11).close()
    return path


def _check_ratings(path, reader):
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT i.position, r.comment, s.slot, s.scale, s.score FROM items i JOIN ratings r "
                        "USING (item_id) JOIN scores s USING (item_id) WHERE i.reader = ?", (reader,)).fetchall()
    code = int(reader[1])
    for pos, comment, slot, scale, score in rows:
        assert comment == f"{reader}:{pos}"
        if scale == "anatomy":
            assert score == code
        if scale == "interpretation":
            assert score == 1 + pos % 5
    return {r[0] for r in rows}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_between_and_during_saves_loses_nothing_committed(db):
    # killed while a rating is written but not committed: the three before it stay, it vanishes, the file is sound
    proc = subprocess.Popen([sys.executable, "-c", READER.replace(
        "print(item.position, flush=True)", "print(item.position, flush=True)\n        if item.position == 3: "
        "__import__('os').environ['PETAR_STUDY_TEST_PAUSE'] = 'after_write'"), str(db), "r1"],
        stdout=subprocess.PIPE, text=True, env=_env())
    lines = []
    while (line := proc.stdout.readline()) and line.strip() != "paused":
        lines.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert lines == ["1", "2", "3"]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Study.open(db) as st:
        s = st.session("r1")
        assert s.progress() == (3, 12) and s.next_item().position == 4
        assert st._conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 3
    assert _check_ratings(db, "r1") == {1, 2, 3}
    # killed between two saves (no pause): whatever was printed as committed is there, and the reader resumes
    proc = subprocess.Popen([sys.executable, "-c", READER, str(db), "r1"], stdout=subprocess.PIPE, text=True,
                            env=_env())
    first = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert first == "4"
    committed = _check_ratings(db, "r1")
    assert {1, 2, 3, 4} <= committed
    with Study.open(db) as st:
        assert st.session("r1").next_item().position == max(committed) + 1


def test_four_processes_rating_at_once_lose_and_mix_nothing(db):
    procs = [subprocess.Popen([sys.executable, "-c", READER, str(db), r], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for r in ("r1", "r2", "r3", "r4")]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.split() == [str(i) for i in range(1, 13)]
    for r in ("r1", "r2", "r3", "r4"):
        assert _check_ratings(db, r) == set(range(1, 13))
    with Study.open(db) as st:
        assert [x["done"] for x in st.status()] == [12, 12, 12, 12]
        assert st._conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 48


def test_two_processes_of_the_same_reader_never_corrupt_a_rating(db):
    """Two Slicer windows open for one reader: both save; every stored rating is whole (one save, not a mix)."""
    procs = [subprocess.Popen([sys.executable, "-c", READER, str(db), "r2"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert _check_ratings(db, "r2") == set(range(1, 13))
    conn = sqlite3.connect(db)
    per_item = conn.execute("SELECT COUNT(*) FROM scores s JOIN items i USING (item_id) WHERE i.reader = 'r2' "
                            "GROUP BY item_id").fetchall()
    assert {n for (n,) in per_item} == {6}


def _make_v1(path: Path, manifest: Path) -> None:
    """A study as the first release wrote it (schema 1), with two ratings."""
    Study.create(path.with_name("tmp.sqlite"), manifest, ["r1"], seed=0).close()
    src = sqlite3.connect(path.with_name("tmp.sqlite"))
    conn = sqlite3.connect(path)
    conn.executescript(store.SCHEMA_V1)
    conn.execute(f"PRAGMA application_id = {store.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    for table in ("meta", "readers", "cases", "texts", "items"):
        rows = src.execute(f"SELECT * FROM {table}").fetchall()
        conn.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * len(rows[0]))})", rows)
    conn.executemany("INSERT INTO ratings VALUES (?, ?, ?, ?, ?)",
                     [(1, "A", "old one", None, "2025-01-02T03:04:05.000Z"),
                      (2, None, "", "no CT", "2025-01-02T03:05:00.000Z")])
    conn.executemany("INSERT INTO scores VALUES (?, ?, ?, ?)",
                     [(1, slot, scale, 3) for slot in "AB" for scale in ("anatomy", "interpretation", "utility")])
    conn.commit()
    conn.close()


def test_a_schema_1_study_is_migrated_with_its_ratings(tmp_path):
    manifest = make_manifest(tmp_path / "s")
    path = tmp_path / "s" / "old.sqlite"
    _make_v1(path, manifest)
    with Study.open(path) as st:
        assert st._conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        s = st.session("r1")
        assert s.progress() == (2, 6) and s.next_item().position == 3
        assert s.saved(s.item_at(1))["comment"] == "old one" and s.saved(s.item_at(2))["cannot_assess"] == "no CT"
        audit = st._conn.execute("SELECT action, at FROM audit ORDER BY audit_id").fetchall()
        assert audit == [("migrated", "2025-01-02T03:04:05.000Z"), ("migrated", "2025-01-02T03:05:00.000Z")]
        s.rate(s.next_item(), {"A": GOOD, "B": GOOD}, "B", seconds=41.0)
        assert s.saved(s.item_at(3))["seconds"] == 41.0
    with Study.open(path) as st:                                     # opening again changes nothing
        assert st.session("r1").progress() == (3, 6)


def test_a_study_from_a_newer_petar_is_refused(tmp_path):
    manifest = make_manifest(tmp_path / "s")
    path = tmp_path / "s" / "new.sqlite"
    Study.create(path, manifest, ["r1"]).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(InputError, match="newer petar"):
        Study.open(path)


def test_a_locked_database_waits_instead_of_failing(db, monkeypatch):
    """A save while another process holds the write lock waits (busy timeout) and then succeeds."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    proc = subprocess.Popen([sys.executable, "-c", READER, str(db), "r3"], stdout=subprocess.PIPE, text=True,
                            env=_env())
    time.sleep(1.0)
    assert proc.poll() is None                              # waiting for the lock, not failed
    holder.execute("COMMIT")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.split()[-1] == "12"
    json.dumps(out)
