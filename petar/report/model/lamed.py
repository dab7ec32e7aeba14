"""The `lamed_phi3` network: transformers' Phi-3 causal LM with PETAR's vision towers and projector attached.

State-dict names are exactly the official checkpoint's: `model.embed_tokens`, `model.layers.*`, `model.norm`,
`lm_head` (transformers' Phi3ForCausalLM, fused `qkv_proj` / `gate_up_proj`), plus
`model.vision_tower.vision_tower.*` (PET + mask tower), `model.vision_tower.ct_tower.*` and `model.mm_projector.*`.

Multimodal path, as the official `encode_images` / `prepare_inputs_for_multimodal` do it:
- the vision tower runs on the global view (pet, mask, ct) and again, with the same weights, on the focal view;
  the two feature maps are SUMMED element-wise before the projector;
- the projector's N output rows overwrite input positions 1..N of the token embeddings, purely by position
  (position 0, the BOS, is kept; the ids at 1..N are never looked at).
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import InputError
from .config import PetarConfig
from .projector import SpatialPoolingProjector
from .vision import VisionTower

VIEW_KEYS = ("pet", "mask", "ct", "pet_focal", "mask_focal", "ct_focal")


def build_network(cfg: PetarConfig, device="meta") -> nn.Module:
    """Phi3ForCausalLM + `model.vision_tower` + `model.mm_projector`, built on `device` ('meta': no memory)."""
    from transformers import Phi3ForCausalLM

    text_cfg = cfg.phi3_config()
    with torch.device(device):
        net = Phi3ForCausalLM(text_cfg)
        net.model.vision_tower = VisionTower(cfg)
        net.model.mm_projector = SpatialPoolingProjector(cfg)
    net.config._attn_implementation = "sdpa"
    return net


def reset_rotary(net: nn.Module, device) -> None:
    """Rebuild the RoPE tables (non-persistent buffers, so never in a checkpoint) on the real device."""
    old = net.model.rotary_emb
    with torch.device(device):
        net.model.rotary_emb = type(old)(config=net.config)


def vision_features(net: nn.Module, views: dict) -> torch.Tensor:
    """Vision tower output of the global view plus that of the focal view (when given): (B, n_patches, width)."""
    tower = net.model.vision_tower
    feats = tower(views["pet"], views.get("mask"), views.get("ct"))
    if all(views.get(k) is not None for k in ("pet_focal", "mask_focal", "ct_focal")):
        feats = feats + tower(views["pet_focal"], views["mask_focal"], views["ct_focal"])
    return feats


def image_features(net: nn.Module, views: dict) -> torch.Tensor:
    """Projector output (B, num_image_tokens, hidden): the rows spliced over prompt positions 1..N."""
    return net.model.mm_projector(vision_features(net, views))


def splice(net: nn.Module, input_ids: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Token embeddings of `input_ids` (B, L) with positions 1..N replaced by `feats` (B, N, hidden)."""
    n = feats.shape[1]
    if input_ids.shape[1] < n + 1:
        raise InputError(f"the prompt has {input_ids.shape[1]} tokens; it needs at least {n + 1} (BOS and {n} "
                         f"image tokens): build it with prompt_ids()")
    emb = net.model.embed_tokens(input_ids)
    return torch.cat((emb[:, :1], feats.to(emb.dtype), emb[:, n + 1:]), dim=1)
