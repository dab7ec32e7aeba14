"""`petar study create|status|export|analyze`: a reader study from manifest to the paper's tables."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .table import render

_MASK_ALL = "suv,size,slice"


def add_study(sub):
    p = sub.add_parser("study", help="physician reader studies: create, status, export, analyze",
                       description="Blinded physician reading of findings texts (PETAR's reader study design): a "
                                   "manifest becomes a crash-safe SQLite study with frozen, seeded, balanced reading "
                                   "orders; readers rate in Slicer (PETARStudy module) or through the Python API; "
                                   "export gives the unblinded long-format tables, analyze the paper's tables.")
    ssub = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    p.set_defaults(run=lambda args: p.print_help() or 2)

    c = ssub.add_parser("create", help="freeze a manifest into a new study database",
                        description="Check the manifest (every problem listed at once), then write a new study "
                                    "database: cases, texts as readers will see them, readers, and per reader a "
                                    "seeded case order and A/B placement balanced across sources. An existing "
                                    "database is never overwritten.")
    c.add_argument("--manifest", required=True, type=Path,
                   help="JSON {\"cases\": [{case_id, pet, ct, mask, label, tracer, texts: {source: text}}]} or CSV "
                        "with those columns and text_<source> columns; paths relative to the manifest")
    c.add_argument("--db", required=True, type=Path, help="new study database file (e.g. study.sqlite)")
    c.add_argument("--readers", required=True, help="comma-separated pseudonymous reader ids, e.g. r1,r2,r3")
    c.add_argument("--design", choices=("paired", "single"), default="paired",
                   help="paired: two sources side by side as A/B with a preference (default); single: every text "
                        "rated on its own")
    c.add_argument("--sources", metavar="X,Y", help="sources to show (paired: exactly two, default the manifest's "
                                                    "two; single: default all)")
    c.add_argument("--mask-numbers", nargs="?", const=_MASK_ALL, default=_MASK_ALL, metavar="CATEGORIES",
                   help="replace measurement numbers by [#] in what readers see: suv,size,slice (default: all "
                        "three, as in the PETAR study)")
    c.add_argument("--no-mask-numbers", dest="mask_numbers", action="store_const", const="",
                   help="show texts with their numbers")
    c.add_argument("--seed", type=int, default=0, help="seed of orders and A/B placement (default 0)")
    c.set_defaults(run=run_create)

    s = ssub.add_parser("status", help="progress per reader", description="Rated / total per reader, cannot-assess "
                                                                          "count and last activity (UTC).")
    s.add_argument("--db", required=True, type=Path, help="study database")
    s.add_argument("--json", metavar="OUT", help="write the status JSON here ('-' for stdout)")
    s.set_defaults(run=run_status)

    e = ssub.add_parser("export", help="unblinded long-format CSV/JSON",
                        description="Write ratings.csv (one row per reader × text × scale), preferences.csv, "
                                    "items.csv (the unblinding key: which source was A and B for whom), audit.csv "
                                    "(every save and edit) and study.json (all of it). Safe while readers work.")
    e.add_argument("--db", required=True, type=Path, help="study database")
    e.add_argument("--out", required=True, type=Path, help="output folder")
    e.set_defaults(run=run_export)

    a = ssub.add_parser("analyze", help="the paper's tables: scores, preference, agreement, metric correlation",
                        description="Per source × scale mean ± SD and median; preference counts with an exact sign "
                                    "test; inter-reader agreement (Krippendorff's alpha, ordinal; ICC); with "
                                    "--metrics, Spearman rho (bootstrap CI) of each automated metric against the "
                                    "mean physician score per case. Writes analysis.json, report.md and a PNG per "
                                    "scale. Needs the study extra: pip install 'petar[study]'.")
    a.add_argument("--db", required=True, type=Path, help="study database")
    a.add_argument("--out", required=True, type=Path, help="output folder")
    a.add_argument("--metrics", type=Path, metavar="METRICS.json",
                   help="per-case metrics from `petar evaluate-reports --json` (ids = case ids)")
    a.add_argument("--metrics-source", metavar="SOURCE",
                   help="which source the metrics score (default: the one source that is not 'reference')")
    a.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    a.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    a.set_defaults(run=run_analyze)


def run_create(args) -> int:
    from ..study import Study

    with Study.create(args.db, args.manifest, args.readers, design=args.design, mask_numbers=args.mask_numbers,
                      seed=args.seed, sources=args.sources) as study:
        status = study.status()
        masked = ", ".join(study.mask_numbers) or "none"
        shown = " vs ".join(study.sources) if study.design == "paired" else ", ".join(study.sources)
        print(f"{args.db.name}: {len(study.case_ids)} cases, "
              f"{len(study.readers)} reader(s), {study.design} design ({shown}), numbers masked: {masked}, "
              f"{status[0]['total']} items per reader")
    return 0


def run_status(args) -> int:
    from ..atomic import write_json
    from ..study import Study

    with Study.open(args.db) as study:
        rows = study.status()
    if args.json:
        write_json(args.json, {"readers": rows})
    if args.json != "-":
        table = [[r["reader"], f"{r['done']} / {r['total']}", str(r["cannot_assess"]), r["last_activity"] or "-"]
                 for r in rows]
        print(render(["reader", "rated", "cannot assess", "last activity (UTC)"], table))
    return 0


def run_export(args) -> int:
    from ..study import Study
    from ..study.export import export_tables, write_export

    with Study.open(args.db) as study:
        tables = export_tables(study)
    for path in write_export(tables, args.out):
        print(path)
    return 0


def _read_metrics(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"metrics file {path.name!r} not found; write it with `petar evaluate-reports --json`") \
            from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"metrics file is not JSON ({exc}); give the file `petar evaluate-reports --json` "
                         "wrote") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("samples"), list):
        raise InputError("metrics file has no per-sample scores ('samples'); give the file `petar "
                         "evaluate-reports --json` wrote")
    return doc


def run_analyze(args) -> int:
    from ..atomic import write_json
    from ..study import Study
    from ..study.analysis import analyze
    from ..study.export import export_tables
    from ..study.report_md import write_report

    metrics = _read_metrics(args.metrics) if args.metrics else None
    with Study.open(args.db) as study:
        tables = export_tables(study)
    if not tables["ratings"]:
        raise InputError("no ratings yet; readers rate first (see `petar study status`)")
    result = analyze(tables["ratings"], tables["preferences"], metrics, metrics_source=args.metrics_source,
                     n_boot=args.bootstrap, seed=args.seed)
    write_json(args.out / "analysis.json", result)
    for path in [args.out / "analysis.json", *write_report(result, args.out)]:
        print(path)
    return 0
