"""Volume ↔ NIfTI-1 bytes for the service wire (client and server share it): standard library + numpy only.

`encode` writes a plain NIfTI-1 image (sform and qform, RAS as the format requires) and adds one header extension
(ecode 40, "petar-geometry") holding the exact float64 spacing, origin and direction as JSON: NIfTI stores geometry
in float32, so without it a round trip would move the origin by up to ~1e-5 mm. Any NIfTI reader (ITK, nibabel)
reads the file and ignores the extension; `decode` uses it when present and consistent with the header.

`decode` reads our own files (and any plain little-endian 3D NIfTI-1) with numpy and falls back to SimpleITK via
petar's checked reader for anything else (NIfTI-2, big-endian, scaled data). Both refuse truncated or corrupt
payloads and NaN/Inf voxels with a one-line InputError saying why — never partial data.

`volume_key` is the content id the server uses (sha256 over dtype, shape, exact geometry and voxel bytes).
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np

from ..errors import InputError
from ..volume import Volume

GZIP_MAGIC = b"\x1f\x8b"
EXTENSION_CODE = 40                       # private code (not registered); readers skip unknown extensions
EXTENSION_TAG = "petar-geometry"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

_DTYPE_TO_NIFTI = {np.dtype(np.uint8): 2, np.dtype(np.int16): 4, np.dtype(np.int32): 8, np.dtype(np.float32): 16,
                   np.dtype(np.float64): 64, np.dtype(np.int8): 256, np.dtype(np.uint16): 512,
                   np.dtype(np.uint32): 768, np.dtype(np.int64): 1024, np.dtype(np.uint64): 1280}
_NIFTI_TO_DTYPE = {v: k for k, v in _DTYPE_TO_NIFTI.items()}


def _geometry(volume: Volume) -> dict:
    return {"tag": EXTENSION_TAG, "spacing": list(volume.spacing), "origin": list(volume.origin),
            "direction": [float(v) for v in volume.direction.ravel()]}


def _quaternion(direction: np.ndarray):
    """NIfTI qform quaternion (b, c, d) and qfac for a RAS rotation (columns = axis directions); None if improper."""
    r = np.array(direction, dtype=float)
    qfac = 1.0
    if np.linalg.det(r) < 0:
        r[:, 2] = -r[:, 2]
        qfac = -1.0
    if not np.allclose(r.T @ r, np.eye(3), atol=1e-4):
        return None
    a = 1.0 + r[0, 0] + r[1, 1] + r[2, 2]
    if a > 0.5:
        a = 0.5 * np.sqrt(a)
        b, c, d = 0.25 * (r[2, 1] - r[1, 2]) / a, 0.25 * (r[0, 2] - r[2, 0]) / a, 0.25 * (r[1, 0] - r[0, 1]) / a
    else:
        xd, yd, zd = 1.0 + r[0, 0] - (r[1, 1] + r[2, 2]), 1.0 + r[1, 1] - (r[0, 0] + r[2, 2]), \
            1.0 + r[2, 2] - (r[0, 0] + r[1, 1])
        if xd > 1.0:
            b = 0.5 * np.sqrt(xd); c = 0.25 * (r[0, 1] + r[1, 0]) / b; d = 0.25 * (r[0, 2] + r[2, 0]) / b
            a = 0.25 * (r[2, 1] - r[1, 2]) / b
        elif yd > 1.0:
            c = 0.5 * np.sqrt(yd); b = 0.25 * (r[0, 1] + r[1, 0]) / c; d = 0.25 * (r[1, 2] + r[2, 1]) / c
            a = 0.25 * (r[0, 2] - r[2, 0]) / c
        else:
            d = 0.5 * np.sqrt(zd); b = 0.25 * (r[0, 2] + r[2, 0]) / d; c = 0.25 * (r[1, 2] + r[2, 1]) / d
            a = 0.25 * (r[1, 0] - r[0, 1]) / d
        if a < 0:
            b, c, d = -b, -c, -d
    return (float(b), float(c), float(d)), qfac


def encode(volume: Volume, compress: bool = True, level: int = 1) -> bytes:
    """A Volume as NIfTI-1 bytes (.nii.gz when `compress`, gzip level 1 by default: fast, ~as small as 6 on PET)."""
    arr = volume.array
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype)
    code = _DTYPE_TO_NIFTI.get(np.dtype(arr.dtype.str.replace(">", "<")))
    if code is None:
        raise InputError(f"cannot send a volume of type {arr.dtype}: convert it to float32 or an integer type")
    ext = json.dumps(_geometry(volume)).encode()
    ext += b" " * ((-(len(ext) + 8)) % 16)
    vox_offset = 348 + 4 + 8 + len(ext)
    nz, ny, nx = arr.shape
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, nx, ny, nz, 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, code, arr.dtype.itemsize * 8)
    sx, sy, sz = volume.spacing
    ras = _LPS_TO_RAS @ volume.direction            # columns: RAS directions of i, j, k
    q = _quaternion(ras)
    struct.pack_into("<8f", hdr, 76, q[1] if q else 1.0, sx, sy, sz, 0, 0, 0, 0)
    struct.pack_into("<f", hdr, 108, float(vox_offset))
    struct.pack_into("<ff", hdr, 112, 1.0, 0.0)     # scl_slope, scl_inter
    hdr[123] = 2                                    # xyzt_units: mm
    origin_ras = _LPS_TO_RAS @ np.asarray(volume.origin)
    struct.pack_into("<hh", hdr, 252, 1 if q else 0, 1)   # qform_code, sform_code: scanner anatomical
    if q:
        struct.pack_into("<6f", hdr, 256, *q[0], *origin_ras)
    affine = ras * np.asarray(volume.spacing)
    for row in range(3):
        struct.pack_into("<4f", hdr, 280 + 16 * row, *affine[row], origin_ras[row])
    hdr[344:348] = b"n+1\x00"
    head = bytes(hdr) + b"\x01\x00\x00\x00" + struct.pack("<ii", len(ext) + 8, EXTENSION_CODE) + ext
    if not compress:
        return b"".join((head, memoryview(arr).cast("B")))      # one copy
    z = zlib.compressobj(level, zlib.DEFLATED, 31)
    return z.compress(head) + z.compress(memoryview(arr).cast("B")) + z.flush()


def _inflate(data: bytes) -> bytes:
    try:
        inflate = zlib.decompressobj(wbits=31)
        out = inflate.decompress(data)
    except zlib.error as exc:
        raise InputError(f"the upload is not a valid gzip stream ({exc}): send a .nii or .nii.gz file") from None
    if not inflate.eof:
        raise InputError("the upload is truncated (the gzip stream ends early): send the whole file")
    return out


def _fast_decode(data: bytes) -> Volume | None:
    """Plain little-endian 3D NIfTI-1 without scaling → Volume (numpy only); None when it is anything else."""
    if len(data) < 352 or struct.unpack("<i", data[:4])[0] != 348 or data[344:347] not in (b"n+1", b"ni1"):
        return None
    dims = struct.unpack("<8h", data[40:56])
    code = struct.unpack("<h", data[70:72])[0]
    slope, inter = struct.unpack("<ff", data[112:120])
    if dims[0] not in (3, 4, 5) or any(d > 1 for d in dims[4:dims[0] + 1]) or code not in _NIFTI_TO_DTYPE \
            or slope not in (0.0, 1.0) or inter != 0.0:
        return None
    geometry = None
    pos = 352
    if data[348] == 1:                              # extensions follow
        while pos + 8 <= len(data):
            esize, ecode = struct.unpack("<ii", data[pos:pos + 8])
            if esize < 8 or pos + esize > len(data):
                break
            if ecode == EXTENSION_CODE:
                try:
                    doc = json.loads(data[pos + 8:pos + esize].decode())
                    if doc.get("tag") == EXTENSION_TAG:
                        geometry = doc
                except (ValueError, UnicodeDecodeError):
                    raise InputError("the upload's petar-geometry extension is corrupt: re-encode it") from None
            pos += esize
    if geometry is None:
        return None                                 # foreign file: ITK's geometry rules apply (slow path)
    nx, ny, nz = dims[1:4]
    dtype = _NIFTI_TO_DTYPE[code]
    start = int(struct.unpack("<f", data[108:112])[0])
    need = start + nx * ny * nz * dtype.itemsize
    if len(data) < need:
        raise InputError(f"the upload is truncated: it holds {len(data)} bytes but its header needs {need}; "
                         "send the whole file")
    arr = np.frombuffer(data, dtype=dtype, count=nx * ny * nz, offset=start).reshape(nz, ny, nx)
    if arr.dtype.kind == "f":
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise InputError(f"the upload has {bad} NaN/Inf voxel(s): fill them (e.g. with 0) first")
    try:
        vol = Volume(arr.copy(), geometry["spacing"], geometry["origin"], np.reshape(geometry["direction"], (3, 3)))
    except (KeyError, TypeError, ValueError):
        raise InputError("the upload's petar-geometry extension is incomplete: re-encode it") from None
    pixdim = struct.unpack("<3f", data[80:92])
    if not np.allclose(pixdim, vol.spacing, rtol=1e-5, atol=1e-5):
        raise InputError("the upload's geometry extension disagrees with its header (spacing): re-encode it")
    return vol


def _slow_decode(data: bytes) -> Volume:
    """Anything else SimpleITK reads as NIfTI, through petar's checked reader (truncation, NaN/Inf)."""
    import os
    import tempfile
    from pathlib import Path

    from ..io.files import read_image_volume

    fd, tmp = tempfile.mkstemp(prefix="petar-upload-", suffix=".nii")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return read_image_volume(tmp)
        except InputError as exc:
            raise InputError(str(exc).replace(Path(tmp).name, "the upload")) from None
    finally:
        os.unlink(tmp)


def decode(data: bytes) -> Volume:
    """NIfTI bytes (.nii or .nii.gz) → Volume; InputError with the reason for anything malformed."""
    data = bytes(data)
    if not data:
        raise InputError("the upload is empty: send a .nii or .nii.gz file as the request body")
    if data[:2] == GZIP_MAGIC:
        data = _inflate(data)
    if len(data) < 348 or struct.unpack("<i", data[:4])[0] not in (348, 540) and \
            struct.unpack(">i", data[:4])[0] not in (348, 540):
        raise InputError("the upload is not a NIfTI image (bad header): send a .nii or .nii.gz file")
    vol = _fast_decode(data)
    return vol if vol is not None else _slow_decode(data)


def volume_key(volume: Volume) -> str:
    """Content id: sha256 over dtype, shape, exact geometry and the voxel bytes (same image → same id)."""
    arr = volume.array.astype(np.uint8) if volume.array.dtype == bool else volume.array
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(json.dumps({"dtype": arr.dtype.str, "shape": list(arr.shape), **_geometry(volume)}).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def fingerprint(volume: Volume) -> tuple:
    """Cheap change detector for the client's id cache: geometry plus a crc32 of the voxel bytes (~6 GB/s)."""
    arr = volume.array
    buf = memoryview(np.ascontiguousarray(arr)).cast("B")
    return (arr.dtype.str, arr.shape, volume.spacing, volume.origin, volume.direction.tobytes(), zlib.crc32(buf))


def crop_to_foreground(vol: Volume):
    """(the non-zero bounding box as its own Volume, its (z, y, x) offset): masks travel as a few kB, not the
    whole grid. An empty volume gives one zero voxel at offset (0, 0, 0)."""
    nz = np.flatnonzero(vol.array.reshape(vol.shape[0], -1).max(axis=1))
    if not nz.size:
        lo, hi = np.zeros(3, dtype=int), np.ones(3, dtype=int)
    else:
        sub = vol.array[nz[0]:nz[-1] + 1]
        ys = np.flatnonzero(sub.max(axis=(0, 2)))
        xs = np.flatnonzero(sub.max(axis=(0, 1)))
        lo = np.array([nz[0], ys[0], xs[0]])
        hi = np.array([nz[-1] + 1, ys[-1] + 1, xs[-1] + 1])
    block = np.ascontiguousarray(vol.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    origin = vol.index_to_world(lo[::-1].astype(float))
    return Volume(block, vol.spacing, tuple(origin), vol.direction.copy()), tuple(int(v) for v in lo)


def embed(block: Volume, offset, shape, like: Volume | None = None) -> Volume:
    """Put a cropped block back into a zero grid of `shape` (geometry from `like`, else from the block)."""
    full = np.zeros(tuple(int(v) for v in shape), dtype=block.array.dtype)
    z, y, x = (int(v) for v in offset)
    dz, dy, dx = block.shape
    full[z:z + dz, y:y + dy, x:x + dx] = block.array
    if like is not None:
        return Volume.from_array(full, like=like)
    origin = block.index_to_world(-np.array([x, y, z], dtype=float))
    return Volume(full, block.spacing, tuple(origin), block.direction.copy())
