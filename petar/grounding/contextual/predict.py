"""Inference: sliding window with Gaussian weighting over the whole volume, never mirrored, then one component.

Steps: preprocess PET (+ CT) to the plans' grid (data.preprocess); tile it with patches of `patch_size` at
`tile_step_size` × patch (nnU-Net's rule: the fewest windows at that step that cover the volume, evenly spread);
sum each window's logits weighted by a Gaussian (σ = patch/8, peak 1) and divide by the summed weights; softmax →
lesion probability; resample the probability linearly to the PET grid; threshold at 0.5; 26-connected components;
keep the one with the highest mean probability (the paper's `filter_prediction_by_average`). There is no test-time
mirroring and no flip anywhere: a left-right flip would turn "left axillary node" into the right one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import Cancelled
from ...lesion.components import label_components
from ...volume import Volume
from .data import preprocess


@dataclass
class ContextualPrediction:
    """mask: uint8 on the PET grid (one component or empty); mean_probability of that component (0 when empty);
    components: how many 26-connected components passed the threshold before the best was kept; info: details."""

    mask: Volume
    mean_probability: float
    components: int
    info: dict = field(default_factory=dict)


def window_starts(size: int, patch: int, step: float) -> list[int]:
    """Start indices along one axis: covers [0, size) with windows of `patch` at most step × patch apart."""
    if size <= patch:
        return [0]
    n = int(math.ceil((size - patch) / (patch * step))) + 1
    stride = (size - patch) / (n - 1)
    return [int(round(stride * i)) for i in range(n)]


def gaussian_importance(patch, sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """Separable Gaussian centred on the patch (σ = patch × sigma_scale per axis), peak 1, no zeros."""
    g = np.ones((), np.float64)
    for p in patch:
        x = np.arange(p) - (p - 1) / 2.0
        g = np.multiply.outer(g, np.exp(-0.5 * (x / max(p * sigma_scale, 1e-6)) ** 2))
    g = g / g.max()
    g[g == 0] = g[g > 0].min()
    return g.astype(np.float32)


def _autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def sliding_window_probability(network, image: np.ndarray, text: torch.Tensor, patch, step: float = 0.5,
                               gaussian: bool = True, device="cpu", on_progress=None,
                               should_stop=None) -> tuple[np.ndarray, int]:
    """Lesion probability (Z, Y, X) of a preprocessed (C, Z, Y, X) image, and the number of windows run.

    on_progress(fraction) is called after every window; should_stop() is checked before each one and raises
    `Cancelled` — a whole-body volume on the CPU takes minutes, and a user must be able to stop it."""
    device = torch.device(device)
    patch = [int(p) for p in patch]
    shape = image.shape[1:]
    pad = [max(p - s, 0) for p, s in zip(patch, shape)]
    lo = [p // 2 for p in pad]
    if any(pad):
        image = np.pad(image, [(0, 0)] + [(a, p - a) for a, p in zip(lo, pad)])
    padded = image.shape[1:]
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
    weight = torch.from_numpy(gaussian_importance(patch) if gaussian else np.ones(patch, np.float32)).to(device)
    logits = torch.zeros((2, *padded), dtype=torch.float32, device=device)
    norm = torch.zeros(padded, dtype=torch.float32, device=device)
    starts = [window_starts(s, p, step) for s, p in zip(padded, patch)]
    text = text.to(device)
    count, total = 0, len(starts[0]) * len(starts[1]) * len(starts[2])
    for z in starts[0]:
        for y in starts[1]:
            for xx in starts[2]:
                if should_stop is not None and should_stop():
                    raise Cancelled("grounding was cancelled")
                sl = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(xx, xx + patch[2]))
                with _autocast(device):
                    out = network(x[(slice(None),) + sl][None].contiguous(), text)[0].float()
                logits[(slice(None),) + sl] += out * weight
                norm[sl] += weight
                count += 1
                if on_progress is not None:
                    on_progress(count / total)
    prob = torch.softmax(logits / norm, dim=0)[1]
    crop = tuple(slice(a, a + s) for a, s in zip(lo, shape))
    return prob[crop].cpu().numpy(), count


def keep_best_component(prob: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, float, int]:
    """(mask of the 26-connected component above `threshold` with the highest mean probability, its mean, count)."""
    labels, n = label_components(prob >= threshold, full_connectivity=True)
    if n == 0:
        return np.zeros(prob.shape, np.uint8), 0.0, 0
    flat = labels.ravel()
    sums = np.bincount(flat, weights=prob.ravel().astype(np.float64), minlength=n + 1)[1:]
    sizes = np.bincount(flat, minlength=n + 1)[1:]
    means = sums / np.maximum(sizes, 1)
    best = int(np.argmax(means)) + 1
    return (labels == best).astype(np.uint8), float(means[best - 1]), n


def predict_volume(network, text_tokens: torch.Tensor, pet: Volume, ct: Volume | None, plans: dict,
                   device, on_progress=None, should_stop=None) -> ContextualPrediction:
    """Run the network over a whole PET(/CT) with the encoded sentence; the result is on the PET grid."""
    t0 = time.perf_counter()
    image, grid, info = preprocess(pet, ct, plans)
    inf = plans["inference"]
    prob, windows = sliding_window_probability(network, image, text_tokens, plans["patch_size"],
                                               float(inf.get("tile_step_size", 0.5)), bool(inf.get("gaussian", True)),
                                               device, on_progress, should_stop)
    prob_pet = _to_pet_grid(prob, grid, pet)
    mask, mean_p, n = keep_best_component(prob_pet, float(inf.get("threshold", 0.5)))
    info.update({"grid_shape": list(prob.shape), "spacing_mm": list(plans["spacing"]),
                 "patch_size": list(plans["patch_size"]), "windows": windows, "mirroring": False,
                 "threshold": float(inf.get("threshold", 0.5)), "max_probability": round(float(prob.max()), 4),
                 "seconds": round(time.perf_counter() - t0, 3)})
    return ContextualPrediction(Volume.from_array(mask, like=pet), mean_p, n, info)


def _to_pet_grid(prob: np.ndarray, grid: Volume, pet: Volume) -> np.ndarray:
    import SimpleITK as sitk

    img = Volume(prob.astype(np.float32), grid.spacing, grid.origin, grid.direction).to_sitk()
    out = sitk.Resample(img, pet.to_sitk(), sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)
