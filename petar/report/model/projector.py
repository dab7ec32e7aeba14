"""PETAR-4B's "spp" projector: vision tokens → average-pooled grid → MLP to the language model's width.

Parameter names follow the checkpoint (`model.mm_projector.projector.{0,2}` for Linear-GELU-Linear). Behaviour, as
the official spatial-pooling projector has it: the patch sequence (in the ViT's (D, H, W) patch order) is laid back
onto the (D/pd, H/ph, W/pw) grid, average-pooled with kernel = stride = `proj_pooling_size` (floor), flattened
back in the same order, then mapped token-wise. "sequence" pooling averages runs of pooling_size³ tokens instead.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import PetarConfig


class SpatialPoolingProjector(nn.Module):
    def __init__(self, cfg: PetarConfig):
        super().__init__()
        self.grid = cfg.grid
        self.pooling_type = cfg.proj_pooling_type
        self.pooling_size = cfg.proj_pooling_size
        in_dim, out_dim = cfg.mm_hidden_size * (2 if cfg.use_ct else 1), cfg.hidden_size
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(1, cfg.proj_layer_num):
            if cfg.proj_layer_type == "mlp":
                layers.append(nn.GELU())
            layers.append(nn.Linear(out_dim, out_dim))
        self.projector = nn.Sequential(*layers)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Average pooling (kernel = stride, remainder dropped) as a reshape-mean in float32: the same numbers as
        avg_pool3d / avg_pool1d, and it also runs in bf16/fp16 on the CPU, where those kernels are missing."""
        b, n, d = x.shape
        k = self.pooling_size
        src = x.float()
        if self.pooling_type == "spatial":
            g = [s // k for s in self.grid]
            src = src.reshape(b, *self.grid, d)[:, :g[0] * k, :g[1] * k, :g[2] * k]
            out = src.reshape(b, g[0], k, g[1], k, g[2], k, d).mean(dim=(2, 4, 6)).reshape(b, -1, d)
        else:
            m = n // k ** 3
            out = src[:, :m * k ** 3].reshape(b, m, k ** 3, d).mean(dim=2)
        return out.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.pool(x))
