"""Service round-trip overhead: measure and segment through `petar serve` vs the same call in-process.

A whole-body 200×200×350 (3 mm) phantom; the server runs as a subprocess (`petar.service.launch`, loopback) so
client and server do not share a GIL, as with Slicer. The PET is uploaded once (first call, reported separately);
then per call: measure(pet, mask of one lesion) with the same mask object, measure with a NEW mask object each call
(the mask is uploaded every time, as after an edit in Slicer), and segment (the mask comes back and is decoded).
Prints one JSON line: median / p90 ms per operation, in-process and via the service, and the extra ms.
Target (issue 5): ≤ 50 ms extra per measure/segment call on loopback.

    python bench/bench_service.py [--runs 20] [--out bench/results/service.jsonl]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import petar
from bench_core import machine, timed
from petar.service import launch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", help="append the JSON line to this file too")
    args = ap.parse_args()

    ph = petar.make_phantom(seed=0)                           # 200×200×350, 3 mm
    pet = ph.pet
    t0 = ph.truth[0]
    one = petar.Volume.from_array((ph.lesions.array == t0["label"]).astype(np.uint8), like=pet)
    point = t0["center_ras"]
    results = {}
    with launch(port=0) as svc:
        c = svc.client()
        t = time.perf_counter()
        c.measure(pet, one)                                   # first call: uploads PET and mask
        results["first_call_with_upload_ms"] = round((time.perf_counter() - t) * 1000, 1)
        cases = {
            "measure": (lambda: petar.measure(pet, one), lambda: c.measure(pet, one)),
            "measure_new_mask_object": (lambda: petar.measure(pet, one.copy()), lambda: c.measure(pet, one.copy())),
            "segment": (lambda: petar.click_segment(pet, point), lambda: c.segment(pet, point)),
        }
        for name, (local, remote) in cases.items():
            a, b = timed(local, args.runs), timed(remote, args.runs)
            results[name] = {"in_process": a, "service": b,
                             "extra_median_ms": round(b["median_ms"] - a["median_ms"], 2),
                             "extra_p90_ms": round(b["p90_ms"] - a["p90_ms"], 2)}
        info = c.info()
    line = {"bench": "service", "shape": list(pet.shape), "spacing_mm": list(pet.spacing), "runs": args.runs,
            "transport": "loopback, plain .nii", "target_extra_ms": 50, "machine": machine(),
            "server_versions": {k: info["versions"].get(k) for k in ("fastapi", "uvicorn")}, **results}
    text = json.dumps(line)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
