"""Reader-study analysis against published worked examples and hand-computed values; the report files."""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("krippendorff")

from petar.errors import InputError, ModelMissingError  # noqa: E402
from petar.study import analysis as A  # noqa: E402
from petar.study import report_md  # noqa: E402

NAN = None
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", 4 coders x 12 units with missing values
KRIPP = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
         "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
         "C": [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
         "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]}
# Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def rating(reader, case, source, scale, score, *, slot="A", position=1, cannot=False):
    return {"reader": reader, "case_id": case, "position": position, "slot": slot, "source": source, "scale": scale,
            "score": score, "cannot_assess": cannot, "seconds": 12.0}


def study(n_cases=20, readers=("R1", "R2", "R3"), seed=1):
    """A paired study: every reader rates reference and petar on every case; petar scores ~ case quality."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1, 5, n_cases)
    ratings, prefs = [], []
    for reader in readers:
        for c in range(n_cases):
            case = f"c{c:02d}"
            flip = rng.random() < 0.5
            for slot, src in (("A", "reference"), ("B", "petar")) if not flip else (("A", "petar"), ("B", "reference")):
                for scale in A.SCALES:
                    base = 4.5 if src == "reference" else quality[c]
                    score = int(np.clip(round(base + rng.normal(0, 0.5)), 1, 5))
                    ratings.append(rating(reader, case, src, scale, score, slot=slot, position=c + 1))
            pref = rng.choice(["A", "tie", "B"])
            src_a, src_b = ("petar", "reference") if flip else ("reference", "petar")
            prefs.append({"reader": reader, "case_id": case, "position": c + 1, "source_A": src_a, "source_B": src_b,
                          "preference": pref, "preferred": {"A": src_a, "B": src_b, "tie": "tie"}[pref],
                          "seconds": 30.0, "comment": ""})
    metrics = {"n": n_cases, "metrics": ["good", "bad"], "corpus": {},
               "samples": [{"id": f"c{c:02d}", "good": float(quality[c] + rng.normal(0, 0.3)),
                            "bad": float(rng.normal())} for c in range(n_cases)]}
    return ratings, prefs, metrics


# ---- agreement ----------------------------------------------------------------------------------------------------
def test_krippendorff_package_reproduces_the_published_example():
    import krippendorff

    data = [[np.nan if v is None else v for v in row] for row in KRIPP.values()]
    published = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
    for level, value in published.items():
        assert round(krippendorff.alpha(reliability_data=data, level_of_measurement=level), 3) == value


def test_agreement_ordinal_alpha_from_rating_rows_matches_the_published_example():
    rows = []
    for reader, values in KRIPP.items():
        for j, v in enumerate(values):
            # a missing value arrives either as no row or as a cannot-assess row: both are skipped
            if v is not None:
                rows.append(rating(reader, f"u{j:02d}", "petar", "anatomy", v, position=j + 1))
            elif reader == "A":
                rows.append(rating(reader, f"u{j:02d}", "petar", "anatomy", None, position=j + 1, cannot=True))
    k = A.agreement(rows)["anatomy"]["krippendorff"]
    assert round(k["alpha"], 3) == 0.815
    assert (k["n_units"], k["n_unpairable"], k["n_readers"], k["level"]) == (11, 1, 4, "ordinal")


def test_icc_matches_shrout_fleiss_1979():
    r = A.icc(SHROUT_FLEISS)
    published = {"icc1_1": 0.17, "icc2_1": 0.29, "icc3_1": 0.71, "icc1_k": 0.44, "icc2_k": 0.62, "icc3_k": 0.91}
    assert {k: round(r[k], 2) for k in published} == published
    assert (r["n"], r["k"]) == (6, 4)


def test_icc_edge_cases():
    with pytest.raises(InputError):
        A.icc([[1, 2], [3, np.nan]])
    with pytest.raises(InputError):
        A.icc([[1, 2, 3]])
    flat = A.icc(np.full((4, 3), 3.0))
    assert flat["icc2_1"] is None and flat["icc3_1"] is None


def test_agreement_icc_uses_complete_units_only():
    matrix = [[5, 4, 5], [2, 2, 3], [4, 4, 4], [1, 2, 1], [3, 4, 3]]
    rows = [rating(f"R{j}", f"c{i}", "petar", "utility", v) for i, row in enumerate(matrix) for j, v in enumerate(row)]
    rows.append(rating("R0", "c9", "petar", "utility", 5))                   # scored by one reader only
    rows.append(rating("R1", "c9", "petar", "utility", None, cannot=True))
    ag = A.agreement(rows)["utility"]["icc"]
    expected = A.icc(matrix)
    assert ag["n_units"] == 5 and ag["n_dropped_incomplete"] == 1 and ag["n_readers"] == 3
    for key in ("icc2_1", "icc2_k", "icc3_1"):
        assert ag[key] == pytest.approx(expected[key])
    assert ag["reason"] is None


def test_agreement_with_one_reader_says_why():
    rows = [rating("R1", f"c{i}", "petar", s, 3 + i % 2) for i in range(4) for s in A.SCALES]
    ag = A.agreement(rows)["anatomy"]
    assert ag["krippendorff"]["alpha"] is None and "2 readers" in ag["krippendorff"]["reason"]
    assert ag["icc"].get("icc2_1") is None and "2 readers" in ag["icc"]["reason"]


# ---- descriptive statistics ---------------------------------------------------------------------------------------
def test_describe_hand_computed():
    rows = [rating("R1", "c1", "petar", "anatomy", 2), rating("R1", "c2", "petar", "anatomy", 4),
            rating("R2", "c1", "petar", "anatomy", 4), rating("R2", "c2", "petar", "anatomy", 5),
            rating("R3", "c1", "petar", "anatomy", None, cannot=True),
            rating("R3", "c2", "petar", "anatomy", None),                      # unanswered
            rating("R1", "c1", "reference", "anatomy", 5),
            rating("R1", "c1", "petar", "utility", 3)]
    d = A.describe(rows)
    p = d["scales"]["anatomy"]["petar"]
    assert (p["n"], p["n_cannot_assess"], p["n_missing"]) == (4, 1, 1)
    assert p["mean"] == pytest.approx(3.75)
    assert p["sd"] == pytest.approx(math.sqrt(4.75 / 3))                     # (1.75² + .25² + .25² + 1.25²) / 3
    assert (p["median"], p["q1"], p["q3"], p["iqr"]) == pytest.approx((4.0, 3.5, 4.25, 0.75))
    assert p["counts"] == {"1": 0, "2": 1, "3": 0, "4": 2, "5": 1}
    ref = d["scales"]["anatomy"]["reference"]
    assert ref["n"] == 1 and ref["mean"] == 5 and ref["sd"] is None
    assert d["scales"]["utility"]["reference"]["n"] == 0 and d["scales"]["utility"]["reference"]["mean"] is None
    assert d["sources"] == ["reference", "petar"]
    # overall: per rated text the mean of its scales: R1/c1 (2+3)/2, R1/c2 4, R2/c1 4, R2/c2 5
    assert d["overall"]["petar"]["n"] == 4
    assert d["overall"]["petar"]["mean"] == pytest.approx((2.5 + 4 + 4 + 5) / 4)


@pytest.mark.parametrize("bad", [{"score": 6}, {"score": True}, {"score": "3.5"}, {"scale": "style"}])
def test_bad_rating_rows_are_refused(bad):
    row = {**rating("R1", "c1", "petar", "anatomy", 3), **bad}
    with pytest.raises(InputError, match="export the study again"):
        A.describe([row])


# ---- preferences --------------------------------------------------------------------------------------------------
def test_preference_counts_and_sign_test_paper_numbers():
    rng = np.random.default_rng(0)
    prefs = []
    for i, winner in enumerate(["petar"] * 15 + ["reference"] * 47 + ["tie"] * 54 + [None] * 3):
        a, b = ("petar", "reference") if rng.random() < 0.5 else ("reference", "petar")
        pref = None if winner is None else "tie" if winner == "tie" else "A" if winner == a else "B"
        prefs.append({"reader": f"R{i % 3}", "case_id": f"c{i}", "position": i, "source_A": a, "source_B": b,
                      "preference": pref, "preferred": winner, "seconds": None, "comment": ""})
    (pair,) = A.preference_summary(prefs)["pairs"]
    assert pair["sources"] == ["reference", "petar"]
    assert pair["counts"] == {"reference": 47, "petar": 15, "tie": 54}
    assert (pair["n"], pair["n_missing"]) == (116, 3)
    assert pair["share_or_tie"]["petar"] == pytest.approx(69 / 116) == pytest.approx(0.60, abs=0.01)
    exact = min(1.0, 2 * sum(math.comb(62, i) for i in range(16)) / 2 ** 62)   # two-sided, 15 of 62
    assert pair["sign_test"]["n"] == 62 and pair["sign_test"]["k"] == 47
    assert pair["sign_test"]["p"] == pytest.approx(exact, rel=1e-9)
    assert pair["sign_test"]["p"] < 1e-4
    assert sum(r["tie"] for r in pair["by_reader"].values()) == 54


def test_preference_contradiction_is_refused():
    row = {"reader": "R1", "case_id": "c1", "source_A": "petar", "source_B": "reference", "preference": "A",
           "preferred": "reference"}
    with pytest.raises(InputError, match="disagree"):
        A.preference_summary([row])


# ---- metrics vs physicians ----------------------------------------------------------------------------------------
def _one_scale_rows(scores_by_case, readers=("R1", "R2")):
    return [rating(r, case, "petar", s, int(v)) for case, v in scores_by_case.items() for r in readers
            for s in A.SCALES]


def test_spearman_monotone_and_anti_monotone():
    cases = {f"c{i}": 1 + i % 5 + 0 for i in range(5)}
    rows = _one_scale_rows(cases)
    metrics = {"samples": [{"id": c, "up": v * 0.1, "down": -v ** 2, "partial": (None if c == "c0" else v)}
                           for c, v in cases.items()] + [{"id": "extra", "up": 0.0, "down": 0.0, "partial": 0.0}]}
    rows.append(rating("R1", "lonely", "petar", "anatomy", 3))
    res = A.metric_correlation(rows, metrics, n_boot=100)
    by = {(r["metric"], r["target"]): r for r in res["results"]}
    up, down = by[("up", "overall")], by[("down", "overall")]
    assert up["rho"] == pytest.approx(1.0) and up["ci_low"] == pytest.approx(1.0) and up["n"] == 5
    assert down["rho"] == pytest.approx(-1.0) and down["ci_high"] == pytest.approx(-1.0)
    assert by[("partial", "anatomy")]["n"] == 4 and by[("partial", "anatomy")]["n_skipped"] == 1
    assert (res["source"], res["n_cases"], res["n_rated_without_metrics"], res["n_metrics_without_ratings"]) == \
        ("petar", 5, 1, 1)


def test_bootstrap_ci_is_the_percentile_of_resampled_spearman_and_reproducible():
    from scipy.stats import spearmanr

    ratings, _, metrics = study()
    res = A.metric_correlation(ratings, metrics, n_boot=200, seed=7)
    again = A.metric_correlation(ratings, metrics, n_boot=200, seed=7)
    other = A.metric_correlation(ratings, metrics, n_boot=200, seed=8)
    assert res == again and res != other
    row = next(r for r in res["results"] if r["metric"] == "good" and r["target"] == "overall")
    assert row["rho"] > 0.5 and row["p"] < 0.05
    # independent oracle: the same resamples scored one by one with scipy
    physician = {}
    for r in ratings:
        if r["source"] == "petar":
            physician.setdefault(r["case_id"], []).append(r["score"])
    cases = sorted(physician)
    x = np.array([next(s["good"] for s in metrics["samples"] if s["id"] == c) for c in cases])
    y = np.array([round(np.mean(physician[c]), 9) for c in cases])          # equal means must tie
    assert row["rho"] == pytest.approx(spearmanr(x, y)[0])
    idx = np.random.default_rng(7).integers(0, len(cases), size=(200, len(cases)))
    boots = [spearmanr(x[i], y[i])[0] for i in idx]
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(list(np.quantile(boots, [0.025, 0.975])))
    bad = next(r for r in res["results"] if r["metric"] == "bad" and r["target"] == "overall")
    assert abs(bad["rho"]) < row["rho"]


def test_default_bootstrap_size_runs():
    ratings, _, metrics = study(n_cases=40)
    res = A.metric_correlation(ratings, metrics)
    assert res["n_boot"] == 2000 and all(r["n_boot_valid"] == 2000 for r in res["results"])


def test_metrics_source_must_be_unambiguous():
    ratings, _, metrics = study(n_cases=6)
    ratings += [{**r, "source": "template"} for r in ratings if r["source"] == "petar"]
    with pytest.raises(InputError, match="--metrics-source"):
        A.metric_correlation(ratings, metrics, n_boot=10)
    assert A.metric_correlation(ratings, metrics, source="template", n_boot=10)["source"] == "template"
    with pytest.raises(InputError, match="no ratings of that source"):
        A.metric_correlation(ratings, metrics, source="gpt", n_boot=10)
    with pytest.raises(InputError, match="no case id"):
        A.metric_correlation(ratings, {"samples": [{"id": "zz", "good": 1.0}]}, source="petar", n_boot=10)


# ---- analyze and report -------------------------------------------------------------------------------------------
def test_analyze_is_strict_json():
    ratings, prefs, metrics = study(n_cases=8)
    # a scale where every reader gives every text the same score: alpha and ICC undefined, not NaN
    ratings = [{**r, "score": 4} if r["scale"] == "utility" else r for r in ratings]
    ratings.append(rating("R1", "c00", "petar", "anatomy", None, cannot=True, position=99))
    res = A.analyze(ratings, prefs, metrics, n_boot=50)
    json.dumps(res, allow_nan=False)
    assert res["agreement"]["utility"]["krippendorff"]["alpha"] is None
    assert res["agreement"]["utility"]["krippendorff"]["reason"]
    c = res["counts"]
    assert (c["readers"], c["cases"], c["cannot_assess"], c["preferences"]) == (3, 8, 1, 24)
    assert c["ratings"] == 3 * 8 * 2 * 3 + 1 and c["texts_rated"] == 3 * 8 * 2 + 1 and c["items"] == 3 * 8 + 1
    assert res["metric_correlation"]["source"] == "petar"
    assert A.analyze(ratings, [], None)["metric_correlation"] is None
    with pytest.raises(InputError, match="no ratings"):
        A.analyze([], [])


def test_write_report_files(tmp_path):
    ratings, prefs, metrics = study(n_cases=10)
    res = A.analyze(ratings, prefs, metrics, n_boot=50)
    paths = report_md.write_report(res, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["report.md", "scale_anatomy.png", "scale_interpretation.png", "scale_utility.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names          # no temp files left
    for p in paths[1:]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    d = res["describe"]["scales"]["anatomy"]["petar"]
    assert f"{d['mean']:.2f} ± {d['sd']:.2f} ({d['median']:.1f})" in md
    pair = res["preferences"]["pairs"][0]
    assert f"| reference vs petar | {pair['counts']['reference']} | {pair['counts']['tie']} |" in md
    alpha = res["agreement"]["interpretation"]["krippendorff"]["alpha"]
    assert f"{alpha:.3f}" in md and "![Anatomical accuracy](scale_anatomy.png)" in md
    # correlation table sorted by rho: the informative metric comes first
    assert md.index("| good |") < md.index("| bad |")


def test_write_report_leaves_nothing_on_failure(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    ratings, prefs, _ = study(n_cases=5)
    res = A.analyze(ratings, prefs)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old", encoding="utf-8")
    calls = []
    real = Figure.savefig

    def failing(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, *args, **kw)

    monkeypatch.setattr(Figure, "savefig", failing)
    with pytest.raises(OSError, match="disk full"):
        report_md.write_report(res, out)
    assert [p.name for p in out.iterdir()] == ["report.md"]
    assert (out / "report.md").read_text(encoding="utf-8") == "old"


def test_missing_study_extra_is_exit_3(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in ("krippendorff", "matplotlib") else real(name, *a, **k))
    with pytest.raises(ModelMissingError, match=r"\[study\]"):
        A.agreement([rating("R1", "c1", "petar", "anatomy", 3)])
    with pytest.raises(ModelMissingError, match=r"\[study\]"):
        report_md.write_report({}, "unused")


def test_the_study_export_feeds_the_analysis(tmp_path):
    """Contract with petar.study: a cannot-assess item may still carry scores for one text; those count as scores."""
    from petar.study import Study
    from petar.study.export import export_tables

    for name in ("pet.nii.gz", "ct.nii.gz", "mask.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    cases = [{"case_id": f"c{i}", "pet": "pet.nii.gz", "ct": "ct.nii.gz", "mask": "mask.nii.gz", "label": 1,
              "texts": {"reference": f"Reference text {i}.", "petar": f"Model text {i}."}} for i in range(3)]
    (tmp_path / "m.json").write_text(json.dumps({"cases": cases}), encoding="utf-8")
    st = Study.create(tmp_path / "s.db", tmp_path / "m.json", ["R1", "R2"], design="paired", seed=0)
    for reader in ("R1", "R2"):
        s = st.session(reader)
        first = True
        while (item := s.next_item()) is not None:
            if first and reader == "R1":
                s.rate(item, scores={"A": {"anatomy": 3, "interpretation": 3, "utility": 3}}, cannot_assess="no B")
            else:
                s.rate(item, scores={slot: {sc: 4 for sc in A.SCALES} for slot in "AB"}, preference="tie")
            first = False
    t = export_tables(st)
    res = A.analyze(t["ratings"], t["preferences"])
    c = res["counts"]
    assert (c["readers"], c["cases"], c["scores"], c["cannot_assess"], c["missing"]) == (2, 3, 33, 3, 0)
    (pair,) = res["preferences"]["pairs"]
    assert (pair["n"], pair["n_cannot_assess"], pair["counts"]["tie"]) == (5, 1, 5)
    csv_rows = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in t["ratings"]]   # as in ratings.csv
    assert A.describe(csv_rows) == res["describe"]


def test_single_design_report_has_no_preference_or_metric_section(tmp_path):
    rows = [rating(r, f"c{i}", "petar", s, 1 + (i + j) % 5) for i in range(6) for j, r in enumerate(["R1", "R2"])
            for s in A.SCALES]
    res = A.analyze(rows, [])
    md = report_md.render_markdown(res)
    assert "No preferences recorded" in md and "Automatic metrics" not in md
    assert len(report_md.write_report(res, tmp_path)) == 4
