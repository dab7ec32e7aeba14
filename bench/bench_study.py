"""Reader-study store: how long a reader waits for Save & Next, alone and with other readers saving at once.

One JSON line naming the machine: the median/p90 of one `ReaderSession.rate` (a durable transaction:
synchronous=FULL, audit row) and of `next_item`, against a baseline measured in the same run — the same save
with synchronous=OFF (what waiting for the disk costs); then N processes saving all their items at once
(per-save latency under contention, and that no rating was lost).

    python bench/bench_study.py [--cases 200] [--readers 4]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bench_core import machine, timed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petar.study import Study  # noqa: E402

SCORES = {"A": {"anatomy": 4, "interpretation": 4, "utility": 3}, "B": {"anatomy": 3, "interpretation": 2,
                                                                        "utility": 2}}
WORKER = r"""
import json, sys, time
from petar.study import Study
sc = json.loads(sys.argv[3])
times = []
with Study.open(sys.argv[1]) as st:
    s = st.session(sys.argv[2])
    while (item := s.next_item()) is not None:
        t = time.perf_counter()
        s.rate(item, sc, preference="tie")
        times.append((time.perf_counter() - t) * 1000)
print(json.dumps(times))
"""


def make_study(folder: Path, cases: int, readers: int) -> Path:
    img = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32))
    for name in ("pet.nii.gz", "mask.nii.gz"):
        sitk.WriteImage(img, str(folder / name))
    rows = [{"case_id": f"c{i:04d}", "pet": "pet.nii.gz", "mask": "mask.nii.gz", "label": 1,
             "texts": {"reference": f"Hypermetabolic node {i}, SUVmax 5.{i % 10}", "petar": f"FDG-avid node {i}"}}
            for i in range(cases)]
    (folder / "m.json").write_text(json.dumps({"cases": rows}))
    db = folder / "study.sqlite"
    Study.create(db, folder / "m.json", [f"r{k}" for k in range(readers)]).close()
    return db


def _filesystem(path: str) -> str:
    """The mount's type (fsync cost depends on it): the longest /proc/mounts entry containing the path."""
    try:
        mounts = [line.split()[1:3] for line in open("/proc/mounts")]
    except OSError:
        return "unknown"
    real = str(Path(path).resolve())
    best = max((m for m in mounts if real == m[0] or real.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=("?", "unknown"))
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--dir", default=str(ROOT / "bench"), help="folder for the scratch database (a real disk, "
                                                              "not tmpfs, or fsync costs nothing)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        db = make_study(Path(tmp), args.cases, args.readers)
        with Study.open(db) as st:
            s = st.session("r0")
            items = iter([s.item_at(p) for p in range(1, args.cases + 1)])
            rate = timed(lambda: s.rate(next(items), SCORES, preference="A"), runs=args.cases // 2 - 3)
            nxt = timed(s.next_item, runs=50)
            edit_item = s.item_at(1)
            edit = timed(lambda: s.rate(edit_item, SCORES, preference="B"), runs=20)
            st._conn.execute("PRAGMA synchronous = OFF")            # the same save without waiting for the disk
            bare = timed(lambda: s.rate(next(items), SCORES, preference="A"), runs=args.cases // 2 - 3)
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(db), f"r{k}", json.dumps(SCORES)],
                                  stdout=subprocess.PIPE, text=True, cwd=ROOT) for k in range(1, args.readers)]
        per_save = [t for p in procs for t in json.loads(p.communicate()[0])]
        wall = time.perf_counter() - t0
        with Study.open(db) as st:
            done = [r["done"] for r in st.status()]
    per_save.sort()
    print(json.dumps({
        "bench": "study_store", "device": "cpu", "machine": machine(), "cases": args.cases,
        "filesystem": _filesystem(args.dir),
        "rate_durable_ms": rate, "rate_edit_ms": edit, "next_item_ms": nxt,
        "baseline_rate_synchronous_off_ms": bare,
        "ratio_durable_vs_synchronous_off": round(rate["median_ms"] / max(bare["median_ms"], 1e-3), 2),
        "concurrent": {"processes": args.readers - 1, "saves": len(per_save), "wall_s": round(wall, 2),
                       "median_ms": round(per_save[len(per_save) // 2], 2),
                       "p90_ms": round(per_save[int(0.9 * (len(per_save) - 1))], 2),
                       "max_ms": round(per_save[-1], 2)},
        "ratings_stored_per_reader": done,
        "none_lost": done[1:] == [args.cases] * (args.readers - 1)}))


if __name__ == "__main__":
    main()
