"""Image I/O: files and DICOM series in, validated `Volume`s out; atomic writes."""
from .files import IMAGE_SUFFIXES, read_image, write_volume
from .grid import labels_onto_grid, resample_like
from .images import labels_in, read_mask, read_pet, read_volume, validate_pet

__all__ = ["IMAGE_SUFFIXES", "labels_in", "labels_onto_grid", "read_image", "read_mask", "read_pet", "read_volume",
           "resample_like", "validate_pet", "write_volume"]
