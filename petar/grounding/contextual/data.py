"""The grounding training dataset (nnU-Net raw layout + sentences) and the preprocessing training and inference share.

Layout of a dataset folder:

    dataset.json        {"name", "channel_names": {"0": "PET", "1": "CT"}, "labels": {"background": 0, "lesion": 1},
                         "numTraining": <sentences>, "file_ending": ".nii.gz", "sentences": "sentences.jsonl", ...}
    imagesTr/<case>_0000.nii.gz   PET in SUV (body weight, g/mL)
    imagesTr/<case>_0001.nii.gz   CT in HU (any grid covering the PET; omit it and "1" for a PET-only dataset)
    labelsTr/<case>_<k>.nii.gz    one binary label per sentence (the lesion that sentence describes), PET grid
    sentences.jsonl     one line per sentence: {"case": .., "label_file": "labelsTr/<case>_<k>.nii.gz",
                                                "sentence": .., "tracer": ..}

Preprocessing (as the paper): PET and CT resampled (linear; SimpleITK) to the plans' spacing (3 mm; tiny: 6 mm) on a
grid spanning the PET's field of view; SUV clipped to [0, 10] and CT to [−150, 250] HU, each scaled to [0, 1]; CT
outside its field of view is air. Labels are resampled linearly and thresholded at 0.5 (any overlap when that
empties a small lesion). Training keeps preprocessed cases in `<model>/preprocessed/` (safe to delete).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_path, write_json
from ...errors import InputError
from ...volume import Volume

log = logging.getLogger("petar.grounding.contextual")
CHANNEL_SUFFIX = {"PET": "_0000", "CT": "_0001"}
CT_FILL_HU = -1024.0


@dataclass
class Sentence:
    case: str
    label_file: Path
    sentence: str
    tracer: str | None
    line: int


class GroundingDataset:
    """A dataset folder, checked on opening: every file it names exists, every sentence line is complete."""

    def __init__(self, root):
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise InputError(f"{self.root} has no dataset.json: not a grounding dataset (make one with "
                             "`petar make-grounding-dataset`)")
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
            names = [self.meta["channel_names"][str(i)] for i in range(len(self.meta["channel_names"]))]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{meta_path} is not a valid dataset.json ({type(e).__name__}: {e})") from None
        self.channels = [str(n).upper() for n in names]
        if self.channels not in (["PET"], ["PET", "CT"]):
            raise InputError(f"{meta_path}: channel_names must be {{'0': 'PET'}} or {{'0': 'PET', '1': 'CT'}}, got "
                             f"{names}")
        self.sentences = self._read_sentences(self.root / self.meta.get("sentences", "sentences.jsonl"))
        self.cases = sorted({s.case for s in self.sentences})
        for case in self.cases:
            for channel in self.channels:
                p = self.image_path(case, channel)
                if not p.is_file():
                    raise InputError(f"{p} is missing (case {case!r}, channel {channel})")

    def _read_sentences(self, path: Path) -> list[Sentence]:
        if not path.is_file():
            raise InputError(f"{path} is missing: the dataset needs one sentence per label file")
        out = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                case, label, text = str(row["case"]), str(row["label_file"]), str(row["sentence"])
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f"{path} line {n}: expected {{case, label_file, sentence, tracer}} ({e})") from None
            if not text.strip() or not case or "/" in case or "\\" in case:
                raise InputError(f"{path} line {n}: empty sentence or bad case name {case!r}")
            label_path = (self.root / label).resolve()
            if not label_path.is_file():
                raise InputError(f"{path} line {n}: label file {label} does not exist")
            out.append(Sentence(case, label_path, text, row.get("tracer"), n))
        if not out:
            raise InputError(f"{path} holds no sentences")
        return out

    def image_path(self, case: str, channel: str) -> Path:
        return self.root / "imagesTr" / f"{case}{CHANNEL_SUFFIX[channel]}.nii.gz"

    def read_case(self, case: str) -> tuple[Volume, Volume | None]:
        from ...io import read_pet, read_volume

        pet = read_pet(self.image_path(case, "PET"))
        ct = read_volume(self.image_path(case, "CT")) if "CT" in self.channels else None
        return pet, ct


def split_cases(cases: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Fold 0 of a 5-fold split by case (never by sentence: one patient's lesions stay on one side).

    One case only: (cases, []) — the caller validates on the training case and says so.
    """
    cases = sorted(cases)
    if len(cases) < 2:
        return cases, []
    perm = [cases[i] for i in np.random.default_rng(seed).permutation(len(cases))]
    n_val = max(1, int(round(len(cases) / 5)))
    return sorted(perm[n_val:]), sorted(perm[:n_val])


# ---- geometry and normalisation -----------------------------------------------------------------------------------
def target_grid(pet: Volume, spacing) -> Volume:
    """An empty volume at `spacing` (x, y, z mm) spanning the PET's field of view (outer edges aligned)."""
    sp_old, sp_new = np.asarray(pet.spacing), np.asarray(spacing, dtype=float)
    size = np.maximum(1, np.round(np.asarray(pet.size) * sp_old / sp_new)).astype(int)
    origin = np.asarray(pet.origin) + pet.direction @ ((sp_new - sp_old) / 2.0)
    return Volume(np.zeros(tuple(size[::-1]), np.uint8), tuple(sp_new), tuple(origin), pet.direction.copy())


def _resample(volume: Volume, grid: Volume, default: float) -> np.ndarray:
    import SimpleITK as sitk

    img = volume.to_sitk()
    if img.GetPixelID() != sitk.sitkFloat32:
        img = sitk.Cast(img, sitk.sitkFloat32)
    out = sitk.Resample(img, grid.to_sitk(), sitk.Transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def normalise(array: np.ndarray, channel: str, plans: dict) -> np.ndarray:
    lo, hi = plans["normalization"][channel]["clip"]
    return ((np.clip(array, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def preprocess(pet: Volume, ct: Volume | None, plans: dict) -> tuple[np.ndarray, Volume, dict]:
    """(image (C, Z, Y, X) float32 in [0, 1], the resampled grid, info) for the plans' channels."""
    from ...io.grid import overlap_fraction

    grid = target_grid(pet, plans["spacing"])
    channels, info = [normalise(_resample(pet, grid, 0.0), "PET", plans)], {}
    if "CT" in plans["channels"]:
        if ct is None:
            raise InputError("this model needs the CT (it was trained on PET + CT): give --ct")
        covered = overlap_fraction(pet, ct)
        if covered == 0.0:
            raise InputError("the PET and the CT do not overlap in space (different scans or frames of reference?):"
                             " give the CT of this PET/CT study")
        info["ct_coverage"] = round(covered, 3)
        if covered < 0.9:
            info["warning"] = f"the CT covers only {100 * covered:.0f}% of the PET field of view; air elsewhere"
        channels.append(normalise(_resample(ct, grid, CT_FILL_HU), "CT", plans))
    elif ct is not None:
        info["ct_ignored"] = "the model was trained on PET only"
    return np.stack(channels), grid, info


def label_on_grid(label: Volume, grid: Volume) -> np.ndarray:
    """Binary label resampled to `grid` (linear, > 0.5; > 0 when that would empty the lesion)."""
    frac = _resample(Volume.from_array((label.array > 0).astype(np.float32), like=label), grid, 0.0)
    out = frac > 0.5
    if not out.any() and (label.array > 0).any():
        out = frac > 0.0
    return out.astype(np.uint8)


# ---- cached cases and patches -------------------------------------------------------------------------------------
class CaseStore:
    """Preprocessed cases (image float16, one uint8 label per sentence) cached as .npy/.npz in `cache_dir`."""

    def __init__(self, dataset: GroundingDataset, plans: dict, cache_dir):
        self.dataset, self.plans = dataset, plans
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = {"spacing": list(plans["spacing"]), "channels": list(plans["channels"]),
                 "normalization": plans["normalization"]}
        stamp_path = self.dir / "fingerprint.json"
        if stamp_path.is_file() and json.loads(stamp_path.read_text(encoding="utf-8")) != stamp:
            for f in list(self.dir.glob("*.np[yz]")):
                f.unlink()
        write_json(stamp_path, stamp)
        self._last: tuple | None = None

    def get(self, case: str) -> tuple[np.ndarray, dict]:
        """(image (C, Z, Y, X), {label file name: uint8 (Z, Y, X)})."""
        if self._last is not None and self._last[0] == case:
            return self._last[1], self._last[2]
        img_path, lab_path = self.dir / f"{case}.npy", self.dir / f"{case}_labels.npz"
        if not (img_path.is_file() and lab_path.is_file()):
            self._prepare(case, img_path, lab_path)
        image = np.load(img_path, mmap_mode="r", allow_pickle=False)
        with np.load(lab_path, allow_pickle=False) as z:
            labels = {k: z[k] for k in z.files}
        self._last = (case, image, labels)
        return image, labels

    def _prepare(self, case: str, img_path: Path, lab_path: Path) -> None:
        from ...io import read_mask

        pet, ct = self.dataset.read_case(case)
        image, grid, _ = preprocess(pet, ct, self.plans)
        labels = {}
        for s in self.dataset.sentences:
            if s.case == case:
                labels[s.label_file.name.replace(".", "_")] = label_on_grid(read_mask(s.label_file, pet), grid)
        with atomic_path(img_path) as tmp:
            np.save(tmp, image.astype(np.float16))
        with atomic_path(lab_path) as tmp:
            np.savez_compressed(tmp, **labels)

    @staticmethod
    def key(sentence: Sentence) -> str:
        return sentence.label_file.name.replace(".", "_")


def sample_patch(image: np.ndarray, label: np.ndarray, patch, rng: np.random.Generator, fg_probability: float):
    """A (C, *patch) float32 image crop and its (patch) int64 label: centred near the lesion with probability
    `fg_probability`, anywhere otherwise; volumes smaller than the patch are zero-padded (centred)."""
    patch = np.asarray(patch, dtype=int)
    shape = np.asarray(label.shape)
    pad = np.maximum(patch - shape, 0)
    if pad.any():
        widths = [(int(p // 2), int(p - p // 2)) for p in pad]
        image = np.pad(image, [(0, 0)] + widths)
        label = np.pad(label, widths)
        shape = np.asarray(label.shape)
    span = shape - patch
    fg = np.argwhere(label > 0) if rng.random() < fg_probability else np.empty((0, 3))
    if len(fg):
        centre = fg[rng.integers(len(fg))] + rng.integers(-(patch // 4), patch // 4 + 1)
        start = np.clip(centre - patch // 2, 0, span)
    else:
        start = np.array([rng.integers(0, s + 1) for s in span])
    sl = tuple(slice(int(a), int(a + p)) for a, p in zip(start, patch))
    return (np.asarray(image[(slice(None),) + sl], dtype=np.float32),
            np.asarray(label[sl], dtype=np.int64))
