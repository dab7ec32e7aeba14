"""Plans: the JSON that fully describes a ConTEXTual Net 3D model (network, geometry, normalisation, training).

nnU-Net-style: an `architecture` block with `network_class_name`, `arch_kwargs` and `_kw_requires_import` (the
kwargs that name a class). Unlike nnU-Net, class names are looked up in a fixed table, never imported by name, so a
downloaded plans.json cannot make us import arbitrary code. Array order in plans is (z, y, x) for `patch_size`;
`spacing` is (x, y, z) mm as everywhere in petar.

Two configurations:
- ``tiny``: CPU smoke runs. PlainConvUNet, 5 stages of [4, 8, 16, 24, 32] features, patch 32×32×32 at 6 mm (a
  whole-body phantom is ~100×53×53 voxels there), text max_length 32. Trains a few dozen steps in seconds.
- ``default``: the paper's scale. ResidualEncoderUNet (one residual block of two 3³ convs per stage, like MONAI's
  DynUNet with res_block), 5 stages [64, 96, 128, 192, 256], strides [1, 2, 2, 2, 2], instance norm, LeakyReLU 0.01,
  two convs per decoder stage, no deep supervision; 3 mm, whole body in one 352×192×192 patch; RadBERT with 512
  tokens; AdamW lr 5e-5, wd 1e-5, 250 epochs with 5 warm-up epochs (2 %), seed 716.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from ...errors import InputError

CONFIGS = ("tiny", "default")
PLANS_FORMAT = "petar-contextual-plans/1"
NETWORK_CLASSES = {
    "dynamic_network_architectures.architectures.unet.PlainConvUNet": "PlainConvUNet",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": "ResidualEncoderUNet",
}
_IMPORTABLE = {   # dotted names that `_kw_requires_import` may name → (module, attribute)
    "torch.nn.modules.conv.Conv3d": ("torch.nn", "Conv3d"),
    "torch.nn.modules.instancenorm.InstanceNorm3d": ("torch.nn", "InstanceNorm3d"),
    "torch.nn.modules.batchnorm.BatchNorm3d": ("torch.nn", "BatchNorm3d"),
    "torch.nn.modules.dropout.Dropout3d": ("torch.nn", "Dropout3d"),
    "torch.nn.LeakyReLU": ("torch.nn", "LeakyReLU"),
    "torch.nn.ReLU": ("torch.nn", "ReLU"),
    "torch.nn.GELU": ("torch.nn", "GELU"),
    "dynamic_network_architectures.building_blocks.residual.BasicBlockD":
        ("dynamic_network_architectures.building_blocks.residual", "BasicBlockD"),
    "dynamic_network_architectures.building_blocks.residual.BottleneckD":
        ("dynamic_network_architectures.building_blocks.residual", "BottleneckD"),
}
TEXT_ATTENTION_STAGES = 3   # cross-attention after the upsampling of the three deepest decoder stages


def _arch(class_name: str, features: list, n_blocks, n_conv_decoder, input_channels: int) -> dict:
    n = len(features)
    kwargs = {
        "n_stages": n, "features_per_stage": list(features), "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * n, "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n - 1),
        "n_conv_per_stage_decoder": [n_conv_decoder] * (n - 1), "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"negative_slope": 0.01, "inplace": True},
    }
    key = "n_blocks_per_stage" if class_name.endswith("ResidualEncoderUNet") else "n_conv_per_stage"
    kwargs[key] = [n_blocks] * n
    return {"network_class_name": class_name, "arch_kwargs": kwargs,
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            "input_channels": input_channels, "num_classes": 2, "deep_supervision": False}


def make_plans(config: str = "tiny", channels=("PET", "CT")) -> dict:
    """A fresh plans dict for `config` ("tiny" or "default") and the dataset's channel names."""
    if config not in CONFIGS:
        raise InputError(f"unknown configuration {config!r}: use one of {', '.join(CONFIGS)}")
    channels = list(channels)
    if not channels or channels[0] != "PET" or any(c not in ("PET", "CT") for c in channels) or len(channels) > 2:
        raise InputError(f"channels must be ['PET'] or ['PET', 'CT'], got {channels}")
    norm = {"PET": {"clip": [0.0, 10.0], "units": "SUV"}, "CT": {"clip": [-150.0, 250.0], "units": "HU"}}
    common = {"format": PLANS_FORMAT, "configuration": config, "channels": channels,
              "normalization": {c: norm[c] for c in channels},
              "text_attention_stages": TEXT_ATTENTION_STAGES,
              "inference": {"tile_step_size": 0.5, "gaussian": True, "threshold": 0.5, "mirroring": False,
                            "connectivity": 26, "keep": "highest_mean_probability"}}
    if config == "tiny":
        arch = _arch("dynamic_network_architectures.architectures.unet.PlainConvUNet", [4, 8, 16, 24, 32], 1, 1,
                     len(channels))
        return {"plans_name": "ContextualNet3D_tiny", **common, "spacing": [6.0, 6.0, 6.0],
                "patch_size": [32, 32, 32], "architecture": arch, "text_max_length": 32,
                "training": {"lr": 1e-3, "weight_decay": 1e-5, "epochs": 20, "warmup_fraction": 0.02,
                             "batch_size": 1, "seed": 716, "foreground_probability": 0.67, "grad_clip": 12.0,
                             "max_validation_sentences": 2, "checkpoint_every_steps": 500}}
    arch = _arch("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet", [64, 96, 128, 192, 256],
                 1, 2, len(channels))
    return {"plans_name": "ContextualNet3D_default", **common, "spacing": [3.0, 3.0, 3.0],
            "patch_size": [352, 192, 192], "architecture": arch, "text_max_length": 512,
            "training": {"lr": 5e-5, "weight_decay": 1e-5, "epochs": 250, "warmup_fraction": 0.02,
                         "batch_size": 1, "seed": 716, "foreground_probability": 0.67, "grad_clip": 12.0,
                         "max_validation_sentences": 64, "checkpoint_every_steps": 500}}


def _resolve(name, where: str):
    if name is None:
        return None
    if name not in _IMPORTABLE:
        raise InputError(f"{where}: class {name!r} is not one petar builds ({', '.join(sorted(_IMPORTABLE))})")
    import importlib

    module, attr = _IMPORTABLE[name]
    return getattr(importlib.import_module(module), attr)


def network_kwargs(plans: dict, where: str = "plans.json") -> tuple[type, dict]:
    """(network class, kwargs) that build the plain DNA U-Net of these plans (classes resolved from the table)."""
    try:
        arch = plans["architecture"]
        class_name = arch["network_class_name"]
        kwargs = copy.deepcopy(arch["arch_kwargs"])
        needs_import = list(arch.get("_kw_requires_import", []))
        extra = {"input_channels": int(arch["input_channels"]), "num_classes": int(arch["num_classes"]),
                 "deep_supervision": bool(arch.get("deep_supervision", False))}
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{where} has no usable 'architecture' block ({type(e).__name__}: {e})") from None
    if class_name not in NETWORK_CLASSES:
        raise InputError(f"{where}: network_class_name {class_name!r} is not supported: use one of "
                         f"{', '.join(NETWORK_CLASSES)}")
    for key in needs_import:
        kwargs[key] = _resolve(kwargs.get(key), where)
    if "block" in kwargs and isinstance(kwargs["block"], str):
        kwargs["block"] = _resolve(kwargs["block"], where)
    from dynamic_network_architectures.architectures import unet

    return getattr(unet, NETWORK_CLASSES[class_name]), {**kwargs, **extra}


def check_plans(plans: dict, where: str = "plans.json") -> dict:
    """Validate the keys the code reads; return the plans. Raises InputError naming `where` and the key."""
    if not isinstance(plans, dict) or plans.get("format") != PLANS_FORMAT:
        raise InputError(f"{where} is not a petar ConTEXTual Net plans file (format must be {PLANS_FORMAT!r})")
    for key in ("plans_name", "channels", "spacing", "patch_size", "architecture", "text_max_length", "training",
                "inference"):
        if key not in plans:
            raise InputError(f"{where} lacks the key {key!r}")
    if len(plans["spacing"]) != 3 or len(plans["patch_size"]) != 3 or min(plans["spacing"]) <= 0:
        raise InputError(f"{where}: spacing and patch_size must have 3 positive entries")
    if plans["inference"].get("mirroring"):
        raise InputError(f"{where}: mirroring must be false (laterality words break under left-right flips)")
    _, kw = network_kwargs(plans, where)
    n_stages = int(kw["n_stages"])
    if n_stages < TEXT_ATTENTION_STAGES + 1:
        raise InputError(f"{where}: {n_stages} stages leave fewer than {TEXT_ATTENTION_STAGES} decoder stages for "
                         "the text attention: use at least 4")
    factor = [1, 1, 1]
    for stride in kw["strides"]:
        s = stride if isinstance(stride, (list, tuple)) else [stride] * 3
        factor = [f * int(v) for f, v in zip(factor, s)]
    if any(p % f for p, f in zip(plans["patch_size"], factor)):
        raise InputError(f"{where}: patch_size {plans['patch_size']} must be divisible by the total stride {factor}")
    if int(kw["input_channels"]) != len(plans["channels"]):
        raise InputError(f"{where}: input_channels {kw['input_channels']} != number of channels {plans['channels']}")
    return plans


def read_plans(path) -> dict:
    path = Path(path)
    try:
        plans = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is not readable JSON ({e})") from None
    return check_plans(plans, str(path))
