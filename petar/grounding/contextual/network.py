"""ConTEXTual Net 3D: a dynamic_network_architectures U-Net whose three deepest decoder stages attend to text.

The encoder and decoder are DNA's own modules (PlainConvUNet or ResidualEncoderUNet, built from plans), kept under
their DNA names (`encoder.*`, `decoder.*`), so a plain nnU-Net checkpoint's U-Net weights load into this network and
ours differ from it only by `text_attention.*`. The decoder loop is re-run here (DNA's `UNetDecoder.forward` cannot
take a second input): for each decoder stage s, `decoder.transpconvs[s]` upsamples; for the three deepest stages
(s = 0, 1, 2 — the paper's 192-, 128- and 96-channel stages) the upsampled features attend to the text tokens and
are gated, features × tanh(attention); then the skip is concatenated and `decoder.stages[s]` merges them; the last
stage's `decoder.seg_layers[-1]` gives the 2-class logits. No deep supervision, no mirroring anywhere.
"""
from __future__ import annotations

import torch
from torch import nn

from .plans import TEXT_ATTENTION_STAGES, check_plans, network_kwargs


class LanguageCrossAttention(nn.Module):
    """Single-head cross-attention of every voxel (query) to all text tokens (keys/values), tanh-gated.

    The tokens (B, L, text_dim) are projected to the stage's C channels by `text_proj`; no padding mask (as the
    paper). Output = x × tanh(attention(x, text)), the same shape as x (B, C, D, H, W).
    """

    def __init__(self, channels: int, text_dim: int):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, channels)
        self.attention = nn.MultiheadAttention(channels, num_heads=1, batch_first=True)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        query = x.flatten(2).transpose(1, 2)                       # (B, N, C)
        kv = self.text_proj(text.to(query.dtype))                  # (B, L, C)
        att, _ = self.attention(query, kv, kv, need_weights=False)  # SDPA underneath: no N×L matrix kept for grads
        return x * torch.tanh(att.transpose(1, 2).reshape(x.shape))


class ContextualUNet(nn.Module):
    """The network: `forward(image (B, C_in, Z, Y, X), text (B, L, text_dim)) -> logits (B, 2, Z, Y, X)`."""

    def __init__(self, plans: dict, text_dim: int, where: str = "plans.json"):
        super().__init__()
        check_plans(plans, where)
        cls, kwargs = network_kwargs(plans, where)
        unet = cls(**kwargs)
        unet.apply(unet.initialize)
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.text_dim = int(text_dim)
        n = int(plans.get("text_attention_stages", TEXT_ATTENTION_STAGES))
        if n != TEXT_ATTENTION_STAGES:
            raise ValueError(f"text_attention_stages must be {TEXT_ATTENTION_STAGES}, got {n}")
        channels = [self.decoder.transpconvs[s].out_channels for s in range(n)]
        self.text_attention = nn.ModuleList(LanguageCrossAttention(c, self.text_dim) for c in channels)

    @property
    def attention_channels(self) -> list[int]:
        return [m.attention.embed_dim for m in self.text_attention]

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        skips = self.encoder(image)
        x = skips[-1]
        dec = self.decoder
        for s in range(len(dec.stages)):
            x = dec.transpconvs[s](x)
            if s < len(self.text_attention):
                x = self.text_attention[s](x, text)
            x = dec.stages[s](torch.cat((x, skips[-(s + 2)]), 1))
        return dec.seg_layers[-1](x)


def build_network(plans: dict, text_dim: int, where: str = "plans.json") -> ContextualUNet:
    return ContextualUNet(plans, text_dim, where)
