"""Reading one study case's images off the main thread, blinded (no file names reach the reader).

`case_job(item)` is a PETARReportLib.EngineRunner job (run through PETARReportLib.JobControls): it reads PET (SUV),
CT and the lesion mask with petar (SimpleITK; no Slicer) and returns `CaseImages`; the module turns them into MRML
nodes with neutral names on the main thread. A read failure does not raise: it comes back as `CaseImages.error`,
with the item's paths replaced by neutral words (`blind_message`), so the panel can still show the texts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

ROLES = (("pet", "the PET image"), ("ct", "the CT image"), ("mask", "the lesion mask"))


@dataclass
class CaseImages:
    position: int
    pet: object = None          # petar.Volume (SUV)
    ct: object = None           # petar.Volume or None
    lesion: object = None       # petar.Volume, uint8 0/1 on the PET grid: only item.label when given
    empty: bool = False         # the lesion mask has no voxel (wrong label?)
    error: str = ""             # why the images could not be read (blinded); the volumes are then None


def read_case(item, should_stop=lambda: False) -> CaseImages:
    import petar

    from PETARReportLib.runner import Cancelled

    pet = petar.read_pet(item.pet)
    if should_stop():
        raise Cancelled()
    ct = petar.read_volume(item.ct) if item.ct else None
    if should_stop():
        raise Cancelled()
    labels = np.asarray(petar.read_mask(item.mask, pet).array)
    lesion = (labels == int(item.label)) if item.label is not None else (labels > 0)
    mask = petar.Volume.from_array(lesion.astype(np.uint8), like=pet)
    return CaseImages(item.position, pet, ct, mask, not bool(lesion.any()))


def case_job(item):
    """Runner job: job(progress, should_stop, set_cancel_hook) -> CaseImages (a read error in `.error`)."""

    def job(progress, should_stop, set_cancel_hook):
        from PETARReportLib.runner import Cancelled

        progress({"stage": "loading case"})
        try:
            return read_case(item, should_stop)
        except Cancelled:
            raise
        except Exception as exc:
            text = " ".join(str(exc).split()) or type(exc).__name__
            return CaseImages(item.position, error=blind_message(text, item))

    return job


def loading_view(doc):
    """JobControls progress view: an indeterminate bar while a case loads."""
    return None, "Loading the case…"


def blind_message(text, item) -> str:
    """`text` with the item's file paths (whole, folder, file name) replaced by neutral words."""
    out = str(text)
    for attr, word in ROLES:
        path = getattr(item, attr, None)
        if not path:
            continue
        path = str(path)
        name = os.path.basename(path.rstrip("/\\"))
        for variant in sorted({path, os.path.abspath(path), os.path.dirname(path), name}, key=len, reverse=True):
            if len(variant) > 1 and variant in out:
                out = out.replace(variant, word if variant in (path, os.path.abspath(path), name) else "the case")
    return out
