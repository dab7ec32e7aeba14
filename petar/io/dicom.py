"""DICOM series discovery and reading, without SimpleITK/GDCM, so that per-slice headers stay available for SUV.

Why our own reader: SUV needs every slice's header (Units, times, per-slice RescaleSlope), and clear one-line errors for
the ways real series go wrong (several series in one folder, missing or duplicate slices, mixed orientations).
The geometry follows the ITK/GDCM convention, so a volume read here lies exactly where `SimpleITK.ImageSeriesReader`
puts the same series: slices sorted by position along the normal (row × column direction cosines), origin the first
sorted slice's ImagePositionPatient, direction columns (row cosines, column cosines, normal), LPS world.
Messages name series by UID and description only: never patient identifiers, never file paths.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from ..errors import InputError
from ..volume import Volume

_SPACING_TOL = 0.01   # relative: slice gaps may differ from their mean by 1% (DS rounding), no more
_ORIENT_TOL = 1e-4    # direction cosines of all slices must agree this well
# files never worth a forced DICOM parse (slow on large binaries, and never DICOM)
_NOT_DICOM = (".txt", ".json", ".csv", ".xml", ".html", ".md", ".pdf", ".png", ".jpg", ".jpeg", ".nii", ".gz",
              ".nrrd", ".mha", ".mhd", ".raw", ".zip", ".py", ".seg.nrrd", ".npy", ".npz", ".h5", ".pkl", ".log")


@dataclass
class SeriesInfo:
    """One image series found in a folder; `files` are sorted by slice position along the normal (ascending)."""

    series_uid: str
    modality: str
    n_files: int
    description: str
    files: list = field(default_factory=list)

    def label(self) -> str:
        """'UID (PT, 8 files, 'PET SWB 8MIN')': how messages name a series."""
        return f"{self.series_uid} ({self.modality or '?'}, {self.n_files} files, {self.description!r})"


# ---- discovery ----------------------------------------------------------------------------------------------------
def _walk(directory) -> list:
    """All regular files below `directory`, hidden ones skipped, in a stable order."""
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return out


def _has_preamble(path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path):
    """The header of a DICOM file, or None when it is not one (files without the 'DICM' preamble are tried too)."""
    force = not _has_preamble(path)
    if force and path.lower().endswith(_NOT_DICOM):
        return None
    try:
        with warnings.catch_warnings():   # forced parses of non-DICOM files warn about VRs: noise, not news
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=force)
    except Exception:  # noqa: BLE001 — parsing arbitrary bytes fails in many ways; all of them mean "not DICOM"
        return None
    if force and "SOPInstanceUID" not in ds:   # forced parses of non-DICOM files yield junk without a UID
        return None
    return ds


def is_dicom_dir(path) -> bool:
    """True when `path` is a directory holding at least one DICOM file (checked recursively, stops at the first)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return any(_has_preamble(f) or _read_header(f) is not None for f in _walk(path))


def _normal(ds) -> np.ndarray | None:
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    row, col = np.array(iop[:3], dtype=float), np.array(iop[3:], dtype=float)
    return np.cross(row, col)


def _position_along_normal(ds) -> float:
    """Sort key for slices: distance along the normal, as GDCM's IPP sorter; InstanceNumber if geometry is absent."""
    n, ipp = _normal(ds), ds.get("ImagePositionPatient")
    if n is not None and ipp is not None and len(ipp) == 3:
        return float(np.dot(n, np.array(ipp, dtype=float)))
    return float(ds.get("InstanceNumber", 0) or 0)


def find_series(directory) -> list:
    """Every image series below `directory` (files with Rows/Columns; DICOMDIR, SR and other non-images skipped)."""
    groups: dict = {}
    for f in _walk(directory):
        ds = _read_header(f)
        if ds is None or "SeriesInstanceUID" not in ds or "Rows" not in ds:
            continue
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((ds, f))
    out = []
    for uid, items in groups.items():
        items.sort(key=lambda t: (_position_along_normal(t[0]), t[1]))
        first = items[0][0]
        out.append(SeriesInfo(uid, str(first.get("Modality", "") or ""), len(items),
                              str(first.get("SeriesDescription", "") or ""), [f for _, f in items]))
    out.sort(key=lambda s: (s.modality, s.description, s.series_uid))
    return out


def choose_series(directory, series_uid=None, modality=None) -> SeriesInfo:
    """The one series to read: the UID asked for, else the only series (of `modality`); never a silent pick."""
    all_series = find_series(directory)
    if not all_series:
        raise InputError("no DICOM images found in the folder: give the folder of one DICOM image series")
    listing = "; ".join(s.label() for s in all_series)
    if series_uid is not None:
        hits = [s for s in all_series if s.series_uid == str(series_uid).strip()]
        if not hits:
            raise InputError(f"series {series_uid} is not in the folder, which holds {len(all_series)} series: "
                             f"{listing} — choose one with --series UID")
        if modality and hits[0].modality.upper() != str(modality).upper():
            raise InputError(f"series {hits[0].label()} is {hits[0].modality or 'of unknown modality'}, "
                             f"not {str(modality).upper()}: choose a {str(modality).upper()} series with --series UID")
        return hits[0]
    candidates = all_series
    what = "series"
    if modality:
        candidates = [s for s in all_series if s.modality.upper() == str(modality).upper()]
        what = f"{str(modality).upper()} series"
        if not candidates:
            raise InputError(f"the folder holds no {what}, only {len(all_series)} other series: {listing} "
                             "— give the folder of the right series")
    if len(candidates) > 1:
        raise InputError(f"the folder holds {len(candidates)} {what}: "
                         f"{'; '.join(s.label() for s in candidates)} — choose one with --series UID")
    return candidates[0]


# ---- reading ------------------------------------------------------------------------------------------------------
def _pixels(ds) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises several types for missing decoders; all mean "cannot decode"
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(ts, "name", ts) or "unknown"
        raise InputError(f"cannot decode the pixel data (transfer syntax {name}: {type(exc).__name__}): "
                         "install pylibjpeg/pylibjpeg-libjpeg or decompress the series (e.g. dcmdjpeg)") from None


def _geometry(headers) -> tuple:
    """(row cosines, column cosines, normal, pixel spacing (x, y)) after checking that every slice agrees."""
    first = headers[0]
    for tag, name in (((0x0020, 0x0037), "ImageOrientationPatient"), ((0x0020, 0x0032), "ImagePositionPatient"),
                      ((0x0028, 0x0030), "PixelSpacing")):
        if any(name not in ds for ds in headers):
            raise InputError(f"the DICOM images lack {name} ({tag[0]:04X},{tag[1]:04X}): cannot place the slices "
                             "in space; convert the series with a tool that writes geometry (e.g. dcm2niix)")
    iop = np.array(first.ImageOrientationPatient, dtype=float)
    for ds in headers[1:]:
        if not np.allclose(np.array(ds.ImageOrientationPatient, dtype=float), iop, atol=_ORIENT_TOL):
            raise InputError("the slices have different ImageOrientationPatient (0020,0037): the series mixes "
                             "orientations (a localizer or reformat?); choose a series of parallel axial slices")
        for name in ("Rows", "Columns"):
            if ds.get(name) != first.get(name):
                raise InputError(f"the slices differ in {name}: the series mixes image sizes; choose another series")
        if not np.allclose(np.array(ds.PixelSpacing, dtype=float), np.array(first.PixelSpacing, dtype=float),
                           rtol=1e-4):
            raise InputError("the slices differ in PixelSpacing (0028,0030): choose a series with one pixel size")
    if "NumberOfFrames" in first and int(first.NumberOfFrames or 1) > 1:
        raise InputError("multi-frame (enhanced) DICOM is not supported: export the series as one file per slice")
    row, col = iop[:3], iop[3:]
    if min(np.linalg.norm(row), np.linalg.norm(col)) < 1e-6 or abs(np.dot(row, col)) > 1e-3:
        raise InputError("ImageOrientationPatient (0020,0037) does not hold two orthogonal unit vectors: "
                         "the header is corrupt; re-export the series")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    ps = [float(v) for v in first.PixelSpacing]   # DICOM: (between rows, between columns) = (y, x)
    return row, col, np.cross(row, col), (ps[1], ps[0])


def _slice_spacing(positions: np.ndarray, normal, headers) -> float:
    """Uniform spacing along the normal from sorted positions; duplicates, gaps and shear are errors."""
    d = positions @ normal
    if len(d) == 1:
        ds = headers[0]
        return float(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0)
    gaps = np.diff(d)
    if np.any(gaps < 1e-3):
        k = int(np.argmin(gaps))
        raise InputError(f"{int(np.sum(gaps < 1e-3)) + 1} images share a slice position (at {d[k]:.2f} mm along the "
                         "slice normal): the series holds several time frames, gates or copies; "
                         "split it or choose another series")
    dz = float((d[-1] - d[0]) / (len(d) - 1))
    if np.max(np.abs(gaps - dz)) > _SPACING_TOL * dz:
        raise InputError(f"the slice spacing is not uniform (gaps from {gaps.min():.3f} to {gaps.max():.3f} mm, "
                         f"mean {dz:.3f} mm): slices are missing or the series mixes bed positions; "
                         "give a complete series")
    in_plane = (positions - positions[0]) - np.outer(d - d[0], normal)
    if np.max(np.linalg.norm(in_plane, axis=1)) > _SPACING_TOL * dz + 1e-3:
        raise InputError("the slices are not stacked along their normal (ImagePositionPatient shifts within the "
                         "plane: gantry tilt or sheared acquisition); resample the series to an orthogonal grid first")
    return dz


def read_dicom_volume(directory, series_uid=None, modality=None) -> tuple:
    """Read one series as a float32 `Volume` (RescaleSlope/Intercept applied slice by slice) and its headers.

    Returns (volume, headers): headers in array k order (ascending position along the normal), pixel data dropped.
    """
    info = choose_series(directory, series_uid=series_uid, modality=modality)
    headers, planes = [], []
    for f in info.files:
        try:
            ds = pydicom.dcmread(f, force=not _has_preamble(f))
        except Exception:  # noqa: BLE001 — a file that parsed as a header moments ago is now unreadable
            raise InputError(f"a file of series {info.series_uid} cannot be read: check the folder "
                             "(truncated copy?)") from None
        if "PixelData" not in ds:
            raise InputError(f"an image of series {info.series_uid} has no pixel data: give a complete series")
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise InputError("the series holds colour images (SamplesPerPixel > 1): give a grayscale PET or CT series")
        planes.append(ds)
    row, col, normal, (sx, sy) = _geometry(planes)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in planes])
    order = np.argsort(positions @ normal, kind="stable")
    planes = [planes[i] for i in order]
    positions = positions[order]
    dz = _slice_spacing(positions, normal, planes)
    rows, cols = int(planes[0].Rows), int(planes[0].Columns)
    array = np.empty((len(planes), rows, cols), dtype=np.float32)
    for k, ds in enumerate(planes):
        pix = _pixels(ds)
        if pix.shape != (rows, cols):
            raise InputError(f"an image of series {info.series_uid} has {pix.shape} pixels, not {(rows, cols)}: "
                             "give a series of single-frame slices")
        slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        slope = 1.0 if slope in (None, "") else float(slope)
        intercept = 0.0 if intercept in (None, "") else float(intercept)
        array[k] = pix.astype(np.float64) * slope + intercept
        del ds.PixelData   # headers only from here on: keeps memory to one copy of the image
        headers.append(ds)
    direction = np.column_stack([row, col, normal])
    volume = Volume(array, (sx, sy, dz), tuple(positions[0]), direction)
    return volume, headers
