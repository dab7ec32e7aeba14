"""petar — PET/CT findings and grounding, Slicer-free.

`import petar` needs only numpy and SimpleITK (pydicom for DICOM PET): model engines import torch, transformers
or monai lazily, so the CLI starts fast and the package loads inside 3D Slicer's Python.
Conventions (array order, LPS/RAS, slice numbering, SUV) are in DESIGN.md.
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import report  # noqa: E402  (callable module: petar.report(...) and petar.report.<name>)
from .errors import InputError, LeakError, ModelMissingError, PetarError
from .grounding import ground, parse_finding
from .io import read_mask, read_pet, read_volume, write_volume
from .lesion import LesionMeasurement, click_segment, measure, segment_click
from .phantom import Phantom, make_phantom
from .report import load_petar
from .slices import index_to_slice, slice_to_index
from .volume import Volume

__all__ = ["InputError", "LeakError", "LesionMeasurement", "ModelMissingError", "PetarError", "Phantom", "Volume",
           "__version__", "click_segment", "ground", "index_to_slice", "load_petar", "make_phantom", "measure",
           "parse_finding", "read_mask", "read_pet", "read_volume", "report", "segment_click", "slice_to_index",
           "write_volume"]
