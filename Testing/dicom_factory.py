"""Small PET DICOM series on the real, anonymised Siemens Biograph Vision Quadra header shipped by medimages4tests.

Why: no package ships a real PET series with pixels, but a real header carries every SUV tag the way a scanner writes
them. We keep that header, shrink the images (default 8 slices of 32×32, 4 mm pixels, the header's 2 mm slice gap),
and store a known SUV pattern (a sphere of SUV 8 on background 1, plus one SUV 4 voxel that breaks every symmetry)
as uint16 with a different RescaleSlope on every slice. The SUVbw factor used to encode is computed here by hand from
the header values, independently of petar. Tests can edit tags (change or delete) before the files are written.
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

try:  # medimages4tests imports openneuro at module level; a stub is enough for the header modules
    import openneuro  # noqa: F401
except ImportError:
    sys.modules.setdefault("openneuro", types.ModuleType("openneuro"))
from medimages4tests.dummy.dicom.pet.wholebody.siemens.biograph_vision import vr20b  # noqa: E402

SPHERE_SUV, BACKGROUND_SUV, HOTSPOT_SUV = 8.0, 1.0, 4.0
SPHERE_RADIUS_MM = 6.0
HOTSPOT = (1, 5, 3)            # (file index i, row y, column x) of the single SUV-4 voxel
IDENTIFIERS = ("Session Identifier", "Session Label", "19800228")   # the header's PatientName, PatientID, BirthDate
# Keywords that live in the RadiopharmaceuticalInformationSequence item, so `modify` can reach them by name.
RP_KEYWORDS = {"RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime", "RadionuclideTotalDose",
               "RadionuclideHalfLife", "RadionuclidePositronFraction", "Radiopharmaceutical",
               "RadiopharmaceuticalStopDateTime"}


def _tm_seconds(text: str) -> float:
    t = datetime.strptime(str(text).split(".")[0], "%H%M%S")
    return t.hour * 3600 + t.minute * 60 + t.second


def header_values() -> dict:
    """The SUV-relevant values of the real header, read straight from medimages4tests' JSON."""
    hdr = vr20b.constant_hdr
    rp = hdr["00540016"]["Value"][0]
    return {"weight_kg": float(hdr["00101030"]["Value"][0]), "height_m": float(hdr["00101020"]["Value"][0]),
            "sex": hdr["00100040"]["Value"][0], "dose_bq": float(rp["00181074"]["Value"][0]),
            "half_life_s": float(rp["00181075"]["Value"][0]), "start_time": rp["00181072"]["Value"][0],
            "series_time": hdr["00080031"]["Value"][0], "slope": float(hdr["00281053"]["Value"][0])}


def reference_factor(half_life_s: float | None = None, norm_g: float | None = None) -> float:
    """Hand-computed SUV factor of the header: norm · 2^(Δt/T½) / D, Δt = SeriesTime − injection StartTime.

    `norm_g` defaults to the body weight in grams (SUVbw); pass LBM/IBW grams or BSA cm² for the other types."""
    v = header_values()
    dt = _tm_seconds(v["series_time"]) - _tm_seconds(v["start_time"])
    t_half = v["half_life_s"] if half_life_s is None else half_life_s
    norm = v["weight_kg"] * 1000.0 if norm_g is None else norm_g
    return norm * 2.0 ** (dt / t_half) / v["dose_bq"]


@dataclass
class PetSeries:
    directory: Path
    files: list                  # in writing order: i = 0..n-1, head to feet as the scanner wrote them
    suv: np.ndarray              # true SUVbw, (z, y, x) with z ascending along the slice normal (= array k order)
    factor: float                # SUVbw per Bq/mL used to encode the pixels
    series_uid: str
    slopes: list = field(default_factory=list)
    datasets: list = field(default_factory=list)


def _slice_json(i: int) -> dict:
    hdr = dict(vr20b.constant_hdr)
    hdr.update({key: values[str(i)] for key, values in vr20b.varying_hdr.items() if str(i) in values})
    for key in vr20b.collated_data:
        hdr.pop(key, None)
    return hdr


def _apply(ds, modify, i: int) -> None:
    if modify is None:
        return
    if callable(modify):
        modify(ds, i)
        return
    for keyword, value in modify.items():
        target = ds.RadiopharmaceuticalInformationSequence[0] if keyword in RP_KEYWORDS else ds
        if value is None:
            if keyword in target:
                delattr(target, keyword)
        else:
            setattr(target, keyword, value)


def pet_header(modify=None, i: int = 0) -> pydicom.Dataset:
    """One slice's header (no pixels) with `modify` applied: for tests of the SUV rules alone."""
    ds = pydicom.Dataset.from_json(_slice_json(i))
    _apply(ds, modify, i)
    return ds


def suv_pattern(ipp, size: int, pixel_mm: float, centre) -> np.ndarray:
    """True SUV of one slice whose first pixel is at `ipp` (identity orientation)."""
    x = ipp[0] + pixel_mm * np.arange(size)
    y = ipp[1] + pixel_mm * np.arange(size)
    r2 = (x[None, :] - centre[0]) ** 2 + (y[:, None] - centre[1]) ** 2 + (ipp[2] - centre[2]) ** 2
    return np.where(r2 <= SPHERE_RADIUS_MM ** 2, SPHERE_SUV, BACKGROUND_SUV)


def make_pet_series(directory, n_slices: int = 8, size: int = 32, pixel_mm: float = 4.0, modify=None,
                    series_uid: str | None = None, prefix: str = "pt", factor: float | None = None,
                    description: str | None = None, slopes=None) -> PetSeries:
    """Write a PET series to `directory` and return what was written, with the true SUV.

    `modify` is a dict {keyword: value, or None to delete} (RadiopharmaceuticalInformationSequence keywords are
    applied to its item) or a callable(ds, i); it runs after the pixels are encoded with `factor` (default: the
    header's own SUVbw factor), so tests can break or change tags without changing the stored pixels.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    factor = reference_factor() if factor is None else factor
    series_uid = series_uid or generate_uid()
    slopes = [0.2 * (1 + 0.15 * i) for i in range(n_slices)] if slopes is None else list(slopes)
    jsons = [_slice_json(i) for i in range(n_slices)]
    ipps = [np.array(j["00200032"]["Value"], dtype=float) for j in jsons]
    centre = (ipps[0][0] + pixel_mm * (size - 1) / 2, ipps[0][1] + pixel_mm * (size - 1) / 2,
              float(np.mean([p[2] for p in ipps])))
    files, truth, datasets = [], [], []
    for i, js in enumerate(jsons):
        ds = pydicom.Dataset.from_json(js)
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        if description is not None:
            ds.SeriesDescription = description
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [pixel_mm, pixel_mm]
        ds.NumberOfSlices = n_slices
        suv = suv_pattern(ipps[i], size, pixel_mm, centre)
        if i == HOTSPOT[0]:
            suv[HOTSPOT[1], HOTSPOT[2]] = HOTSPOT_SUV
        stored = np.round(suv / factor / slopes[i])
        if stored.max() > 65535:
            raise ValueError("slope too small for uint16: raise the slopes")
        pixels = stored.astype(np.uint16)
        ds.RescaleSlope, ds.RescaleIntercept = f"{slopes[i]:.10g}", "0"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(pixels.min()), int(pixels.max())
        ds.PixelData = pixels.tobytes()
        _apply(ds, modify, i)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"{prefix}{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        truth.append(suv)
        files.append(path)
        datasets.append(ds)
    order = np.argsort([p[2] for p in ipps], kind="stable")   # identity orientation: normal is +z
    return PetSeries(directory, files, np.stack([truth[k] for k in order]), factor, series_uid,
                     [float(s) for s in slopes], datasets)
