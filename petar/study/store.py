"""The study database: SQLite in WAL mode, foreign keys on, a schema version, and migrations that keep old studies.

Why SQLite: one file the study lead can copy, readable without us, safe for several readers (separate processes,
even over a shared folder on one host) because writers take the lock with ``BEGIN IMMEDIATE`` and wait for it
(``busy_timeout``). Every rating is its own transaction, committed with ``synchronous=FULL``: a crash, a killed
process or a power cut loses at most the rating being saved, never one that was confirmed.
The audit table is append-only (triggers refuse UPDATE and DELETE), so an edited rating keeps its history.

Schema history (``PRAGMA user_version``): 1 — the first release (no time on case, no audit); 2 — adds
``ratings.seconds``, ``ratings.updated_at`` and the ``audit`` table (backfilled with one 'rate' row per rating).
"""
from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError

SCHEMA_VERSION = 2
APPLICATION_ID = 0x50455441          # "PETA": marks the file as a petar study, checked on open
BUSY_TIMEOUT_MS = 30_000

SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE readers (reader TEXT PRIMARY KEY);
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY, pet TEXT NOT NULL, ct TEXT, mask TEXT NOT NULL, label INTEGER, tracer TEXT,
    manifest_order INTEGER NOT NULL);
CREATE TABLE texts (
    case_id TEXT NOT NULL REFERENCES cases(case_id), source TEXT NOT NULL, text TEXT NOT NULL,
    shown TEXT NOT NULL, PRIMARY KEY (case_id, source));
CREATE TABLE items (
    item_id INTEGER PRIMARY KEY, reader TEXT NOT NULL REFERENCES readers(reader), position INTEGER NOT NULL,
    case_id TEXT NOT NULL REFERENCES cases(case_id), source_a TEXT NOT NULL, source_b TEXT,
    UNIQUE (reader, position),
    FOREIGN KEY (case_id, source_a) REFERENCES texts(case_id, source),
    FOREIGN KEY (case_id, source_b) REFERENCES texts(case_id, source));
CREATE TABLE ratings (
    item_id INTEGER PRIMARY KEY REFERENCES items(item_id), preference TEXT CHECK (preference IN ('A', 'tie', 'B')),
    comment TEXT NOT NULL DEFAULT '', cannot_assess TEXT, rated_at TEXT NOT NULL);
CREATE TABLE scores (
    item_id INTEGER NOT NULL REFERENCES ratings(item_id) ON DELETE CASCADE, slot TEXT NOT NULL CHECK (slot IN ('A', 'B')),
    scale TEXT NOT NULL, score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5), PRIMARY KEY (item_id, slot, scale));
"""

_MIGRATE_1_TO_2 = """
ALTER TABLE ratings ADD COLUMN seconds REAL CHECK (seconds IS NULL OR seconds >= 0);
ALTER TABLE ratings ADD COLUMN updated_at TEXT;
CREATE TABLE audit (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT, item_id INTEGER NOT NULL REFERENCES items(item_id),
    reader TEXT NOT NULL, at TEXT NOT NULL, action TEXT NOT NULL CHECK (action IN ('rate', 'edit', 'migrated')),
    old TEXT, new TEXT NOT NULL);
CREATE INDEX audit_item ON audit(item_id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END;
UPDATE ratings SET updated_at = rated_at;
INSERT INTO audit (item_id, reader, at, action, old, new)
    SELECT r.item_id, i.reader, r.rated_at, 'migrated', NULL, '{"note": "rating made before schema 2"}'
    FROM ratings r JOIN items i USING (item_id);
"""

MIGRATIONS = {1: _MIGRATE_1_TO_2}      # from version -> script to the next version


def now() -> str:
    """UTC timestamps with a 'Z', to the millisecond: sortable, unambiguous across readers' time zones."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")


def connect(path, *, create: bool = False) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit); checks that an existing file is a petar study."""
    path = Path(path)
    if create:
        if path.exists():
            raise InputError(f"study database {path.name!r} already exists; choose a new --db path (an existing "
                             "study is never overwritten)")
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.is_file():
        raise InputError(f"study database {path.name!r} not found; create it with `petar study create`")
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                           check_same_thread=False)
    try:
        _configure(conn)
        if not create and conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise InputError(f"{path.name!r} is not a petar study database; give the file made by "
                             "`petar study create`")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise InputError(f"cannot use write-ahead logging for {path.name!r} (a network share?); copy the study "
                             "to a local disk")
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        raise InputError(f"cannot open study database {path.name!r} ({exc}); check the file's permissions and "
                         "that no other program holds it exclusively") from None
    except sqlite3.DatabaseError:
        conn.close()
        raise InputError(f"{path.name!r} is not a SQLite database; give the .sqlite file made by "
                         "`petar study create`") from None
    except BaseException:
        conn.close()
        raise


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection):
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front, so two readers' saves queue, never mix."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def create_schema(conn: sqlite3.Connection) -> None:
    """A new database at the current version: the first schema plus every migration, in one transaction."""
    with transaction(conn):
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for statement in _statements(SCHEMA_V1):
            conn.execute(statement)
        version = 1
        while version < SCHEMA_VERSION:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            version += 1
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring an older study up to the current schema (each step in its own transaction); return the old version."""
    with transaction(conn):
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise InputError(f"this study was written by a newer petar (schema {found} > {SCHEMA_VERSION}); "
                             "update petar to open it")
        if found < 1:
            raise InputError("the study database has no schema version; it was not made by `petar study create`")
    version = found
    while version < SCHEMA_VERSION:
        with transaction(conn):
            # re-read under the write lock: another process may have migrated meanwhile
            if conn.execute("PRAGMA user_version").fetchone()[0] != version:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                continue
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            version += 1
            conn.execute(f"PRAGMA user_version = {version}")
    return found


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (triggers contain ';' inside BEGIN … END)."""
    out, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            out.append(joined)
            buf = []
    if "".join(buf).strip():
        out.append("\n".join(buf))
    return out
