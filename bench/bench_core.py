"""CPU benchmark: click segmentation and measurement on a whole-body 200×200×350 (3 mm) phantom.

Prints one JSON line: median / p90 milliseconds over --runs runs after warm-up, per operation, with the machine
named, plus the same operation done the naive whole-volume way (the baseline) and the speed-up ratio.
Targets (DESIGN.md §7): segment_click ≤ 150 ms, measure one lesion ≤ 50 ms on 2 CPU cores.

    python bench/bench_core.py [--runs 20] [--out bench/results/core.jsonl]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import petar
from petar.lesion.components import component_at
from petar.lesion.peak import sphere_kernel


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__}


def timed(fn, runs: int, warmup: int = 3, unit: str = "ms") -> dict:
    """Median and p90 of `runs` calls after `warmup` calls, in ms (or s with unit="s"); shared by every bench."""
    scale, digits = (1000.0, 2) if unit == "ms" else (1.0, 4)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * scale)
    times.sort()
    return {f"median_{unit}": round(statistics.median(times), digits),
            f"p90_{unit}": round(times[int(0.9 * (len(times) - 1))], digits), "runs": runs}


def naive_click(pet, ijk, percent=41.0):
    """Baseline: threshold the whole volume and label all of it (no snapping block, no guard)."""
    seed = tuple(ijk[::-1])
    return component_at(pet.array >= percent / 100 * pet.array[seed], seed)


def naive_peak(pet, mask):
    """Baseline: SUVpeak by convolving the whole PET with the 1 cm³ sphere kernel (SimpleITK), max in the lesion."""
    import SimpleITK as sitk

    k = sphere_kernel(pet.spacing)
    kimg = sitk.GetImageFromArray((k / k.sum()).astype(np.float32))
    kimg.SetSpacing(pet.spacing)
    conv = sitk.GetArrayFromImage(sitk.Convolution(sitk.Cast(pet.to_sitk(), sitk.sitkFloat32), kimg))
    return float(conv[mask.array > 0].max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", help="append the JSON line to this file too")
    args = ap.parse_args()

    t = time.perf_counter()
    ph = petar.make_phantom(seed=0)
    build_s = time.perf_counter() - t
    pet = ph.pet
    lesions = ph.truth
    one_label = petar.Volume.from_array((ph.lesions.array == 1).astype(np.uint8), like=pet)
    state = {"i": 0}

    def click(method):
        def run():
            les = lesions[state["i"] % len(lesions)]
            state["i"] += 1
            petar.segment_click(pet, pet.index_to_world(les["hottest_ijk"], "ras") + 2.0, method=method)
        return run

    results = {"phantom_build_s": round(build_s, 2)}
    for method in ("percent", "adaptive", "fixed"):
        state["i"] = 0
        try:
            results[f"segment_click_{method}"] = timed(click(method), args.runs)
        except petar.InputError as exc:      # a method may refuse a lesion (e.g. fixed near the bladder)
            results[f"segment_click_{method}"] = {"error": str(exc)}
    results["segment_click_naive_baseline"] = timed(lambda: naive_click(pet, lesions[0]["hottest_ijk"]), args.runs)
    results["measure_one_lesion"] = timed(lambda: petar.measure(pet, one_label), args.runs)
    results["measure_all_8_lesions"] = timed(lambda: petar.measure(pet, ph.lesions), args.runs)
    results["suv_peak_naive_baseline"] = timed(lambda: naive_peak(pet, one_label), max(5, args.runs // 4))
    results["ratio_click_vs_naive"] = round(results["segment_click_naive_baseline"]["median_ms"]
                                            / results["segment_click_percent"]["median_ms"], 1)
    results["ratio_measure_vs_naive_peak"] = round(results["suv_peak_naive_baseline"]["median_ms"]
                                                   / results["measure_one_lesion"]["median_ms"], 1)
    results["targets_met"] = {"segment_click_le_150ms": results["segment_click_percent"]["median_ms"] <= 150,
                              "measure_le_50ms": results["measure_one_lesion"]["median_ms"] <= 50}
    line = json.dumps({"bench": "core", "grid": [200, 200, 350], "spacing_mm": 3.0, "device": "cpu",
                       "machine": machine(), "results": results})
    print(line)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
