"""CPU benchmark: rule grounding of each phantom lesion's sentence on a whole-body 200×200×350 (3 mm) PET.

Median of --runs per sentence after warm-up; one JSON line naming the machine. Target (DESIGN.md §7): ≤ 1 s.

    python bench/bench_rule.py [--runs 10]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import petar
from bench_core import machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    ph = petar.make_phantom(seed=0)
    rows, times = [], []
    for t in ph.truth:
        text = f"FDG-avid {t['name']}, SUVmax {t['suv_max']:.2f}, image {t['axial_slice']}."
        petar.ground(text, ph.pet)
        runs = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            res = petar.ground(text, ph.pet)
            runs.append((time.perf_counter() - t0) * 1000)
        med = statistics.median(runs)
        times.append(med)
        rows.append({"lesion": t["name"], "status": res.status, "median_ms": round(med, 1)})
    print(json.dumps({"bench": "rule_grounding", "grid": [200, 200, 350], "spacing_mm": 3.0, "device": "cpu",
                      "machine": machine(), "median_ms_over_lesions": round(statistics.median(times), 1),
                      "max_ms": round(max(times), 1), "target_met_le_1s": max(times) <= 1000, "per_lesion": rows}))


if __name__ == "__main__":
    main()
