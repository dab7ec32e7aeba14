"""`petar make-grounding-dataset`: phantom PET/CT cases with one report sentence per lesion, in the training format.

Each case is a `make_phantom` whole body (default 120×64×64 voxels of 5 mm, a different seed per case) with 3–5
lesions drawn from a catalogue: the phantom's eight default lesions plus their left/right mirror images (so both
sides of the same site occur — the model has to read the laterality) and a splenic lesion, each with a random
uptake (nominal SUV 3–12) and size (0.8–1.25 × the default radii). Every lesion gets a sentence written from its
truth in one of several report styles, e.g. "FDG-avid left axillary node, SUVmax 7.4, image 106." — site and side
from the lesion's name, SUVmax and axial image (counted from the superior end) from the final PET. The folder
layout is described in `petar.grounding.contextual.data`; `truth/<case>.json` keeps each phantom's truth.
The dataset appears at once (built in a staging folder, then renamed): never half-written.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError

TEMPLATES = (
    "FDG-avid {name}, SUVmax {suv}, image {slice}.",
    "Hypermetabolic {name} measuring {size} cm with SUV max of {suv} (series 4, image {slice}).",
    "{Name} with intense FDG uptake, max SUV {suv}, axial image {slice}.",
    "There is an FDG-avid {name}, SUVmax: {suv} (4:{slice}).",
    "Increased FDG uptake in the {name} (SUVmax {suv}, slice {slice}).",
)
_SWAP = {"left": "right", "right": "left"}


def _mirror(t: dict) -> dict | None:
    words = t["name"].split()
    if not any(w in _SWAP for w in words):
        return None
    c = list(t["center_lps"])
    c[0] = -c[0]
    return {"name": " ".join(_SWAP.get(w, w) for w in words), "center_lps": c, "radii_mm": t["radii_mm"],
            "suv": t["nominal_suv"]}


def lesion_catalogue(shape, spacing) -> list[dict]:
    """Lesion specs that fit a phantom of this grid: defaults, their mirror images, a splenic lesion."""
    from ..phantom import make_phantom

    base = make_phantom(seed=0, shape=shape, spacing=spacing, noise=0.0, psf_fwhm_mm=0.0)
    out = []
    for t in base.truth:
        out.append({"name": t["name"], "center_lps": t["center_lps"], "radii_mm": t["radii_mm"],
                    "suv": t["nominal_suv"]})
        m = _mirror(t)
        if m is not None:
            out.append(m)
    spleen = base.meta["anchors_lps"]["spleen"]
    out.append({"name": "splenic lesion", "center_lps": spleen, "radii_mm": [8.0, 8.0, 8.0], "suv": 6.0})
    return out


def _apart(a: dict, b: dict, gap_mm: float) -> bool:
    d = np.linalg.norm(np.subtract(a["center_lps"], b["center_lps"]))
    return d > max(np.atleast_1d(a["radii_mm"])) + max(np.atleast_1d(b["radii_mm"])) + gap_mm


def _case_lesions(catalogue: list[dict], rng: np.random.Generator, gap_mm: float) -> list[dict]:
    want = int(rng.integers(3, 6))
    chosen = []
    for idx in rng.permutation(len(catalogue)):
        spec = dict(catalogue[int(idx)])
        spec["radii_mm"] = [round(float(r) * float(rng.uniform(0.8, 1.25)), 2) for r in np.broadcast_to(
            spec["radii_mm"], (3,))]
        spec["suv"] = round(float(rng.uniform(3.0, 12.0)), 2)
        if all(_apart(spec, other, gap_mm) for other in chosen):
            chosen.append(spec)
        if len(chosen) == want:
            break
    return chosen


def _phantom_case(make_phantom, seed, shape, spacing, catalogue, rng, gap, tries: int = 5):
    """A phantom with a random lesion set; a draw whose enlarged lesion leaves the body is drawn again."""
    for attempt in range(tries):
        try:
            return make_phantom(seed=seed, shape=shape, spacing=spacing, lesions=_case_lesions(catalogue, rng, gap))
        except InputError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def sentence_for(truth: dict, rng: np.random.Generator) -> str:
    """One report sentence for a phantom lesion's truth, in a randomly chosen style."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    name = truth["name"]
    size = 2 * max(truth["radii_mm"]) / 10.0
    return template.format(name=name, Name=name[:1].upper() + name[1:], suv=f"{truth['suv_max']:.1f}",
                           slice=truth["axial_slice"], size=f"{size:.1f}")


def make_grounding_dataset(out, cases: int = 4, seed: int = 0, shape=(120, 64, 64), spacing=(5.0, 5.0, 5.0),
                           tracer: str = "FDG") -> dict:
    """Write a phantom grounding dataset into `out` (which must not exist or be empty); returns a summary."""
    import SimpleITK as sitk

    from ..atomic import write_json
    from ..phantom import make_phantom

    out = Path(out)
    if int(cases) < 1:
        raise InputError(f"--cases must be >= 1, got {cases}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not an empty folder: choose a new --out")
    catalogue = lesion_catalogue(shape, spacing)
    gap = 2.0 * max(spacing)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        for sub in ("imagesTr", "labelsTr", "truth"):
            (staging / sub).mkdir()
        lines = []
        for i in range(int(cases)):
            case = f"case_{i:03d}"
            rng = np.random.default_rng([int(seed), i])
            ph = _phantom_case(make_phantom, int(seed) * 1000 + i, shape, spacing, catalogue, rng, gap)
            sitk.WriteImage(ph.pet.to_sitk(), str(staging / "imagesTr" / f"{case}_0000.nii.gz"), True)
            sitk.WriteImage(ph.ct.to_sitk(), str(staging / "imagesTr" / f"{case}_0001.nii.gz"), True)
            for t in ph.truth:
                label = f"labelsTr/{case}_{t['label']}.nii.gz"
                binary = ph.lesions.copy()
                binary.array = (ph.lesions.array == t["label"]).astype(np.uint8)
                sitk.WriteImage(binary.to_sitk(), str(staging / label), True)
                lines.append({"case": case, "label_file": label, "sentence": sentence_for(t, rng),
                              "tracer": tracer})
            (staging / "truth" / f"{case}.json").write_text(json.dumps(ph.truth_document(), indent=2) + "\n",
                                                            encoding="utf-8")
        (staging / "sentences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
        write_json(staging / "dataset.json", {
            "name": "petar phantom grounding", "channel_names": {"0": "PET", "1": "CT"},
            "labels": {"background": 0, "lesion": 1}, "numTraining": len(lines), "numCases": int(cases),
            "file_ending": ".nii.gz", "sentences": "sentences.jsonl", "tracer": tracer, "slice_origin": "superior",
            "generator": {"tool": "petar make-grounding-dataset", "seed": int(seed), "shape": list(shape),
                          "spacing": list(spacing)},
            "description": "PET in SUV (_0000), CT in HU (_0001); one label file and one sentence per lesion"})
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"out": str(out), "cases": int(cases), "sentences": len(lines)}
