"""Click-to-segment: a clinician clicks a lesion; return its 3D mask on the PET grid.

The click is snapped to the hottest voxel within `snap_mm` (7 mm, as PET tools do: nobody clicks the exact
maximum), then one of three thresholds delineates the region connected to that seed:
  percent   — `percent` % of the lesion's SUVmax (41 % by default, EANM);
  fixed     — SUV ≥ `threshold` (2.5 by default);
  adaptive  — Jentzen iterative threshold (PETARSeg weak-label variant, filled to its final threshold;
              see threshold.py).
Everything runs inside a block of `max_radius_mm` around the seed; a region that reaches the block's edge, or grows
past `max_volume_ml`, has leaked into adjacent uptake and is refused with a message saying what to try.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, LeakError
from ..volume import Volume
from .components import component_at
from .morphology import guard_faces, touches_border
from .threshold import iterative_threshold

METHODS = ("percent", "fixed", "adaptive")
POINT_SPACES = ("ras", "lps", "ijk")


@dataclass
class ClickSegmentation:
    mask: Volume                     # uint8 0/1 on the PET grid
    method: str
    threshold: float                 # absolute SUV threshold used
    suv_max: float                   # lesion SUVmax the threshold refers to
    seed_ijk: list                   # snapped seed, ITK order
    clicked_ijk: list                # the click, rounded, ITK order
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"method": self.method, "threshold": round(self.threshold, 4), "suv_max": round(self.suv_max, 4),
                "seed_ijk": self.seed_ijk, "clicked_ijk": self.clicked_ijk, **self.info}


def point_to_index(pet: Volume, point, space: str = "ras") -> np.ndarray:
    """A clicked point → rounded (i, j, k); InputError when it lies outside the volume."""
    if space not in POINT_SPACES:
        raise InputError(f"unknown point space {space!r}: use ras, lps or ijk")
    p = np.asarray(point, dtype=float).reshape(-1)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise InputError(f"a point needs three finite numbers X,Y,Z, got {point!r}")
    ijk = p if space == "ijk" else pet.world_to_index(p, space)
    if not pet.contains_index(ijk):
        raise InputError(f"the point {', '.join(f'{v:g}' for v in p)} ({space.upper()}) is outside the PET volume "
                         f"(grid {pet.size[0]}×{pet.size[1]}×{pet.size[2]}): check the coordinate space (--space)")
    return np.rint(ijk).astype(int)


def _ball_offsets(spacing_xyz, radius_mm: float) -> np.ndarray:
    """(N, 3) zyx offsets of voxels whose centres lie within `radius_mm` (physical distance)."""
    sx, sy, sz = spacing_xyz
    r = [int(np.floor(radius_mm / s)) for s in (sz, sy, sx)]
    zz, yy, xx = np.mgrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    inside = (zz * sz) ** 2 + (yy * sy) ** 2 + (xx * sx) ** 2 <= radius_mm ** 2
    return np.stack([zz[inside], yy[inside], xx[inside]], axis=1)


def snap_to_hottest(pet: Volume, zyx, radius_mm: float) -> np.ndarray:
    """The hottest voxel whose centre is within `radius_mm` of `zyx` (the click itself when radius is 0)."""
    zyx = np.asarray(zyx)
    if not radius_mm or radius_mm <= 0:
        return zyx
    cand = zyx + _ball_offsets(pet.spacing, radius_mm)
    cand = cand[np.all((cand >= 0) & (cand < pet.shape), axis=1)]
    return cand[int(np.argmax(pet.array[tuple(cand.T)]))]


def _block_bounds(pet: Volume, seed, radius_mm: float):
    half = np.array([int(np.ceil(radius_mm / s)) for s in (pet.spacing[2], pet.spacing[1], pet.spacing[0])])
    lo = np.maximum(seed - half, 0)
    hi = np.minimum(seed + half + 1, pet.shape)
    return lo, hi


def _local_background(pet: Volume, seed, half_mm: float = 40.0) -> float:
    """Median body SUV (> 0.1) in a cube around the seed: what the lesion must stand out from."""
    lo, hi = _block_bounds(pet, seed, half_mm)
    cube = pet.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    body = cube[cube > 0.1]
    return float(np.median(body)) if body.size else 0.0


def _leak(reason: str) -> LeakError:
    return LeakError(f"leaked into adjacent uptake ({reason}) — try `fixed` or a smaller radius, or a higher "
                     "--percent")


def click_segment(pet: Volume, point, space: str = "ras", method: str = "percent", percent: float = 41.0,
                  threshold: float = 2.5, snap_mm: float | None = 7.0, max_radius_mm: float = 80.0,
                  max_volume_ml: float = 500.0, min_contrast: float = 1.5,
                  full_connectivity: bool = False) -> ClickSegmentation:
    """Segment the lesion at `point`; see the module docstring. Raises InputError / LeakError with advice."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: use percent, fixed or adaptive")
    if not 0 < percent < 100:
        raise InputError(f"--percent must be between 0 and 100, got {percent:g}")
    clicked = point_to_index(pet, point, space)
    seed = snap_to_hottest(pet, clicked[::-1], snap_mm or 0.0)
    seed_value = float(pet.array[tuple(seed)])
    lo, hi = _block_bounds(pet, seed, max_radius_mm)
    block = pet.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    local = tuple(seed - lo)
    info: dict = {}
    snapped_note = f"within {snap_mm:g} mm of the click" if snap_mm else "at the click"

    if method != "fixed" and _local_background(pet, seed) <= 0.0:   # no voxel above SUV 0.1 within 40 mm: air
        raise InputError(f"nothing hot near the click: no uptake within 40 mm (the hottest SUV {snapped_note} is "
                         f"{seed_value:.2f}) — the point is outside the body; click on the lesion")
    if method == "fixed":
        if seed_value < threshold:
            raise InputError(f"nothing hot near the click: the hottest SUV {snapped_note} is {seed_value:.2f}, below "
                             f"the fixed threshold {threshold:g}; click on the lesion or lower --threshold")
        t, suv_max = float(threshold), seed_value
        region = component_at(block >= t, local, full_connectivity)
    elif method == "percent":
        background = _local_background(pet, seed)
        info["background_suv"] = round(background, 3)
        if seed_value < min_contrast * background or seed_value <= 0:
            raise InputError(f"nothing hot near the click: the hottest SUV {snapped_note} is {seed_value:.2f} against "
                             f"background {background:.2f}; click on the lesion")
        suv_max = seed_value
        for _ in range(10):      # a large lesion's maximum may lie beyond the snap radius: climb to it
            t = percent / 100.0 * suv_max
            region = component_at(block >= t, local, full_connectivity)
            if not region[local]:
                raise _leak("it merges with hotter uptake nearby")
            region_max = float(block[region].max())
            if region_max <= suv_max:
                break
            suv_max = region_max
    else:
        result = iterative_threshold(block, local, seed_value, pet.voxel_volume_ml,
                                     guard_faces=guard_faces(lo, hi, pet.shape), fill_to_threshold=True)
        region, t, suv_max = result.mask, result.threshold, seed_value
        info.update(background_suv=round(result.background, 3), iterations=result.iterations)

    if touches_border(region, guard_faces(lo, hi, pet.shape)):
        raise _leak(f"the region reached the {max_radius_mm:g} mm guard around the seed")
    volume_ml = float(region.sum()) * pet.voxel_volume_ml
    if volume_ml > max_volume_ml:
        raise _leak(f"{volume_ml:.0f} mL exceeds the {max_volume_ml:g} mL guard")
    full = np.zeros(pet.shape, dtype=np.uint8)
    full[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = region
    return ClickSegmentation(Volume.from_array(full, like=pet), method, float(t), float(suv_max),
                             [int(v) for v in seed[::-1]], [int(v) for v in clicked], info)


def segment_click(pet: Volume, point, space: str = "ras", method: str = "percent", **kw) -> Volume:
    """The click's lesion mask (uint8 0/1 on the PET grid). `click_segment` also returns threshold and seed."""
    return click_segment(pet, point, space=space, method=method, **kw).mask
