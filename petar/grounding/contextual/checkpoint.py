"""The model folder (nnU-Net-style) and loading it for inference.

    MODEL_DIR/plans.json                 network, geometry, normalisation, training settings (plans.py)
    MODEL_DIR/dataset.json               the training dataset's dataset.json (channels, labels)
    MODEL_DIR/text_encoder.json          {"id_or_dir", "max_length", "hidden_size", "model_type"}
    MODEL_DIR/splits.json                the fold-0 case split used for validation
    MODEL_DIR/fold_0/checkpoint_latest.pth   written while training (for --resume)
    MODEL_DIR/fold_0/checkpoint_final.pth    written when training ends; what inference loads
    MODEL_DIR/preprocessed/              training cache (safe to delete; not needed for inference)

A checkpoint is a dict of tensors and plain Python values only, so `torch.load(..., weights_only=True)` reads it:
network_weights, optimizer_state, grad_scaler_state, scheduler {base_lr, warmup_steps, total_steps}, epoch, step,
plans_name, text_encoder, init_args {text_dim, channels, configuration}, logging {loss, val_f1, ...}, rng.
Plans that do not build the saved weights → InputError naming plans.json and the first mismatching key.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ...atomic import atomic_path
from ...errors import InputError, ModelMissingError
from ...volume import Volume
from .plans import read_plans
from .predict import ContextualPrediction, predict_volume

log = logging.getLogger("petar.grounding.contextual")
FOLD = "fold_0"
FINAL, LATEST = "checkpoint_final.pth", "checkpoint_latest.pth"


def save_checkpoint(path, doc: dict) -> None:
    """torch.save `doc` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        torch.save(doc, tmp)


def load_checkpoint(path) -> dict:
    """The checkpoint dict, read with weights_only=True onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelMissingError(f"{path} is missing: train the model with `petar train-grounding` (or point to a "
                                "complete model folder)")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (truncated file, pickle with code objects: both unusable)
        raise InputError(f"{path} is not a readable weights-only checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160]})") from None
    if not isinstance(doc, dict) or "network_weights" not in doc:
        raise InputError(f"{path} has no network_weights: not a petar ConTEXTual Net checkpoint")
    return doc


def check_weights(network: torch.nn.Module, weights: dict, plans_path, ckpt_path) -> None:
    """Raise InputError naming plans.json and the first key whose presence or shape differs."""
    own = network.state_dict()
    for key in list(own) + [k for k in weights if k not in own]:
        a, b = own.get(key), weights.get(key)
        if a is None or b is None or tuple(a.shape) != tuple(b.shape):
            shape = lambda t: "absent" if t is None else f"shape {tuple(t.shape)}"  # noqa: E731
            raise InputError(f"{plans_path} does not match the weights in {ckpt_path}: first mismatching key "
                             f"{key!r} (plans build {shape(a)}, weights have {shape(b)}); use the plans.json the "
                             "model was trained with")


def read_text_config(model_dir: Path) -> dict:
    path = model_dir / "text_encoder.json"
    if not path.is_file():
        raise ModelMissingError(f"{path} is missing: the model folder must name its text encoder "
                                "({\"id_or_dir\": .., \"max_length\": ..})")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        cfg["id_or_dir"], cfg["max_length"] = str(cfg["id_or_dir"]), int(cfg["max_length"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} is not valid ({type(e).__name__}: {e})") from None
    return cfg


def resolve_text_dir(id_or_dir: str, model_dir: Path) -> str:
    """A relative folder in text_encoder.json is taken relative to the model folder when it exists there."""
    p = Path(id_or_dir).expanduser()
    if not p.is_absolute() and (model_dir / p).is_dir():
        return str(model_dir / p)
    return id_or_dir


class ContextualModel:
    """A loaded ConTEXTual Net 3D: network (eval, on `device`), plans, frozen text encoder.

    `predict(pet, ct, text)` → ContextualPrediction with the mask on the PET grid (see predict.py).
    """

    def __init__(self, network, plans: dict, text_encoder, device, model_dir=None, checkpoint_info=None):
        self.network = network.eval()
        self.plans = plans
        self.text_encoder = text_encoder
        self.device = torch.device(device)
        self.model_dir = model_dir
        self.checkpoint_info = checkpoint_info or {}

    @property
    def needs_ct(self) -> bool:
        return "CT" in self.plans["channels"]

    def predict(self, pet: Volume, ct: Volume | None, text: str, on_progress=None,
                should_stop=None) -> ContextualPrediction:
        from ...io.images import validate_pet

        if ct is None and self.needs_ct:
            raise InputError("this model needs the CT (it was trained on PET + CT): give --ct")
        pet = validate_pet(pet)
        tokens = self.text_encoder.encode(text)
        pred = predict_volume(self.network, tokens, pet, ct, self.plans, self.device, on_progress, should_stop)
        pred.info.update({"engine": "contextual", "plans_name": self.plans["plans_name"],
                          "text_encoder": self.text_encoder.id_or_dir, "device": str(self.device),
                          "text_for_encoder": self.text_encoder_text(text), **self.checkpoint_info})
        return pred

    def text_encoder_text(self, text: str) -> str:
        from .text import encoder_text

        return encoder_text(text)


def load_contextual(model_dir, device="auto", checkpoint: str = FINAL) -> ContextualModel:
    """Load a model folder written by `petar train-grounding` (weights_only=True; nothing remote is run)."""
    from ...report.model.loader import resolve_device
    from .network import build_network
    from .text import TextEncoder

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelMissingError(f"model folder {model_dir} not found: train one with `petar train-grounding "
                                "--data DIR --out MODEL_DIR`")
    plans_path = model_dir / "plans.json"
    if not plans_path.is_file():
        raise ModelMissingError(f"{plans_path} is missing: {model_dir} is not a ConTEXTual Net model folder")
    plans = read_plans(plans_path)
    ckpt_path = model_dir / FOLD / checkpoint
    doc = load_checkpoint(ckpt_path)
    text_cfg = read_text_config(model_dir)
    dev = resolve_device(device)
    encoder = TextEncoder(resolve_text_dir(text_cfg["id_or_dir"], model_dir), text_cfg["max_length"], dev)
    init = doc.get("init_args") or {}
    if int(init.get("text_dim", encoder.hidden_size)) != encoder.hidden_size:
        raise InputError(f"text encoder {text_cfg['id_or_dir']} gives {encoder.hidden_size}-d tokens but the model "
                         f"was trained with {init['text_dim']}-d ones: use the encoder named in text_encoder.json")
    network = build_network(plans, encoder.hidden_size, str(plans_path))
    check_weights(network, doc["network_weights"], plans_path, ckpt_path)
    network.load_state_dict(doc["network_weights"])
    network.to(dev)
    info = {"checkpoint": checkpoint, "step": int(doc.get("step", 0)), "epoch": int(doc.get("epoch", 0))}
    return ContextualModel(network, plans, encoder, dev, model_dir, info)
