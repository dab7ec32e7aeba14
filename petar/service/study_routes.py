"""Reader-study calls over the service: a reader whose Slicer cannot see the study's files reads through the server.

The server holds the study database and the images (inside ``--data-root``); the client gets blinded items whose
images come as volume ids (the same content-addressed store as every other call), never server paths, and sends
ratings that the server commits with the same per-rating transaction as a local session. A study is opened per
request: SQLite connections are cheap, and nothing stays locked between a reader's calls.
"""
from __future__ import annotations

from ..errors import InputError
from ..study import Study

_OPS = {"open", "next", "item", "saved", "rate", "progress"}
_RATE_KEYS = {"scores", "preference", "comment", "cannot_assess", "seconds"}


class StudyCalls:
    """POST /study/{op} bodies → JSON answers. `service` supplies `_path` (data-root check) and the volume store."""

    def __init__(self, service):
        self.service = service

    def call(self, op: str, body: dict) -> dict:
        if op not in _OPS:
            raise InputError(f"unknown study call {op!r}; use one of {', '.join(sorted(_OPS))}")
        if not isinstance(body.get("db"), str) or not isinstance(body.get("reader"), str):
            raise InputError("a study call needs 'db' (a path inside the server's data root) and 'reader'")
        with Study.open(self.service._path(body["db"])) as study:
            session = study.session(body["reader"])
            if op == "open":
                return {"design": study.design, "slots": list(study.slots), "readers": study.readers,
                        "progress": list(session.progress())}
            if op == "progress":
                return {"progress": list(session.progress())}
            if op == "next":
                item = session.next_item()
                return {"item": None if item is None else self._item(item)}
            item = session.item_at(_position(body))
            if op == "item":
                return {"item": self._item(item)}
            if op == "saved":
                return {"saved": session.saved(item)}
            unknown = set(body) - _RATE_KEYS - {"db", "reader", "position"}
            if unknown:
                raise InputError(f"rate takes no parameter(s) {', '.join(sorted(unknown))}")
            session.rate(item, **{k: body[k] for k in _RATE_KEYS if k in body})
            return {"progress": list(session.progress())}

    def _item(self, item) -> dict:
        """The blinded item with its images as volume ids (read and cached server-side)."""
        from ..io import read_mask, read_pet, read_volume

        pet = read_pet(item.pet)
        vols = {"pet": pet, "mask": read_mask(item.mask, pet)}
        if item.ct:
            vols["ct"] = read_volume(item.ct)
        doc = item.to_dict()
        for key in ("pet", "ct", "mask"):
            doc[key] = None
        doc.pop("item_id")
        doc["volumes"] = {k: self.service.store.put(v) for k, v in vols.items()}
        return doc


def _position(body: dict) -> int:
    pos = body.get("position")
    if isinstance(pos, bool) or not isinstance(pos, int):
        raise InputError("give the item's 'position' (a whole number)")
    return pos
