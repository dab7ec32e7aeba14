"""`config.json` of a `lamed_phi3` (PETAR-4B) checkpoint → `PetarConfig`.

Only what the official code reads is used; `auto_map` (remote code) is ignored on purpose. The official
`ViT3DTower` never passes a size to its ViT, so the real model is always hidden 768 / MLP 3072 / 12 layers / 12
heads; the optional keys `vit_hidden_size`, `vit_mlp_dim`, `vit_num_layers`, `vit_num_heads` (present in the tiny
reference checkpoint only) override those sizes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputError, ModelMissingError

MODEL_TYPE = "lamed_phi3"

# Keys of config.json that are not Phi-3 settings (vision tower, projector, training flags, bookkeeping).
_NOT_TEXT_KEYS = {
    "architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
    "image_channel", "image_size", "patch_size", "vision_tower", "vision_select_layer", "vision_select_feature",
    "mm_projector_type", "proj_layer_type", "proj_layer_num", "proj_pooling_type", "proj_pooling_size",
    "mm_hidden_size", "qkv_bias", "classification", "pos_embed", "use_ct", "use_mask", "tune_mask_channel",
    "tune_mm_mlp_adapter", "seg_token_id", "segmentation_module", "vit_hidden_size", "vit_mlp_dim",
    "vit_num_layers", "vit_num_heads", "quantization_config",
}


@dataclass(frozen=True)
class PetarConfig:
    """Everything the model needs from config.json (sizes resolved, defaults as the official code has them)."""

    path: str
    raw: dict = field(repr=False)
    # text model (Phi-3)
    hidden_size: int
    vocab_size: int
    tie_word_embeddings: bool
    eos_token_id: tuple
    pad_token_id: int | None
    bos_token_id: int | None
    # vision towers
    image_channel: int
    image_size: tuple
    patch_size: tuple
    pos_embed: str
    classification: bool
    qkv_bias: bool
    use_mask: bool
    use_ct: bool
    vit_hidden_size: int
    vit_mlp_dim: int
    vit_num_layers: int
    vit_num_heads: int
    # projector
    mm_hidden_size: int
    proj_layer_type: str
    proj_layer_num: int
    proj_pooling_type: str
    proj_pooling_size: int

    @property
    def grid(self) -> tuple:
        """Patch grid (D/pd, H/ph, W/pw): the order MONAI's perceptron embedding runs over the patches."""
        return tuple(i // p for i, p in zip(self.image_size, self.patch_size))

    @property
    def pooled_grid(self) -> tuple:
        if self.proj_pooling_type == "spatial":
            return tuple(n // self.proj_pooling_size for n in self.grid)
        return (math.prod(self.grid) // self.proj_pooling_size ** 3,)

    @property
    def num_image_tokens(self) -> int:
        """The projector's output count (`proj_out_num`): the number of `<im_patch>` positions in the prompt."""
        return math.prod(self.pooled_grid)

    @property
    def vision_width(self) -> int:
        """Width of one token of vision features: PET tower, then CT tower when `use_ct`."""
        return self.vit_hidden_size * (2 if self.use_ct else 1)

    def phi3_config(self):
        """A transformers `Phi3Config` with the text-model keys of config.json (SDPA attention)."""
        from transformers import Phi3Config

        kw = {k: v for k, v in self.raw.items() if k not in _NOT_TEXT_KEYS}
        if kw.get("rope_scaling", 0) is None:
            kw.pop("rope_scaling")          # null means plain RoPE; newer transformers warn on the old key
        cfg = Phi3Config(**kw)
        cfg._attn_implementation = "sdpa"
        return cfg


def _ints(raw: dict, key: str, n: int, where: str) -> tuple:
    v = raw.get(key)
    if not isinstance(v, (list, tuple)) or len(v) != n or not all(isinstance(x, int) and x > 0 for x in v):
        raise InputError(f"{where}: {key} must be a list of {n} positive integers, found {v!r}")
    return tuple(v)


def _int(raw: dict, key: str, default, where: str) -> int:
    v = raw.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise InputError(f"{where}: {key} must be a positive integer, found {v!r}")
    return v


def read_config(folder) -> PetarConfig:
    """Read and check `folder/config.json`: model_type `lamed_phi3`, a `vit3d` tower, an `spp` projector."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ModelMissingError(f"no config.json in the PETAR model folder {Path(folder)}: download the model "
                                f"(petar models pull) or point to the folder that holds config.json")
    where = str(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{where} is not readable JSON ({e}): re-download the model") from None
    if not isinstance(raw, dict):
        raise InputError(f"{where} is not a JSON object: re-download the model")
    if raw.get("model_type") != MODEL_TYPE:
        raise InputError(f"{where}: model_type is {raw.get('model_type')!r}, expected {MODEL_TYPE!r} "
                         f"(a PETAR-4B checkpoint)")
    tower = raw.get("vision_tower")
    if not isinstance(tower, str) or "vit3d" not in tower.lower() or "merlin" in tower.lower():
        raise InputError(f"{where}: vision_tower is {tower!r}; only the 'vit3d' tower of PETAR-4B is supported")
    if raw.get("vision_select_layer", -1) != -1:
        raise InputError(f"{where}: vision_select_layer {raw.get('vision_select_layer')!r} is not supported (-1)")
    if raw.get("vision_select_feature", "patch") != "patch":
        raise InputError(f"{where}: vision_select_feature {raw.get('vision_select_feature')!r} is not supported "
                         f"('patch')")
    if raw.get("mm_projector_type") != "spp":
        raise InputError(f"{where}: mm_projector_type {raw.get('mm_projector_type')!r} is not supported ('spp')")
    proj_layer_type = raw.get("proj_layer_type", "mlp")
    if proj_layer_type not in ("mlp", "linear"):
        raise InputError(f"{where}: proj_layer_type {proj_layer_type!r} is not one of 'mlp', 'linear'")
    pooling_type = raw.get("proj_pooling_type", "spatial")
    if pooling_type not in ("spatial", "sequence"):
        raise InputError(f"{where}: proj_pooling_type {pooling_type!r} is not one of 'spatial', 'sequence'")
    pos_embed = raw.get("pos_embed", "perceptron")
    if pos_embed not in ("perceptron", "conv"):
        raise InputError(f"{where}: pos_embed {pos_embed!r} is not one of 'perceptron', 'conv'")

    image_size = _ints(raw, "image_size", 3, where)
    patch_size = _ints(raw, "patch_size", 3, where)
    if any(i % p for i, p in zip(image_size, patch_size)):
        raise InputError(f"{where}: image_size {list(image_size)} is not a multiple of patch_size {list(patch_size)}")
    vit_hidden = _int(raw, "vit_hidden_size", 768, where)
    vit_heads = _int(raw, "vit_num_heads", 12, where)
    if vit_hidden % vit_heads:
        raise InputError(f"{where}: vit_hidden_size {vit_hidden} is not divisible by vit_num_heads {vit_heads}")
    mm_hidden = _int(raw, "mm_hidden_size", vit_hidden, where)
    if mm_hidden != vit_hidden:
        raise InputError(f"{where}: mm_hidden_size {mm_hidden} differs from the ViT width {vit_hidden}")
    hidden = _int(raw, "hidden_size", None, where)
    vocab = _int(raw, "vocab_size", None, where)
    heads = _int(raw, "num_attention_heads", None, where)
    if hidden % heads:
        raise InputError(f"{where}: hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    eos = raw.get("eos_token_id")
    eos = tuple(eos) if isinstance(eos, list) else ((eos,) if isinstance(eos, int) else ())
    cfg = PetarConfig(
        path=where, raw=raw, hidden_size=hidden, vocab_size=vocab,
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)), eos_token_id=eos,
        pad_token_id=raw.get("pad_token_id"), bos_token_id=raw.get("bos_token_id"),
        image_channel=_int(raw, "image_channel", 1, where), image_size=image_size, patch_size=patch_size,
        pos_embed=pos_embed, classification=bool(raw.get("classification", True)),
        qkv_bias=bool(raw.get("qkv_bias", False)), use_mask=bool(raw.get("use_mask", False)),
        use_ct=bool(raw.get("use_ct", False)), vit_hidden_size=vit_hidden,
        vit_mlp_dim=_int(raw, "vit_mlp_dim", 3072, where), vit_num_layers=_int(raw, "vit_num_layers", 12, where),
        vit_num_heads=vit_heads, mm_hidden_size=mm_hidden, proj_layer_type=proj_layer_type,
        proj_layer_num=_int(raw, "proj_layer_num", 2, where), proj_pooling_type=pooling_type,
        proj_pooling_size=_int(raw, "proj_pooling_size", 2, where),
    )
    if cfg.num_image_tokens < 1:
        raise InputError(f"{where}: proj_pooling_size {cfg.proj_pooling_size} leaves no image tokens for the "
                         f"patch grid {list(cfg.grid)}")
    return cfg
