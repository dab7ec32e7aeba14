"""The reader-study report: ``report.md`` plus one score-distribution plot per scale, from :func:`analyze`'s result.

Rendering only — every number comes from the analysis dict, so the JSON and the report never disagree. Plots use
matplotlib's object API (``matplotlib.figure.Figure``), never pyplot: no backend is selected, no window can open, and
a host application's own matplotlib state (Slicer, Jupyter) is left alone. All files of one report are committed
together: a failure leaves neither a new ``report.md`` nor any new plot behind.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from ..atomic import atomic_path
from ..deps import require
from .analysis import METHODS, OVERALL, SCALE_TITLES, SCALES, SCORES

REPORT_NAME = "report.md"


def _f(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _p(p) -> str:
    return "–" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _msd(d: dict) -> str:
    """``mean ± SD (median)``, the paper's cell format."""
    if not d or d.get("n", 0) == 0:
        return "–"
    return f"{_f(d['mean'])} ± {_f(d['sd'])} ({_f(d['median'], 1)})"


def _ratings_section(result) -> list[str]:
    desc, sources, scales = result["describe"], result["sources"], result.get("scales", list(SCALES))
    titles = result.get("scale_titles", SCALE_TITLES)
    rows = [[titles.get(s, s)] + [_msd(desc["scales"][s].get(src)) for src in sources] for s in scales]
    rows.append([titles.get(OVERALL, OVERALL)] + [_msd(desc[OVERALL].get(src)) for src in sources])
    counts = [[titles.get(s, s)] + [
        f"{d['n']} / {d['n_cannot_assess']}" + (f" / {d['n_missing']} missing" if d["n_missing"] else "")
        + f" · IQR {_f(d['q1'], 1)}–{_f(d['q3'], 1)}"
        for d in (desc["scales"][s][src] for src in sources)] for s in scales]
    return (["## Ratings", "", "Mean ± SD (median) of the 1–5 scores; rows are scales, columns are sources.", ""]
            + _table(["Scale"] + sources, rows)
            + ["", "Scores / cannot assess, and interquartile range:", ""]
            + _table(["Scale"] + sources, counts)
            + [""] + [f"![{titles.get(s, s)}](scale_{s}.png)" for s in scales] + [""])


def _preference_section(result) -> list[str]:
    pairs = result["preferences"]["pairs"]
    if not pairs:
        return ["## Pairwise preference", "", "No preferences recorded (single-text design).", ""]
    rows, notes = [], []
    for pr in pairs:
        s1, s2 = pr["sources"]
        c, share, st = pr["counts"], pr["share_or_tie"], pr["sign_test"]
        rows.append([f"{s1} vs {s2}", c[s1], c["tie"], c[s2], pr["n"],
                     f"{s1} {_f(share[s1])} · {s2} {_f(share[s2])}", f"{_p(st['p'])} (n = {st['n']})"])
        if pr.get("n_cannot_assess") or pr.get("n_missing"):
            notes.append(f"- {s1} vs {s2}: {pr.get('n_cannot_assess', 0)} items marked cannot assess and "
                         f"{pr['n_missing']} without a preference are left out")
    return (["## Pairwise preference", "", "Counts of the first source preferred, ties, and the second source "
             "preferred; the sign test compares the non-tie preferences.", ""]
            + _table(["Pair", "First preferred", "Tie", "Second preferred", "n", "Preferred or tie",
                      "Sign test p (non-tie n)"], rows)
            + ([""] + notes if notes else []) + [""])


def _agreement_section(result) -> list[str]:
    titles = result.get("scale_titles", SCALE_TITLES)
    rows, notes = [], []
    for s, a in result["agreement"].items():
        k, i = a["krippendorff"], a["icc"]
        rows.append([titles.get(s, s), _f(k["alpha"], 3), k["n_units"], k["n_readers"], _f(i.get("icc2_1"), 3),
                     _f(i.get("icc2_k"), 3), _f(i.get("icc3_1"), 3),
                     f"{i['n_units']} ({i['n_dropped_incomplete']} dropped)"])
        notes += [f"- {titles.get(s, s)}: {what}: {r}" for what, r in (("alpha", k["reason"]), ("ICC", i["reason"]))
                  if r]
    return (["## Inter-reader agreement", ""]
            + _table(["Scale", "Krippendorff's α (ordinal)", "Texts", "Readers", "ICC(2,1)", "ICC(2,k)",
                      "ICC(3,1)", "ICC texts (incomplete dropped)"], rows)
            + ([""] + notes if notes else []) + [""])


def _rho(r) -> str:
    if r is None or r["rho"] is None:
        return "–"
    ci = f" [{_f(r['ci_low'])}, {_f(r['ci_high'])}]" if r["ci_low"] is not None else ""
    return f"{_f(r['rho'])}{ci}"


def _correlation_section(result) -> list[str]:
    corr = result.get("metric_correlation")
    if not corr:
        return []
    targets = corr["targets"]
    by = {(r["metric"], r["target"]): r for r in corr["results"]}
    order = sorted(corr["metrics"], key=lambda m: -(by[(m, OVERALL)]["rho"] if by.get((m, OVERALL)) and
                                                    by[(m, OVERALL)]["rho"] is not None else -2.0))
    rows = [[m] + [_rho(by.get((m, t))) for t in targets]
            + [_p(by[(m, OVERALL)]["p"]) if (m, OVERALL) in by else "–",
               by[(m, OVERALL)]["n"] if (m, OVERALL) in by else "–"] for m in order]
    titles = result.get("scale_titles", SCALE_TITLES)
    pct = f"{round(corr['ci'] * 100)} %"
    return ([f"## Automatic metrics vs physician scores (source: {corr['source']})", "",
             f"Spearman's ρ [{pct} bootstrap CI, {corr['n_boot']} resamples of cases, seed {corr['seed']}] of each "
             f"metric against the mean physician score per case; sorted by ρ with the mean of the three scales. "
             f"{corr['n_cases']} cases ({corr['n_rated_without_metrics']} rated cases without metrics, "
             f"{corr['n_metrics_without_ratings']} scored cases without ratings left out).", ""]
            + _table(["Metric"] + [titles.get(t, t) for t in targets] + ["p (overall)", "n"], rows) + [""])


def render_markdown(result: dict) -> str:
    """The report text for an :func:`petar.study.analysis.analyze` result."""
    c = result["counts"]
    head = ["# Reader study report", "",
            f"{c['readers']} readers, {c['cases']} cases, {c['items']} items, {c['texts_rated']} texts rated; "
            f"{c['scores']} scores, {c['cannot_assess']} cannot-assess ratings, {c['missing']} missing"
            + (f", {c['repeated_scores']} repeated scores (first one used for agreement and correlation)"
               if c.get("repeated_scores") else "") + ".", ""]
    methods = ["## Methods", ""] + [f"- {k}: {v}" for k, v in result.get("methods", METHODS).items()] + [""]
    return "\n".join(head + _ratings_section(result) + _preference_section(result) + _agreement_section(result)
                     + _correlation_section(result) + methods)


def _plot(figure_cls, result: dict, scale: str, path: Path) -> None:
    """Share of each score 1–5 per source as grouped bars; each source's mean as a dashed line of its colour."""
    desc, sources = result["describe"]["scales"][scale], result["sources"]
    fig = figure_cls(figsize=(6.4, 3.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(sources), 1)
    for i, src in enumerate(sources):
        d = desc.get(src) or {"n": 0}
        n = d["n"]
        shares = [d["counts"][str(s)] / n if n else 0.0 for s in SCORES]
        xs = [s - 0.4 + width * (i + 0.5) for s in SCORES]
        label = f"{src} (n = {n}" + (f", mean {d['mean']:.2f})" if n else ")")
        ax.bar(xs, shares, width=width, color=f"C{i}", label=label)
        if n:
            ax.axvline(d["mean"], color=f"C{i}", linestyle="--", linewidth=1.5)
    ax.set_xticks(list(SCORES))
    ax.set_xlim(0.5, 5.5)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Score (dashed line: mean)")
    ax.set_ylabel("Share of scores")
    ax.set_title(result.get("scale_titles", SCALE_TITLES).get(scale, scale))
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    fig.savefig(path, format="png")


def write_report(result: dict, out_dir) -> list[Path]:
    """Write ``report.md`` and ``scale_<name>.png`` per scale into ``out_dir``; return the paths written.

    All files are written to temporary names first and renamed only when every one succeeded.
    """
    require(("matplotlib",), "study")
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    scales = list(result.get("scales", SCALES))
    text = render_markdown(result)
    paths = [out_dir / REPORT_NAME] + [out_dir / f"scale_{s}.png" for s in scales]
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(p)) for p in paths]   # report.md is renamed last
        for scale, tmp in zip(scales, tmps[1:]):
            _plot(Figure, result, scale, tmp)
        tmps[0].write_text(text, encoding="utf-8")
    return paths
