"""Stage-1 geometry of the official PETAR-4B preprocessing, re-derived, and the samplers that realise it.

Facts this module reproduces (measured in Testing/data/petar_preproc_a/README.md):
- The official code resamples each image to a 3 mm grid built from a 3x3 target affine: an axis-aligned RAS grid
  whose first voxel sits on the input's minimum-corner voxel centre, ceil(extent / 3) + 1 voxels per axis. The
  bounds and the source coordinates are computed here with the same float64 operations, so ties and edges land the
  same way: source coordinate c = (t + b / a) * a per axis (a, b: the diagonal and offset of inv(input) @ target).
- Linear sampling: c outside [0, n - 1] on any axis gives the fill value 0; otherwise the two neighbours with
  weights 1 - |floor(c) - c| and 1 - |floor(c) - c + 1|. Nearest: floor(c + 0.5) in stored index order, with the
  same validity test on c. Integer images stay integer: the interpolated value is rounded half away from zero.
- Trilinear interpolation is separable, so an axis-aligned resampling is three 1-D passes, each only over the
  rows, columns and planes a requested output block needs.

Inputs are first put in canonical storage (`Canon`): numpy (k, j, i) with i toward the patient's left, j toward
posterior and k toward superior (an LPS identity direction, as SimpleITK writes it). Axis permutations and flips are
exact; a direction within 1e-4 of the identity after that is treated as the identity. Truly oblique grids fall back
to SimpleITK sampling (same fill, ITK's edge and tie rules): close to, not bit-equal with, the official code.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..volume import Volume

TARGET_MM = 3
_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_OBLIQUE_TOL = 1e-4


class Canon:
    """A volume reoriented (no interpolation) to canonical storage: numpy (k, j, i), i → L, j → P, k → S."""

    def __init__(self, volume: Volume):
        d = np.asarray(volume.direction, dtype=float)
        world_of = np.abs(d).argmax(axis=0)            # world axis each index axis runs along
        if sorted(world_of.tolist()) != [0, 1, 2]:
            raise InputError("the image direction matrix is degenerate (two axes along one world axis): fix the "
                             "file's orientation header")
        src = np.argsort(world_of)                     # src[n]: index axis (ITK order) running along world axis n
        sign = np.where(d[np.arange(3), src] < 0, -1, 1)
        self.perm = tuple(int(2 - src[n]) for n in (2, 1, 0))      # numpy axes of the input for (k, j, i)
        self.flip = tuple(bool(sign[n] < 0) for n in (2, 1, 0))
        arr = volume.array.transpose(self.perm)
        self.array = arr[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]
        corner = np.zeros(3)
        for n in range(3):
            if sign[n] < 0:
                corner[src[n]] = volume.size[src[n]] - 1
        self.origin = np.asarray(volume.index_to_world(corner), dtype=float)
        self.spacing = np.array([volume.spacing[a] for a in src], dtype=float)
        direction = d[:, src] * sign
        self.oblique = bool(np.abs(direction - np.eye(3)).max() > _OBLIQUE_TOL)
        self.direction = direction if self.oblique else np.eye(3)
        self.reoriented = self.perm != (0, 1, 2) or any(self.flip)

    @property
    def shape(self) -> tuple:
        return self.array.shape

    def zyx(self, old_zyx: np.ndarray) -> np.ndarray:
        """Input (z, y, x) voxel indices (N, 3) → canonical (k, j, i) indices."""
        old = np.asarray(old_zyx)
        out = old[:, list(self.perm)].copy()
        for m in range(3):
            if self.flip[m]:
                out[:, m] = self.shape[m] - 1 - out[:, m]
        return out

    def ras_affine(self) -> np.ndarray:
        """The 4x4 NIfTI-style (RAS) affine of this storage, as nibabel would read it from a written file."""
        m = np.eye(4)
        m[:3, :3] = self.direction * self.spacing
        m[:3, 3] = self.origin
        return _TO_RAS @ m

    def volume(self, nz: int | None = None) -> Volume:
        arr = self.array if nz is None else self.array[:nz]
        return Volume(arr, tuple(self.spacing), tuple(self.origin), self.direction)


class OfficialGrid:
    """The 3 mm RAS grid the official resampling builds for an input of `shape_xyz` voxels with RAS `affine`."""

    def __init__(self, affine: np.ndarray, shape_xyz):
        t0 = np.eye(4)
        t0[:3, :3] = np.diag([TARGET_MM] * 3)
        tr = np.linalg.inv(t0).dot(affine)
        a, b, c = (int(s) - 1 for s in shape_xyz)
        box = np.array([[0.0, 0, 0, 1], [a, 0, 0, 1], [0, b, 0, 1], [0, 0, c, 1], [a, b, 0, 1], [a, 0, c, 1],
                        [0, b, c, 1], [a, b, c, 1]]).T
        box = np.dot(tr, box)[:3]
        lo, hi = box.min(axis=-1), box.max(axis=-1)
        target = t0.copy()
        target[:3, 3] = t0[:3, :3].dot(lo)
        self.shape = tuple(int(np.ceil(h - l)) + 1 for l, h in zip(lo, hi))     # (x', y', z')
        self.affine = target
        full = np.eye(4) if np.all(target == affine) else np.dot(np.linalg.inv(affine), target)
        self.matrix, self.offset = full[:3, :3], full[:3, 3]
        self.diagonal = bool(np.all(np.diag(np.diag(self.matrix)) == self.matrix))
        if self.diagonal:
            self.zoom = np.diag(self.matrix).copy()
            self.shift = self.offset / self.zoom

    def coords(self, axis: int, t) -> np.ndarray:
        """Source index (canonical axis `axis`: 0 = i, 1 = j, 2 = k) of target indices `t` along the same axis."""
        return (np.asarray(t, dtype=np.float64) + self.shift[axis]) * self.zoom[axis]

    def world_lps(self, t_xyz) -> np.ndarray:
        """LPS world position of target index (x', y', z') (3,) or (N, 3)."""
        t = np.asarray(t_xyz, dtype=float)
        ras = t @ self.affine[:3, :3].T + self.affine[:3, 3]
        return ras * np.array([-1.0, -1.0, 1.0])


# ---- 1-D maps ---------------------------------------------------------------------------------------------------
def linear_map(c, n: int):
    """(i0, i1, w0, w1) for source coordinates c on an axis of n samples; weights 0 where c is outside [0, n-1]."""
    c = np.asarray(c, dtype=np.float64)
    valid = (c >= 0) & (c <= n - 1)
    cs = np.where(valid, c, 0.0)
    start = np.floor(cs)
    d = start - cs
    w0, w1 = 1.0 - np.abs(d), 1.0 - np.abs(d + 1.0)
    w0[~valid] = 0.0
    w1[~valid] = 0.0
    i0 = start.astype(np.intp)
    return i0, np.minimum(i0 + 1, n - 1), w0, w1


def nearest_map(c, n: int) -> np.ndarray:
    """Nearest source index floor(c + 0.5), or -1 where c is outside [0, n-1]."""
    c = np.asarray(c, dtype=np.float64)
    valid = (c >= 0) & (c <= n - 1)
    idx = np.floor(np.where(valid, c, 0.0) + 0.5).astype(np.intp)
    idx[~valid] = -1
    return idx


def world_map(grid: OfficialGrid, axis: int, t, src: Canon) -> np.ndarray:
    """Source index along canonical axis `axis` of `src` (identity direction) for target indices `t` on that axis."""
    t = np.asarray(t, dtype=np.float64)
    ras = grid.affine[axis, axis] * t + grid.affine[axis, 3]
    lps = -ras if axis < 2 else ras
    return (lps - src.origin[axis]) / src.spacing[axis]


# ---- separable sampling ---------------------------------------------------------------------------------------
def _pass(a: np.ndarray, axis: int, i0, i1, w0, w1, planes=None, dtype=np.float32) -> np.ndarray:
    """One 1-D linear pass along `axis`; with `planes` (axis 1 only) the axis-0 planes are picked in the same gather."""
    shape = [1, 1, 1]
    shape[axis] = -1
    if (planes is None and len(i0) == a.shape[axis] and np.array_equal(i0, np.arange(a.shape[axis]))
            and np.all(w0 == 1) and not np.any(w1)):
        return a

    def take(idx):
        if planes is None:
            return np.take(a, idx, axis=axis)
        return a[planes[:, None], idx]

    out = np.multiply(take(i0), w0.astype(dtype).reshape(shape), dtype=dtype)
    sel = np.flatnonzero(w1)
    if sel.size:
        idx = [slice(None)] * 3
        idx[axis] = sel
        out[tuple(idx)] += np.multiply(take(i1[sel]), w1[sel].astype(dtype).reshape(shape), dtype=dtype)
    return out


def sample_separable(arr: np.ndarray, maps, dtype=np.float32, chunk_bytes: float = 8e6) -> np.ndarray:
    """Trilinear samples of `arr` (numpy axes 0, 1, 2) given one linear_map per axis, computed in `dtype`.

    float64 (as scipy computes) where the result is then rounded to integers: float32 weights would turn
    near-ties such as 182.4999999999 into exact .5 ties and round them the other way.

    Output planes (axis 0) are made in chunks whose intermediates stay a few MB: large temporaries would be fresh
    memory pages every call, and first-touch page faults cost more than the arithmetic here.
    """
    n0 = len(maps[0][0])
    out = np.empty(tuple(len(mp[0]) for mp in maps), dtype=dtype)
    per_plane = 2.0 * np.dtype(dtype).itemsize * max(1, _span(maps[1])) * max(1, _span(maps[2]))
    step = int(max(1, min(n0, chunk_bytes // per_plane)))
    for a in range(0, n0, step):
        b = min(a + step, n0)
        out[a:b] = _sample_chunk(arr, [tuple(v[a:b] for v in maps[0]), maps[1], maps[2]], dtype)
    return out


def _span(mp) -> int:
    i0, i1, w0, w1 = mp
    used = np.concatenate([i0[w0 != 0], i1[w1 != 0]])
    return int(used.max() - used.min() + 1) if used.size else 0


def _sample_chunk(arr: np.ndarray, maps, dtype) -> np.ndarray:
    """The source is narrowed to the index range the weights use; the passes then run in the order that keeps
    intermediate arrays smallest. When the first pass runs along axis 1 and only some axis-0 planes are used, those
    planes are picked in that first gather instead of being copied."""
    sl, local, used0 = [], [], None
    for m, (i0, i1, w0, w1) in enumerate(maps):
        used = np.unique(np.concatenate([i0[w0 != 0], i1[w1 != 0]]))
        if used.size == 0:
            return np.zeros(tuple(len(mp[0]) for mp in maps), dtype=dtype)
        lo, hi = int(used[0]), int(used[-1]) + 1
        sl.append(slice(lo, hi))
        local.append([np.clip(i0 - lo, 0, hi - lo - 1), np.clip(i1 - lo, 0, hi - lo - 1), w0, w1])
        if m == 0:
            used0 = used - lo
    a = arr[tuple(sl)]
    sparse0 = len(used0) < 0.8 * a.shape[0]
    todo, first = [0, 1, 2], True
    while todo:      # do first the pass that leaves the smallest intermediate array
        sizes = []
        for m in todo:
            shp = [len(local[ax][0]) if ax == m else a.shape[ax] for ax in range(3)]
            if first and m == 1 and sparse0:
                shp[0] = len(used0)
            sizes.append(int(np.prod(shp)))
        m = todo.pop(int(np.argmin(sizes)))
        planes = None
        if first and m == 1 and sparse0:
            planes = used0
            for k in (0, 1):
                local[0][k] = np.minimum(np.searchsorted(used0, local[0][k]), len(used0) - 1)
        a = _pass(a, m, *local[m], planes=planes, dtype=dtype)
        first = False
    return a


def settle_near_ties(vals: np.ndarray, arr: np.ndarray, maps, tol: float = 1e-6) -> None:
    """In place: values within `tol` of a .5 tie are recomputed in scipy's own float64 order, so that rounding
    them to integers goes the same way: the 8 corners in (i, j, k) order with k fastest, each ((v*wi)*wj)*wk,
    summed in turn. Elsewhere the separable result and scipy's differ by ~1e-13 and round alike."""
    flag = np.abs(np.abs(vals) % 1.0 - 0.5) < tol
    z, y, x = np.nonzero(flag)
    if not z.size:
        return
    (k0, k1, wk0, wk1), (j0, j1, wj0, wj1), (i0, i1, wi0, wi1) = maps
    total = np.zeros(z.size)
    for ii, wi in ((i0[x], wi0[x]), (i1[x], wi1[x])):
        for jj, wj in ((j0[y], wj0[y]), (j1[y], wj1[y])):
            for kk, wk in ((k0[z], wk0[z]), (k1[z], wk1[z])):
                total += ((arr[kk, jj, ii].astype(np.float64) * wi) * wj) * wk
    vals[z, y, x] = total


def round_half_away(a: np.ndarray) -> np.ndarray:
    """In place: what a C cast of (v > 0 ? v + 0.5 : v - 0.5) gives, as scipy writes into an integer output."""
    half = np.where(a > 0, a.dtype.type(0.5), a.dtype.type(-0.5))
    a += half
    np.trunc(a, out=a)
    return a


def sample_sitk(src: Volume, grid: OfficialGrid, ranges, nearest: bool = False) -> np.ndarray:
    """Target block (z', y', x') by SimpleITK (oblique inputs): fill 0, ITK's own edge and tie rules."""
    import SimpleITK as sitk

    (z0, z1), (y0, y1), (x0, x1) = ranges
    image = src.to_sitk()
    ref = sitk.Image([int(x1 - x0), int(y1 - y0), int(z1 - z0)], sitk.sitkUInt8)
    ref.SetSpacing([float(TARGET_MM)] * 3)
    ref.SetOrigin(tuple(float(v) for v in grid.world_lps([x0, y0, z0])))
    ref.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(image, ref, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)
