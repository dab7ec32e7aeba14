"""Unblinded long-format tables of a study: one row per rating, per preference, per item, per audit entry.

Long format (one score per row, with reader, case, slot and source) is what every statistics tool reads, and what
`petar.study.analysis` takes. The items table is the unblinding key: which source each reader saw as A and B.
Export reads one consistent snapshot (a read transaction), so it can run while readers are still saving.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..atomic import write_json, write_text
from .session import SCALES, Study

RATING_COLUMNS = ("reader", "case_id", "position", "slot", "source", "scale", "score", "cannot_assess", "reason",
                  "seconds", "rated_at", "updated_at")
PREFERENCE_COLUMNS = ("reader", "case_id", "position", "source_A", "source_B", "preference", "preferred",
                      "seconds", "comment", "cannot_assess", "reason")
ITEM_COLUMNS = ("reader", "position", "case_id", "source_A", "source_B", "rated")
AUDIT_COLUMNS = ("audit_id", "reader", "case_id", "position", "at", "action", "old", "new")


def export_tables(study: Study) -> dict:
    """{"study": meta, "items": [...], "ratings": [...], "preferences": [...], "audit": [...]} — plain dicts."""
    conn = study._conn
    conn.execute("BEGIN")
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        items = conn.execute(
            "SELECT i.item_id, i.reader, i.position, i.case_id, i.source_a, i.source_b, r.preference, r.comment, "
            "r.cannot_assess, r.seconds, r.rated_at, r.updated_at FROM items i LEFT JOIN ratings r USING (item_id) "
            "ORDER BY i.reader, i.position").fetchall()
        scores = {}
        for item_id, slot, scale, v in conn.execute("SELECT item_id, slot, scale, score FROM scores"):
            scores[(item_id, slot, scale)] = v
        audit = conn.execute(
            "SELECT a.audit_id, a.reader, i.case_id, i.position, a.at, a.action, a.old, a.new FROM audit a "
            "JOIN items i USING (item_id) ORDER BY a.audit_id").fetchall()
    finally:
        conn.execute("COMMIT")
    out_items, ratings, preferences = [], [], []
    for (item_id, reader, pos, case, src_a, src_b, pref, comment, reason, seconds, rated_at, updated_at) in items:
        rated = rated_at is not None
        out_items.append({"reader": reader, "position": pos, "case_id": case, "source_A": src_a, "source_B": src_b,
                          "rated": rated})
        if not rated:
            continue
        for slot, source in (("A", src_a), ("B", src_b)):
            if source is None:
                continue
            for scale in SCALES:
                ratings.append({"reader": reader, "case_id": case, "position": pos, "slot": slot, "source": source,
                                "scale": scale, "score": scores.get((item_id, slot, scale)),
                                "cannot_assess": reason is not None, "reason": reason, "seconds": seconds,
                                "rated_at": rated_at, "updated_at": updated_at})
        if src_b is not None:
            preferred = {"A": src_a, "B": src_b, "tie": "tie"}.get(pref)
            preferences.append({"reader": reader, "case_id": case, "position": pos, "source_A": src_a,
                                "source_B": src_b, "preference": pref, "preferred": preferred, "seconds": seconds,
                                "comment": comment, "cannot_assess": reason is not None, "reason": reason})
    study_meta = {"design": meta["design"], "sources": json.loads(meta["sources"]),
                  "mask_numbers": json.loads(meta["mask_numbers"]), "seed": int(meta["seed"]),
                  "created_at": meta["created_at"], "manifest_sha256": meta["manifest_sha256"],
                  "readers": study.readers}
    audit_rows = [dict(zip(AUDIT_COLUMNS, row)) for row in audit]
    return {"study": study_meta, "items": out_items, "ratings": ratings, "preferences": preferences,
            "audit": audit_rows}


def _csv(rows: list[dict], columns) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def write_export(tables: dict, out_dir) -> list[Path]:
    """ratings.csv, preferences.csv, items.csv (the unblinding key), audit.csv and study.json (all of it)."""
    out_dir = Path(out_dir)
    written = []
    for name, columns in (("ratings", RATING_COLUMNS), ("preferences", PREFERENCE_COLUMNS), ("items", ITEM_COLUMNS),
                          ("audit", AUDIT_COLUMNS)):
        path = out_dir / f"{name}.csv"
        write_text(path, _csv(tables[name], columns))
        written.append(path)
    write_json(out_dir / "study.json", tables)
    written.append(out_dir / "study.json")
    return written
