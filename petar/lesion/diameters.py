"""Axial diameters as a reader measures them with calipers: longest in-plane diameter, and the longest chord
perpendicular to it, in the axial slice where the long diameter is largest (RECIST-style).

Voxels are treated as squares of their in-plane size, so distances run edge to edge: an axis-aligned 10 × 6 voxel
rectangle of 2 mm pixels measures exactly √(20² + 12²) mm long. Distances are in mm (in-plane spacing; the axial
plane is the array's (y, x) plane, assumed orthogonal as in any axial PET).
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-9


def _cross(a, b) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull of 2D points (returns hull vertices)."""
    pts = np.unique(points, axis=0)
    if len(pts) <= 2:
        return pts
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and _cross(out[-1] - out[-2], p - out[-2]) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _pixel_corners(yx: np.ndarray, sy: float, sx: float) -> np.ndarray:
    """Corner points (mm, as (x, y)) of the pixels at integer (y, x) positions."""
    cx, cy = yx[:, 1] * sx, yx[:, 0] * sy
    corners = [(dx, dy) for dx in (-0.5 * sx, 0.5 * sx) for dy in (-0.5 * sy, 0.5 * sy)]
    return np.concatenate([np.stack([cx + dx, cy + dy], axis=1) for dx, dy in corners])


def longest_diameter(yx: np.ndarray, sy: float, sx: float):
    """(length mm, unit direction (x, y)) of the longest edge-to-edge diameter of one slice's pixels."""
    hull = _convex_hull(_pixel_corners(yx, sy, sx))
    d = hull[:, None, :] - hull[None, :, :]
    dist = np.sqrt((d ** 2).sum(-1))
    a, b = np.unravel_index(np.argmax(dist), dist.shape)
    length = float(dist[a, b])
    return length, (hull[a] - hull[b]) / max(length, _EPS)


def perpendicular_chord(yx: np.ndarray, sy: float, sx: float, direction) -> float:
    """Longest chord perpendicular to `direction` across the pixels (mm).

    For each line perpendicular to the long axis, the extent of the pixel squares it crosses is taken; this extent
    is piecewise linear along the axis with breakpoints at pixel corners, so evaluating it at every corner's
    projection gives the exact maximum.
    """
    u = np.asarray(direction, dtype=float)
    v = np.array([-u[1], u[0]])
    cx, cy = yx[:, 1] * sx, yx[:, 0] * sy
    hx, hy = 0.5 * sx, 0.5 * sy
    ts = np.unique(np.round(_pixel_corners(yx, sy, sx) @ u, 9))
    best = 0.0
    for chunk in np.array_split(ts, max(1, len(ts) // 256)):
        t = chunk[:, None]
        lo = np.full((len(chunk), len(cx)), -np.inf)
        hi = np.full((len(chunk), len(cx)), np.inf)
        ok = np.ones((len(chunk), len(cx)), dtype=bool)
        for c, h, uc, vc in ((cx, hx, u[0], v[0]), (cy, hy, u[1], v[1])):
            if abs(vc) > _EPS:
                s1 = (c - h - t * uc) / vc
                s2 = (c + h - t * uc) / vc
                lo = np.maximum(lo, np.minimum(s1, s2))
                hi = np.minimum(hi, np.maximum(s1, s2))
            else:
                ok &= np.abs(t * uc - c) <= h + _EPS
        ok &= hi >= lo - _EPS
        smin = np.where(ok, lo, np.inf).min(axis=1)
        smax = np.where(ok, hi, -np.inf).max(axis=1)
        ext = smax - smin
        if np.isfinite(ext).any():
            best = max(best, float(ext[np.isfinite(ext)].max()))
    return best


def _boundary_pixels(yx: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour outside the set: the only ones that can hold an extreme point."""
    lo = yx.min(axis=0)
    grid = np.zeros(tuple(yx.max(axis=0) - lo + 3), dtype=bool)
    grid[yx[:, 0] - lo[0] + 1, yx[:, 1] - lo[1] + 1] = True
    inner = grid[1:-1, 1:-1] & grid[:-2, 1:-1] & grid[2:, 1:-1] & grid[1:-1, :-2] & grid[1:-1, 2:]
    keep = ~inner[yx[:, 0] - lo[0], yx[:, 1] - lo[1]]
    return yx[keep]


def axial_diameters(lesion_zyx: np.ndarray, spacing_xyz) -> tuple[float, float, int]:
    """(long mm, short mm, plane index k) over all axial planes of a lesion given as (N, 3) (z, y, x) indices."""
    sx, sy = float(spacing_xyz[0]), float(spacing_xyz[1])
    best = (-1.0, None, None, None)
    for k in np.unique(lesion_zyx[:, 0]):
        yx = _boundary_pixels(lesion_zyx[lesion_zyx[:, 0] == k][:, 1:])
        length, direction = longest_diameter(yx, sy, sx)
        if length > best[0]:
            best = (length, direction, yx, int(k))
    length, direction, yx, k = best
    return length, perpendicular_chord(yx, sy, sx, direction), k
