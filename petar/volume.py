"""`Volume`: a numpy array plus the ITK geometry that places it in the patient.

Conventions (DESIGN.md §2): the array is (z, y, x) as SimpleITK returns it; spacing and origin are (x, y, z) in mm;
`direction` is the 3x3 ITK direction matrix whose columns are the world directions of the i, j, k index axes; world
coordinates are LPS. RAS differs from LPS by the sign of x and y and is produced only on request (`space="ras"`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
SPACES = ("lps", "ras")


def _check_space(space: str) -> str:
    s = str(space).lower()
    if s not in SPACES:
        raise InputError(f"unknown coordinate space {space!r}: use 'lps' or 'ras'")
    return s


@dataclass(eq=False)
class Volume:
    """A 3D scalar or label image with its geometry. Arrays are not copied on construction."""

    array: np.ndarray
    spacing: tuple = (1.0, 1.0, 1.0)
    origin: tuple = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise InputError(f"expected a 3D image, got {self.array.ndim}D with shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if len(self.spacing) != 3 or len(self.origin) != 3 or min(self.spacing) <= 0:
            raise InputError(f"invalid geometry: spacing {self.spacing}, origin {self.origin}")

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_sitk(cls, image) -> "Volume":
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise InputError(f"expected a 3D image, got {image.GetDimension()}D of size {image.GetSize()}")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components "
                             "per voxel (a 4D or vector image?)")
        return cls(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(),
                   np.array(image.GetDirection()).reshape(3, 3))

    @classmethod
    def from_array(cls, array, like: "Volume") -> "Volume":
        """A new volume on `like`'s grid; `array` must have `like`'s shape."""
        array = np.asarray(array)
        if array.shape != like.shape:
            raise InputError(f"array shape {array.shape} does not match the reference grid {like.shape}")
        return cls(array, like.spacing, like.origin, like.direction.copy())

    def to_sitk(self):
        import SimpleITK as sitk

        arr = self.array
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.ravel()))
        return image

    # ---- geometry -----------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """Array shape (z, y, x)."""
        return self.array.shape

    @property
    def size(self) -> tuple:
        """Grid size in ITK order (x, y, z)."""
        return tuple(reversed(self.array.shape))

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_world(self, ijk, space: str = "lps") -> np.ndarray:
        """Continuous (i, j, k) index (ITK order) → world point; accepts (3,) or (N, 3)."""
        space = _check_space(space)
        ijk = np.asarray(ijk, dtype=float)
        world = ijk * np.asarray(self.spacing) @ self.direction.T + np.asarray(self.origin)
        return world * _LPS_TO_RAS if space == "ras" else world

    def world_to_index(self, xyz, space: str = "lps") -> np.ndarray:
        """World point → continuous (i, j, k) index (ITK order, not rounded); accepts (3,) or (N, 3)."""
        space = _check_space(space)
        xyz = np.asarray(xyz, dtype=float)
        lps = xyz * _LPS_TO_RAS if space == "ras" else xyz
        return (lps - np.asarray(self.origin)) @ np.linalg.inv(self.direction).T / np.asarray(self.spacing)

    def contains_index(self, ijk) -> bool:
        """True when the rounded index lies inside the grid."""
        idx = np.rint(np.asarray(ijk, dtype=float)).astype(int)
        return bool(np.all(idx >= 0) and np.all(idx < np.asarray(self.size)))

    def same_grid(self, other: "Volume", tol: float = 1e-4) -> bool:
        """Same shape, and spacing/origin/direction equal within `tol` (mm, or unitless for direction)."""
        return (self.shape == other.shape
                and np.allclose(self.spacing, other.spacing, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol * max(1.0, max(map(abs, self.origin))))
                and np.allclose(self.direction, other.direction, atol=tol))

    def corners(self, space: str = "lps") -> np.ndarray:
        """World positions of the 8 outer corners of the grid (voxel edges, not centres): (8, 3)."""
        lo, hi = -0.5, np.asarray(self.size) - 0.5
        pts = np.array([[x, y, z] for x in (lo, hi[0]) for y in (lo, hi[1]) for z in (lo, hi[2])])
        return self.index_to_world(pts, space)

    def superior_axis_sign(self) -> int:
        """+1 when increasing k moves toward the head (LPS +z), −1 when it moves toward the feet."""
        s = self.direction[2, 2]
        if abs(s) < 1e-3:
            raise InputError("the volume's third axis is not axial (direction matrix): reorient it to axial slices")
        return 1 if s > 0 else -1

    def copy(self) -> "Volume":
        return Volume(self.array.copy(), self.spacing, self.origin, self.direction.copy())

    def __repr__(self) -> str:  # no data values: they may be large and are not needed in logs
        return (f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing={tuple(round(s, 4) for s in self.spacing)}, "
                f"origin={tuple(round(o, 3) for o in self.origin)})")
