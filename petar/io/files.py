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


def _nifti_expected_bytes(header: bytes):
    """(vox_offset + payload size) from a NIfTI-1 or NIfTI-2 header, or None when the header is not NIfTI."""
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
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise InputError("the NIfTI header is corrupt (invalid dimension count): re-export the image")
    nvox = int(np.prod([max(int(d), 1) for d in dims[1:ndim + 1]]))
    bpv = _NIFTI_BYTES_PER_VOXEL.get(datatype)
    if bpv is None:
        raise InputError(f"the NIfTI header has an unsupported data type code {datatype}: re-export as float or int")
    return int(vox_offset) + nvox * bpv


def _gzip_payload_length(path: Path, first: int = 544):
    """Decompress the whole stream (raises on truncation/corruption); return (first bytes, total length)."""
    total, head = 0, b""
    with gzip.open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            if len(head) < first:
                head += chunk[: first - len(head)]
            total += len(chunk)
    return head, total


def check_nifti_integrity(path) -> None:
    """Raise InputError when a .nii/.nii.gz file is shorter than its header says or its gzip stream is broken."""
    path = Path(path)
    short = f"{path.name} is truncated or corrupt"
    try:
        if image_suffix(path) == ".nii.gz":
            head, total = _gzip_payload_length(path)
        else:
            total = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(544)
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{short} ({type(exc).__name__}): copy or export it again") from None
    expected = _nifti_expected_bytes(head)
    if expected is None:
        raise InputError(f"{path.name} is not a NIfTI file (bad header): check the file")
    if total < expected:
        raise InputError(f"{short}: it holds {total} bytes of image data but its header needs {expected}; "
                         "copy or export it again")


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
