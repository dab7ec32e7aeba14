"""Physician reader studies: a manifest frozen into a crash-safe SQLite study, blinded reader sessions, export.

The store and sessions need only the standard library (sqlite3), so the Slicer reader panel uses them without any
install; `petar.study.analysis` (statistics, agreement, plots) needs the ``study`` extra.
"""
from .manifest import Case, load_manifest
from .masking import mask_numbers
from .session import DESIGNS, PREFERENCES, SCALE_TITLES, SCALES, Item, ReaderSession, Study

__all__ = ["Study", "ReaderSession", "Item", "SCALES", "SCALE_TITLES", "PREFERENCES", "DESIGNS", "Case",
           "load_manifest", "mask_numbers"]
