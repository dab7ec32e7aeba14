"""Synthetic whole-body PET/CT phantom with known lesions: ground truth for tests, benchmarks and demos.

It must also run inside 3D Slicer, so only numpy and SimpleITK are imported (no scipy).

Geometry: identity direction, LPS world (+x patient left, +y posterior, +z superior), the grid centred on (0, 0, 0),
k = 0 the feet end, so the axial slice number of plane k is nz − k (slices.py, counted from the superior end).
PET and CT share one grid for simplicity (a real CT is finer). The lesion label map is each lesion's true geometric
shape (voxel centre inside its ellipsoid), independent of blur and noise.

Anatomy is laid out in a reference field of view of 600 × 600 × 1050 mm (x, y, z; feet at z = 0) and scaled per
axis to the requested field of view, so a small test grid is still a whole body in miniature. Lesion sizes are
always in mm; the default lesion positions follow the scaled organs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path, write_json
from .errors import InputError
from .slices import index_to_slice
from .volume import Volume

REF_FOV = np.array([600.0, 600.0, 1050.0])  # mm (x, y, z) in which the reference anatomy below is laid out

# Nominal tissue values before blur and noise: name -> (SUV g/mL, CT HU).
TISSUES = {
    "air": (0.0, -1000), "fat": (0.45, -100), "soft_tissue": (0.9, 40), "muscle": (1.0, 50),
    "bone": (0.8, 700), "lung": (0.5, -800), "liver": (2.2, 60), "spleen": (2.0, 50), "kidney": (4.0, 30),
    "blood_pool": (1.8, 45), "bladder": (20.0, 10), "brain": (7.0, 35),
}
LESION_HU = 40
CT_NOISE_HU = 8.0
FAT_MM = 15.0            # reference subcutaneous fat thickness (scales with the field of view)
MIDLINE_MM = 5.0         # |x| below this is "midline"
REGIONS = ("head_neck", "chest", "abdomen", "pelvis")
LATERALITIES = ("left", "right", "midline")

# Reference anatomy, mm in REF_FOV. Cylinders: (centre x, y), (semi-axes x, y), (z from, z to).
# Ellipsoids: centre (x, y, z), semi-axes (x, y, z).
TORSO = ((0, 0), (175, 115), (150, 800))
NECK = ((0, 15), (55, 60), (760, 880))
THIGHS = [((s * 85, 5), (75, 80), (0, 190)) for s in (1, -1)]
HEAD = ((0, 0, 935), (80, 100, 110))
PARASPINAL = [((s * 45, 78), (30, 20), (300, 780)) for s in (1, -1)]
SPINE = ((0, 55), (16, 16), (250, 870))
ILIAC_WINGS = [((s * 100, 30, 300), (25, 55, 45)) for s in (1, -1)]
FEMURS = [((s * 85, 5), (14, 14), (0, 200)) for s in (1, -1)]
LIVER = ((-80, -10, 500), (75, 85, 75))
SPLEEN = ((90, 40, 530), (35, 40, 50))
KIDNEYS = {"left_kidney": ((70, 45, 420), (28, 30, 55)), "right_kidney": ((-70, 45, 400), (28, 30, 55))}
LUNGS = {"left_lung": ((80, 0, 650), (60, 85, 125)), "right_lung": ((-80, 0, 660), (60, 85, 125))}
HEART = ((25, -30, 590), (60, 50, 55))
AORTA = ((20, 25), (12, 12), (320, 700))
BLADDER = ((0, -40, 230), (45, 35, 35))
# z landmarks (reference mm) that split the body into report regions
NECK_BASE_Z, DIAPHRAGM_Z, ILIAC_CREST_Z = 800.0, 540.0, 345.0


@dataclass(eq=False)
class Phantom:
    """PET (float32 SUV), CT (int16 HU), lesion labels (1..N) on one grid, and the truth a measurement must find."""

    pet: Volume
    ct: Volume
    lesions: Volume
    truth: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)   # seed, shape, spacing, organs, anchors_lps: the header of truth.json

    def truth_document(self) -> dict:
        return {**self.meta, "slice_origin": "superior", "lesions": self.truth}

    def write(self, out_dir) -> dict:
        """Write pet/ct/lesions .nii.gz and truth.json into `out_dir`; each file appears atomically (temp + rename)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {key: out / f"{key}.nii.gz" for key in ("pet", "ct", "lesions")}
        for key, path in paths.items():
            with atomic_path(path) as tmp:
                sitk.WriteImage(getattr(self, key).to_sitk(), str(tmp), True)
        paths["truth"] = out / "truth.json"
        write_json(paths["truth"], self.truth_document())
        return paths


# ---- grid and shapes ------------------------------------------------------------------------------------------
class _Grid:
    """Voxel-centre coordinates along each axis; shapes are evaluated only inside their bounding boxes."""

    def __init__(self, shape, spacing):
        self.shape = tuple(shape)                       # (nz, ny, nx)
        self.spacing = tuple(spacing)                   # (x, y, z)
        n = self.shape[::-1]
        self.origin = tuple(-(n[a] - 1) / 2.0 * self.spacing[a] for a in range(3))
        self.axes = [self.origin[a] + self.spacing[a] * np.arange(n[a]) for a in range(3)]

    def span(self, axis: int, lo: float, hi: float) -> slice:
        c = self.axes[axis]
        return slice(int(np.searchsorted(c, lo, "left")), int(np.searchsorted(c, hi, "right")))

    def ellipsoid(self, center, radii):
        """(slices, mask) of the voxels whose centres lie inside the axis-aligned ellipsoid."""
        sx, sy, sz = (self.span(a, center[a] - radii[a], center[a] + radii[a]) for a in range(3))
        dx, dy, dz = (((self.axes[a][s] - center[a]) / radii[a]) ** 2 for a, s in enumerate((sx, sy, sz)))
        return (sz, sy, sx), dz[:, None, None] + dy[None, :, None] + dx[None, None, :] <= 1.0

    def cylinder(self, cxy, rxy, z):
        """(slices, mask) of an elliptic cylinder along z: one 2D ellipse repeated over the z range."""
        sx, sy = (self.span(a, cxy[a] - rxy[a], cxy[a] + rxy[a]) for a in range(2))
        sz = self.span(2, z[0], z[1])
        dx, dy = (((self.axes[a][s] - cxy[a]) / rxy[a]) ** 2 for a, s in enumerate((sx, sy)))
        ellipse = dy[:, None] + dx[None, :] <= 1.0
        return (sz, sy, sx), np.broadcast_to(ellipse, (len(self.axes[2][sz]),) + ellipse.shape)


class _Anatomy:
    """Maps reference-anatomy mm to this grid's LPS mm (per-axis scale), and paints tissues onto PET and CT."""

    def __init__(self, grid: _Grid):
        self.grid = grid
        self.scale = np.array(grid.shape[::-1]) * np.array(grid.spacing) / REF_FOV
        self.z_feet = grid.origin[2] - grid.spacing[2] / 2.0
        self.pet = np.zeros(grid.shape, np.float32)
        self.ct = np.full(grid.shape, TISSUES["air"][1], np.float32)
        self.body = np.zeros(grid.shape, bool)
        self.organs = {"air": TISSUES["air"][0]}
        self.anchors = {}

    def point(self, x, y, z) -> tuple:
        return (x * self.scale[0], y * self.scale[1], self.z_feet + z * self.scale[2])

    def radii(self, rx, ry, rz) -> tuple:
        return (rx * self.scale[0], ry * self.scale[1], rz * self.scale[2])

    def z(self, z_ref: float) -> float:
        return self.z_feet + z_ref * self.scale[2]

    def ellipsoid(self, center, radii, shrink=0.0):
        return self.grid.ellipsoid(self.point(*center), self.radii(*(r - shrink for r in radii)))

    def cylinder(self, cxy, rxy, z, shrink=0.0):
        c, r = self.point(*cxy, 0), self.radii(*(v - shrink for v in rxy), 0)
        return self.grid.cylinder(c[:2], r[:2], (self.z(z[0]), self.z(z[1])))

    def paint(self, shape, tissue: str, body: bool = False):
        (sl, mask), (suv, hu) = shape, TISSUES[tissue]
        self.pet[sl][mask] = suv
        self.ct[sl][mask] = hu
        if body:
            self.body[sl][mask] = True
        self.organs[tissue] = suv


# ---- organs: painted in this order, later ones over earlier ones ------------------------------------------------
def _body(an: _Anatomy):
    """Torso, neck and thighs: a subcutaneous fat rim around soft tissue. Defines the body mask lesions must be in."""
    parts = [TORSO, NECK, *THIGHS]
    for part in parts:                      # all rims first, so one part's rim never covers another's interior
        an.paint(an.cylinder(*part), "fat", body=True)
    for part in parts:
        an.paint(an.cylinder(*part, shrink=FAT_MM), "soft_tissue")


def _muscles(an: _Anatomy):
    """Paraspinal muscles: a little uptake variation inside the soft tissue."""
    for part in PARASPINAL:
        an.paint(an.cylinder(*part), "muscle")


def _bones(an: _Anatomy):
    """Spine, iliac wings and femurs: dense on CT, low uptake, a background for bone lesions."""
    an.paint(an.cylinder(*SPINE), "bone")
    for wing in ILIAC_WINGS:
        an.paint(an.ellipsoid(*wing), "bone")
    for femur in FEMURS:
        an.paint(an.cylinder(*femur), "bone")
    an.anchors["spine"] = an.point(SPINE[0][0], SPINE[0][1], 420)


def _abdominal_organs(an: _Anatomy):
    """Liver on the patient's right (LPS x < 0), spleen on the left, kidneys; the lungs later cover their domes."""
    an.paint(an.ellipsoid(*LIVER), "liver")
    an.paint(an.ellipsoid(*SPLEEN), "spleen")
    an.anchors.update(liver=an.point(*LIVER[0]), spleen=an.point(*SPLEEN[0]))
    for name, organ in KIDNEYS.items():
        an.paint(an.ellipsoid(*organ), "kidney")
        an.anchors[name] = an.point(*organ[0])


def _lungs(an: _Anatomy):
    """Air-filled lungs; painted over the liver and spleen tops so the diaphragm domes look right."""
    for name, organ in LUNGS.items():
        an.paint(an.ellipsoid(*organ), "lung")
        an.anchors[name] = an.point(*organ[0])


def _blood_pool(an: _Anatomy):
    """Heart and descending aorta: the mediastinal blood-pool reference (SUV ~1.8)."""
    an.paint(an.ellipsoid(*HEART), "blood_pool")
    an.paint(an.cylinder(*AORTA), "blood_pool")
    an.anchors["heart"] = an.point(*HEART[0])
    an.anchors["mediastinum"] = an.point(0, -10, 700)


def _bladder(an: _Anatomy):
    """Urine-filled bladder low in the pelvis: the hottest organ, a trap for nearby lesions."""
    an.paint(an.ellipsoid(*BLADDER), "bladder")
    an.anchors["bladder"] = an.point(*BLADDER[0])


def _head(an: _Anatomy):
    """Scalp, skull and brain; the brain is the second hottest organ (SUV ~7)."""
    an.paint(an.ellipsoid(*HEAD), "soft_tissue", body=True)
    an.paint(an.ellipsoid(*HEAD, shrink=5), "bone")
    an.paint(an.ellipsoid(*HEAD, shrink=12), "brain")
    an.anchors["brain"] = an.point(*HEAD[0])


# ---- lesions ------------------------------------------------------------------------------------------------------
def _default_lesions(an: _Anatomy) -> list:
    """Eight varied lesions placed relative to the scaled organs, so they stay in place on small grids too."""
    (lx, _, lz), (lrx, _, lrz) = LUNGS["left_lung"]
    ax_z = 735.0
    lung_edge = lx + lrx * np.sqrt(1.0 - ((ax_z - lz) / lrz) ** 2)      # left lung's lateral edge at the axilla
    axilla_x = (lung_edge + TORSO[1][0]) / 2.0                             # halfway between lung and skin
    bc, br = an.point(*BLADDER[0]), an.radii(*BLADDER[1])
    gap_mm, obturator_r = 9.0, 7.0     # < 1 cm from the bladder wall: spill-in, yet separable at 41 %
    return [
        {"name": "left axillary node", "center_lps": an.point(axilla_x, 0, ax_z), "radii_mm": 8, "suv": 7.0},
        {"name": "right lung nodule", "center_lps": an.point(-80, -10, 690), "radii_mm": 7, "suv": 5.0},
        {"name": "mediastinal node", "center_lps": an.anchors["mediastinum"], "radii_mm": 8, "suv": 6.0},
        {"name": "liver lesion", "center_lps": an.point(-95, -20, 480), "radii_mm": 12, "suv": 6.0},
        {"name": "right iliac bone lesion", "center_lps": an.point(-100, 30, 300), "radii_mm": 9, "suv": 9.0},
        {"name": "left supraclavicular node", "center_lps": an.point(35, 0, 815), "radii_mm": 5, "suv": 4.0},
        {"name": "left external iliac node", "center_lps": an.point(70, -50, 295), "radii_mm": (14, 9, 10),
         "suv": 6.5},
        {"name": "right obturator node", "radii_mm": obturator_r, "suv": 5.0,   # gap_mm lateral of the bladder wall
         "center_lps": (bc[0] - br[0] - gap_mm - obturator_r, bc[1], bc[2])},
    ]


def _triple(value, what: str, name: str) -> np.ndarray:
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=float), (3,)).copy()
    except (TypeError, ValueError):
        raise InputError(f"lesion {name!r}: {what} must be a number or three numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise InputError(f"lesion {name!r}: {what} must be finite, got {value!r}")
    return arr


def _resolve(spec, number: int, an: _Anatomy) -> dict:
    """A caller's lesion dict → name, centre (LPS), radii, uptake and HU; raises InputError on anything unusable."""
    if not isinstance(spec, dict):
        raise InputError(f"lesion {number} must be a dict with name, center_lps (or anchor), radii_mm and suv")
    name = str(spec.get("name") or f"lesion {number}")
    if "center_lps" in spec:
        center = _triple(spec["center_lps"], "center_lps", name)
    elif "center_ras" in spec:
        center = _triple(spec["center_ras"], "center_ras", name) * np.array([-1.0, -1.0, 1.0])
    elif "anchor" in spec:
        if spec["anchor"] not in an.anchors:
            raise InputError(f"lesion {name!r}: unknown anchor {spec['anchor']!r}; use one of {sorted(an.anchors)}")
        center = np.array(an.anchors[spec["anchor"]]) + _triple(spec.get("offset_mm", 0.0), "offset_mm", name)
    else:
        raise InputError(f"lesion {name!r} needs center_lps, center_ras or anchor")
    if "radii_mm" not in spec or "suv" not in spec:
        raise InputError(f"lesion {name!r} needs radii_mm and suv")
    radii = _triple(spec["radii_mm"], "radii_mm", name)
    try:
        suv = float(spec["suv"])
    except (TypeError, ValueError):
        raise InputError(f"lesion {name!r}: suv must be a number, got {spec['suv']!r}") from None
    if np.any(radii <= 0) or not (np.isfinite(suv) and suv >= 0):
        raise InputError(f"lesion {name!r}: radii_mm must be > 0 and suv >= 0")
    for key, allowed in (("region", REGIONS), ("laterality", LATERALITIES)):
        if spec.get(key) is not None and spec[key] not in allowed:
            raise InputError(f"lesion {name!r}: {key} must be one of {allowed}, got {spec[key]!r}")
    # rounded as truth.json reports them, so the written truth reproduces the label map exactly
    return {"name": name, "center": np.round(center, 2), "radii": np.round(radii, 2), "suv": suv,
            "hu": float(spec.get("hu", LESION_HU)), "region": spec.get("region"), "laterality": spec.get("laterality")}


def _place_lesions(an: _Anatomy, specs: list) -> tuple:
    """Paint each lesion's uniform uptake and its label; refuse lesions outside the volume or body, or overlapping."""
    grid, labels, placed = an.grid, np.zeros(an.grid.shape, np.uint8 if len(specs) < 256 else np.uint16), []
    for number, spec in enumerate(specs, start=1):
        les = _resolve(spec, number, an)
        c, r, name = les["center"], les["radii"], les["name"]
        half = np.array(grid.spacing) / 2.0
        lo = np.array([ax[0] for ax in grid.axes]) - half
        hi = np.array([ax[-1] for ax in grid.axes]) + half
        if np.any(c - r < lo) or np.any(c + r > hi):
            raise InputError(f"lesion {name!r} at LPS {np.round(c, 1).tolist()} mm with radii {r.tolist()} mm lies "
                             f"outside the volume (x, y, z from {np.round(lo, 1).tolist()} to "
                             f"{np.round(hi, 1).tolist()} mm)")
        i, j, k = (int(np.argmin(np.abs(grid.axes[a] - c[a]))) for a in range(3))
        if not an.body[k, j, i]:
            raise InputError(f"lesion {name!r} centre at LPS {np.round(c, 1).tolist()} mm lies outside the body "
                             "(in air): move it inside the patient")
        sl, mask = grid.ellipsoid(c, r)
        if not mask.any():
            raise InputError(f"lesion {name!r} (radii {r.tolist()} mm) contains no voxel centre on this grid "
                             f"(spacing {grid.spacing} mm): make it larger")
        clash = labels[sl][mask]
        if clash.any():
            other = placed[int(clash[clash > 0][0]) - 1]["name"]
            raise InputError(f"lesions {other!r} and {name!r} overlap: move them apart or make them smaller")
        labels[sl][mask] = number
        an.pet[sl][mask] = les["suv"]
        an.ct[sl][mask] = les["hu"]
        les["box"] = sl
        placed.append(les)
    return labels, placed


def _region(an: _Anatomy, z: float) -> str:
    if z > an.z(NECK_BASE_Z):
        return "head_neck"
    if z > an.z(DIAPHRAGM_Z):
        return "chest"
    return "abdomen" if z > an.z(ILIAC_CREST_Z) else "pelvis"


def _laterality(x: float) -> str:
    return "midline" if abs(x) < MIDLINE_MM else ("left" if x > 0 else "right")


def _truth(les: dict, number: int, labels: np.ndarray, pet: Volume, an: _Anatomy) -> dict:
    """What a measurement must find: the maximum of the final PET inside the true shape, and where it is."""
    sl = les["box"]
    inside = labels[sl] == number
    values = np.where(inside, pet.array[sl], -np.inf)
    kb, jb, ib = np.unravel_index(int(np.argmax(values)), values.shape)
    k, j, i = kb + sl[0].start, jb + sl[1].start, ib + sl[2].start
    c = les["center"]
    voxels = int(inside.sum())
    return {
        "label": number, "name": les["name"],
        "region": les["region"] or _region(an, c[2]), "laterality": les["laterality"] or _laterality(c[0]),
        "center_lps": [round(float(v), 2) for v in c],
        "center_ras": [round(float(v), 2) for v in c * np.array([-1.0, -1.0, 1.0])],
        "radii_mm": [round(float(v), 2) for v in les["radii"]],
        "nominal_suv": round(les["suv"], 3),
        "suv_max": float(pet.array[k, j, i]),            # exact float32 value: no rounding, tests compare with ==
        "hottest_ijk": [int(i), int(j), int(k)],
        "axial_slice": index_to_slice(pet, int(k)),
        "volume_ml": round(voxels * pet.voxel_volume_ml, 3),
        "voxels": voxels,
    }


# ---- public -------------------------------------------------------------------------------------------------------
def _check_grid(shape, spacing) -> tuple:
    try:
        shape = tuple(int(n) for n in shape)
        spacing = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InputError("shape must be 3 integers (nz, ny, nx) and spacing 3 numbers (x, y, z) mm") from None
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 8 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise InputError(f"invalid phantom grid: shape {shape} (nz, ny, nx; each >= 8), spacing {spacing} mm (> 0)")
    return shape, spacing


def make_phantom(seed=0, shape=(350, 200, 200), spacing=(3.0, 3.0, 3.0), lesions=None, noise=0.05,
                 psf_fwhm_mm=6.0) -> Phantom:
    """Build a whole-body PET/CT phantom.

    shape is (nz, ny, nx) array order, spacing (x, y, z) mm; the default is a 600 × 600 × 1050 mm whole body.
    lesions: None for the default set, or a list of dicts {"name", "center_lps" | "center_ras" |
    "anchor" (+ "offset_mm"), "radii_mm" (number or (rx, ry, rz)), "suv", optional "hu", "region", "laterality"}.
    Anchors are organ centres on this grid (meta["anchors_lps"]): liver, spleen, left/right_kidney, left/right_lung,
    heart, mediastinum, bladder, brain, spine. Region and laterality default to what the centre implies.
    The PET is blurred with a Gaussian PSF (FWHM psf_fwhm_mm), then given Gaussian noise whose standard deviation is
    `noise` × (value + 0.05), then clipped at 0. The same seed gives identical arrays.
    """
    shape, spacing = _check_grid(shape, spacing)
    if not (np.isfinite(noise) and noise >= 0 and np.isfinite(psf_fwhm_mm) and psf_fwhm_mm >= 0):
        raise InputError(f"noise ({noise}) and psf_fwhm_mm ({psf_fwhm_mm}) must be finite and >= 0")
    rng = np.random.default_rng(seed)
    an = _Anatomy(_Grid(shape, spacing))
    for organ in (_body, _muscles, _bones, _abdominal_organs, _lungs, _blood_pool, _bladder, _head):
        organ(an)
    specs = _default_lesions(an) if lesions is None else list(lesions)
    labels, placed = _place_lesions(an, specs)

    pet = an.pet
    if psf_fwhm_mm > 0:
        image = sitk.GetImageFromArray(pet)
        image.SetSpacing(spacing)
        sigma_mm = psf_fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        pet = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, float(sigma_mm)))
    if noise > 0:   # sd grows with the signal, like count statistics after reconstruction; a floor keeps air noisy
        pet += rng.standard_normal(shape, dtype=np.float32) * np.float32(noise) * (pet + np.float32(0.05))
    np.maximum(pet, 0.0, out=pet)
    ct = an.ct + rng.standard_normal(shape, dtype=np.float32) * np.float32(CT_NOISE_HU)
    ct = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)

    grid = an.grid
    pet_vol = Volume(pet.astype(np.float32, copy=False), spacing, grid.origin)
    ct_vol = Volume(ct, spacing, grid.origin)
    label_vol = Volume(labels, spacing, grid.origin)
    truth = [_truth(les, n, labels, pet_vol, an) for n, les in enumerate(placed, start=1)]
    meta = {"seed": int(seed) if isinstance(seed, (int, np.integer)) else seed, "shape": list(shape),
            "spacing": list(spacing), "organs": dict(an.organs),
            "anchors_lps": {k: [round(float(v), 2) for v in p] for k, p in an.anchors.items()}}
    return Phantom(pet_vol, ct_vol, label_vol, truth, meta)
