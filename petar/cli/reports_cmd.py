"""`petar evaluate-reports`: BLEU-1/4, ROUGE-L, METEOR, CIDEr, BERTScore (and plugins) of report texts."""
from __future__ import annotations

from pathlib import Path

from .table import render


def add_evaluate_reports(sub):
    p = sub.add_parser("evaluate-reports", help="report-text metrics: BLEU-1/4, ROUGE-L, METEOR, CIDEr, BERTScore",
                       description="Score predicted report texts against reference texts. Both files are JSON "
                                   "lines {\"id\": .., \"text\": ..}, matched by id (every id on both sides, none "
                                   "twice). BLEU-1/BLEU-4: sacrebleu corpus BLEU (13a tokens, lowercased, exp "
                                   "smoothing); ROUGE-L: rouge-score F with stemming; METEOR: NLTK (WordNet "
                                   "synonyms when NLTK's WordNet data is installed, else exact+stem; the variant is "
                                   "reported); CIDEr: pycocoevalcap CIDEr-D with document frequencies from these "
                                   "references; BERTScore: bert-score P/R/F1 with a local model folder (no "
                                   "download). Per-sample scores are in the JSON.")
    p.add_argument("--pred", required=True, type=Path, help="predicted texts, JSONL {\"id\", \"text\"}")
    p.add_argument("--ref", required=True, type=Path, help="reference texts, JSONL {\"id\", \"text\"}")
    p.add_argument("--metrics", metavar="LIST",
                   help="comma-separated: bleu1,bleu4,rougeL,meteor,cider,bertscore,green,ratescore (default: the "
                        "five lexical metrics, plus each model-based one whose folder is given)")
    p.add_argument("--bertscore-model", metavar="DIR", type=Path, help="local transformers encoder folder for "
                                                                       "BERTScore")
    p.add_argument("--bertscore-layers", metavar="N", type=int,
                   help="BERTScore representation layer (default: the model's last layer)")
    p.add_argument("--green-model", metavar="DIR", type=Path, help="local GREEN model folder (plugin)")
    p.add_argument("--ratescore-model", metavar="DIR", type=Path,
                   help="local RaTEScore folder with ner/ and embedding/ sub-folders (plugin)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="device for BERTScore")
    p.add_argument("--json", metavar="OUT", help="write the metrics JSON here ('-' for stdout)")
    p.set_defaults(run=run_evaluate_reports)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def reports_table(doc: dict) -> str:
    """One row per corpus score, with how it was computed (METEOR's variant included)."""
    rows = []
    for key, value in doc["corpus"].items():
        metric = "bertscore" if key.startswith("bertscore_") else key
        how = doc["variants"].get(metric, "")
        if isinstance(how, dict):
            how = f"model {'/'.join(Path(how['model']).parts[-2:])}, layer {how['num_layers']}, no baseline rescaling"
        rows.append([key, _fmt(value), how if metric == key or key.endswith("_precision") else ""])
    table = render(["metric", "corpus", "computed with"], rows, right={1})
    return "\n".join(line.rstrip() for line in table.splitlines())


def run_evaluate_reports(args) -> int:
    from ..atomic import write_json
    from ..metrics.reports import evaluate_reports

    doc = evaluate_reports(args.pred, args.ref, metrics=args.metrics, bertscore_model=args.bertscore_model,
                           green_model=args.green_model, ratescore_model=args.ratescore_model,
                           bertscore_layers=args.bertscore_layers,
                           device=None if args.device == "auto" else args.device)
    if args.json:
        write_json(args.json, doc)
    if args.json != "-":
        print(reports_table(doc))
        print(f"({doc['n']} samples; BLEU is corpus BLEU, the others are means of per-sample scores)")
    return 0
