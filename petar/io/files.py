"""Reading and writing image files (NIfTI, NRRD, MHA/MHD) through SimpleITK, refusing corrupt or truncated files.

SimpleITK reads a truncated NIfTI (plain or gzip) without complaint and fills the missing voxels with zeros or
garbage; a PET read that way would give wrong SUVs silently. So NIfTI payloads are checked against the header
before SimpleITK reads them. NRRD and MetaImage readers already fail on short data.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..volume import Volume

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_NIFTI_BYTES_PER_VOXEL = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8,
                          32: 8, 1792: 16, 128: 3, 2304: 4}


def image_suffix(path) -> str:
    name = str(path).lower()
    for s in IMAGE_SUFFIXES:
        if name.endswith(s):
            return s
    return ""


class _NiftiLayout:
    """What the header says about the payload: where it starts, how long it is, how to read floats in it."""

    def __init__(self, header: bytes):
        for endian in "<>":
            if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
                dims = struct.unpack(endian + "8h", header[40:56])
                datatype = struct.unpack(endian + "h", header[70:72])[0]
                vox_offset = struct.unpack(endian + "f", header[108:112])[0]
                break
            if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
                dims = struct.unpack(endian + "8q", header[16:80])
                datatype = struct.unpack(endian + "h", header[12:14])[0]
                vox_offset = struct.unpack(endian + "q", header[168:176])[0]
                break
        else:
            raise InputError("not a NIfTI file (bad header): check the file")
        ndim = dims[0]
        if not 1 <= ndim <= 7:
            raise InputError("the NIfTI header is corrupt (invalid dimension count): re-export the image")
        bpv = _NIFTI_BYTES_PER_VOXEL.get(datatype)
        if bpv is None:
            raise InputError(f"the NIfTI header has an unsupported data type code {datatype}: re-export as float "
                             "or int")
        self.start = int(vox_offset)
        self.end = self.start + int(np.prod([max(int(d), 1) for d in dims[1:ndim + 1]])) * bpv
        float_type = {16: "f4", 64: "f8"}.get(datatype)
        self.float_dtype = np.dtype(endian + float_type) if float_type else None


def _scan_nifti(path: Path, compressed: bool):
    """Stream the file once: (layout, total bytes, number of NaN/Inf voxels). Raises on a broken gzip stream."""
    opener = gzip.open if compressed else open
    with opener(path, "rb") as f:
        head = f.read(544)
        layout = _NiftiLayout(head)
        total, nonfinite, pending = len(head), 0, b""
        pos = len(head)                 # file offset of the first byte not yet consumed into `pending`
        data = head
        while True:
            if layout.float_dtype is not None:
                lo, hi = max(layout.start, pos - len(data)), min(layout.end, pos)
                if hi > lo:
                    pending += data[lo - (pos - len(data)):hi - (pos - len(data))]
                    usable = len(pending) - len(pending) % layout.float_dtype.itemsize
                    values = np.frombuffer(pending[:usable], dtype=layout.float_dtype)
                    nonfinite += int(values.size - np.count_nonzero(np.isfinite(values)))
                    pending = pending[usable:]
            data = f.read(1 << 22)
            if not data:
                break
            total += len(data)
            pos += len(data)
    return layout, total, nonfinite


def check_nifti_integrity(path) -> None:
    """Raise InputError when a .nii/.nii.gz file is shorter than its header says, its gzip stream is broken,
    or it holds NaN/Inf voxels (ITK's NIfTI reader would silently turn those into 0)."""
    path = Path(path)
    short = f"{path.name} is truncated or corrupt"
    try:
        layout, total, nonfinite = _scan_nifti(path, image_suffix(path) == ".nii.gz")
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{short} ({type(exc).__name__}): copy or export it again") from None
    except InputError as exc:
        raise InputError(f"{path.name}: {exc}") from None
    if total < layout.end:
        raise InputError(f"{short}: it holds {total} bytes but its header needs {layout.end}; "
                         "copy or export it again")
    if nonfinite:
        raise InputError(f"{path.name} has {nonfinite} NaN/Inf voxel(s): re-export it, or fill them (e.g. with 0) "
                         "first")


def read_image(path):
    """Read any supported image file into a SimpleITK image, with a one-line InputError on failure."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder but not a DICOM series folder: give an image file or a DICOM series")
    if image_suffix(path) in (".nii", ".nii.gz"):
        check_nifti_integrity(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(f"cannot read {path.name}: the file is corrupt, truncated or not a supported image "
                         f"(use {', '.join(IMAGE_SUFFIXES)} or a DICOM series folder)") from None


def write_volume(volume: Volume, path, compress: bool = True) -> Path:
    """Write a Volume atomically; the format follows the extension (.nii.gz, .nii, .nrrd, .mha)."""
    import SimpleITK as sitk

    path = Path(path)
    suffix = image_suffix(path)
    if suffix not in (".nii.gz", ".nii", ".nrrd", ".mha"):
        raise InputError(f"cannot write {path.name}: use a .nii.gz, .nii, .nrrd or .mha file name")
    with atomic_path(path) as tmp:
        sitk.WriteImage(volume.to_sitk(), str(tmp), useCompression=compress and suffix != ".nii")
    os.chmod(path, 0o644)
    return path
