"""RAS (Slicer) <-> LPS (petar, ITK) at the adapter boundary, and nothing else.

Slicer describes a volume by its 4x4 IJK-to-RAS matrix and `arrayFromVolume` returns voxels indexed [k, j, i],
which is petar's (z, y, x) order, so arrays pass through unchanged. Only the geometry is converted:
LPS = diag(-1, -1, 1) . RAS.
"""
from __future__ import annotations

import numpy as np

_FLIP = np.diag([-1.0, -1.0, 1.0])


def ras_to_lps(point) -> np.ndarray:
    return _FLIP @ np.asarray(point, dtype=float).reshape(3)


def lps_to_ras(point) -> np.ndarray:
    return _FLIP @ np.asarray(point, dtype=float).reshape(3)


def volume_from_ijk_to_ras(array, ijk_to_ras):
    """A petar.Volume (LPS geometry) from a (z, y, x) array and Slicer's 4x4 IJK-to-RAS matrix (no copy)."""
    from petar.volume import Volume

    m = np.asarray(ijk_to_ras, dtype=float).reshape(4, 4)
    lin = _FLIP @ m[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"degenerate IJK-to-RAS matrix: column norms {spacing}")
    return Volume(np.asarray(array), tuple(spacing), tuple(_FLIP @ m[:3, 3]), lin / spacing)


def ijk_to_ras_from_volume(volume) -> np.ndarray:
    """Slicer's 4x4 IJK-to-RAS matrix for a petar.Volume."""
    m = np.eye(4)
    m[:3, :3] = _FLIP @ (np.asarray(volume.direction, dtype=float) * np.asarray(volume.spacing, dtype=float))
    m[:3, 3] = _FLIP @ np.asarray(volume.origin, dtype=float)
    return m
