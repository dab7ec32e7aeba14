"""Slicer-free logic of the PETARStudy reader panel (tested with plain pytest in Testing/slicer/).

Nothing here imports slicer, qt, vtk or ctk; the module file maps `RatingForm` to Qt controls and `CaseImages`
to MRML nodes.
"""
from .case_images import CaseImages, blind_message, case_job, loading_view, read_case
from .reader import (PREFERENCES, SCALE_LABELS, SCALES, SCORES, SOURCES, DatabaseOpener, RatingForm,
                     ReaderPanelLogic, ServiceOpener, Step, StudySettings, one_line, slots_of, study_readers)

__all__ = ["CaseImages", "DatabaseOpener", "PREFERENCES", "RatingForm", "ReaderPanelLogic", "SCALES", "SCALE_LABELS",
           "SCORES", "SOURCES", "ServiceOpener", "Step", "StudySettings", "blind_message", "case_job", "one_line",
           "loading_view", "read_case", "slots_of", "study_readers"]
