"""PETAR-4B's 3D vision towers, written to load the official weights under their own names.

The official tower is a MONAI-style ViT; the modules here keep MONAI's parameter names (`patch_embedding.
patch_embeddings.1`, `position_embeddings`, `blocks.N.attn.qkv`, `attn.out_proj`, `mlp.linear1/2`, `norm1/2`,
`norm`, `cls_token`) so that `model.vision_tower.vision_tower.*` and `model.vision_tower.ct_tower.*` of the
checkpoint load as they are. The math is the same, written from MONAI's documented behaviour:

- perceptron patch embedding: the volume (B, C, D, H, W) is cut into (pd, ph, pw) blocks that run over D, then H,
  then W (first axis slowest); each block is flattened as (pd, ph, pw, C) and mapped by one Linear; a learnable
  position embedding (1, n_patches, hidden) is added. ("conv" = a strided Conv3d, flattened the same way.)
- PET tower: patch embedding of the PET plus, with `use_mask`, a second patch embedding (own weights, own
  position embedding) of the mask; a CLS token is prepended when `classification`; pre-norm blocks
  (x + attn(norm1 x), x + mlp(norm2 x)); final LayerNorm.
- attention: one fused `qkv` Linear whose output rows are q for all heads, then k, then v; softmax(q k^T ·
  head_dim^-0.5) v; `out_proj` Linear with bias. MLP: Linear, exact GELU, Linear. LayerNorm eps 1e-5.
- `ViT3DTower` ("vision_select_feature: patch", layer -1): the PET tower's output with its first token dropped
  (the official code drops token 0 whether or not a CLS token is there), concatenated on the channel axis with the
  CT tower's output (no CLS, no mask) when `use_ct`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import PetarConfig


class PatchFlatten(nn.Module):
    """(B, C, D, H, W) → (B, n_patches, pd·ph·pw·C), patches in (D, H, W) order, each flattened (pd, ph, pw, C)."""

    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = tuple(patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        pd, ph, pw = self.patch_size
        x = x.reshape(b, c, d // pd, pd, h // ph, ph, w // pw, pw)
        x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)
        return x.reshape(b, (d // pd) * (h // ph) * (w // pw), pd * ph * pw * c)


class PatchEmbedding(nn.Module):
    """MONAI `PatchEmbeddingBlock` equivalent: `patch_embeddings` (+ `position_embeddings`)."""

    def __init__(self, in_channels: int, image_size, patch_size, hidden: int, kind: str = "perceptron"):
        super().__init__()
        self.kind = kind
        n_patches = math.prod(i // p for i, p in zip(image_size, patch_size))
        if kind == "perceptron":
            self.patch_embeddings = nn.Sequential(PatchFlatten(patch_size),
                                                  nn.Linear(in_channels * math.prod(patch_size), hidden))
        else:
            self.patch_embeddings = nn.Conv3d(in_channels, hidden, kernel_size=tuple(patch_size),
                                              stride=tuple(patch_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_patches, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embeddings(x)
        if self.kind != "perceptron":
            x = x.flatten(2).transpose(-1, -2)
        return x + self.position_embeddings


class SelfAttention(nn.Module):
    """MONAI `SABlock` equivalent (names `qkv`, `out_proj`); computed with scaled_dot_product_attention."""

    def __init__(self, hidden: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(hidden, hidden * 3, bias=qkv_bias)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class MLP(nn.Module):
    """MONAI `MLPBlock` equivalent: `linear1`, exact GELU, `linear2`."""

    def __init__(self, hidden: int, mlp_dim: int):
        super().__init__()
        self.linear1 = nn.Linear(hidden, mlp_dim)
        self.linear2 = nn.Linear(mlp_dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.gelu(self.linear1(x)))


class Block(nn.Module):
    """MONAI `TransformerBlock` equivalent (pre-norm): names `mlp`, `norm1`, `attn`, `norm2`."""

    def __init__(self, hidden: int, mlp_dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.mlp = MLP(hidden, mlp_dim)
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT3D(nn.Module):
    """One tower: patch embedding (+ mask patch embedding), optional CLS token, blocks, final LayerNorm."""

    def __init__(self, cfg: PetarConfig, classification: bool, use_mask: bool):
        super().__init__()
        h = cfg.vit_hidden_size
        self.use_mask = use_mask
        self.patch_embedding = PatchEmbedding(cfg.image_channel, cfg.image_size, cfg.patch_size, h, cfg.pos_embed)
        if use_mask:
            self.patch_embedding_mask = PatchEmbedding(1, cfg.image_size, cfg.patch_size, h, cfg.pos_embed)
        self.blocks = nn.ModuleList(Block(h, cfg.vit_mlp_dim, cfg.vit_num_heads, cfg.qkv_bias)
                                    for _ in range(cfg.vit_num_layers))
        self.norm = nn.LayerNorm(h)
        if classification:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, h))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_embedding(x)
        if self.use_mask:
            x = x + self.patch_embedding_mask(mask)
        if hasattr(self, "cls_token"):
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class VisionTower(nn.Module):
    """`ViT3DTower`: PET(+mask) tower `vision_tower` and, with `use_ct`, a separate `ct_tower`."""

    def __init__(self, cfg: PetarConfig):
        super().__init__()
        self.use_ct = cfg.use_ct
        self.vision_tower = ViT3D(cfg, classification=cfg.classification, use_mask=cfg.use_mask)
        if cfg.use_ct:
            self.ct_tower = ViT3D(cfg, classification=False, use_mask=False)

    def forward(self, pet: torch.Tensor, mask: torch.Tensor | None, ct: torch.Tensor | None) -> torch.Tensor:
        features = self.vision_tower(pet, mask)[:, 1:]
        if self.use_ct:
            features = torch.cat([features, self.ct_tower(ct)], dim=-1)
        return features
