"""Putting one volume on another's grid, only when both describe the same physical space.

Masks drawn on the CT grid, or exported by another tool, are common; resampling them nearest-neighbour onto the PET
grid is safe when they cover the same anatomy. A mask from another scan (another frame of reference, a cropped
export) would be silently misplaced — so the physical extents are compared first and the caller gets an error
that names the problem.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..volume import Volume


def world_bounds(volume: Volume):
    """Axis-aligned LPS bounding box (min, max) of the grid's outer voxel edges."""
    c = volume.corners("lps")
    return c.min(axis=0), c.max(axis=0)


def overlap_fraction(moving: Volume, fixed: Volume) -> float:
    """Fraction of `moving`'s bounding-box volume that lies inside `fixed`'s bounding box (0..1)."""
    (alo, ahi), (blo, bhi) = world_bounds(moving), world_bounds(fixed)
    inter = np.clip(np.minimum(ahi, bhi) - np.maximum(alo, blo), 0, None)
    return float(np.prod(inter) / np.prod(ahi - alo))


def resample_like(moving: Volume, reference: Volume, nearest: bool = False, default=0.0) -> Volume:
    """`moving` sampled on `reference`'s grid (identity transform, world coordinates)."""
    import SimpleITK as sitk

    if moving.same_grid(reference):
        return Volume.from_array(moving.array, like=reference)
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(moving.to_sitk(), reference.to_sitk(), sitk.Transform(), interp, float(default),
                        sitk.sitkUnknown if nearest else sitk.sitkFloat32)
    return Volume.from_array(sitk.GetArrayFromImage(out), like=reference)


def labels_onto_grid(mask: Volume, reference: Volume, what: str = "mask") -> Volume:
    """Label image → reference grid (nearest neighbour), refusing when labels would be lost or misplaced."""
    if mask.same_grid(reference):
        return Volume.from_array(mask.array, like=reference)
    if overlap_fraction(mask, reference) == 0.0:
        raise InputError(f"the {what} and the PET do not overlap in space (different scans or frames of "
                         "reference?): give a mask drawn on this PET or its CT")
    before = np.unique(mask.array[mask.array > 0])
    # Foreground outside the PET field of view would be cut off silently: refuse instead.
    kji = np.argwhere(mask.array > 0)
    if kji.size:
        pts = mask.index_to_world(kji[:, ::-1].astype(float))
        ijk = reference.world_to_index(pts)
        inside = np.all((ijk > -0.5) & (ijk < np.asarray(reference.size) - 0.5), axis=1)
        if inside.mean() < 0.99:
            raise InputError(f"{100 * (1 - inside.mean()):.0f}% of the {what}'s foreground lies outside the PET "
                             "volume: the two do not cover the same space; give a mask drawn on this PET or its CT")
    out = resample_like(mask, reference, nearest=True)
    after = np.unique(out.array[out.array > 0])
    lost = sorted(set(before.tolist()) - set(after.tolist()))
    if lost:
        raise InputError(f"{what} label(s) {', '.join(map(str, lost))} vanish when put on the PET grid (smaller than "
                         "one PET voxel): draw them larger or on the PET itself")
    return out
