"""Coarse anatomy from CT without a model: body outline, lungs, body region per axial plane, laterality.

Good enough to say "right lung" or "left chest wall region" in a template finding, never presented as more than
that: findings say "region estimated from CT". Regions: head_neck (above the lung apices), chest (planes with
lung), abdomen_pelvis (below the lung bases). Arrays are on the PET grid (z, y, x).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..volume import Volume

BODY_HU = -300.0      # soft tissue and bone; fat (-100) included, air and lung (-800) excluded
LUNG_HU = -500.0
MIDLINE_MM = 15.0     # within this distance of the body's mid-sagittal line a lesion is "midline"
REGION_WORDS = {"head_neck": "head/neck", "chest": "chest", "abdomen_pelvis": "abdomen/pelvis"}


def _filled_rows_cols(body: np.ndarray) -> np.ndarray:
    """Per plane, fill each row and column between its first and last body voxel (closes lungs and bowel gas)."""
    def span(a, axis):
        idx = np.arange(a.shape[axis])
        shape = [1, 1, 1]
        shape[axis] = -1
        idx = idx.reshape(shape)
        first = np.where(a, idx, a.shape[axis]).min(axis=axis, keepdims=True)
        last = np.where(a, idx, -1).max(axis=axis, keepdims=True)
        return (idx >= first) & (idx <= last)

    return span(body, 2) & span(body, 1)


@dataclass
class BodyMap:
    """Per-plane facts from CT on the PET grid."""

    lung_area_mm2: np.ndarray       # (nz,)
    midline_x_lps: np.ndarray       # (nz,) body centre in LPS x, NaN where no body
    lung: np.ndarray                # (z, y, x) bool
    superior_sign: int              # +1 when k increases toward the head

    def region_of_plane(self, k: int) -> str:
        has_lung = self.lung_area_mm2 > 500.0
        if not has_lung.any():
            return "unknown"
        ks = np.flatnonzero(has_lung)
        top, bottom = (ks.max(), ks.min()) if self.superior_sign > 0 else (ks.min(), ks.max())
        if has_lung[k] or min(top, bottom) <= k <= max(top, bottom):
            return "chest"
        above = (k > top) if self.superior_sign > 0 else (k < top)
        return "head_neck" if above else "abdomen_pelvis"

    def in_lung(self, zyx, radius: int = 2) -> bool:
        """True when most of the neighbourhood around a voxel is lung parenchyma."""
        z, y, x = (int(v) for v in zyx)
        cube = self.lung[max(z - radius, 0):z + radius + 1, max(y - radius, 0):y + radius + 1,
                         max(x - radius, 0):x + radius + 1]
        return bool(cube.mean() > 0.4)


def body_map(ct: Volume) -> BodyMap:
    """Compute lungs, body midline and lung area per plane from a CT on the PET grid."""
    hu = ct.array
    body = hu > BODY_HU
    filled = _filled_rows_cols(body)
    lung = filled & (hu < LUNG_HU)
    pixel_mm2 = ct.spacing[0] * ct.spacing[1]
    xs = np.arange(hu.shape[2])
    counts = filled.sum(axis=(1, 2))
    mean_i = np.where(counts > 0, (filled.sum(axis=1) * xs).sum(axis=1) / np.maximum(counts, 1), np.nan)
    # mid-line in LPS x of each plane (index → world along the x axis at the plane's centre)
    mid = np.full(hu.shape[0], np.nan)
    ok = np.isfinite(mean_i)
    if ok.any():
        ijk = np.stack([mean_i[ok], np.full(ok.sum(), hu.shape[1] / 2), np.flatnonzero(ok)], axis=1)
        mid[ok] = ct.index_to_world(ijk)[:, 0]
    return BodyMap(lung.sum(axis=(1, 2)) * pixel_mm2, mid, lung, ct.superior_axis_sign())


def laterality(x_lps: float, midline_x_lps: float) -> str:
    """left / right / midline from LPS x (+x is the patient's left)."""
    if not np.isfinite(midline_x_lps):
        midline_x_lps = 0.0
    d = x_lps - midline_x_lps
    if abs(d) < MIDLINE_MM:
        return "midline"
    return "left" if d > 0 else "right"
