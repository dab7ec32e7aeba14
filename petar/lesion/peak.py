"""SUVpeak: the highest mean SUV in a 1 cm³ sphere centred on any lesion voxel.

The sphere (radius 6.2035 mm) is laid on the voxel grid with partial-volume weights — each voxel counts with the
fraction of it that lies inside the sphere — computed by supersampling in millimetres, so anisotropic voxels
(e.g. 4 × 4 × 2 mm) get a true sphere, not an ellipsoid in index space. Near the volume edge the mean is taken over
the part of the sphere inside the image.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

PEAK_RADIUS_MM = (3.0 / (4.0 * np.pi)) ** (1.0 / 3.0) * 10.0   # 1 cm³ sphere: 6.2035 mm


@lru_cache(maxsize=16)
def sphere_kernel(spacing_xyz: tuple, radius_mm: float = PEAK_RADIUS_MM, substep_mm: float = 0.2) -> np.ndarray:
    """(z, y, x) weights in [0, 1]: fraction of each voxel inside a sphere centred on the middle voxel."""
    sx, sy, sz = spacing_xyz
    half = [int(np.ceil(radius_mm / s - 0.5)) for s in (sz, sy, sx)]
    weights = np.zeros([2 * h + 1 for h in half])
    subs = [int(min(24, max(4, np.ceil(s / substep_mm)))) for s in (sz, sy, sx)]
    # sub-sample offsets inside one voxel (mm), per axis
    offs = [((np.arange(n) + 0.5) / n - 0.5) * s for n, s in zip(subs, (sz, sy, sx))]
    r2 = radius_mm ** 2
    for kz in range(-half[0], half[0] + 1):
        dz2 = (kz * sz + offs[0]) ** 2
        for ky in range(-half[1], half[1] + 1):
            dy2 = (ky * sy + offs[1]) ** 2
            dzy = dz2[:, None] + dy2[None, :]
            for kx in range(-half[2], half[2] + 1):
                dx2 = (kx * sx + offs[2]) ** 2
                inside = (dzy[:, :, None] + dx2[None, None, :]) <= r2
                weights[kz + half[0], ky + half[1], kx + half[2]] = inside.mean()
    return weights


def suv_peak(pet: np.ndarray, lesion_zyx: np.ndarray, spacing_xyz, radius_mm: float = PEAK_RADIUS_MM):
    """(SUVpeak, centre (z, y, x)) for lesion voxels given as an (N, 3) index array into `pet`."""
    kernel = sphere_kernel(tuple(float(s) for s in spacing_xyz), float(radius_mm))
    half = np.array(kernel.shape) // 2
    lo = np.maximum(lesion_zyx.min(axis=0) - half, 0)
    hi = np.minimum(lesion_zyx.max(axis=0) + half + 1, pet.shape)
    block = pet[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float64)
    # Pad so every lesion voxel's kernel fits; padded voxels carry no weight (edge of the image).
    pad = [(h, h) for h in half]
    values = np.pad(block, pad)
    valid = np.pad(np.ones_like(block), pad)
    centres = lesion_zyx - lo + half
    acc = np.zeros(len(centres))
    wsum = np.zeros(len(centres))
    for off in np.argwhere(kernel > 0):
        w = kernel[tuple(off)]
        idx = centres + off - half
        pick = (idx[:, 0], idx[:, 1], idx[:, 2])
        acc += w * values[pick]
        wsum += w * valid[pick]
    means = acc / wsum
    best = int(np.argmax(means))
    return float(means[best]), tuple(int(v) for v in lesion_zyx[best])
