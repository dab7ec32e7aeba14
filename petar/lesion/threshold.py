"""Iterative thresholding with Jentzen's formula, as the PETARSeg weak-label pipeline applies it.

T = (0.078 / V + 0.617 · B / S + 0.316) · S, with S the source (lesion SUVmax, capped at 10), V the contour volume
in mL and B the mean SUV on the outer layer of the contour dilated by a 7×7×7 cube (9×9×9 while the contour has
fewer than 20 voxels and B > 0.8·S). Start: T0 = (0.617·B/S + 0.316)·S applied to the seed's 18-neighbourhood;
then each iteration recomputes B, V and T and adds the 6-neighbours above T — one layer per iteration, never
removing voxels — until |ΔT|/T ≤ 1 %. T/S > 0.9 means the lesion cannot be separated from its background.
Because growth is one layer per iteration, the published variant can stop before the region reaches the converged
threshold's boundary (a 3 cm uniform ball ends a layer short). The grounding rule engine keeps that behaviour to
reproduce the published labels; click segmentation passes `fill_to_threshold=True`, which finishes with the whole
region connected to the contour above the final threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, LeakError
from .components import component_at
from .morphology import EDGE_OFFSETS, dilate, dilate_box, inner_boundary, shift, touches_border

SOURCE_CAP = 10.0


class ThresholdFailure(InputError):
    """The iterative threshold rose above 90 % of SUVmax: too little contrast to delineate the lesion."""


@dataclass
class ItmResult:
    mask: np.ndarray        # boolean, block-shaped
    threshold: float
    background: float
    iterations: int


def jentzen_threshold(volume_ml: float, background: float, source: float) -> float:
    """Absolute threshold (SUV) from Jentzen's formula."""
    return (0.078 / volume_ml + 0.617 * background / source + 0.316) * source


def _background(block: np.ndarray, contour: np.ndarray, extension: int) -> float:
    shell = inner_boundary(dilate_box(contour, extension))
    if not shell.any():
        raise LeakError("the lesion fills the search region — try `fixed` or a smaller radius")
    return float(block[shell].mean())


def _contour_background(block, contour, source) -> float:
    b = _background(block, contour, 3)
    if contour.sum() < 20 and b > 0.8 * source:
        b = _background(block, contour, 4)
    return b


def iterative_threshold(block: np.ndarray, seed_zyx, suv_max: float, voxel_ml: float, tolerance: float = 0.01,
                        max_fraction: float = 0.9, max_iterations: int = 500,
                        guard_faces=(True,) * 6, fill_to_threshold: bool = False) -> ItmResult:
    """Grow a lesion from `seed_zyx` inside `block` (an SUV sub-volume); raise ThresholdFailure or LeakError."""
    seed = tuple(int(v) for v in seed_zyx)
    source = min(float(suv_max), SOURCE_CAP)
    start = np.zeros(block.shape, dtype=bool)
    start[seed] = True
    background = _contour_background(block, start, source)
    threshold = (0.617 * background / source + 0.316) * source
    candidates = start.copy()
    for o in EDGE_OFFSETS:
        candidates |= shift(start, o)
    contour = candidates & (block > threshold)
    change = (float(suv_max) - threshold) / float(suv_max)
    iterations = 0
    while abs(change) > tolerance:
        iterations += 1
        if iterations > max_iterations or touches_border(contour, guard_faces):
            raise LeakError("leaked into adjacent uptake (the adaptive region reached the search limit) — try "
                            "`fixed` or a smaller radius")
        if not contour.any():
            raise ThresholdFailure("the adaptive threshold left no voxel at the seed: click the lesion's hottest "
                                   "point or use `percent`")
        background = _contour_background(block, contour, source)
        previous = threshold
        threshold = jentzen_threshold(contour.sum() * voxel_ml, background, source)
        if threshold / source > max_fraction:
            raise ThresholdFailure(f"adaptive threshold reached {threshold / source:.0%} of SUVmax (lesion too small "
                                   f"or too faint against background {background:.2f}): try `percent` or `fixed`")
        contour |= dilate(contour) & (block > threshold)
        change = (previous - threshold) / previous
    if fill_to_threshold and contour.any():
        contour |= component_at(block > threshold, np.argwhere(contour)[0])
        if touches_border(contour, guard_faces):
            raise LeakError("leaked into adjacent uptake (the adaptive region reached the search limit) — try "
                            "`fixed` or a smaller radius")
    return ItmResult(contour, float(threshold), float(background), iterations)
