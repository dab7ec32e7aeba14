"""Training (`petar train-grounding`): DiceCE, AdamW, warm-up + cosine, AMP on CUDA, checkpoints, resume, validation.

One step = one sentence (batch 1): a patch of its case (centred near the described lesion with the plans'
`foreground_probability`, anywhere otherwise), its label, its encoded text. An epoch is one pass over the training
sentences in a seeded order; `steps` caps the total number of optimiser steps (alone it replaces the epoch count;
with `epochs`, whichever ends first) and sizes the learning-rate schedule. No augmentation at all (the paper uses
none; flips would break laterality). Validation after each epoch runs the real inference path (whole volume,
sliding window, best component, PET grid) on held-out cases and scores F1 with the paper's rule (an overlapping
predicted component whose SUVmax is within 0.1 of the reference's; `petar.metrics.grounding`) plus mean Dice.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...atomic import write_json
from ...errors import DeviceMemoryError, InputError, PetarError
from .checkpoint import FINAL, FOLD, LATEST, load_checkpoint, read_text_config, resolve_text_dir, save_checkpoint
from .data import CaseStore, GroundingDataset, sample_patch, split_cases
from .plans import make_plans, read_plans

log = logging.getLogger("petar.grounding.contextual")
_LOSS_KEEP = 10000


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Cross-entropy + (1 − soft Dice of the lesion class), per sample then averaged; background not in the Dice."""
    logits = logits.float()
    ce = F.cross_entropy(logits, target)
    prob = torch.softmax(logits, dim=1)[:, 1]
    fg = (target == 1).float()
    dims = tuple(range(1, prob.ndim))
    inter = (prob * fg).sum(dims)
    dice = (2 * inter + smooth) / (prob.sum(dims) + fg.sum(dims) + smooth)
    return ce + (1 - dice).mean()


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to `base_lr`, then cosine decay to 0 at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return torch.autocast("cpu", enabled=False)


def _setup(data, out: Path, config, text_encoder, resume: bool, dataset: GroundingDataset, dev: torch.device):
    """(plans, text config, checkpoint or None) for a new run or a resumed one; refuses to clobber a model."""
    latest = out / FOLD / LATEST
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: give a folder for the model")
    if resume:
        if not latest.is_file():
            raise InputError(f"nothing to resume in {out} (no {FOLD}/{LATEST}): drop --resume to start training")
        plans, text_cfg = read_plans(out / "plans.json"), read_text_config(out)
        if config is not None and config != plans["configuration"]:
            raise InputError(f"{out} was trained with --config {plans['configuration']}, not {config}")
        if text_encoder is not None and str(text_encoder) != text_cfg["id_or_dir"]:
            raise InputError(f"{out} was trained with the text encoder {text_cfg['id_or_dir']}: resume with that one")
        return plans, text_cfg, load_checkpoint(latest)
    if latest.is_file() or (out / FOLD / FINAL).is_file():
        raise InputError(f"{out} already holds a trained model: pass --resume to continue it or choose a new --out")
    if config is None:
        config = "default" if dev.type == "cuda" else "tiny"
        log.warning("no --config given: using %r on %s (tiny is the CPU smoke network; default is the paper's, "
                    "for a GPU)", config, dev.type)
    plans = make_plans(config, dataset.channels)
    from .text import DEFAULT_TEXT_ENCODER

    return plans, {"id_or_dir": str(text_encoder or DEFAULT_TEXT_ENCODER), "max_length": plans["text_max_length"]}, None


def train_grounding(data, out, config: str | None = None, text_encoder: str | None = None, epochs: int | None = None,
                    steps: int | None = None, device="auto", resume: bool = False, progress: bool = True,
                    log_every: int = 10) -> dict:
    """Train (or resume) a ConTEXTual Net 3D on a grounding dataset folder; returns a summary dict."""
    from ...report.model.loader import resolve_device
    from .network import build_network
    from .text import TextEncoder

    out, dataset = Path(out), GroundingDataset(data)
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and int(value) < 1:
            raise InputError(f"--{name} must be >= 1, got {value}")
    dev = resolve_device(device)
    plans, text_cfg, doc = _setup(data, out, config, text_encoder, resume, dataset, dev)
    if plans["channels"] != dataset.channels:
        raise InputError(f"the model uses channels {plans['channels']} but {dataset.root} has {dataset.channels}")
    tr = plans["training"]
    torch.manual_seed(int(tr["seed"]))
    encoder = TextEncoder(resolve_text_dir(text_cfg["id_or_dir"], out), text_cfg["max_length"], dev)
    net = build_network(plans, encoder.hidden_size).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]))
    use_scaler = dev.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    if doc is None:
        out.mkdir(parents=True, exist_ok=True)
        train_cases, val_cases = split_cases(dataset.cases, int(tr["seed"]))
        write_json(out / "plans.json", plans)
        write_json(out / "dataset.json", dataset.meta)
        write_json(out / "text_encoder.json", encoder.describe() | {"id_or_dir": text_cfg["id_or_dir"]})
        write_json(out / "splits.json", [{"train": train_cases, "val": val_cases}])
        history = {"loss": [], "epoch_loss": [], "val_f1": [], "val_dice": [], "val_step": []}
    else:
        net.load_state_dict(doc["network_weights"])
        opt.load_state_dict(doc["optimizer_state"])
        if use_scaler and doc.get("grad_scaler_state"):
            scaler.load_state_dict(doc["grad_scaler_state"])
        split = json.loads((out / "splits.json").read_text(encoding="utf-8"))[0]
        train_cases, val_cases = split["train"], split["val"]
        history = doc.get("logging") or {"loss": [], "epoch_loss": [], "val_f1": [], "val_dice": [], "val_step": []}
    train_items = [s for s in dataset.sentences if s.case in set(train_cases)]
    if not train_items:
        raise InputError(f"no training sentences: the cases of {dataset.root} do not match {out / 'splits.json'}")
    val_items = [s for s in dataset.sentences if s.case in set(val_cases)] or train_items
    val_items = val_items[: int(tr["max_validation_sentences"])]
    per_epoch = len(train_items)
    n_epochs = int(epochs or tr["epochs"])
    total = min(n_epochs * per_epoch, int(steps)) if steps and epochs else int(steps or n_epochs * per_epoch)
    warmup = int(round(float(tr["warmup_fraction"]) * total))
    step = int(doc["step"]) if doc else 0
    if step >= total:
        raise InputError(f"{out} is already at step {step} of {total}: ask for more --steps or --epochs to resume")
    store = CaseStore(dataset, plans, out / "preprocessed")
    base_lr, seed = float(tr["lr"]), int(tr["seed"])
    patch, fg_p, clip = plans["patch_size"], float(tr["foreground_probability"]), float(tr["grad_clip"])
    every = int(tr.get("checkpoint_every_steps", 500))
    bar = _progress(progress, total, step)
    epoch_losses: list[float] = []
    t0, validated_at = time.perf_counter(), None
    net.train()
    try:
        while step < total:
            epoch, pos = divmod(step, per_epoch)
            order = np.random.default_rng([seed, epoch]).permutation(per_epoch)
            item = train_items[int(order[pos])]
            image, labels = store.get(item.case)
            x, y = sample_patch(image, labels[CaseStore.key(item)], patch, np.random.default_rng([seed, 1, step]), fg_p)
            lr = lr_at(step, base_lr, warmup, total)
            for group in opt.param_groups:
                group["lr"] = lr
            text = encoder.encode(item.sentence)
            with _autocast(dev):
                logits = net(torch.from_numpy(x)[None].to(dev), text)
            loss = dice_ce_loss(logits, torch.from_numpy(y)[None].to(dev))
            if not torch.isfinite(loss) and not use_scaler:
                raise PetarError(f"the loss became {loss.item()} at step {step}: training diverged; lower the "
                                 "learning rate in plans.json or check the dataset")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            scaler.step(opt)
            scaler.update()
            value = float(loss.detach())
            history["loss"] = (history["loss"] + [value])[-_LOSS_KEEP:]
            epoch_losses.append(value)
            step += 1
            _tick(bar, step, total, value, lr, log_every)
            if step % per_epoch == 0 or step == total:
                if step % per_epoch == 0 and epoch_losses:
                    history["epoch_loss"].append(float(np.mean(epoch_losses)))
                    epoch_losses = []
                f1, dice = validate(net, encoder, dataset, val_items, plans, dev)
                history["val_f1"].append(f1)
                history["val_dice"].append(dice)
                history["val_step"].append(step)
                validated_at = step
                log.info("step %d (epoch %d): validation F1 %s, mean Dice %.3f", step, step // per_epoch,
                         "n/a" if f1 is None else f"{f1:.3f}", dice)
                net.train()
            if step % per_epoch == 0 or step % every == 0 or step == total:
                save_checkpoint(out / FOLD / LATEST, _doc(net, opt, scaler, use_scaler, base_lr, warmup, total, step,
                                                          per_epoch, plans, text_cfg, encoder, history))
    except torch.cuda.OutOfMemoryError:
        raise DeviceMemoryError(f"the GPU ran out of memory at patch {patch}: use --config tiny, a smaller "
                                "patch_size in a custom plans.json, or --device cpu") from None
    finally:
        if bar is not None:
            bar.close()
    final = _doc(net, opt, scaler, use_scaler, base_lr, warmup, total, step, per_epoch, plans, text_cfg, encoder,
                 history)
    save_checkpoint(out / FOLD / FINAL, final)
    return {"model_dir": str(out), "steps": step, "total_steps": total, "epochs": step / per_epoch,
            "device": str(dev), "plans_name": plans["plans_name"], "text_encoder": text_cfg["id_or_dir"],
            "first_loss": history["loss"][0] if history["loss"] else None,
            "last_loss": history["loss"][-1] if history["loss"] else None,
            "val_f1": history["val_f1"][-1] if history["val_f1"] else None,
            "val_dice": history["val_dice"][-1] if history["val_dice"] else None,
            "validated_on": "held-out cases" if val_cases else "the training case (only one case in the dataset)",
            "validated_at_step": validated_at, "seconds": round(time.perf_counter() - t0, 1)}


def _doc(net, opt, scaler, use_scaler, base_lr, warmup, total, step, per_epoch, plans, text_cfg, encoder,
         history) -> dict:
    return {"network_weights": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer_state": opt.state_dict(),
            "grad_scaler_state": scaler.state_dict() if use_scaler else None,
            "scheduler": {"kind": "warmup_cosine", "base_lr": base_lr, "warmup_steps": warmup, "total_steps": total},
            "epoch": step // per_epoch, "step": step, "steps_per_epoch": per_epoch,
            "plans_name": plans["plans_name"], "text_encoder": text_cfg["id_or_dir"],
            "init_args": {"text_dim": encoder.hidden_size, "channels": list(plans["channels"]),
                          "configuration": plans["configuration"], "text_max_length": encoder.max_length},
            "trainer_name": "petar.grounding.contextual.train", "inference_allowed_mirroring_axes": None,
            "logging": {k: list(v) for k, v in history.items()}}


@torch.no_grad()
def validate(net, encoder, dataset: GroundingDataset, items, plans, device) -> tuple[float | None, float]:
    """(F1 under the paper's SUVmax rule — None when petar.metrics is unavailable —, mean Dice) over `items`."""
    from ...io import read_mask
    from .predict import predict_volume

    try:
        from ...metrics.grounding import match_components
    except ImportError:  # the metrics module is optional here: Dice alone then
        match_components = None
    net.eval()
    tp = fp = fn = 0
    dices, loaded = [], (None, None)
    for s in items:
        if loaded[0] != s.case:
            loaded = (s.case, dataset.read_case(s.case))
        pet, ct = loaded[1]
        ref = read_mask(s.label_file, pet).array > 0
        pred = predict_volume(net, encoder.encode(s.sentence), pet, ct, plans, device).mask.array > 0
        denom = pred.sum() + ref.sum()
        dices.append(1.0 if denom == 0 else float(2 * (pred & ref).sum() / denom))
        if match_components is not None:
            c = match_components(pred, ref, pet.array, rule="suvmax")
            tp, fp, fn = tp + c.tp, fp + c.fp, fn + c.fn
    f1 = None if match_components is None else (1.0 if tp + fp + fn == 0 else tp / (tp + 0.5 * (fp + fn)))
    return f1, float(np.mean(dices)) if dices else 0.0


def _progress(enabled: bool, total: int, start: int):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=start, desc="train-grounding", unit="step", dynamic_ncols=True)


def _tick(bar, step: int, total: int, loss: float, lr: float, every: int) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
    elif step % max(1, every) == 0 or step == total:
        log.info("step %d/%d loss %.4f lr %.2e", step, total, loss, lr)
