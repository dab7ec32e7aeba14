"""ConTEXTual Net 3D benchmark: network forward at the paper's whole-body patch (352×192×192 = 192×192×352 x,y,z at
3 mm) and sliding-window prediction on a whole-body 200×200×350 phantom, random weights and random text tokens (the
text encoder is not timed: it runs once per sentence and is cached).

CPU: the tiny network (PlainConvUNet, [4, 8, 16, 24, 32]); prediction both with the paper's geometry (3 mm, one
352×192×192 window per position → 4 windows) and with the tiny plans as shipped (6 mm, 32³ windows).
CUDA (when present, or --config default): the default network (ResidualEncoderUNet, [64, 96, 128, 192, 256],
768-d RadBERT-sized tokens × 512), bf16/fp16 autocast, plus one training step (forward + backward + AdamW) and the
peak GPU memory. One JSON line naming the machine and device.

    python bench/bench_contextual.py [--config tiny|default] [--device auto|cpu|cuda] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import petar
from bench_core import machine
from petar.grounding.contextual.network import build_network
from petar.grounding.contextual.plans import make_plans
from petar.grounding.contextual.predict import _autocast, predict_volume
from petar.grounding.contextual.train import dice_ce_loss

PATCH = [352, 192, 192]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn, runs, device, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=("tiny", "default"))
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    config = args.config or ("default" if device.type == "cuda" else "tiny")
    plans = make_plans(config)
    text_dim, length = (768, 512) if config == "default" else (32, 32)
    torch.manual_seed(0)
    net = build_network(plans, text_dim).to(device).eval()
    text = torch.randn(1, length, text_dim, device=device)
    x = torch.rand(1, 2, *PATCH, device=device)
    doc = {"bench": "contextual_net_3d", "config": config, "device": device.type,
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2), "text_tokens": [length, text_dim],
           "input_zyx": PATCH}

    def forward():
        with torch.no_grad(), _autocast(device):
            net(x, text)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    doc["forward_ms"] = _median_ms(forward, args.runs, device)
    if device.type == "cuda":
        doc["forward_peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        net.train()
        opt = torch.optim.AdamW(net.parameters(), lr=5e-5, weight_decay=1e-5)
        y = (torch.rand(1, *PATCH, device=device) > 0.999).long()

        def train_step():
            with _autocast(device):
                logits = net(x, text)
            loss = dice_ce_loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        torch.cuda.reset_peak_memory_stats(device)
        doc["train_step_ms"] = _median_ms(train_step, args.runs, device)
        doc["train_step_peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        net.eval()

    ph = petar.make_phantom(seed=0)     # 200×200×350 voxels of 3 mm, PET + CT
    paper = dict(plans, spacing=[3.0, 3.0, 3.0], patch_size=PATCH)
    runs = max(1, args.runs if device.type == "cuda" else min(args.runs, 2))
    res = {}
    doc["predict_ms"] = _median_ms(lambda: res.update(r=predict_volume(net, text, ph.pet, ph.ct, paper, device)),
                                   runs, device, warmup=1 if device.type == "cuda" else 0)
    doc["predict_windows"] = res["r"].info["windows"]
    doc["predict_grid_zyx"] = res["r"].info["grid_shape"]
    if config == "tiny":
        doc["predict_tiny_plans_ms"] = _median_ms(
            lambda: res.update(r=predict_volume(net, text, ph.pet, ph.ct, plans, device)), runs, device, warmup=0)
        doc["predict_tiny_plans_windows"] = res["r"].info["windows"]
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
