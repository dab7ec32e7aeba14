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


def _scan_nifti(path: Path, compressed: bool, sink=None):
    """Stream the file once: (layout, total bytes, number of NaN/Inf voxels). Raises on a broken gzip stream.

    `sink` (a binary file) receives the decompressed bytes, so a .nii.gz is inflated only once per read."""
    opener = gzip.open if compressed else open
    with opener(path, "rb") as f:
        head = f.read(544)
        if sink is not None:
            sink.write(head)
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
            if sink is not None:
                sink.write(data)
            total += len(data)
            pos += len(data)
    return layout, total, nonfinite


def check_nifti_integrity(path, sink=None) -> None:
    """Raise InputError when a .nii/.nii.gz file is shorter than its header says, its gzip stream is broken,
    or it holds NaN/Inf voxels (ITK's NIfTI reader would silently turn those into 0)."""
    path = Path(path)
    short = f"{path.name} is truncated or corrupt"
    try:
        layout, total, nonfinite = _scan_nifti(path, image_suffix(path) == ".nii.gz", sink)
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


_ITK_TO_NUMPY = {"8-bit unsigned integer": np.uint8, "8-bit signed integer": np.int8,
                 "16-bit unsigned integer": np.uint16, "16-bit signed integer": np.int16,
                 "32-bit unsigned integer": np.uint32, "32-bit signed integer": np.int32,
                 "64-bit unsigned integer": np.uint64, "64-bit signed integer": np.int64,
                 "32-bit float": np.float32, "64-bit float": np.float64}


def _read_gzip_nifti_once(path: Path):
    """A checked .nii.gz as a Volume with one decompression: ITK reads only the header (its geometry rules stay
    authoritative), the payload comes from our own pass, which also checks length and NaN/Inf. Returns None for
    anything unusual (not 3D scalar, big-endian, NIfTI-2, odd types), which then takes the plain ITK path."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    target = _ITK_TO_NUMPY.get(sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or target is None:
        return None
    try:
        with open(path, "rb") as f:
            inflate = zlib.decompressobj(wbits=31)
            parts = [inflate.decompress(block) for block in iter(lambda: f.read(1 << 24), b"")]
        if not inflate.eof or inflate.unused_data:
            raise EOFError("gzip stream ended early" if not inflate.eof else "multi-member gzip")
    except (EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, EOFError) and "multi-member" in str(exc):
            return None
        raise InputError(f"{path.name} is truncated or corrupt ({type(exc).__name__}): copy or export it "
                         "again") from None
    data = b"".join(parts)
    layout = _NiftiLayout(data[:544])
    if len(data) < layout.end:
        raise InputError(f"{path.name} is truncated or corrupt: it holds {len(data)} bytes but its header needs "
                         f"{layout.end}; copy or export it again")
    header = data[:348]
    if struct.unpack("<i", header[:4])[0] != 348:
        return None                                   # NIfTI-2 or big-endian: leave it to ITK
    datatype = struct.unpack("<h", header[70:72])[0]
    raw_type = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64, 256: np.int8,
                512: np.uint16, 768: np.uint32, 1024: np.int64, 1280: np.uint64}.get(datatype)
    if raw_type is None:
        return None
    size = reader.GetSize()
    raw = np.frombuffer(data, dtype=np.dtype(raw_type).newbyteorder("<"), count=int(np.prod(size)),
                        offset=layout.start).reshape(size[::-1])
    if raw.dtype.kind == "f":
        bad = raw.size - int(np.count_nonzero(np.isfinite(raw)))
        if bad:
            raise InputError(f"{path.name} has {bad} NaN/Inf voxel(s): re-export it, or fill them (e.g. with 0) "
                             "first")
    slope, inter = struct.unpack("<ff", header[112:120])
    if slope not in (0.0, 1.0) or inter != 0.0:
        arr = (raw.astype(np.float64) * slope + inter).astype(target)
    else:
        arr = raw.astype(target)                      # a copy: the Volume owns writable memory
    return Volume(arr, reader.GetSpacing(), reader.GetOrigin(), np.array(reader.GetDirection()).reshape(3, 3))


def read_image_volume(path) -> Volume:
    """Like `read_image`, as a Volume; a .nii.gz is decompressed once (see `_read_gzip_nifti_once`)."""
    path = Path(path)
    if image_suffix(path) == ".nii.gz" and path.is_file():
        try:
            volume = _read_gzip_nifti_once(path)
        except RuntimeError:
            volume = None
        if volume is not None:
            return volume
    return Volume.from_sitk(read_image(path))


def read_image(path):
    """Read any supported image file into a SimpleITK image, with a one-line InputError on failure."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder but not a DICOM series folder: give an image file or a DICOM series")
    try:
        if image_suffix(path) in (".nii", ".nii.gz"):
            check_nifti_integrity(path)
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(f"cannot read {path.name}: the file is corrupt, truncated or not a supported image "
                         f"(use {', '.join(IMAGE_SUFFIXES)} or a DICOM series folder)") from None


WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def check_writable_name(path, flag: str = "--out") -> Path:
    """Refuse an output image name whose format we cannot write, before any work is done."""
    path = Path(path)
    if image_suffix(path) not in WRITABLE_SUFFIXES:
        raise InputError(f"{flag} {path.name}: use a .nii.gz, .nii, .nrrd or .mha file name")
    return path


def write_volume(volume: Volume, path, compress: bool = True) -> Path:
    """Write a Volume atomically; the format follows the extension (.nii.gz, .nii, .nrrd, .mha)."""
    import SimpleITK as sitk

    path = check_writable_name(path, "cannot write")
    suffix = image_suffix(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(volume.to_sitk(), str(tmp), useCompression=compress and suffix != ".nii")
    os.chmod(path, 0o644)
    return path
