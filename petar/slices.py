"""Axial slice numbers as reports use them ("image 142") ↔ array plane index k.

DESIGN.md §2: numbers are 1-based and, by default, counted from the superior end of the volume (PACS numbering of
head-first whole-body series). With k = 0 the most inferior plane that is slice = nz − k. Which end of the array is
superior is read from the direction matrix, so a volume stored feet-first or head-first numbers the same anatomy
the same way. `slice_origin="inferior"` counts from the feet instead.
"""
from __future__ import annotations

from .errors import InputError
from .volume import Volume

SLICE_ORIGINS = ("superior", "inferior")


def _check_origin(slice_origin: str) -> str:
    if slice_origin not in SLICE_ORIGINS:
        raise InputError(f"unknown slice origin {slice_origin!r}: use 'superior' or 'inferior'")
    return slice_origin


def _k_counts_from_top(volume: Volume, slice_origin: str) -> bool:
    """True when slice 1 is array plane k = 0."""
    k0_is_superior = volume.superior_axis_sign() < 0
    return k0_is_superior == (_check_origin(slice_origin) == "superior")


def index_to_slice(volume: Volume, k: int, slice_origin: str = "superior") -> int:
    """Array plane index k (0-based, z axis of the array) → 1-based axial slice number."""
    nz = volume.shape[0]
    k = int(k)
    if not 0 <= k < nz:
        raise InputError(f"plane index {k} is outside the volume (0..{nz - 1})")
    return k + 1 if _k_counts_from_top(volume, slice_origin) else nz - k


def slice_to_index(volume: Volume, slice_number: int, slice_origin: str = "superior") -> int:
    """1-based axial slice number → array plane index k; out-of-range numbers are an InputError."""
    nz = volume.shape[0]
    n = int(slice_number)
    if not 1 <= n <= nz:
        raise InputError(f"slice {n} is outside this volume, which has axial slices 1..{nz} "
                         f"(counted from the {slice_origin} end); check the slice number or the slice origin")
    return n - 1 if _k_counts_from_top(volume, slice_origin) else nz - n
