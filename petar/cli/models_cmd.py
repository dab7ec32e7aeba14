"""`petar models list | pull ID [--revision REV] | verify ID_OR_DIR`: weights on this machine."""
from __future__ import annotations

from .table import render


def add_models(sub):
    p = sub.add_parser("models", help="list, pull and verify model weights",
                       description="Model weights live under $PETAR_HOME (default ~/.cache/petar). `pull` fetches "
                                   "weights, configs and tokenizer files only (never code or pickles) and writes a "
                                   "sha256 manifest; `verify` re-hashes every file against it.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="known models and what is cached here")
    ls.set_defaults(run=run_list)
    pl = msub.add_parser("pull", help="download a model into the cache (pin --revision)")
    pl.add_argument("model_id", metavar="ID", help="hub id, e.g. laynad/PETAR-4B")
    pl.add_argument("--revision", help="branch, tag or commit to pin (recommended: a commit)")
    pl.set_defaults(run=run_pull)
    vf = msub.add_parser("verify", help="check every file's sha256 against the pull manifest")
    vf.add_argument("model", metavar="ID_OR_DIR")
    vf.add_argument("--revision")
    vf.set_defaults(run=run_verify)


def run_list(args) -> int:
    from ..report.weights import list_models, petar_home

    rows = [[r["id"], (r["commit"] or r["revision"] or "-")[:12], "yes" if r["cached"] else "no",
             "-" if r["size_gb"] is None else f"{r['size_gb']:.2f}", r["path"] or r.get("about", "")]
            for r in list_models()]
    print(render(["model", "revision", "cached", "GB", "path / about"], rows, right={3}))
    print(f"(cache: {petar_home()})")
    return 0


def run_pull(args) -> int:
    from ..report.weights import pull

    if not args.revision:
        print("note: no --revision given: pulling the default branch; pin a commit for reproducible reports")
    rec = pull(args.model_id, args.revision)
    print(f"pulled {rec.model_id} at {rec.commit or rec.revision or 'main'} → {rec.path}")
    return 0


def run_verify(args) -> int:
    from ..errors import InputError
    from ..report.weights import verify

    problems = verify(args.model, args.revision)
    if problems:
        raise InputError(f"{len(problems)} file(s) do not match the manifest: {'; '.join(problems[:5])} — pull again")
    print(f"verified: every file of {args.model} matches its manifest")
    return 0
