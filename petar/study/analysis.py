"""Reader-study statistics: what physicians' blinded ratings say about each source of findings text.

Input is the study export's two long tables (lists of dicts): ``ratings`` (one row per reader × item × slot × scale)
and ``preferences`` (one row per reader × paired item). Every function returns a plain JSON-ready dict — a value
that cannot be computed is None with a ``reason``, never NaN — so ``petar study analyze`` writes it as it is and
:mod:`petar.study.report_md` renders it. scipy and krippendorff are imported lazily (the ``study`` extra).

Choices, stated once:

- Scores are 1–5. A ``cannot_assess`` rating has no score: counted, never averaged. A row with neither a score nor
  ``cannot_assess`` (an unfinished item) is counted as missing.
- SD is the sample SD (ddof=1); median and quartiles use numpy's linear interpolation (Hyndman–Fan type 7).
- "overall" is, per rated text, the mean of the scales the reader could assess.
- A unit is one text, ``(case_id, source)``. When a reader scored a unit more than once (a case shown in several
  pairs), agreement and correlation use that reader's first score (lowest position); ``describe`` counts them all.
- Preferences: exact two-sided sign test (binomial, p = 0.5) on the non-tie preferences; ties are reported, not split.
- Agreement: Krippendorff's alpha (ordinal, value domain 1..5, units = texts, coders = readers, missing allowed);
  ICC from a two-way ANOVA on the texts every reader scored (Shrout & Fleiss 1979; McGraw & Wong 1996).
- Metric correlation (PETAR paper, Table 4): Spearman's rho between each per-case automatic metric and the mean
  physician score of the case, with a percentile bootstrap CI over cases.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..deps import require
from ..errors import InputError

SCALES = ("anatomy", "interpretation", "utility")
SCALE_TITLES = {"anatomy": "Anatomical accuracy", "interpretation": "Interpretation accuracy",
                "utility": "Overall clinical utility", "overall": "Mean of the three scales"}
OVERALL = "overall"
SCORES = (1, 2, 3, 4, 5)
REFERENCE = "reference"
_BOOT_CHUNK = 256   # bootstrap resamples drawn per block: bounded memory, same draws for a given seed

METHODS = {
    "describe": "mean ± sample SD (ddof=1); median and IQR with linear interpolation; cannot-assess ratings "
                "counted, not scored; overall = per rated text, the mean of its assessed scales",
    "preferences": "counts per source and ties; exact two-sided sign test (binomial, p = 0.5) on non-tie "
                   "preferences",
    "agreement": "Krippendorff's alpha, ordinal, value domain 1-5, units = texts (case, source), coders = readers; "
                 "ICC from the two-way ANOVA on texts scored by every reader: ICC(2,1) = ICC(A,1) absolute "
                 "agreement, ICC(2,k) = ICC(A,k) mean of k readers, ICC(3,1) = ICC(C,1) consistency "
                 "(Shrout & Fleiss 1979; McGraw & Wong 1996)",
    "metric_correlation": "Spearman's rho between each per-case metric and the case's mean physician score "
                          "(mean over readers); p from scipy.stats.spearmanr (t approximation); percentile "
                          "bootstrap CI resampling cases (numpy default_rng(seed), restarted per metric and scale)",
}


def clean(obj):
    """JSON-ready copy: numpy scalars to Python numbers, NaN/inf to None, tuples to lists, keys to str."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


# ---- input --------------------------------------------------------------------------------------------------------
def _problems(what: str, problems: list[str]) -> InputError:
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return InputError(f"{what}: " + "; ".join(problems[:5]) + more + " (export the study again)")


def _flag(v) -> bool:
    """cannot_assess as exported: a bool, or its CSV spelling ("True", "1", "" ...)."""
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v)


def _ratings(rows) -> list[dict]:
    """Checked, normalised copies of the rating rows; all problems found go into one InputError.

    A score wins over ``cannot_assess``: the store flags a whole item, and a reader may still score one of its texts.
    """
    out, problems = [], []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or any(k not in r for k in ("reader", "case_id", "source", "scale")):
            problems.append(f"row {i} needs reader, case_id, source and scale")
            continue
        score = r.get("score")
        if isinstance(score, str):                                 # the CSV export
            score = int(score) if score.strip().isdigit() else None if not score.strip() else score
        if r["scale"] not in SCALES:
            problems.append(f"row {i}: unknown scale {r['scale']!r} (expected {', '.join(SCALES)})")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float, np.number))
                                  or score not in SCORES):
            problems.append(f"row {i}: score {r.get('score')!r} is not an integer 1-5")
            continue
        out.append({"reader": str(r["reader"]), "case_id": str(r["case_id"]), "source": str(r["source"]),
                    "scale": r["scale"], "score": None if score is None else int(score),
                    "cannot_assess": score is None and _flag(r.get("cannot_assess")),
                    "position": r.get("position"), "slot": r.get("slot")})
    if problems:
        raise _problems("ratings", problems)
    return out


def _order(r) -> tuple:
    pos = r.get("position")
    return (r["reader"], math.inf if pos is None else pos, str(r.get("slot")))


def _sources(names) -> list[str]:
    """Source names, "reference" first, the rest sorted — the column order of every table."""
    names = set(names)
    return ([REFERENCE] if REFERENCE in names else []) + sorted(names - {REFERENCE})


def _unit_scores(rows) -> dict:
    """``{scale: {(case_id, source): {reader: score}}}``: each reader's first score of each text."""
    out = {s: defaultdict(dict) for s in SCALES}
    for r in sorted((r for r in rows if r["score"] is not None), key=_order):
        out[r["scale"]][(r["case_id"], r["source"])].setdefault(r["reader"], r["score"])
    return out


# ---- descriptive statistics ---------------------------------------------------------------------------------------
def _summary(values) -> dict:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": None, "sd": None, "median": None, "q1": None, "q3": None, "iqr": None}
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    return {"n": int(v.size), "mean": v.mean(), "sd": v.std(ddof=1) if v.size > 1 else None, "median": med,
            "q1": q1, "q3": q3, "iqr": q3 - q1}


def describe(ratings) -> dict:
    """Per scale × source: n, n_cannot_assess, n_missing, mean, sd, median, q1, q3, iqr, counts of each score;
    and per source the same for "overall" (per rated text, the mean of its assessed scales)."""
    rows = _ratings(ratings)
    sources = _sources(r["source"] for r in rows)
    out = {"sources": sources, "scales": {}, OVERALL: {}}
    for scale in SCALES:
        out["scales"][scale] = {}
        for src in sources:
            sel = [r for r in rows if r["scale"] == scale and r["source"] == src]
            vals = [r["score"] for r in sel if r["score"] is not None]
            d = _summary(vals)
            d["n_cannot_assess"] = sum(r["cannot_assess"] for r in sel)
            d["n_missing"] = sum(r["score"] is None and not r["cannot_assess"] for r in sel)
            d["counts"] = {str(s): vals.count(s) for s in SCORES}
            out["scales"][scale][src] = d
    texts = defaultdict(list)
    for r in rows:
        if r["score"] is not None:
            texts[(r["source"], r["reader"], r["case_id"], r["position"], r["slot"])].append(r["score"])
    for src in sources:
        out[OVERALL][src] = _summary([np.mean(v) for k, v in texts.items() if k[0] == src])
    return clean(out)


# ---- pairwise preferences -----------------------------------------------------------------------------------------
def preference_summary(preferences) -> dict:
    """Per unordered source pair: wins per source, ties, shares, and the exact sign test on non-tie preferences.

    ``{"pairs": [{"sources": [s1, s2], "n", "n_cannot_assess", "n_missing", "counts": {s1, s2, "tie"}, "share": {..},
    "share_or_tie": {s1, s2}, "sign_test": {"n", "k" (wins of s1), "p"}, "by_reader": {reader: counts}}]}``.
    """
    require(("scipy",), "study")
    from scipy.stats import binomtest

    tallies: dict[tuple, dict] = {}
    problems = []
    for i, p in enumerate(preferences):
        a, b = p.get("source_A"), p.get("source_B")
        pref, named = p.get("preference"), p.get("preferred")
        if a is None or b is None or a == b:
            problems.append(f"row {i} needs two different sources (source_A, source_B)")
            continue
        if pref not in ("A", "B", "tie", None):
            problems.append(f"row {i}: preference {pref!r} is not A, tie or B")
            continue
        winner = {"A": a, "B": b, "tie": "tie", None: named}[pref]
        if named is not None and named != winner or winner not in (a, b, "tie", None):
            problems.append(f"row {i}: preference {pref!r} and preferred {named!r} disagree")
            continue
        key = tuple(_sources((str(a), str(b))))
        t = tallies.setdefault(key, {"counts": Counter(), "missing": 0, "cannot": 0,
                                     "by_reader": defaultdict(Counter)})
        if winner is None:
            t["cannot" if _flag(p.get("cannot_assess")) else "missing"] += 1
        else:
            t["counts"][str(winner)] += 1
            t["by_reader"][str(p.get("reader"))][str(winner)] += 1
    if problems:
        raise _problems("preferences", problems)

    pairs = []
    for (s1, s2) in sorted(tallies, key=lambda k: (k[0] != REFERENCE, k)):
        t = tallies[(s1, s2)]
        c1, c2, ties = t["counts"][s1], t["counts"][s2], t["counts"]["tie"]
        n, m = c1 + c2 + ties, c1 + c2
        share = {s1: c1 / n, s2: c2 / n, "tie": ties / n} if n else {s1: None, s2: None, "tie": None}
        or_tie = {s1: (c1 + ties) / n, s2: (c2 + ties) / n} if n else {s1: None, s2: None}
        pairs.append({"sources": [s1, s2], "n": n, "n_cannot_assess": t["cannot"], "n_missing": t["missing"],
                      "counts": {s1: c1, s2: c2, "tie": ties}, "share": share, "share_or_tie": or_tie,
                      "sign_test": {"n": m, "k": c1, "p": binomtest(c1, m, 0.5).pvalue if m else None},
                      "by_reader": {rd: {s1: c[s1], s2: c[s2], "tie": c["tie"]}
                                    for rd, c in sorted(t["by_reader"].items())}})
    return clean({"pairs": pairs})


# ---- inter-reader agreement ---------------------------------------------------------------------------------------
def icc(matrix) -> dict:
    """Intraclass correlations of an n targets × k raters matrix (no missing cells), from the two-way ANOVA.

    Shrout & Fleiss (1979) forms, McGraw & Wong (1996) names: ``icc1_1`` one-way random; ``icc2_1`` = ICC(A,1),
    two-way random, absolute agreement; ``icc3_1`` = ICC(C,1), two-way mixed, consistency; ``*_k`` the reliability
    of the mean of the k raters. Any values work (not only 1-5). A form with a zero denominator is None.
    """
    x = np.asarray(matrix, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise InputError(f"ICC needs a targets × raters matrix with at least 2 of each; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("ICC needs a complete matrix: drop targets with missing ratings first")
    n, k = x.shape
    gm = x.mean()
    ss_total = ((x - gm) ** 2).sum()
    ss_rows = k * ((x.mean(axis=1) - gm) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - gm) ** 2).sum()
    ss_err = max(ss_total - ss_rows - ss_cols, 0.0)
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse, msw = ss_err / ((n - 1) * (k - 1)), (ss_total - ss_rows) / (n * (k - 1))
    tol = 1e-12 * max(1.0, abs(gm)) ** 2

    def ratio(num, den):
        return num / den if abs(den) > tol else None

    return clean({"n": n, "k": k,
                  "icc1_1": ratio(msr - msw, msr + (k - 1) * msw), "icc1_k": ratio(msr - msw, msr),
                  "icc2_1": ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n),
                  "icc2_k": ratio(msr - mse, msr + (msc - mse) / n),
                  "icc3_1": ratio(msr - mse, msr + (k - 1) * mse), "icc3_k": ratio(msr - mse, msr),
                  "ms_rows": msr, "ms_cols": msc, "ms_error": mse, "ms_within": msw})


def _alpha(krippendorff, table: dict, readers: list[str]) -> dict:
    units = sorted(table)
    pairable = sum(len(table[u]) >= 2 for u in units)
    out = {"alpha": None, "level": "ordinal", "n_units": pairable, "n_unpairable": len(units) - pairable,
           "n_readers": len(readers), "reason": None}
    if len(readers) < 2 or pairable < 2:
        out["reason"] = f"needs at least 2 readers and 2 texts scored by 2 or more readers ({len(readers)} " \
                        f"readers, {pairable} such texts)"
        return out
    data = np.full((len(readers), len(units)), np.nan)
    for j, u in enumerate(units):
        for i, rd in enumerate(readers):
            data[i, j] = table[u].get(rd, np.nan)
    try:
        with np.errstate(invalid="ignore", divide="ignore"):   # no disagreement possible: 0/0, reported below
            value = float(krippendorff.alpha(reliability_data=data, value_domain=list(SCORES),
                                             level_of_measurement="ordinal"))
    except (ValueError, ZeroDivisionError) as exc:
        out["reason"] = f"not computable: {exc}"
        return out
    if not math.isfinite(value):
        out["reason"] = "undefined: all paired scores are equal (no disagreement is possible to measure)"
        return out
    out["alpha"] = value
    return out


def _icc_block(table: dict, readers: list[str]) -> dict:
    units = sorted(table)
    complete = [u for u in units if all(rd in table[u] for rd in readers)]
    out = {"n_units": len(complete), "n_dropped_incomplete": len(units) - len(complete), "n_readers": len(readers),
           "reason": None}
    if len(readers) < 2 or len(complete) < 2:
        out["reason"] = f"needs at least 2 readers and 2 texts scored by all of them ({len(readers)} readers, " \
                        f"{len(complete)} such texts)"
        return out
    res = icc([[table[u][rd] for rd in readers] for u in complete])
    out.update({k: v for k, v in res.items() if k not in ("n", "k")})
    if res["icc2_1"] is None:
        out["reason"] = "undefined: the scores do not vary"
    return out


def agreement(ratings) -> dict:
    """Per scale: ``{"krippendorff": {"alpha", "level", "n_units", "n_unpairable", "n_readers", "reason"},
    "icc": {"icc1_1", "icc1_k", "icc2_1", "icc2_k", "icc3_1", "icc3_k", "ms_*", "n_units", "n_dropped_incomplete",
    "n_readers", "reason"}}``; values are None (with ``reason``) below 2 readers or 2 units."""
    require(("krippendorff",), "study")
    import krippendorff

    units = _unit_scores(_ratings(ratings))
    out = {}
    for scale in SCALES:
        table = units[scale]
        readers = sorted({rd for u in table.values() for rd in u})
        out[scale] = {"krippendorff": _alpha(krippendorff, table, readers), "icc": _icc_block(table, readers)}
    return clean(out)


# ---- automatic metrics vs physicians ------------------------------------------------------------------------------
def _metric_samples(metrics) -> tuple[list[str], dict[str, dict]]:
    """Metric names and ``{case_id: sample}`` from an evaluate-reports result (dict or JSON file)."""
    if isinstance(metrics, (str, Path)):
        path = Path(metrics)
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"metrics file {path}: cannot read it as JSON ({exc}); pass the file written by "
                             "`petar evaluate-reports --json`") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("samples"), list):
        raise InputError("metrics: expected the JSON of `petar evaluate-reports --json` (with a \"samples\" list)")
    names, by_id = [], {}
    for i, s in enumerate(metrics["samples"]):
        if not isinstance(s, dict) or "id" not in s:
            raise InputError(f"metrics: sample {i} has no \"id\"; pass the file written by `petar evaluate-reports`")
        if str(s["id"]) in by_id:
            raise InputError(f"metrics: case id {s['id']} appears twice; score each case once")
        by_id[str(s["id"])] = s
        for k, v in s.items():
            if k != "id" and k not in names and isinstance(v, (int, float)) and not isinstance(v, bool):
                names.append(k)
    return names, by_id


def _case_scores(rows, source: str) -> dict[str, dict[str, float]]:
    """``{target: {case_id: mean over readers}}`` for one source; targets: each scale and "overall".

    Means are rounded to 9 decimals so that equal means are equal floats: ranks must see ties as ties.
    """
    units = _unit_scores([r for r in rows if r["source"] == source])
    out, per_reader = {}, defaultdict(lambda: defaultdict(list))
    for scale in SCALES:
        out[scale] = {}
        for (case, _), by_reader in units[scale].items():
            out[scale][case] = round(float(np.mean(list(by_reader.values()))), 9)
            for rd, s in by_reader.items():
                per_reader[case][rd].append(s)
    out[OVERALL] = {case: round(float(np.mean([np.mean(v) for v in rd.values()])), 9)
                    for case, rd in per_reader.items()}
    return out


def _spearman(x, y, n_boot: int, seed: int, ci: float) -> dict:
    from scipy.stats import rankdata, spearmanr

    n = len(x)
    out = {"n": n, "rho": None, "p": None, "ci_low": None, "ci_high": None, "n_boot_valid": 0, "reason": None}
    if n < 3:
        out["reason"] = f"needs at least 3 cases ({n})"
        return out
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        out["reason"] = "undefined: the metric or the physician score is the same for every case"
        return out
    rho, p = spearmanr(x, y)
    out["rho"], out["p"] = float(rho), float(p)
    rng, boots = np.random.default_rng(seed), []
    for start in range(0, n_boot, _BOOT_CHUNK):
        idx = rng.integers(0, n, size=(min(_BOOT_CHUNK, n_boot - start), n))
        rx, ry = rankdata(x[idx], axis=1), rankdata(y[idx], axis=1)
        rx -= rx.mean(axis=1, keepdims=True)
        ry -= ry.mean(axis=1, keepdims=True)
        den = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
        ok = den > 0                       # a resample with one distinct value has no rho: left out, counted
        boots.append((rx * ry).sum(axis=1)[ok] / den[ok])
    boots = np.concatenate(boots) if boots else np.empty(0)
    out["n_boot_valid"] = int(boots.size)
    if boots.size:
        tail = (1 - ci) / 2
        out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(boots, [tail, 1 - tail]))
    return out


def metric_correlation(ratings, metrics, source=None, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> dict:
    """Spearman's rho of each per-case metric vs the mean physician score of ``source``, per scale and overall.

    ``metrics``: the result (or JSON file) of ``petar evaluate-reports``, whose sample ids are case ids. ``source``
    defaults to the only rated source other than "reference". Returns ``{"source", "targets", "metrics", "n_cases",
    "n_rated_without_metrics", "n_metrics_without_ratings", "n_boot", "seed", "ci", "results": [{"metric",
    "target", "n", "n_skipped", "rho", "p", "ci_low", "ci_high", "n_boot_valid", "reason"}]}``.
    """
    require(("scipy",), "study")
    if not 0 < ci < 1 or n_boot < 0:
        raise InputError(f"ci must lie between 0 and 1 and n_boot be >= 0 (got ci={ci}, n_boot={n_boot})")
    rows = _ratings(ratings)
    names, samples = _metric_samples(metrics)
    rated = _sources(r["source"] for r in rows)
    if source is None:
        candidates = [s for s in rated if s != REFERENCE]
        if len(candidates) != 1:
            raise InputError(f"the ratings hold sources {', '.join(rated) or '(none)'}: pass --metrics-source NAME "
                             "to say which one the metrics scored")
        source = candidates[0]
    elif source not in rated:
        raise InputError(f"--metrics-source {source}: no ratings of that source; rated: {', '.join(rated)}")
    physician = _case_scores(rows, source)
    rated_cases = set().union(*(set(v) for v in physician.values()))
    common = sorted(rated_cases & set(samples))
    if not common:
        raise InputError(f"no case id is both rated (source {source}) and in the metrics file: check that the "
                         "metrics were computed on this study's cases")
    results = []
    for name in names:
        for target in SCALES + (OVERALL,):
            pairs = [(samples[c].get(name), physician[target][c]) for c in common if c in physician[target]]
            pairs_ok = [(float(m), s) for m, s in pairs
                        if isinstance(m, (int, float)) and not isinstance(m, bool) and math.isfinite(m)]
            x = np.array([m for m, _ in pairs_ok], dtype=float)
            y = np.array([s for _, s in pairs_ok], dtype=float)
            res = _spearman(x, y, n_boot, seed, ci)
            results.append({"metric": name, "target": target, "n_skipped": len(pairs) - len(pairs_ok), **res})
    return clean({"source": source, "targets": list(SCALES) + [OVERALL], "metrics": names, "n_cases": len(common),
                  "n_rated_without_metrics": len(rated_cases - set(samples)),
                  "n_metrics_without_ratings": len(set(samples) - rated_cases),
                  "n_boot": n_boot, "seed": seed, "ci": ci, "results": results})


# ---- everything ---------------------------------------------------------------------------------------------------
def analyze(ratings, preferences, metrics=None, *, metrics_source=None, n_boot: int = 2000, seed: int = 0) -> dict:
    """The whole analysis as one JSON-ready dict: counts, describe, preferences, agreement, metric_correlation
    (None without ``metrics``), the methods used, and the scale titles."""
    rows = _ratings(ratings)
    if not rows:
        raise InputError("no ratings to analyze: the study has no completed items yet")
    preferences = list(preferences or [])
    scores = [r for r in rows if r["score"] is not None]
    firsts = sum(len(by_reader) for table in _unit_scores(rows).values() for by_reader in table.values())
    counts = {"readers": len({r["reader"] for r in rows}), "sources": len({r["source"] for r in rows}),
              "cases": len({r["case_id"] for r in rows}),
              "items": len({(r["reader"], r["case_id"], r["position"]) for r in rows}),
              "texts_rated": len({(r["reader"], r["case_id"], r["position"], r["slot"]) for r in rows}),
              "ratings": len(rows), "scores": len(scores),
              "cannot_assess": sum(r["cannot_assess"] for r in rows),
              "missing": sum(r["score"] is None and not r["cannot_assess"] for r in rows),
              "repeated_scores": len(scores) - firsts, "preferences": len(preferences)}
    methods = dict(METHODS)
    corr = None
    if metrics is not None:
        corr = metric_correlation(rows, metrics, source=metrics_source, n_boot=n_boot, seed=seed)
    else:
        methods.pop("metric_correlation")
    return clean({"counts": counts, "readers": sorted({r["reader"] for r in rows}),
                  "sources": _sources(r["source"] for r in rows), "scales": list(SCALES),
                  "scale_titles": dict(SCALE_TITLES), "describe": describe(rows),
                  "preferences": preference_summary(preferences), "agreement": agreement(rows),
                  "metric_correlation": corr, "methods": methods})
