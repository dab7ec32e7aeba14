"""`petar evaluate-grounding`: lesion-level F1 (three TP rules), Dice and a per-tracer breakdown from a manifest."""
from __future__ import annotations

from pathlib import Path

from .table import render


def add_evaluate_grounding(sub):
    p = sub.add_parser("evaluate-grounding", help="grounding F1 (SUVmax-match, any-overlap, Dice>0.5) and Dice",
                       description="Score predicted lesion masks against reference masks. Manifest: JSON lines "
                                   "{\"pet\": .., \"pred\": .., \"ref\": .., \"tracer\": ..} (optional \"case\"), "
                                   "paths relative to the manifest's folder. Each 26-connected component is one "
                                   "finding; F1 = TP/(TP + (FP+FN)/2) summed over cases, under three rules: "
                                   "'suvmax' (overlap and SUVmax within the tolerance, the paper's rule), "
                                   "'any_overlap' (predicted components of <= 3 voxels ignored) and 'dice>0.5'. "
                                   "One predicted component matches at most one reference component.")
    p.add_argument("--manifest", required=True, type=Path, help="JSONL manifest, one case per line")
    p.add_argument("--json", metavar="OUT", help="write the metrics JSON here ('-' for stdout)")
    p.add_argument("--suv-tolerance", type=float, default=0.1,
                   help="SUVmax-match rule: largest SUVmax difference for a TP (default 0.1)")
    p.set_defaults(run=run_evaluate_grounding)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def grounding_table(doc: dict) -> str:
    """Rows per group (overall, then each tracer) × rule: TP, FP, FN, F1; cases and mean Dice once per group."""
    groups = [("overall", doc["overall"])] + [(f"tracer {t}", s) for t, s in doc["by_tracer"].items()]
    rows = []
    for name, summary in groups:
        for i, (rule, c) in enumerate(summary["rules"].items()):
            first = i == 0
            rows.append([name if first else "", rule, summary["cases"] if first else "", c["tp"], c["fp"], c["fn"],
                         _fmt(c["f1"]), _fmt(summary["mean_dice"]) if first else ""])
    table = render(["group", "rule", "cases", "TP", "FP", "FN", "F1", "mean Dice"], rows)
    return "\n".join(line.rstrip() for line in table.splitlines())


def run_evaluate_grounding(args) -> int:
    from ..atomic import write_json
    from ..errors import InputError
    from ..metrics import evaluate_grounding

    if not args.suv_tolerance >= 0:
        raise InputError(f"--suv-tolerance must be >= 0, got {args.suv_tolerance}")
    doc = evaluate_grounding(args.manifest, suv_tolerance=args.suv_tolerance)
    if args.json:
        write_json(args.json, doc)
    if args.json != "-":
        print(grounding_table(doc))
        print(f"(F1 = TP/(TP + (FP+FN)/2) over {doc['overall']['cases']} cases; SUVmax tolerance "
              f"{args.suv_tolerance:g}; any-overlap ignores predicted components of <= "
              f"{doc['min_voxels_any_overlap']} voxels)")
    return 0
