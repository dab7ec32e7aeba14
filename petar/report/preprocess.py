"""`petar_views`: the six PETAR-4B model inputs, made as the official preprocessing makes them — in memory, fast.

The official pipeline (inference.py / utils.py of DanyalMaq/petar-release; behaviour measured in
Testing/data/petar_preproc_a/README.md) is, per call: head trim by stored index, resampling to a 3 mm RAS grid,
centre crop 200 x 200 in-plane and the top 350 slices, in-plane padding to 200 (CT -1000, PET and mask 0), flip to
(Z, Y, X) with Z toward the feet and Y toward posterior, CT window [-300, 400] HU and PET [0, 12] SUV to [0, 1], a
global view (lesion-centre slice +-80) and a focal view (mask box +-20), each cropped to where PET > 0 and resized
to 32 x 256 x 256 (trilinear images, nearest mask).

Here the same arithmetic runs only where the six outputs need it: the lesion is mapped first, then the PET is
resampled on the global slab alone (its PET > 0 box decides both views), then the CT only inside that box and
only on the planes the final resize reads. Every skipped voxel provably does not reach an output.

Choices where the official code has no answer (each recorded in `info`):
- Storage orientation: inputs are reoriented (exactly: axis permutations and flips) to the storage the official
  code assumes — i toward the patient's left, j toward posterior, k toward superior, as SimpleITK writes an LPS
  image with identity direction — before the head trim and the nearest-neighbour tie rule, both of which act on
  stored indices. A file stored feet-first or RAS therefore gives the views its canonical twin gives, instead of
  trimming from the feet.
- CT on another grid (e.g. 512 x 512 at 0.98 mm): sampled linearly, fill 0 as the official resampling, directly at
  the PET's 3 mm target points (world coordinates); the PET and mask stay exact. A mask on another grid is first put
  on the PET grid (nearest neighbour, `labels_onto_grid`).
- A lesion that the head trim or the 200 x 200 x 350 crop would cut: the trim or the crop is moved just enough to
  keep it, with a warning, instead of silently describing a lesion the model cannot see.
- One lesion per call: `label` picks it; a mask with several labels and no `label` is refused (the official code
  would merge them).

Known, measured differences from the official arrays: PET ~1e-7 (float32 vs float64 accumulation); CT up to ~2e-5
where the official stage 1 pads in-plane, because it then stores the CT as int16 with a fitted scl_slope (steps of
~0.016 HU) and reads it back — we keep the exact integers. Masks and every crop box are identical.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from ..io.grid import labels_onto_grid, overlap_fraction
from ..lesion.measure import _foreground_indices
from ..volume import Volume
from .preprocess_resample import (Canon, OfficialGrid, linear_map, nearest_map, round_half_away,
                                  sample_separable, sample_sitk, settle_near_ties, world_map)

OFFICIAL_SIZE = (32, 256, 256)
KEYS = ("pet", "ct", "mask", "pet_focal", "ct_focal", "mask_focal")
CROP_XY, CROP_Z = 200, 350
SUV_THRESHOLD, CT_THRESHOLD = 5, 1000
GLOBAL_MARGIN, FOCAL_MARGIN = 80, 20
CT_WINDOW, PET_WINDOW = (-300, 400), (0, 12)
CT_PAD = -1000.0


def petar_views(pet: Volume, ct: Volume, mask: Volume, label: int | None = None, size=OFFICIAL_SIZE,
                return_info: bool = False):
    """The six model inputs {pet, ct, mask, pet_focal, ct_focal, mask_focal}, each float32 (1, *size) in [0, 1].

    `pet` in SUV, `ct` in HU, `mask` a label image (any grid covering the PET); `label` selects the lesion (None:
    the mask must hold one label). `size` is the model's image_size (official (32, 256, 256)). With
    `return_info=True` returns (views, info): crop_offset, processed_shape (x, y, z as the official code reports
    it), the crop boxes in stage-2 (Z, Y, X) indices, warnings and per-stage seconds.
    """
    t0 = time.perf_counter()
    clock = [t0]
    timing: dict[str, float] = {}

    def lap(name):
        now = time.perf_counter()
        timing[name] = round(now - clock[0], 4)
        clock[0] = now

    size = _check_size(size)
    for vol, what in ((pet, "PET"), (ct, "CT"), (mask, "mask")):
        if not isinstance(vol, Volume):
            raise InputError(f"the {what} must be a petar.Volume (read it with petar.read_pet / read_volume / "
                             f"read_mask), got {type(vol).__name__}")
    warnings: list[str] = []
    mask = labels_onto_grid(mask, pet)
    lesion_old = _lesion_voxels(mask.array, label)
    ct_on_pet = ct.same_grid(pet)
    if not ct_on_pet and overlap_fraction(ct, pet) == 0.0:
        raise InputError("the CT and the PET do not overlap in space (different studies or frames of reference?): "
                         "give the CT acquired with this PET")
    P, C = Canon(pet), Canon(ct)
    lesion = P.zyx(lesion_old)
    lap("inputs")

    nz = P.shape[0]
    crop_offset = _head_trim(P, C, ct, ct_on_pet)
    top = int(lesion[:, 0].max())
    if top >= nz - crop_offset:
        warnings.append(f"the head trim (official crop_offset {crop_offset}) would cut the lesion's top "
                        f"{top - (nz - crop_offset) + 1} slice(s): kept {nz - top - 1} instead")
        crop_offset = nz - top - 1
    nzt = nz - crop_offset
    grid = OfficialGrid(P.ras_affine(), (P.shape[2], P.shape[1], nzt))
    lap("trim")

    mt, mt0 = _lesion_on_target(P, nzt, grid, lesion)
    views = _Layout(grid, mt, mt0, warnings)
    lap("lesion")

    pet_src = P.array[:nzt]
    g = views.global_crop
    pet_blk, _ = views.block(grid, lambda r: _sample(pet_src, P, grid, r, official=True), g, 0.0)
    _normalise(pet_blk, *PET_WINDOW)
    gbox = _fg_box(pet_blk, g, "global")
    fc = views.focal_crop
    fsub = pet_blk[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(fc, g))]
    fbox = _fg_box(fsub, fc, "focal")
    lap("pet")

    # CT: only inside the global PET > 0 box (the focal box lies inside it), only the planes/rows/columns read by
    # the final resizes
    need = [sorted(set(_resize_reads(b - a, n).tolist()) | set(range(fb[0] - a, fb[1] - a)))
            for (a, b), fb, n in zip(gbox, fbox, size)]
    integer_ct = np.issubdtype(ct.array.dtype, np.integer)
    ct_dtype = np.float64 if integer_ct else np.float32      # rounded afterwards: compute as scipy does
    if ct_on_pet:
        ct_sampler = lambda r: _sample(C.array[:nzt], C, grid, r, True, ct_dtype)   # noqa: E731
    else:
        ct_sampler = lambda r: _sample(C.array, C, grid, r, False, ct_dtype)        # noqa: E731
    ct_blk, outside = views.block(grid, ct_sampler, gbox, CT_PAD, rows=need, integer=integer_ct,
                                  coverage=None if ct_on_pet or C.oblique else C)
    if outside:
        warnings.append("the CT does not cover part of the views: filled with 0 HU there, as the official "
                        "resampling fills")
    _normalise(ct_blk, *CT_WINDOW)
    lap("ct")

    pet_g = pet_blk[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(gbox, g))]
    pet_f = pet_blk[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(fbox, g))]
    ct_f = ct_blk[tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(fbox, gbox))]
    out = {
        "pet": _resize(pet_g, size, "trilinear"),
        "ct": _resize(ct_blk, size, "trilinear"),
        "mask": _resize(views.mask_box(gbox), size, "nearest"),
        "pet_focal": _resize(pet_f, size, "trilinear"),
        "ct_focal": _resize(ct_f, size, "trilinear"),
        "mask_focal": _resize(views.mask_box(fbox), size, "nearest"),
    }
    lap("resize")
    timing["total"] = round(time.perf_counter() - t0, 4)
    if not return_info:
        return out
    info = {
        "crop_offset": int(crop_offset),
        "processed_shape": [CROP_XY, CROP_XY, int(views.zp)],
        "resampled_shape": list(grid.shape),
        "crop_start_xyz": [int(v) for v in views.start],
        "pad_before_xy": [int(v) for v in views.pad],
        "lesion_box": _box_json(views.lesion_box),
        "global_crop": _box_json(g),
        "global_box": _box_json(gbox),
        "focal_crop": _box_json(fc),
        "focal_box": _box_json(fbox),
        "box_convention": "[start, end) per axis, (Z, Y, X) indices of the stage-2 array (1, Z, 200, 200): Z toward "
                          "the feet, Y toward posterior, X toward the patient's right",
        "reoriented": bool(P.reoriented),
        "ct_resampled": not ct_on_pet,
        "ct_rounded": bool(integer_ct),
        "exact_grid": bool(grid.diagonal and (ct_on_pet or not C.oblique)),
        "size": list(size),
        "warnings": warnings,
        "timing_s": timing,
    }
    return out, info


# ---- inputs -----------------------------------------------------------------------------------------------------
def _check_size(size) -> tuple:
    try:
        out = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"size must be three positive integers (D, H, W), got {size!r}") from None
    if len(out) != 3 or min(out) < 1 or any(float(s) != int(s) for s in size):
        raise InputError(f"size must be three positive integers (D, H, W), got {size!r}")
    return out


def _lesion_voxels(arr: np.ndarray, label) -> np.ndarray:
    """(N, 3) zyx indices of the selected lesion; one label per call."""
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    zyx = _foreground_indices(arr)
    if not len(zyx):
        raise InputError("the mask is empty (no non-zero voxel): give a mask that contains the lesion")
    values = arr[tuple(zyx.T)]
    present = [int(v) if float(v).is_integer() else float(v) for v in np.unique(values)]
    if label is None:
        if len(present) > 1:
            shown = ", ".join(map(str, present[:10])) + (", ..." if len(present) > 10 else "")
            raise InputError(f"the mask has {len(present)} labels ({shown}): pass label=N to choose the lesion "
                             "(the model describes one lesion per call)")
        return zyx
    try:
        want = int(label)
    except (TypeError, ValueError):
        raise InputError(f"label must be a positive integer, got {label!r}") from None
    if want != label or want < 1:
        raise InputError(f"label must be a positive integer, got {label!r}")
    if want not in present:
        raise InputError(f"label {want} is not in the mask (labels present: "
                         f"{', '.join(map(str, present[:20]))}): choose one of them")
    return zyx[values == want]


# ---- stage 1 ----------------------------------------------------------------------------------------------------
def _top_plane(planes, nz: int, threshold: float):
    """Highest k whose plane (within the trim box) exceeds `threshold`, scanning down from the top in chunks."""
    for k1 in range(nz, 0, -32):
        k0 = max(k1 - 32, 0)
        block = np.asarray(planes(k0, k1))
        hits = np.flatnonzero(block.reshape(k1 - k0, -1).max(axis=1) > threshold)
        if hits.size:
            return k0 + int(hits[-1])
    return None


def _head_trim(P: Canon, C: Canon, ct: Volume, ct_on_pet: bool) -> int:
    """Official crop_offset: slices above the highest plane with PET > 5 SUV (else CT > 1000 HU) in the box."""
    nz, ny, nx = P.shape
    mx, my = nx // 2, ny // 2
    ys, xs = slice(max(my - 150, 0), min(my + 50, ny)), slice(max(mx - 50, 0), min(mx + 50, nx))
    z = _top_plane(lambda a, b: P.array[a:b, ys, xs], nz, SUV_THRESHOLD)
    if z is None:
        if ct_on_pet:
            z = _top_plane(lambda a, b: C.array[a:b, ys, xs], nz, CT_THRESHOLD)
        else:
            z = _top_plane(_ct_on_pet_planes(P, ct, ys, xs), nz, CT_THRESHOLD)
    return 0 if z is None else nz - z - 1


def _ct_on_pet_planes(P: Canon, ct: Volume, ys: slice, xs: slice):
    """planes(k0, k1): the CT sampled (linear, fill 0) at the PET voxel centres of those planes in the trim box."""
    import SimpleITK as sitk

    image = ct.to_sitk()                      # once: the fallback may ask for several chunks

    def planes(k0: int, k1: int) -> np.ndarray:
        ref = sitk.Image([xs.stop - xs.start, ys.stop - ys.start, k1 - k0], sitk.sitkUInt8)
        ref.SetSpacing(tuple(float(v) for v in P.spacing))
        ref.SetOrigin(tuple(float(v) for v in P.volume().index_to_world([xs.start, ys.start, k0])))
        ref.SetDirection(tuple(float(v) for v in P.direction.ravel()))
        out = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return sitk.GetArrayFromImage(out)

    return planes


def _lesion_on_target(P: Canon, nzt: int, grid: OfficialGrid, lesion: np.ndarray):
    """The lesion mask on the 3 mm target grid: (block (z', y', x'), its first index), trimmed to its extent."""
    lo, hi = lesion.min(axis=0), lesion.max(axis=0)
    dense = np.zeros(tuple(hi - lo + 1), dtype=np.uint8)
    dense[tuple((lesion - lo).T)] = 1
    if grid.diagonal:
        n_src = (P.shape[2], P.shape[1], nzt)
        sel, src = [], []
        for axis in (2, 1, 0):               # z', y', x' ↔ k, j, i
            m = 2 - axis
            near = nearest_map(grid.coords(axis, np.arange(grid.shape[axis])), n_src[axis])
            s = np.flatnonzero((near >= lo[m]) & (near <= hi[m]))
            if not s.size:
                raise InputError("the lesion falls outside the 3 mm resampling grid: check the mask")
            sel.append(s)
            src.append(near[s] - lo[m])
        block = dense[np.ix_(*src)]
        first = np.array([s[0] for s in sel])
    else:
        corners = np.array([[(lo, hi)[c >> a & 1][2 - a] for a in range(3)] for c in range(8)], dtype=float)
        world = P.volume(nzt).index_to_world(corners)
        ras = world * np.array([-1.0, -1.0, 1.0])
        t = (ras - grid.affine[:3, 3]) / np.diag(grid.affine)[:3]
        t_lo = np.clip(np.floor(t.min(axis=0)) - 2, 0, None).astype(int)
        t_hi = np.minimum(np.ceil(t.max(axis=0)) + 3, grid.shape).astype(int)
        full = np.zeros((nzt,) + P.shape[1:], dtype=np.uint8)
        full[tuple(lesion.T)] = 1
        block = sample_sitk(Volume(full, tuple(P.spacing), tuple(P.origin), P.direction), grid,
                            [(t_lo[2], t_hi[2]), (t_lo[1], t_hi[1]), (t_lo[0], t_hi[0])], nearest=True)
        first = t_lo[::-1].copy()
    nzyx = np.argwhere(block)
    if not len(nzyx):
        raise InputError("the lesion vanishes on the 3 mm grid of the model (smaller than one 3 mm voxel): "
                         "draw it larger")
    b0, b1 = nzyx.min(axis=0), nzyx.max(axis=0) + 1
    return (block[b0[0]:b1[0], b0[1]:b1[1], b0[2]:b1[2]] > 0).astype(np.uint8), first + b0


def _sample(src_array, canon: Canon, grid: OfficialGrid, ranges, official: bool, dtype=np.float32) -> np.ndarray:
    """Target block (z', y', x') of a source: the official coordinates on the PET grid, world ones otherwise."""
    if grid.diagonal and (official or not canon.oblique):
        maps = []
        for m, (a, b) in enumerate(ranges):
            axis = 2 - m
            t = np.asarray(a if isinstance(a, np.ndarray) else np.arange(a, b))
            c = grid.coords(axis, t) if official else world_map(grid, axis, t, canon)
            maps.append(linear_map(c, src_array.shape[m]))
        vals = sample_separable(src_array, maps, dtype)
        if official and dtype == np.float64:
            settle_near_ties(vals, src_array, maps)
        return vals
    vol = Volume(src_array, tuple(canon.spacing), tuple(canon.origin), canon.direction)
    lists = [a if isinstance(a, np.ndarray) else np.arange(a, b) for a, b in ranges]
    full = sample_sitk(vol, grid, [(int(t.min()), int(t.max()) + 1) for t in lists])
    return full[np.ix_(*[t - t.min() for t in lists])]


# ---- stage 2 ----------------------------------------------------------------------------------------------------
class _Layout:
    """Where the 3 mm target grid lands in the stage-2 array (1, Z, 200, 200), and the lesion's boxes there."""

    def __init__(self, grid: OfficialGrid, mt: np.ndarray, mt0: np.ndarray, warnings: list):
        nx, ny, nz = grid.shape
        cx, cy, cz = min(CROP_XY, nx), min(CROP_XY, ny), min(CROP_Z, nz)
        start = [(nx - cx) // 2, (ny - cy) // 2, nz - cz]
        ext = [(mt0[2], mt0[2] + mt.shape[2] - 1), (mt0[1], mt0[1] + mt.shape[1] - 1),
               (mt0[0], mt0[0] + mt.shape[0] - 1)]
        for a, (name, width, total) in enumerate((("left-right", cx, nx), ("front-back", cy, ny),
                                                  ("head-feet", cz, nz))):
            lo, hi = (int(v) for v in ext[a])
            if lo >= start[a] and hi < start[a] + width:
                continue
            if hi - lo + 1 > width:
                new = (lo + hi + 1 - width) // 2
                warnings.append(f"the lesion spans more than the official {width}-voxel {name} crop: centred on it")
            else:
                new = lo if lo < start[a] else hi - width + 1
            new = min(max(new, 0), total - width)
            warnings.append(f"the lesion lies outside the official {CROP_XY}x{CROP_XY}x{CROP_Z} crop ({name}): "
                            f"crop moved by {new - start[a]} voxel(s) of 3 mm to keep it")
            start[a] = new
        self.start, self.size = start, (cx, cy, cz)
        self.pad = ((CROP_XY - cx) // 2, (CROP_XY - cy) // 2)
        self.zp = cz
        # stage-2 index = constant -/+ target index: d = dz - z', h = hy - y', w = x' + wx
        self.dz, self.hy, self.wx = cz - 1 + start[2], CROP_XY - 1 + start[1] - self.pad[1], self.pad[0] - start[0]
        self.data = ((0, cz), (self.hy - (start[1] + cy - 1), self.hy - start[1] + 1),
                     (self.pad[0], self.pad[0] + cx))
        m2 = mt[::-1, ::-1, :]
        o = (self.dz - (mt0[0] + mt.shape[0] - 1), self.hy - (mt0[1] + mt.shape[1] - 1), mt0[2] + self.wx)
        keep = [(max(o[a], self.data[a][0]), min(o[a] + m2.shape[a], self.data[a][1])) for a in range(3)]
        m2 = m2[tuple(slice(lo - o[a], hi - o[a]) for a, (lo, hi) in enumerate(keep))]
        self.mask, self.mask0 = np.ascontiguousarray(m2), tuple(lo for lo, _ in keep)
        box = _nonzero_box(self.mask, self.mask0)
        if box is None:
            raise InputError("the lesion falls outside the model's field of view")
        self.lesion_box = box
        (l0, l1) = box[0]
        centre = (l0 + l1 - 1) // 2
        self.global_crop = ((max(0, centre - GLOBAL_MARGIN), min(cz, centre + GLOBAL_MARGIN + 1)),
                            (0, CROP_XY), (0, CROP_XY))
        g0, g1 = self.global_crop[0]
        if l0 < g0 or l1 > g1:
            warnings.append(f"the lesion is taller than the official global view ({2 * GLOBAL_MARGIN + 1} slices): "
                            "its ends are cut there (as in the official code)")
        inner = _nonzero_box(self.mask_box(self.global_crop), (g0, 0, 0))
        self.focal_crop = tuple((max(a - FOCAL_MARGIN, lim0), min(b + FOCAL_MARGIN, lim1))
                                for (a, b), (lim0, lim1) in zip(inner, self.global_crop))

    def mask_box(self, box) -> np.ndarray:
        """The stage-2 mask (float32 0/1) inside `box`."""
        out = np.zeros(tuple(b - a for a, b in box), dtype=np.float32)
        src, dst = [], []
        for (a, b), o, n in zip(box, self.mask0, self.mask.shape):
            lo, hi = max(a, o), min(b, o + n)
            if hi <= lo:
                return out
            src.append(slice(lo - o, hi - o))
            dst.append(slice(lo - a, hi - a))
        out[tuple(dst)] = self.mask[tuple(src)]
        return out

    def block(self, grid, sampler, box, pad_value, rows=None, integer=False, coverage=None):
        """Stage-2 values inside `box` (pad value outside the data region); `rows`: per-axis box-relative indices
        actually needed (others stay 0). With `coverage` (a Canon), also says whether any sample fell outside it."""
        out = np.full(tuple(b - a for a, b in box), pad_value, dtype=np.float32)
        idx = []
        for m, ((a, b), (lo, hi)) in enumerate(zip(box, self.data)):
            want = np.arange(a, b) if rows is None else a + np.asarray(rows[m], dtype=int)
            idx.append(want[(want >= lo) & (want < hi)])
        if any(len(i) == 0 for i in idx):
            return out, False
        t = [self.dz - idx[0], self.hy - idx[1], idx[2] - self.wx]        # target z', y', x' (z', y' decreasing)
        vals = sampler([(tz, None) for tz in t])
        if integer:
            round_half_away(vals)
        dst = [i - a for i, (a, _) in zip(idx, box)]
        ranges = [slice(int(i[0]), int(i[-1]) + 1) if i[-1] - i[0] + 1 == len(i) else None for i in dst]
        if sum(r is None for r in ranges) <= 1:
            out[tuple(i if r is None else r for i, r in zip(dst, ranges))] = vals
        else:
            out[np.ix_(*dst)] = vals
        outside = False
        if coverage is None:
            return out, outside
        for m, tm in enumerate(t):
            axis = 2 - m
            c = world_map(grid, axis, tm, coverage)
            outside |= bool(np.any((c < 0) | (c > coverage.shape[m] - 1)))
        return out, outside


def _nonzero_box(arr: np.ndarray, origin):
    """[(start, end)] per axis of the non-zero voxels of `arr`, in absolute indices; None when empty."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(arr.any(axis=other))
        if not nz.size:
            return None
        box.append((int(origin[axis] + nz[0]), int(origin[axis] + nz[-1] + 1)))
    return tuple(box)


def _normalise(a: np.ndarray, lo: float, hi: float) -> None:
    """In place, float32 as the official code: clip(lo, hi), then (x - lo) / (hi - lo)."""
    np.clip(a, lo, hi, out=a)
    a -= np.float32(lo)
    a /= np.float32(hi - lo)


def _fg_box(pet_norm: np.ndarray, crop, what: str):
    """MONAI CropForeground (select PET > 0, margin 0) inside `crop`: absolute [start, end) per axis."""
    box = _nonzero_box(pet_norm > 0, [a for a, _ in crop])
    if box is None:
        raise InputError(f"the PET has no uptake above 0 in the {what} view around the lesion: check that the mask "
                         "belongs to this PET")
    return box


def _resize_reads(n_in: int, n_out: int) -> np.ndarray:
    """Input indices torch's trilinear resize (align_corners False) reads along one axis (a safe superset)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    base = np.floor(src).astype(int)
    frac = src - base
    idx = [base, base + 1, np.where(frac < 1e-3, base - 1, base), np.where(frac > 1 - 1e-3, base + 2, base)]
    return np.unique(np.clip(np.concatenate(idx), 0, n_in - 1))


def _resize(a: np.ndarray, size, mode: str) -> np.ndarray:
    """MONAI Resized as the official pipeline calls it: torch interpolate, align_corners off, no anti-aliasing."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    if tuple(a.shape) != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode=mode, align_corners=False if mode == "trilinear" else None)
    return t[0].numpy().astype(np.float32, copy=False)


def _box_json(box) -> list:
    return [[int(a), int(b)] for a, b in box]
