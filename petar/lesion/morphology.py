"""Small numpy-only morphology on boolean blocks (Slicer's Python has no scipy).

Blocks are (z, y, x) boolean arrays cut around a lesion; everything outside a block counts as background.
"""
from __future__ import annotations

import numpy as np


def shift(a: np.ndarray, offset) -> np.ndarray:
    """`a` moved by `offset` voxels (dz, dy, dx), zero-filled: out[p] = a[p - offset]."""
    out = np.zeros_like(a)
    src, dst = [], []
    for d, n in zip(offset, a.shape):
        if d >= 0:
            src.append(slice(0, n - d))
            dst.append(slice(d, n))
        else:
            src.append(slice(-d, n))
            dst.append(slice(0, n + d))
    out[tuple(dst)] = a[tuple(src)]
    return out


FACE_OFFSETS = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
EDGE_OFFSETS = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
                if 0 < abs(a) + abs(b) + abs(c) < 3]          # the 18-neighbourhood
FULL_OFFSETS = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]


def dilate(a: np.ndarray, offsets=FACE_OFFSETS) -> np.ndarray:
    """One-step dilation with the given neighbour offsets (default: 6-neighbourhood)."""
    out = a.copy()
    for o in offsets:
        out |= shift(a, o)
    return out


def dilate_box(a: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by a (2r+1)³ cube (Chebyshev distance ≤ r), separable along each axis."""
    out = a
    for axis in range(3):
        acc = out.copy()
        for d in range(1, radius + 1):
            for sign in (1, -1):
                o = [0, 0, 0]
                o[axis] = sign * d
                acc |= shift(out, o)
        out = acc
    return out


def inner_boundary(a: np.ndarray) -> np.ndarray:
    """Voxels of `a` with at least one 6-neighbour outside `a`."""
    eroded = a.copy()
    for o in FACE_OFFSETS:
        eroded &= shift(a, o)
    return a & ~eroded


def touches_border(a: np.ndarray, faces=(True,) * 6) -> bool:
    """True when any voxel of `a` lies on one of the block's outer faces selected by `faces`
    (z-low, z-high, y-low, y-high, x-low, x-high): faces that are the image's own edge are usually left out."""
    planes = (a[0], a[-1], a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1])
    return any(f and p.any() for f, p in zip(faces, planes))


def guard_faces(lo, hi, shape) -> tuple:
    """Which faces of the block [lo, hi) are inside the image (a region touching them has hit the guard)."""
    out = []
    for a in range(3):
        out += [lo[a] > 0, hi[a] < shape[a]]
    return tuple(bool(v) for v in out)
