"""A reader session through the service, with the same methods as `petar.study.ReaderSession`.

The Slicer reader panel takes either; here an item's images arrive as server volume ids, are downloaded once and
kept as NIfTI files in a private temporary folder, so `Item.pet/.ct/.mask` are local paths exactly as in a local
session. The folder is removed on `close()` (or when the session is garbage-collected, or at interpreter exit) — no study images linger on a reader's disk.
"""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from ..study.session import Item


class RemoteReaderSession:
    def __init__(self, client, db: str, reader: str):
        self.client = client
        self.db = str(db)
        self.reader = reader
        info = self._call("open")
        self.design = info["design"]
        self.slots = tuple(info["slots"])
        self.readers = info["readers"]
        self._dir = Path(tempfile.mkdtemp(prefix="petar-study-"))
        self._files: dict[str, str] = {}          # volume id -> local file
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._dir), True)

    def _call(self, op: str, **body):
        return self.client._json("POST", f"/study/{op}", {"db": self.db, "reader": self.reader, **body})

    def _local(self, volume_id: str, mask: bool) -> str:
        if volume_id not in self._files:
            from ..io import write_volume

            vol = self.client.download(volume_id, mask=mask)
            path = self._dir / f"{len(self._files)}.nii.gz"
            write_volume(vol, path)
            self._files[volume_id] = str(path)
        return self._files[volume_id]

    def _item(self, doc) -> Item | None:
        if doc is None:
            return None
        vols = doc["volumes"]
        return Item(self.reader, doc["position"], doc["total"], doc["case_id"],
                    pet=self._local(vols["pet"], False), mask=self._local(vols["mask"], True),
                    ct=self._local(vols["ct"], False) if vols.get("ct") else None, label=doc["label"],
                    tracer=doc["tracer"], texts=doc["texts"], item_id=doc["position"])

    def next_item(self) -> Item | None:
        return self._item(self._call("next")["item"])

    def item_at(self, position: int) -> Item:
        return self._item(self._call("item", position=int(position))["item"])

    def progress(self) -> tuple[int, int]:
        done, total = self._call("progress")["progress"]
        return done, total

    def saved(self, item: Item) -> dict | None:
        return self._call("saved", position=item.position)["saved"]

    def rate(self, item: Item, scores=None, preference=None, comment: str = "", cannot_assess=None,
             seconds=None) -> None:
        self._call("rate", position=item.position, scores=scores, preference=preference, comment=comment,
                   cannot_assess=cannot_assess, seconds=seconds)

    def close(self) -> None:
        self._cleanup()
        self._files.clear()
