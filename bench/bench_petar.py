"""PETAR-4B engine benchmark with random weights: per-stage latency, decode tokens/s, peak memory.

Two paths in the same run, same architecture and inputs:
  optimized  — bf16 on CUDA (fp32 on CPU), SDPA attention, KV cache, all lesions in one batched pass;
  reference  — fp32, eager attention, one lesion at a time (how the official code runs).
`--size full` builds Phi-3-mini dimensions (hidden 3072, 32 layers, vocab 32064) with two 12-layer 768-wide ViTs
on 32×256×256 views — meant for a GPU; `--size small` (default on CPU) a small config that runs on 2 cores.
Targets on an H100 (DESIGN.md §7): ≤ 0.6 s per finding warm (≈100 new tokens), decode ≥ 300 tok/s, ≤ 9 GB.
Prints one JSON line naming the device.

    python bench/bench_petar.py [--size small|full] [--lesions 4] [--new-tokens 100] [--quantize 4bit]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from petar.report.model.config import read_config
from petar.report.model.lamed import build_network, reset_rotary
from petar.report.model.loader import load_tokenizer, resolve_device
from petar.report.model.petar_model import PetarModel

TOKENIZER = Path(__file__).resolve().parents[1] / "Testing" / "data" / "petar_tiny_a"
SIZES = {
    "full": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32064, "image_size": [32, 256, 256], "mm_hidden_size": 768,
             "vit": None},
    "small": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8,
              "num_key_value_heads": 8, "vocab_size": 4096, "image_size": [16, 128, 128], "mm_hidden_size": 192,
              "vit": (192, 384, 4, 4)},
}


def make_folder(size: str, root: Path) -> Path:
    """A checkpoint folder without weights: the tiny reference's tokenizer and config, resized."""
    folder = root / f"petar_{size}"
    folder.mkdir()
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                 "generation_config.json"):
        shutil.copy(TOKENIZER / name, folder / name)
    cfg = json.loads((TOKENIZER / "config.json").read_text())
    spec = dict(SIZES[size])
    vit = spec.pop("vit")
    for k in ("vit_hidden_size", "vit_mlp_dim", "vit_num_layers", "vit_num_heads"):
        cfg.pop(k, None)
    if vit:
        cfg.update(vit_hidden_size=vit[0], vit_mlp_dim=vit[1], vit_num_layers=vit[2], vit_num_heads=vit[3])
    cfg.update(spec)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def random_model(folder: Path, device, dtype, attn: str) -> PetarModel:
    cfg = read_config(folder)
    torch.manual_seed(0)
    net = build_network(cfg, device=device)
    net.to(dtype=dtype)
    for p in net.parameters():           # keep activations finite at any depth: small random weights
        p.data.normal_(0, 0.02)
    reset_rotary(net, device)
    net.config._attn_implementation = attn
    net.eval()
    return PetarModel(net, load_tokenizer(folder), cfg, torch.device(device), dtype, eos_token_ids=())


def views(n: int, size, device, dtype, seed=0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        v = {k: torch.rand((1, 1, *size), generator=g) for k in ("pet", "ct", "pet_focal", "ct_focal")}
        v.update({k: (torch.rand((1, 1, *size), generator=g) > 0.9).float() for k in ("mask", "mask_focal")})
        out.append({k: t.to(device=device, dtype=dtype) for k, t in v.items()})
    return out


def run_path(model: PetarModel, vs: list[dict], new_tokens: int, batched: bool, repeats: int) -> dict:
    ids = model.prompt_ids()
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    walls, timings = [], []
    for r in range(repeats + 1):                      # first run is warm-up
        t = time.perf_counter()
        if batched:
            model.generate_batch(vs, [ids] * len(vs), max_new_tokens=new_tokens)
            timing = dict(model.timing)
        else:
            parts = []
            for v in vs:
                model.generate(v, ids, max_new_tokens=new_tokens)
                parts.append(dict(model.timing))
            timing = {k: sum(p[k] for p in parts) for k in ("vision_ms", "prefill_ms", "decode_ms", "tokens")}
        wall = time.perf_counter() - t
        if r:
            walls.append(wall)
            timings.append(timing)
    med = statistics.median(walls)
    decode_ms = statistics.median(t["decode_ms"] for t in timings)
    tokens = timings[0]["tokens"]
    out = {"per_finding_s": round(med / len(vs), 4), "wall_s": round(med, 4),
           "vision_ms": round(statistics.median(t["vision_ms"] for t in timings), 1),
           "prefill_ms": round(statistics.median(t["prefill_ms"] for t in timings), 1),
           "decode_ms": round(decode_ms, 1), "new_tokens_total": tokens,
           "decode_tok_s": round(tokens / (decode_ms / 1000), 1) if decode_ms else None}
    if model.device.type == "cuda":
        out["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("small", "full"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lesions", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-reference", action="store_true", help="only the optimized path")
    args = ap.parse_args()
    device = resolve_device(args.device)
    size = args.size or ("full" if device.type == "cuda" else "small")
    fast_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(size, Path(tmp))
        image_size = tuple(SIZES[size]["image_size"])
        result = {"bench": "petar", "size": size, "device": device.type,
                  "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                  "torch": torch.__version__, "threads": torch.get_num_threads(), "lesions": args.lesions,
                  "new_tokens_per_finding": args.new_tokens}
        model = random_model(folder, device, fast_dtype, "sdpa")
        result["params_m"] = round(sum(p.numel() for p in model.net.parameters()) / 1e6, 1)
        result["optimized"] = {"dtype": str(fast_dtype).replace("torch.", ""), "attention": "sdpa", "batched": True,
                               **run_path(model, views(args.lesions, image_size, device, fast_dtype),
                                          args.new_tokens, True, args.repeats)}
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if not args.skip_reference:
            ref = random_model(folder, device, torch.float32, "eager")
            result["reference"] = {"dtype": "float32", "attention": "eager", "batched": False,
                                   **run_path(ref, views(args.lesions, image_size, device, torch.float32),
                                              args.new_tokens, False, max(1, args.repeats // 2))}
            result["speedup_per_finding"] = round(result["reference"]["per_finding_s"]
                                                  / result["optimized"]["per_finding_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
