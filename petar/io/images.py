"""`read_volume`, `read_pet`, `read_mask`: files or DICOM series folders → validated `Volume`s.

Validation lives here, once, so every engine and the CLI can trust what they get: a 3D scalar image, finite values,
a PET that is plausibly SUV (not HU, not Bq/mL), labels that are integers on the PET grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .files import read_image_volume
from .grid import labels_onto_grid

PET_UNITS = ("suv", "bqml")
_MIN_SUV = -0.5        # reconstruction noise can dip slightly below zero; anything lower is not an SUV image
_MAX_PLAUSIBLE_SUV = 1000.0


def _is_dicom_dir(path: Path) -> bool:
    from .dicom import is_dicom_dir

    return path.is_dir() and is_dicom_dir(path)


def _check_3d(volume: Volume, what: str) -> Volume:
    if min(volume.shape) < 2:
        raise InputError(f"the {what} is a single slice {volume.size}: a 3D volume is needed (give the whole series)")
    return volume


def read_volume(path, series_uid=None) -> Volume:
    """Any scalar 3D image (CT, PET without conversion) from a file or a DICOM series folder."""
    path = Path(path)
    if path.is_dir():
        if not _is_dicom_dir(path):
            raise InputError(f"{path} holds no DICOM files: give an image file or a DICOM series folder")
        from .dicom import read_dicom_volume

        volume, _ = read_dicom_volume(path, series_uid=series_uid)
    else:
        volume = read_image_volume(path)
    return _check_3d(volume, "image")


def validate_pet(pet: Volume) -> Volume:
    """Raise InputError unless `pet` is a finite, plausibly-SUV 3D volume; return it as float32."""
    _check_3d(pet, "PET")
    arr = np.asarray(pet.array, dtype=np.float32)
    finite = np.isfinite(arr)
    if not finite.all():
        n = int((~finite).sum())
        raise InputError(f"the PET has {n} NaN/Inf voxel(s): re-export it, or fill them (e.g. with 0) first")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < _MIN_SUV:
        hint = " — it looks like a CT (HU)" if lo < -500 else ""
        raise InputError(f"the PET has negative values down to {lo:.3g}{hint}: SUV cannot be negative; give the "
                         "SUV PET image")
    if hi > _MAX_PLAUSIBLE_SUV:
        raise InputError(f"the PET maximum is {hi:.4g}, not a plausible SUV — if it is in Bq/mL pass --units bqml "
                         "with --weight, --dose, --injection-time, --scan-time and --half-life")
    if hi <= 0:
        raise InputError("the PET is empty (all zeros): check the file")
    return Volume.from_array(arr, like=pet) if arr is not pet.array else pet


def _bqml_file_to_suv(volume: Volume, suv_type: str, overrides: dict) -> Volume:
    from .suv import SUVParameters, parse_time, suv_factor

    need = {"weight": "--weight KG", "dose": "--dose MBQ", "injection_time": "--injection-time HH:MM:SS",
            "scan_time": "--scan-time HH:MM:SS", "half_life": "--half-life SECONDS"}
    missing = [flag for key, flag in need.items() if overrides.get(key) in (None, "")]
    if missing:
        raise InputError(f"a Bq/mL PET file has no SUV tags: pass {', '.join(missing)}")
    injection = parse_time(overrides["injection_time"])
    scan = parse_time(overrides["scan_time"], reference_date=injection.date())
    if scan < injection:  # injection before midnight, scan after
        from datetime import timedelta

        scan += timedelta(days=1)
    params = SUVParameters(weight_kg=float(overrides["weight"]), height_m=overrides.get("height"),
                           sex=overrides.get("sex"), dose_bq=float(overrides["dose"]) * 1e6,
                           half_life_s=float(overrides["half_life"]), injection_datetime=injection,
                           scan_datetime=scan, decay_correction="START")
    factor = suv_factor(params, suv_type)
    return Volume.from_array(volume.array.astype(np.float32) * np.float32(factor), like=volume)


def read_pet(path, suv_type: str = "bw", units: str | None = None, series_uid=None, **overrides) -> Volume:
    """PET in SUV (g/mL for bw/lbm/ibw) from a DICOM series folder (converted from its tags) or an image file.

    Files (NIfTI/NRRD/MHA) are taken as SUV already unless `units="bqml"`, which needs the overrides `weight` (kg),
    `dose` (MBq), `injection_time`, `scan_time` and `half_life` (s). For DICOM, the same overrides replace tags.
    """
    from .suv import SUV_TYPES

    if suv_type not in SUV_TYPES:
        raise InputError(f"unknown SUV type {suv_type!r}: use one of {', '.join(SUV_TYPES)}")
    if units is not None and units not in PET_UNITS:
        raise InputError(f"unknown PET units {units!r}: use 'suv' or 'bqml'")
    path = Path(path)
    if path.is_dir():
        if not _is_dicom_dir(path):
            raise InputError(f"{path} holds no DICOM files: give a PET image file or a PET DICOM series folder")
        if units == "suv":
            raise InputError("--units suv applies to image files; a DICOM PET is converted from its tags")
        from .suv import read_dicom_pet

        pet = read_dicom_pet(path, suv_type=suv_type, series_uid=series_uid, **overrides)
    else:
        pet = read_image_volume(path)
        if units == "bqml":
            pet = _bqml_file_to_suv(_check_3d(pet, "PET"), suv_type, overrides)
        elif suv_type != "bw":
            raise InputError(f"SUV{suv_type} needs the PET in Bq/mL (--units bqml) or as DICOM: an SUV file is "
                             "already normalised")
    return validate_pet(pet)


def read_mask(path, reference: Volume) -> Volume:
    """Lesion label image (0 background, 1..N lesions) on the reference (PET) grid, as uint16."""
    raw = read_volume(path)
    arr = raw.array
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError("the mask has non-integer values (a probability map?): threshold it into labels first")
    if arr.min() < 0:
        raise InputError("the mask has negative labels: labels must be 0 (background) or 1..N")
    if arr.max() > 65535:
        raise InputError("the mask has labels above 65535: relabel it")
    raw = Volume.from_array(arr.astype(np.uint16), like=raw)
    return labels_onto_grid(raw, reference)


def labels_in(mask: Volume) -> list[int]:
    """Sorted non-zero labels present in a mask."""
    return [int(v) for v in np.unique(mask.array) if v != 0]
