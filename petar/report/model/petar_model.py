"""`PetarModel`: the loaded PETAR-4B — prompt, logits, greedy/sampled generation, batched over lesions.

Prompt, as the official `inference.py` builds it: `"<im_patch>" * num_image_tokens + question`, no space, no chat
template, tokenised with BOS, max_length 768 with truncation. The official script picks the question at random
from its 15-item `Seg_template`; we use that list's first item (deterministic output) unless one is given.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...errors import InputError
from . import lamed
from .config import PetarConfig
from .generate import decode, make_sampler

IMAGE_TOKEN = "<im_patch>"
MAX_LENGTH = 768
# inference.py's Seg_template[0]; the release draws random.choice(Seg_template) instead.
DEFAULT_QUESTION = "What organ is shown in the masked region?"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PetarModel:
    """A loaded `lamed_phi3` model with its tokenizer. Build it with `load_petar_folder`."""

    def __init__(self, net, tokenizer, config: PetarConfig, device: torch.device, dtype: torch.dtype,
                 eos_token_ids=(), folder: Path | None = None, quantize=None):
        self.net = net
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.dtype = dtype
        self.quantize = quantize
        self.folder = folder
        self.eos_token_ids = tuple(eos_token_ids)
        pad = config.pad_token_id if config.pad_token_id is not None else tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else (self.eos_token_ids or (0,))[0])
        self.num_image_tokens = config.num_image_tokens
        self.image_size = tuple(config.image_size)
        self.timing: dict = {}

    def __repr__(self) -> str:
        return (f"PetarModel({self.folder}, device={self.device}, dtype={self.dtype}, "
                f"image_size={self.image_size}, image_tokens={self.num_image_tokens})")

    # ---- prompt -------------------------------------------------------------------------------------------
    def prompt_ids(self, question: str | None = None) -> torch.LongTensor:
        """(1, L) ids of `"<im_patch>" * N + question` (BOS first), tokenised as the official inference does."""
        question = DEFAULT_QUESTION if question is None else str(question)
        text = IMAGE_TOKEN * self.num_image_tokens + question
        return self.tokenizer(text, return_tensors="pt", max_length=MAX_LENGTH, truncation=True)["input_ids"]

    def decode(self, ids) -> str:
        """Text of generated ids as the official inference makes it: skip special tokens, strip."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    # ---- inputs -------------------------------------------------------------------------------------------
    def _views(self, views: dict) -> dict:
        """Check the six views and bring them to (B, 1, D, H, W) tensors on the model's device and dtype."""
        if not isinstance(views, dict):
            raise InputError("views must be a dict with keys pet, mask, ct, pet_focal, mask_focal, ct_focal")
        unknown = set(views) - set(lamed.VIEW_KEYS)
        if unknown:
            raise InputError(f"unknown view key(s) {sorted(unknown)}: expected {', '.join(lamed.VIEW_KEYS)}")
        need = ["pet"] + (["mask"] if self.config.use_mask else []) + (["ct"] if self.config.use_ct else [])
        focal = [k for k in ("pet_focal", "mask_focal", "ct_focal") if views.get(k) is not None]
        if focal and len(focal) != 3:
            raise InputError(f"focal views must come together (pet_focal, mask_focal, ct_focal); got {focal}")
        out, batch = {}, None
        want = (self.config.image_channel, *self.image_size)
        for key in need + focal:
            v = views.get(key)
            if v is None:
                raise InputError(f"view {key!r} is missing; this model needs {', '.join(need)} (+ focal views)")
            t = torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
            if not isinstance(t, torch.Tensor):
                raise InputError(f"view {key!r} must be a numpy array or torch tensor, got {type(v).__name__}")
            if t.dim() == 4:
                t = t.unsqueeze(0)
            if t.dim() != 5 or tuple(t.shape[1:]) != want:
                dims = ", ".join(map(str, want))
                raise InputError(f"view {key!r} has shape {list(t.shape)}; expected ({dims}) or (B, {dims}): "
                                 f"the model's image_size is {list(self.image_size)}")
            batch = t.shape[0] if batch is None else batch
            if t.shape[0] != batch:
                raise InputError(f"view {key!r} has batch {t.shape[0]}, other views have {batch}")
            t = t.to(device=self.device, dtype=self.dtype)
            if not torch.isfinite(t).all():
                raise InputError(f"view {key!r} contains NaN or Inf")
            out[key] = t
        return out

    def _ids(self, input_ids, batch: int | None = None) -> torch.LongTensor:
        if input_ids is None:
            input_ids = self.prompt_ids()
        t = input_ids if isinstance(input_ids, torch.Tensor) else torch.as_tensor(np.asarray(input_ids))
        if t.dim() == 1:
            t = t.unsqueeze(0)
        if t.dim() != 2 or t.dtype.is_floating_point or t.shape[1] == 0:
            raise InputError(f"input_ids must be integer ids of shape (1, L), got {list(t.shape)} {t.dtype}")
        if batch is not None and t.shape[0] != batch:
            raise InputError(f"input_ids has {t.shape[0]} rows but the views have batch {batch}")
        if int(t.min()) < 0 or int(t.max()) >= self.config.vocab_size:
            raise InputError(f"input_ids hold ids outside 0..{self.config.vocab_size - 1}")
        return t.to(device=self.device, dtype=torch.long)

    # ---- forward ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def vision_features(self, views: dict) -> torch.Tensor:
        """Vision tower output, global + focal view summed, before the projector: (B, n_patches, width)."""
        return lamed.vision_features(self.net, self._views(views))

    @torch.no_grad()
    def image_features(self, views: dict) -> torch.Tensor:
        """Projector output (B, num_image_tokens, hidden): what overwrites prompt positions 1..N."""
        return lamed.image_features(self.net, self._views(views))

    @torch.no_grad()
    def logits(self, views: dict, input_ids) -> torch.FloatTensor:
        """Float32 logits (B, L, V) on the CPU for the full prompt (no attention mask, as the official forward)."""
        v = self._views(views)
        ids = self._ids(input_ids, next(iter(v.values())).shape[0])
        embeds = lamed.splice(self.net, ids, lamed.image_features(self.net, v))
        hidden = self.net.model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        return self.net.lm_head(hidden).float().cpu()

    def generate(self, views: dict, input_ids=None, max_new_tokens: int = 256, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, eos_token_ids=None,
                 on_token: Callable | None = None, should_stop: Callable | None = None,
                 seed: int | None = None) -> list[int]:
        """New token ids only (an end-of-sequence id, when reached, is the last one). Greedy by default.

        on_token(0, token_id) is called for every token as it is made; should_stop() is checked between tokens
        and stops early, returning what was made so far.
        """
        return self.generate_batch([views], [input_ids], max_new_tokens=max_new_tokens, do_sample=do_sample,
                                   temperature=temperature, top_p=top_p, top_k=top_k, eos_token_ids=eos_token_ids,
                                   on_token=on_token, should_stop=should_stop, seed=seed)[0]

    @torch.no_grad()
    def generate_batch(self, views_list: list, input_ids_list=None, max_new_tokens: int = 256,
                       do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                       eos_token_ids=None, on_token: Callable | None = None, should_stop: Callable | None = None,
                       seed: int | None = None) -> list[list[int]]:
        """Generate for several lesions in one batched pass; row i gives what `generate` gives for lesion i.

        `input_ids_list`: one prompt per lesion (each (1, L_i), lengths may differ), one prompt for all, or None
        (the default prompt). on_token(i, token_id) names the lesion.
        """
        if isinstance(views_list, dict):
            views_list = [views_list]
        n = len(views_list)
        if input_ids_list is None or isinstance(input_ids_list, torch.Tensor):
            input_ids_list = [input_ids_list] * n
        if len(input_ids_list) != n:
            raise InputError(f"{n} view sets but {len(input_ids_list)} prompts")
        if max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(seed))
        sampler = make_sampler(do_sample, temperature, top_p, top_k, generator)
        eos = self.eos_token_ids if eos_token_ids is None else tuple(eos_token_ids)
        self.timing = {"vision_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "tokens": 0, "batch": n}
        if n == 0:
            return []
        views = [self._views(v) for v in views_list]
        keys = set(views[0])
        for i, v in enumerate(views):
            if v["pet"].shape[0] != 1:
                raise InputError(f"lesion {i}: each view set must hold one lesion (batch 1)")
            if set(v) != keys:
                raise InputError(f"lesion {i} has views {sorted(v)}, lesion 0 has {sorted(keys)}")
        ids = [self._ids(t, 1) for t in input_ids_list]
        t0 = time.perf_counter()
        stacked = {k: torch.cat([v[k] for v in views]) for k in keys}
        feats = lamed.image_features(self.net, stacked)
        _sync(self.device)
        self.timing["vision_ms"] = (time.perf_counter() - t0) * 1000.0
        rows = [lamed.splice(self.net, t, feats[i:i + 1])[0] for i, t in enumerate(ids)]
        return decode(self.net, rows, max_new_tokens=max_new_tokens, eos_token_ids=eos,
                      pad_token_id=self.pad_token_id, sampler=sampler, on_token=on_token,
                      should_stop=should_stop, timing=self.timing)
