"""Reports from the long results table: Markdown, LaTeX and CSV, in our layout and the paper's.

`write_report` writes into one directory:

- ``report.md`` and ``report.tex``: an overview that says what is missing; (a) a comparison table
  per suite (mean ± std over seeds, best per column in bold, significance marks explained under
  the table) with the tests behind the marks; (b) the paper's Tables 1–4 with our numbers beside
  the paper's (`mtrl_bench.paper`: package data), showing only the rows and columns we have data
  for; (c) aggregates (IQM, mean, optimality gap, P(method > reference), bootstrap CIs);
- ``comparison.csv`` (every test, raw and Holm-adjusted p), ``aggregate.csv`` and
  ``paper_tables.csv`` (ours beside the paper's, long form).

Everything comes from `mtrl_bench.stats`; this module only lays numbers out into a document
(`mtrl_bench.document`, which renders Markdown and booktabs LaTeX), named and ordered as
`mtrl_bench.display` says. The statistics every table shows are data (`P_VALUES`, `INTERVALS`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from mtrl_bench import stats
from mtrl_bench.display import (
    QUALITY_ORDER,
    cell_name,
    format_p,
    metric_scale,
    num,
    quality_label,
    sort_frame,
    sorted_names,
    suite_label,
)
from mtrl_bench.document import Block, Cell, Table, render_html, render_latex, render_markdown
from mtrl_bench.paper import Layout, load_numbers, numbers_dir
from mtrl_bench.paper import paper as paper_data
from mtrl_bench.stats import CELL, DEFAULT_REPS
from mtrl_bench_envs.common import atomic_write

# --------------------------------------------------------------------------- formatting

def _mean_std(mean: float, std: float, metric: str) -> str:
    factor, dec, _ = metric_scale(metric)
    if math.isnan(mean):
        return "—"
    if math.isnan(std):
        return num(mean * factor, dec)
    return f"{mean * factor:.{dec}f} ± {std * factor:.{dec}f}"


def _interval(point: float, lo: float, hi: float, factor: float, dec: int) -> str:
    if math.isnan(point):
        return "—"
    return f"{point * factor:.{dec}f} [{lo * factor:.{dec}f}, {hi * factor:.{dec}f}]"


def _bold_best(rows: list[list[Cell]], col: int, values: list[float], decimals: int) -> None:
    """Bold the highest value of a column; ties at the displayed precision are all bold."""
    shown = [round(v, decimals) if not math.isnan(v) else math.nan for v in values]
    finite = [v for v in shown if not math.isnan(v)]
    if not finite:
        return
    best = max(finite)
    for row, v in zip(rows, shown):
        if v == best:
            row[col].bold = True


# --------------------------------------------------------------------------- paper numbers

# --------------------------------------------------------------------------- sections

def _overview(df: pd.DataFrame, comps: dict[str, pd.DataFrame], primary: str, reference: str,
              alpha: float) -> list[Block]:
    runs = df.drop_duplicates(list(stats.RUN))
    blocks: list[Block] = [("h2", "Overview"), ("p", (
        f"{len(df)} rows from {len(runs)} runs. Methods: "
        f"{', '.join(sorted_names(df['method'], 'method'))}. Suites: "
        f"{', '.join(sorted_names(df['suite'], 'suite'))}. Qualities: "
        f"{', '.join(sorted_names(df['quality'], 'quality'))}. Protocols: "
        f"{', '.join(sorted(set(df['protocol'])))}. Reference method: {reference}. "
        "The unit of every statistic is the training seed: each run's per-task values are "
        "averaged over tasks first."
    ))]
    if df["protocol"].nunique() > 1:
        blocks.append(("p", "Several evaluation protocols: each is tabulated and tested on its "
                            "own, never pooled."))
    missing = _missing(df, primary, reference)
    blocks += [("h3", "What is missing"),
               ("list", missing) if missing else ("p", "Nothing: every method has runs in every "
                                                       "cell present, on every task.")]
    comp = comps.get(primary, pd.DataFrame())
    tested = comp[comp["method"] != comp["reference"]] if len(comp) else comp
    if len(tested):
        floors = tested.dropna(subset=["p_floor"])
        low = floors[floors["p_floor"] >= alpha]
        if len(low):
            worst = low.loc[low["p_floor"].idxmax()]
            blocks.append(("p", (
                f"Too few seeds for exact tests: with {int(worst.n)} vs {int(worst.ref_n)} seeds "
                f"an exact two-sided permutation test cannot go below p = {worst.p_floor:.3g}, so "
                f"p < {alpha:g} is out of reach for {len(low)} of {len(tested)} comparisons. "
                f"Significance is not marked below {stats.min_seeds(alpha)} seeds per method; the "
                f"Welch p-values are still in comparison.csv, but {int(worst.n)} seeds cannot "
                "check the normality they assume."
            )))
    return blocks


def _missing(df: pd.DataFrame, metric: str, reference: str) -> list[str]:
    """Plain sentences on the gaps of the table: method × cell, seeds, tasks, metrics."""
    out: list[str] = []
    runs = df.drop_duplicates(list(stats.RUN))
    for name, group in df.groupby("metric", sort=True):
        have = group.drop_duplicates(list(stats.RUN))
        if len(have) < len(runs):
            out.append(f"metric '{name}' exists for {len(have)} of {len(runs)} runs")
    scores = sort_frame(stats.seed_scores(df, metric), ["method", *CELL, "seed"])
    if scores.empty:
        return [*out, f"no run has the metric '{metric}'"]
    cells = scores[list(CELL)].drop_duplicates()
    methods = sorted_names(scores["method"], "method")
    present = set(map(tuple, scores[["method", *CELL]].drop_duplicates().to_numpy()))
    for method in methods:
        gaps = [cell_name(s, q) + (f" [{p}]" if cells["protocol"].nunique() > 1 else "")
                for s, q, p in map(tuple, cells.to_numpy()) if (method, s, q, p) not in present]
        if gaps:
            out.append(f"{method}: no runs in {', '.join(gaps)}")
    for cell, group in scores.groupby(list(CELL), sort=False):
        name = cell_name(cell[0], cell[1])
        counts = group.groupby("method", sort=False)["seed"].nunique()
        if counts.nunique() > 1:
            out.append(f"{name}: seeds per method differ ("
                       + ", ".join(f"{m} {n}" for m, n in counts.items()) + ")")
        if reference not in counts.index:
            out.append(f"{name}: no {reference} runs, so no tests against it")
        n_tasks = group["n_tasks"]
        full = n_tasks.max()
        for r in group[(n_tasks > 0) & (n_tasks < full)].itertuples():
            out.append(f"{r.method} {name} seed {r.seed}: {r.n_tasks} of {full} tasks "
                       "(its average covers only those)")
        if (n_tasks == 0).any() and full > 0:
            out.append(f"{name}: some runs have only a task mean, others per-task values")
    return out


INERT_MARK = "†"
# The statistics a report shows, as data: every table that lists them reads these.
# Tests of a method against the reference: (header, column of `stats.compare`).
P_VALUES = (("p Welch", "p_welch"), ("p perm.", "p_perm"), ("p Holm", "p_holm"))
# Aggregates with bootstrap intervals: (header, column stem of `stats.aggregate` with its _low
# and _high, shown for success only).
INTERVALS = (("IQM [95% CI]", "iqm", False), ("mean [95% CI]", "mean", False),
             ("optimality gap [95% CI]", "gap", True))


def _inert_cells(activity: pd.DataFrame | None) -> set[tuple[str, str, str, str]]:
    """(method, suite, quality, protocol) of the cells in which every seed's masks barely
    moved."""
    if activity is None or activity.empty:
        return set()
    every = activity.groupby(["method", "suite", "quality", "protocol"])["inert"].all()
    return {key for key, inert in every.items() if inert}


def _precision(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(suite, protocol) -> how the table's runs computed: one precision, or which cells used
    which ("mixed: ...")."""
    if "numerics" not in df.columns:
        return {}
    out = {}
    runs = df.drop_duplicates("run") if "run" in df.columns else df
    for (suite, protocol), group in runs.groupby(["suite", "protocol"], sort=False):
        kinds = group.groupby(["method", "quality"], sort=False)["numerics"].agg(
            lambda x: "+".join(sorted(set(map(str, x)))))
        if kinds.nunique() == 1:
            out[suite, protocol] = f"Precision: {kinds.iloc[0]} in every cell."
        else:
            parts = ", ".join(f"{m} {quality_label(q)} {k}" for (m, q), k in kinds.items())
            out[suite, protocol] = (f"Precision: mixed, this table compares runs of different "
                                    f"numerics ({parts}).")
    return out


def _comparison_section(comp: pd.DataFrame, metric: str, reference: str, alpha: float,
                        inert: set[tuple[str, str, str, str]] | None = None,
                        precision: dict[tuple[str, str], str] | None = None) -> list[Block]:
    factor, dec, unit = metric_scale(metric)
    blocks: list[Block] = [("h3", f"Metric: {metric}" + (f" ({unit})" if unit else ""))]
    family = {metric: int(comp["p_welch"].notna().sum())}
    for (suite, protocol), group in comp.groupby(["suite", "protocol"], sort=False):
        qualities = sorted_names(group["quality"], "quality")
        methods = sorted_names(group["method"], "method")
        rows, detail = [], []
        for method in methods:
            row = [Cell(method)]
            for q in qualities:
                hit = group[(group["method"] == method) & (group["quality"] == q)]
                if hit.empty:
                    row.append(Cell())
                    continue
                r = hit.iloc[0]
                still = (method, suite, q, protocol) in (inert or ())
                row.append(Cell(_mean_std(r["mean"], r["std"], metric), mark=r["mark"],
                                note=INERT_MARK if still else ""))
                if method != reference:
                    detail.append(_detail_row(r, factor, dec))
            rows.append(row)
        for j, q in enumerate(qualities, start=1):  # the best method; BC rows are not ranked
            values = [math.nan if method in stats.REFERENCE_ROWS else
                      _lookup(group, method, q, "mean") * factor for method in methods]
            _bold_best(rows, j, values, dec)
        seeds = group.set_index(["method", "quality"])["n"]
        notes = [f"Mean ± std (ddof=1) over seeds{' in ' + unit if unit else ''}. Bold: the best "
                 "method's mean in each column. The BC baselines are shown, not ranked or "
                 "tested: bc-all clones every episode (the data's floor), bc-top20 each task's "
                 "best 20% of episodes (what filtering alone reaches).", _seed_note(seeds),
                 _marks_note(group, reference, alpha, family),
                 (precision or {}).get((suite, protocol), "")]
        if any((m, suite, q, protocol) in (inert or ()) for m in methods for q in qualities):
            notes.append(f"{INERT_MARK}: masks barely moved in every seed (density within "
                         "2 points of its initial value; see Mask activity): this method "
                         "trained with about its initial masks.")
        caption = f"{suite_label(suite)}, {metric}, protocol {protocol}"
        blocks.append(("table", Table(caption, "method",
                                      [("", quality_label(q)) for q in qualities],
                                      rows, [n for n in notes if n])))
        if detail:
            diff = "diff (pp) [95% CI]" if unit == "%" else "diff [95% CI]"
            cols = ["quality", f"n vs {reference}", diff, "Hedges' g",
                    *(header for header, _ in P_VALUES), "note"]
            blocks.append(("table", Table(f"Tests against {reference}: {caption}", "method",
                                          [("", c) for c in cols], detail)))
    return blocks


def _share(x: float, scale: float = 100.0, dec: int = 3) -> str:
    return "—" if pd.isna(x) else f"{x * scale:.{dec}f}"


def _inert_text(runs: pd.DataFrame) -> str:
    if not runs["inert"].all():
        return ""
    if (runs["inert_basis"] == "density").any():
        return f"{INERT_MARK} density unchanged (switches not logged)"
    return f"{INERT_MARK} masks barely moved"


def _activity_section(activity: pd.DataFrame) -> list[Block]:
    """What every masked method's masks did, per cell (means over seeds)."""
    blocks: list[Block] = [("h2", "Mask activity"), ("p", (
        "Per masked method and cell, means over seeds, as shares of the maskable entries per "
        "task and update: the conflict and recover sets of a TAMU-style strategy (those that "
        "report them), the share of task-updates whose conflict set was not empty, the entries "
        "whose forward mask switched (runs trained since 2026-12-03), and the density "
        f"(share with M = 1) at initialisation and at the end. {INERT_MARK} masks barely moved: "
        "density within 2 points of its initial value (and, where logged, under 2% of entries "
        "switched over the run) in every seed. — : not logged by this method or run."))]
    cols = ["quality", "seeds", "conflict / upd. (%)", "recover / upd. (%)",
            "upd. with conflict (%)", "switched / upd. (%)", "density initial → final", ""]
    for (suite, protocol), group in activity.groupby(["suite", "protocol"], sort=False):
        rows = []
        for method in sorted_names(group["method"], "method"):
            for q in sorted_names(group["quality"], "quality"):
                g = group[(group["method"] == method) & (group["quality"] == q)]
                if g.empty:
                    continue
                m = g.mean(numeric_only=True)
                rows.append([Cell(method), Cell(quality_label(q)), Cell(str(len(g))),
                             Cell(_share(m["conflict_share"])), Cell(_share(m["recover_share"])),
                             Cell(_share(m["conflict_nonempty"], dec=1)),
                             Cell(_share(m["moved_share"])),
                             Cell(f"{m['density_initial']:.3f} → {m['density_final']:.3f}"),
                             Cell(_inert_text(g))])
        caption = f"Mask activity: {suite_label(suite)}, protocol {protocol}"
        blocks.append(("table", Table(caption, "method", [("", c) for c in cols], rows, [])))
    return blocks


def _lookup(group: pd.DataFrame, method: str, quality: str, column: str) -> float:
    hit = group[(group["method"] == method) & (group["quality"] == quality)]
    return float(hit.iloc[0][column]) if len(hit) else math.nan


def _detail_row(r: pd.Series, factor: float, dec: int) -> list[Cell]:
    diff = _interval(r["diff"], r["ci_low"], r["ci_high"], factor, dec)
    if math.isnan(r["ci_low"]) and not math.isnan(r["diff"]):
        diff = num(r["diff"] * factor, dec)
    return [Cell(r["method"]), Cell(quality_label(r["quality"])),
            Cell(f"{r['n']} vs {r['ref_n']}"), Cell(diff), Cell(num(r["g"], 2)),
            *(Cell(format_p(r[column])) for _, column in P_VALUES), Cell(r["note"] or "")]


def _seed_note(seeds: pd.Series) -> str:
    values = seeds.unique()
    if len(values) == 1:
        return f"Seeds per cell: {values[0]}."
    parts = (" ".join(map(str, key if isinstance(key, tuple) else (key,))) + f" {n}"
             for key, n in seeds.items())
    return "Seeds per cell vary: " + ", ".join(parts) + "."


def _marks_note(group: pd.DataFrame, reference: str, alpha: float,
                families: dict[str, int]) -> str:
    tested = group[(group["method"] != group["reference"])
                   & ~group["method"].isin(stats.REFERENCE_ROWS)]
    if tested.empty:
        return f"No tests: no method besides {reference} in this table."
    needed = stats.min_seeds(alpha)
    sizes = " and ".join(f"{m} for {k}" for k, m in families.items())
    text = (f"\\* / \\*\\*: differs from {reference} by Welch's t-test on per-seed scores, "
            f"Holm–Bonferroni-adjusted within each metric over all comparisons of this report "
            f"({sizes}), p < {alpha:g} / p < {alpha / 5:g}. No mark: not significant, or too few "
            f"seeds to mark (< {needed} per method).")
    fewest = tested[["n", "ref_n"]].min(axis=1)
    low = tested[(fewest < needed) & (fewest > 0)]
    if len(low):
        lo, hi = low["p_floor"].min(), low["p_floor"].max()
        floor = f"{hi:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g} (by their seeds)"
        text += (f" Here {len(low)} of {len(tested)} comparisons have too few seeds: an exact "
                 f"test with that many seeds cannot go below p = {floor}.")
    alone = tested[fewest == 0]  # e.g. a suite where the reference has not run yet
    if len(alone):
        text += (f" {len(alone)} of {len(tested)} have no run of {reference} in their cell: "
                 "not tested.")
    return text


def _paper_section(comps: dict[str, pd.DataFrame], paper: pd.DataFrame, reference: str,
                   alpha: float, paper_dir: Path | None) -> tuple[list[Block], pd.DataFrame]:
    blocks: list[Block] = [("h2", "(b) The paper's tables, ours beside the paper's")]
    if paper.empty:
        where = paper_dir
        blocks.append(("p", f"The paper's numbers were not found at {where}: only ours are "
                            "shown."))
    long_rows = []
    for layout in paper_data().layouts:
        layout_blocks, layout_rows = _paper_layout(layout, comps, paper, reference, alpha)
        blocks += layout_blocks
        long_rows += layout_rows
    return blocks, pd.DataFrame(long_rows, columns=[
        "table", "method", "paper_method", "suite", "quality", "protocol", "metric", "unit",
        "n", "ours_mean", "ours_std", "paper_mean", "paper_std", "mark", "p_welch", "p_holm"])


def _paper_layout(layout: Layout, comps: dict[str, pd.DataFrame], paper: pd.DataFrame,
                  reference: str, alpha: float) -> tuple[list[Block], list[dict]]:
    head = f"Table {layout.number}: {layout.title}"
    ours = pd.concat([c for m, c in comps.items() if m in layout.metrics and len(c)]
                     or [pd.DataFrame(columns=list(stats.COMPARE_COLUMNS))], ignore_index=True)
    ours = ours[ours["method"].isin(layout.methods)
                & ours["suite"].map(_family).isin(layout.suites)]
    expected = [(m, s, q, k) for m in layout.methods for s in layout.suites
                for q in QUALITY_ORDER for k in layout.metrics]
    # a table compares methods: one method alone (e.g. Table 1's SoCo-DT, which is also Table
    # 4's full method) does not make the table
    if ours["method"].nunique() < 2:
        need = ", ".join(layout.suites)
        return [("h3", head), ("p", f"No results for this table: it needs runs of "
                                    f"{', '.join(layout.methods)} on {need}.")], []
    blocks: list[Block] = [("h3", head)]
    long_rows: list[dict] = []
    paper_t = paper[paper["table"] == layout.number]
    labels = dict(zip(paper_t["method"], paper_t["paper_method"]))
    paper_cells = [(s, q, k) for s in layout.suites for q in QUALITY_ORDER
                   for k in layout.metrics
                   if ((paper_t["suite"] == s) & (paper_t["quality"] == q)
                       & (paper_t["metric"] == k) & (paper_t["method"] != "")).any()]
    for protocol, group in ours.groupby("protocol", sort=True):
        # a layout suite "random5" holds each drawn combination (random5-0, ...) as a column
        ours_suites = sorted(set(group["suite"]))
        cols = [(u, q, k) for s in layout.suites for u in ours_suites if _family(u) == s
                for q in QUALITY_ORDER for k in layout.metrics
                if ((group["suite"] == u) & (group["quality"] == q) & (group["metric"] == k)).any()]
        if not {(_family(u), q, k) for u, q, k in cols} & set(paper_cells):
            # ours ran where the paper did not (Table 4 on MT5, the paper's on MT30): the
            # paper's cells join as columns of their own, so its numbers stay beside ours
            cols += paper_cells
        methods = [m for m in layout.methods if m in set(group["method"])]
        rows, values = [], {}
        for method in methods:
            label = method + (f" ({labels[method]})" if method in labels and layout.paper_labels
                              else "")
            row = [Cell(label)]
            for s, q, k in cols:
                mine = group[(group["method"] == method) & (group["suite"] == s)
                             & (group["quality"] == q) & (group["metric"] == k)]
                theirs = paper_t[(paper_t["method"] == method) & (paper_t["suite"] == _family(s))
                                 & (paper_t["quality"] == q) & (paper_t["metric"] == k)]
                factor, dec, unit = metric_scale(k)
                paper_row = theirs.iloc[0] if len(theirs) else None
                p_mean = float(paper_row["mean"]) if paper_row is not None else math.nan
                p_std = float(paper_row["std"]) if paper_row is not None else math.nan
                if len(mine):
                    r = mine.iloc[0]
                    row.append(Cell(_mean_std(r["mean"], r["std"], k), mark=r["mark"]))
                    values.setdefault((s, q, k, "ours"), []).append(r["mean"] * factor)
                    long_rows.append(dict(
                        table=layout.number, method=method, paper_method=labels.get(method, ""),
                        suite=s, quality=q, protocol=protocol, metric=k, unit=unit or k,
                        n=int(r["n"]), ours_mean=r["mean"] * factor, ours_std=r["std"] * factor,
                        paper_mean=p_mean, paper_std=p_std, mark=r["mark"],
                        p_welch=r["p_welch"], p_holm=r["p_holm"]))
                else:
                    row.append(Cell())
                    values.setdefault((s, q, k, "ours"), []).append(math.nan)
                # The paper's numbers are already in display units (% for success).
                row.append(Cell(_paper_text(paper_row)))
                values.setdefault((s, q, k, "paper"), []).append(p_mean)
            rows.append(row)
        columns = []
        for s, q, k in cols:
            group_name = cell_name(s, q) + (f", {k}" if len(layout.metrics) > 1 else "")
            columns += [(group_name, "ours"), (group_name, "paper")]
        for j, (s, q, k) in enumerate(cols):
            dec = metric_scale(k)[1]
            _bold_best(rows, 1 + 2 * j, values[(s, q, k, "ours")], dec)
            _bold_best(rows, 2 + 2 * j, values[(s, q, k, "paper")], dec)
        families = {k: int(comps[k]["p_welch"].notna().sum()) for k in layout.metrics
                    if k in comps and len(comps[k])}
        notes = ["Ours: mean ± std (ddof=1) over seeds; success in %. Paper: as printed. Bold: "
                 "the best in each column among the rows shown.",
                 _seed_note(group[group["metric"] == layout.metrics[0]]
                            .set_index(["method", "suite", "quality"])["n"]),
                 _marks_note(group, reference, alpha, families)]
        present = {(m, _family(u), q, k) for m, u, q, k
                   in group[["method", "suite", "quality", "metric"]].to_numpy()}
        gaps = [e for e in expected if e not in present]
        if gaps:
            notes.append("Missing here: " + _describe_gaps(gaps, layout) + ".")
        skipped = sorted(set(paper_t.loc[paper_t["method"] == "", "paper_method"]))
        if skipped:
            notes.append("Paper rows not reimplemented here (see mtrl_bench/paper/): "
                         + ", ".join(skipped) + ".")
        caption = f"Table {layout.number}" + (f", protocol {protocol}" if protocol else "")
        blocks.append(("table", Table(caption, "method", columns, rows, notes)))
    return blocks, long_rows


def _family(suite: str) -> str:
    """The paper's suite a suite of ours stands in for (random5-2 -> random5)."""
    from mtrl_bench_envs.suites import get_suite

    try:
        return get_suite(suite).table_name
    except ValueError:  # a suite this version does not know stands for itself
        return suite


def _paper_text(row: pd.Series | None) -> str:
    if row is None:
        return "n/a"
    if not row["mean_text"]:
        return "–"  # printed as a dash in the paper
    return row["mean_text"] + (f" ± {row['std_text']}" if row["std_text"] else "")


def _describe_gaps(gaps: list[tuple[str, str, str, str]], layout: Layout) -> str:
    by_method: dict[str, list[str]] = {}
    for m, s, q, k in gaps:
        by_method.setdefault(m, []).append(
            cell_name(s, q) + (f" {k}" if len(layout.metrics) > 1 else ""))
    total = len(layout.suites) * len(QUALITY_ORDER) * len(layout.metrics)
    return "; ".join(f"{m} (all cells)" if len(c) == total else f"{m}: {', '.join(c)}"
                     for m, c in by_method.items())


def _aggregate_section(agg: pd.DataFrame, metric: str, reference: str, reps: int,
                       seed: int) -> list[Block]:
    factor, dec, unit = metric_scale(metric)
    blocks: list[Block] = [("h2", f"(c) Aggregates: {metric}"), ("p", (
        f"IQM (the mean of the middle 50% of all run × task scores) and the mean, with 95% "
        f"stratified-bootstrap intervals (runs resampled within each task; {reps} resamples, "
        f"seed {seed}). P(X > {reference}): the probability that a run of X beats a run of "
        f"{reference} on a task (ties count ½), averaged over tasks; 0.5 means no difference, "
        "and an interval that excludes 0.5 is the sign of a difference."
    ))]
    has_gap = metric == "success"
    shown = [(header, stem) for header, stem, success_only in INTERVALS
             if has_gap or not success_only]
    for (suite, protocol), group in agg.groupby(["suite", "protocol"], sort=False):
        cols = ["quality", "runs × tasks", *(header for header, _ in shown),
                f"P(X > {reference}) [95% CI]", "note"]
        rows = []
        for r in group.to_dict("records"):
            row = [Cell(r["method"]), Cell(quality_label(r["quality"])),
                   Cell(f"{r['runs']} × {r['tasks']}"),
                   *(Cell(_interval(r[stem], r[f"{stem}_low"], r[f"{stem}_high"], factor, dec))
                     for _, stem in shown)]
            poi = "reference" if r["method"] == reference else _interval(
                r["poi"], r["poi_low"], r["poi_high"], 1.0, 2)
            rows.append([*row, Cell(poi), Cell(r["note"] or "")])
        caption = f"Aggregates, {suite_label(suite)}, {metric}, protocol {protocol}"
        notes = [f"Scores in {unit}." if unit else ""]
        blocks.append(("table", Table(caption, "method", [("", c) for c in cols], rows,
                                      [n for n in notes if n])))
    return blocks


def comparison_text(df: pd.DataFrame, reference: str) -> str:
    """The significance-tested comparison of task-averaged success, one row per method × cell."""
    comp = sort_frame(stats.compare(df, reference, "success"), [*CELL, "method"])
    if comp.empty:
        return "(no success values to compare)"
    rows = []
    for r in comp.itertuples(index=False):
        test = r.method != reference and not pd.isna(r.diff)
        rows.append([
            r.suite, r.quality, r.method, r.n,
            f"{100 * r.mean:.1f} ± {100 * r.std:.1f}" if r.n > 1 else f"{100 * r.mean:.1f}",
            f"{100 * r.diff:+.1f}" if test else "",
            *(format_p(getattr(r, column)) for _, column in P_VALUES), r.mark, r.note])
    headers = ["suite", "quality", "method", "seeds", "success %", f"Δ vs {reference}",
               *(header for header, _ in P_VALUES), "", "note"]
    return tabulate(rows, headers=headers, disable_numparse=True)


# --------------------------------------------------------------------------- entry point

def _provenance_section(provenance: pd.DataFrame | None, notes: Sequence[str],
                        command: str) -> list[Block]:
    """The page's last words: where each cell comes from and how to write it again."""
    blocks: list[Block] = []
    if provenance is not None and len(provenance):
        rows = [[Cell(r["method"]), Cell(suite_label(r["suite"])),
                 Cell(quality_label(r["quality"])), Cell(r["protocol"]), Cell(r["seeds"]),
                 Cell(r["numerics"]), Cell(r["hardware"])]
                for r in sort_frame(provenance, [*CELL, "method"]).to_dict("records")]
        blocks += [("h2", "Where each cell comes from"),
                   ("table", Table("Seeds, numerics (autocast) and hardware of the runs, per "
                                   "method and cell", "method",
                                   [("", c) for c in ("suite", "quality", "protocol", "seeds",
                                                      "numerics", "hardware")], rows))]
    if notes:
        blocks += [("h2", "Notes on the runs"), ("list", list(notes))]
    if command:
        blocks += [("h2", "Written by"), ("p", command)]
    return blocks


def write_report(df: pd.DataFrame, out_dir: str | Path, reference: str | None = None,
                 paper_dir: str | Path | None = None, metric: str = "success",
                 seed: int = 0, reps: int = DEFAULT_REPS, alpha: float = 0.05,
                 activity: pd.DataFrame | None = None, figures: Sequence[Path] = (),
                 provenance: pd.DataFrame | None = None, notes: Sequence[str] = (),
                 command: str = "") -> list[Path]:
    """Write report.md, report.tex, report.html, comparison.csv, aggregate.csv and
    paper_tables.csv.

    reference: the method the others are tested against (default: the paper's reference);
    paper_dir: the transcribed numbers (default: the installed `mtrl_bench/paper/`).
    `metric` is the headline metric (aggregates and the overview); every metric in the table gets
    a comparison, each metric its own Holm family. `activity`: the masked runs' mask activity
    (`results.mask_activity`), tabulated, and marked beside the success of methods whose masks
    barely moved. Raises ValueError only when the table holds no value at all; a partial table
    is reported with what is missing. The HTML page holds everything in one file: the tables,
    then where each cell comes from (`provenance`: seeds, numerics, hardware), `notes` on the
    runs, the `command` that writes it again, and the `figures` (PNG files, embedded).
    """
    reference = reference or paper_data().reference
    precision = _precision(df)
    inert = _inert_cells(activity)
    raw_rows = len(df)
    df = stats.check_results(df)
    if df.empty:
        raise ValueError("the results table is empty: there is nothing to report "
                         "(no run has a numeric value); run an experiment first")
    metrics = sorted_names(df["metric"], "metric")
    primary = metric if metric in metrics else metrics[0]
    comps = {m: sort_frame(stats.compare(df, reference, m, seed=seed, alpha=alpha),
                           [*CELL, "method"]) for m in metrics}
    agg = stats.aggregate(df, reference, primary, reps=reps, seed=seed)
    agg = sort_frame(agg, [*CELL, "method"]) if len(agg) else agg
    paper_path = Path(paper_dir) if paper_dir is not None else numbers_dir()
    paper = load_numbers(paper_path)

    blocks = _overview(df, comps, primary, reference, alpha)
    if raw_rows > len(df):
        blocks.insert(1, ("p", f"{raw_rows - len(df)} row(s) without a numeric value were left "
                               "out."))
    if primary != metric:
        blocks.append(("p", f"No '{metric}' values in this table; the headline metric is "
                            f"'{primary}' instead."))
    blocks.append(("h2", f"(a) Comparison against {reference}"))
    for m in metrics:
        blocks += _comparison_section(comps[m], m, reference, alpha, inert, precision)
    if activity is not None and len(activity):
        blocks += _activity_section(activity)
    paper_blocks, paper_long = _paper_section(comps, paper, reference, alpha, paper_path)
    blocks += paper_blocks
    blocks += _aggregate_section(agg, primary, reference, reps, seed)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"mtrl-bench report (reference: {reference})"
    page = blocks + _provenance_section(provenance, notes, command)
    figures = [(Path(f).name, Path(f).read_bytes()) for f in figures if Path(f).exists()]
    files = {
        "report.md": render_markdown(title, blocks),
        "report.tex": render_latex(title, blocks),
        "report.html": render_html(title, page, figures),
        "comparison.csv": pd.concat(list(comps.values()), ignore_index=True).to_csv(index=False),
        "aggregate.csv": agg.to_csv(index=False),
        "paper_tables.csv": paper_long.to_csv(index=False),
    }
    paths = []
    for name, text in files.items():
        atomic_write(out / name, text)
        paths.append(out / name)
    return paths


__all__ = ["comparison_text", "render_latex", "render_markdown", "write_report"]

