"""Statistics over the long results table: seed scores, tests against a reference, aggregates.

The results table has the columns ``method, suite, quality, seed, task, metric, value, protocol``.
A *cell* is one (suite, quality, protocol); runs of different protocols are never pooled. The unit
of analysis is the training seed (docs/design.md, "Statistics"): a run's per-task values are
averaged over its tasks first (or its ``task == "__mean__"`` row is used when it has no per-task
rows), and every test compares those per-seed averages.

Choices stated once:

- Spread is the sample standard deviation (``ddof=1``) over seeds. The paper prints "mean ± std"
  over 3 seeds without saying which; ddof=1 is the usual reading and matches Welch's t-test
  (with 3 seeds, ddof=0 would be 18% smaller).
- Primary test: Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) of each method against
  a reference method, with the mean difference, its Welch 95% CI and Hedges' g. Secondary: the
  exact permutation test of the mean difference (``scipy.stats.permutation_test``,
  ``n_resamples=np.inf``). Holm–Bonferroni runs across all comparisons passed to `compare` (one
  table = one family); raw and adjusted p are both kept.
- The p-value floor of an exact two-sided test with ``n_a`` vs ``n_b`` seeds is
  ``2 / C(n_a + n_b, n_a)``: 0.1 for 3 vs 3, so no exact test can reach 0.05. Significance marks
  are refused below the seed count at which that floor reaches alpha (4 per method at 0.05).

Why rliable is not used: rliable 1.2.0 imports ``arch``, which fails to import with pandas 3 on
Python 3.11 (project issue 5; this environment has pandas 3.1). The few definitions needed are
short, so they are implemented here with numpy, following rliable's definitions:

- IQM: ``scipy.stats.trim_mean(scores, 0.25)`` over all run × task entries pooled;
- mean: the mean of the per-task means; optimality gap: ``gamma - mean(min(scores, gamma))``;
- probability of improvement P(X > Y): per task, the Mann–Whitney U statistic over
  ``n_x * n_y`` (ties count one half), averaged over tasks;
- stratified bootstrap: runs are resampled with replacement within each task (strata = tasks),
  independently per method for P(X > Y); percentile 95% intervals.

rliable draws its indices from numpy's global RNG; here every interval comes from a generator
seeded by ``seed`` and the cell's key, so intervals are reproducible and do not move when other
methods or cells are added to the table.
"""
from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps

COLUMNS = ("method", "suite", "quality", "seed", "task", "metric", "value", "protocol")
MEAN_TASK = "__mean__"  # a run's task-averaged value, for runs stored without per-task rows
CELL = ("suite", "quality", "protocol")
RUN = ("method", *CELL, "seed")

Seed = int | np.random.SeedSequence
EXACT_LIMIT = 100_000  # above this many distinct splits the permutation test samples instead
DEFAULT_REPS = 10_000  # bootstrap resamples (rliable uses 50 000; 10 000 fixes two decimals)


def ordered(df: pd.DataFrame, by: Iterable[str]) -> pd.DataFrame:
    """Rows sorted by the plain values of `by`: a fixed order for the arithmetic (a cell's runs
    by seed); pages order rows their own way (`mtrl_bench.display.sort_frame`)."""
    return df.sort_values(list(by), kind="stable").reset_index(drop=True)


def check_results(df: pd.DataFrame) -> pd.DataFrame:
    """Validate the columns and return a clean copy (numeric values, NaN values dropped)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"results table lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}"
        )
    out = df.loc[:, list(COLUMNS)].copy()
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    for col in ("method", "suite", "quality", "task", "metric", "protocol"):
        out[col] = out[col].astype(str)
    return out[out["value"].notna()].reset_index(drop=True)


# --------------------------------------------------------------------------- per-seed scores

def seed_scores(df: pd.DataFrame, metric: str = "success") -> pd.DataFrame:
    """One row per run: the task-averaged value, the unit of every test.

    Columns: method, suite, quality, protocol, seed, value, n_tasks (0 when only the run's
    ``__mean__`` row exists).
    """
    df = check_results(df)
    df = df[df["metric"] == metric]
    keys = list(RUN)
    per_task = df[df["task"] != MEAN_TASK]
    # Per-task rows win over a stored mean: they are the primary data and the mean can be stale.
    from_tasks = per_task.groupby(keys, sort=False).agg(
        value=("value", "mean"), n_tasks=("task", "nunique")
    ).reset_index()
    means = df[df["task"] == MEAN_TASK].groupby(keys, sort=False)["value"].mean().reset_index()
    if len(from_tasks):
        seen = pd.MultiIndex.from_frame(from_tasks[keys])
        means = means[~pd.MultiIndex.from_frame(means[keys]).isin(seen)]
    means = means.assign(n_tasks=0)
    out = pd.concat([from_tasks, means], ignore_index=True)
    if out.empty:
        return pd.DataFrame(columns=[*keys, "value", "n_tasks"])
    return ordered(out, keys)


def cell_summary(df: pd.DataFrame, metric: str = "success") -> pd.DataFrame:
    """Mean ± std (ddof=1) over seeds per method and cell; columns n, mean, std."""
    scores = seed_scores(df, metric)
    keys = ["method", *CELL]
    if scores.empty:
        return pd.DataFrame(columns=[*keys, "n", "mean", "std"])
    out = scores.groupby(keys, sort=False)["value"].agg(
        n="count", mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan
    ).reset_index()
    return ordered(out, [*CELL, "method"])


# --------------------------------------------------------------------------- two-sample tests

@dataclass(frozen=True)
class Welch:
    """Welch's t-test of mean(a) - mean(b), with the Welch 95% CI of that difference."""

    diff: float
    ci_low: float
    ci_high: float
    t: float
    dof: float
    p: float


def welch(a: Iterable[float], b: Iterable[float], confidence: float = 0.95) -> Welch:
    """Welch's t-test of a against b; NaN where it is undefined (n < 2, or no variance at all)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    nan = math.nan
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return Welch(diff, nan, nan, nan, nan, nan)
    with warnings.catch_warnings():
        # Nearly constant groups trip scipy's precision warning; the result is still returned.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    return Welch(diff, float(ci.low), float(ci.high), float(res.statistic), float(res.df),
                 float(res.pvalue))


def hedges_g(a: Iterable[float], b: Iterable[float]) -> float:
    """Hedges' g of a - b: Cohen's d over the pooled sd, times the exact small-sample correction.

    The correction is J(m) = Γ(m/2) / (sqrt(m/2) Γ((m-1)/2)) with m = n_a + n_b - 2 (Hedges 1981);
    the common approximation 1 - 3/(4m - 1) differs by < 0.3% from m = 4 on.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    m = len(a) + len(b) - 2
    if len(a) < 2 or len(b) < 2:
        return math.nan
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / m)
    if pooled == 0:
        return math.nan
    j = math.exp(special.gammaln(m / 2) - special.gammaln((m - 1) / 2)) / math.sqrt(m / 2)
    return float(j * (a.mean() - b.mean()) / pooled)


def p_floor(n_a: int, n_b: int) -> float:
    """Smallest two-sided p an exact permutation (or exact Mann–Whitney) test can give."""
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def min_seeds(alpha: float = 0.05, comparisons: int = 1) -> int:
    """Fewest seeds per method (equal groups) at which an exact test can reach p < alpha.

    With `comparisons` > 1 the floor is multiplied by the Holm factor of the smallest p.
    alpha 0.05: 4 seeds for one comparison, 5 for two.
    """
    n = 1
    while comparisons * p_floor(n, n) >= alpha:
        n += 1
    return n


def permutation_p(a: Iterable[float], b: Iterable[float], seed: Seed = 0) -> tuple[float, bool]:
    """Two-sided permutation p of mean(a) - mean(b); exact when the splits can be enumerated.

    Returns (p, exact). Beyond `EXACT_LIMIT` distinct splits, 9999 resamples from a seeded
    generator are used instead.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:  # scipy needs two observations per side
        return math.nan, False
    exact = math.comb(len(a) + len(b), len(a)) <= EXACT_LIMIT

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    res = sps.permutation_test(
        (a, b), mean_diff, permutation_type="independent", vectorized=True,
        n_resamples=np.inf if exact else 9999, alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue), exact


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order; NaN stays NaN and is not counted.

    Sorted ascending, p_(j) becomes max over i ≤ j of min(1, (m - i + 1) p_(i)).
    """
    p = np.asarray(list(pvalues), float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def required_seeds(std_a: float, std_b: float, diff: float, alpha: float = 0.05,
                   power: float = 0.8, max_n: int = 1000) -> int:
    """Seeds per method for a two-sided Welch test to detect `diff` with the given power.

    Colas et al. (2018)'s procedure: take the stds from a pilot and solve for N, here with the
    noncentral t distribution. Pilot stds from few seeds underestimate the spread; pad the result.
    """
    if diff == 0:
        raise ValueError("diff must be non-zero: no number of seeds detects a zero difference")
    va, vb = std_a**2, std_b**2
    if va + vb == 0:
        return 2
    for n in range(2, max_n + 1):
        se2 = (va + vb) / n
        dof = se2**2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1))
        crit = sps.t.ppf(1 - alpha / 2, dof)
        ncp = abs(diff) / math.sqrt(se2)
        reached = sps.nct.sf(crit, dof, ncp) + sps.nct.cdf(-crit, dof, ncp)
        if reached >= power:
            return n
    raise ValueError(f"more than {max_n} seeds would be needed")


# --------------------------------------------------------------------------- comparison table

COMPARE_COLUMNS = (
    "suite", "quality", "protocol", "metric", "method", "reference", "n", "mean", "std",
    "ref_n", "ref_mean", "ref_std", "diff", "ci_low", "ci_high", "t", "dof", "g",
    "p_welch", "p_perm", "perm_exact", "p_floor", "p_holm", "p_perm_holm", "mark", "note",
)


# The BC baselines' rows (mtrl_bench.baselines), shown beside the methods and never tested, so
# they do not enlarge a table's Holm family; their note says what each is.
REFERENCE_ROWS = ("bc-all", "bc-top20")
BASELINE_NOTES = {"bc-all": "BC on all episodes (the data's floor): not tested",
                  "bc-top20": "BC on each task's best 20% (what filtering alone reaches): "
                              "not tested"}


def compare(df: pd.DataFrame, reference: str, metric: str = "success", seed: int = 0,
            alpha: float = 0.05, needed_seeds: int | None = None) -> pd.DataFrame:
    """Every method against `reference` in every cell: one row per method × cell.

    The whole table passed in is one Holm family (pass one paper table at a time). `mark` is
    "*" (p_holm < alpha) or "**" (p_holm < alpha / 5) on Welch's test, and is left empty when
    either method has fewer than `needed_seeds` seeds (default: `min_seeds(alpha)`, i.e. 4).
    The reference's own row carries its n, mean and std and no test; so do `REFERENCE_ROWS`.
    """
    needed = min_seeds(alpha) if needed_seeds is None else needed_seeds
    scores = seed_scores(df, metric)
    rows = []
    for cell, group in scores.groupby(list(CELL), sort=False):
        per_method = {m: g["value"].to_numpy() for m, g in group.groupby("method", sort=False)}
        ref = per_method.get(reference)
        for method, vals in per_method.items():
            rows.append(_compare_one(dict(zip(CELL, cell)), metric, method, vals, reference, ref,
                                     seed, alpha, needed))
    out = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
    if out.empty:
        return out
    out["p_holm"] = holm(out["p_welch"])
    out["p_perm_holm"] = holm(out["p_perm"])
    out["mark"] = [_mark(r, alpha, needed) for r in out.itertuples()]
    return ordered(out, [*CELL, "method"])


def _compare_one(cell: dict, metric: str, method: str, vals: np.ndarray, reference: str,
                 ref: np.ndarray | None, seed: int, alpha: float, needed: int) -> dict:
    row = dict(cell, metric=metric, method=method, reference=reference, n=len(vals),
               mean=float(vals.mean()), std=float(vals.std(ddof=1)) if len(vals) > 1 else math.nan)
    nan_fields = ("ref_mean", "ref_std", "diff", "ci_low", "ci_high", "t", "dof", "g",
                  "p_welch", "p_perm", "p_floor")
    row.update(dict.fromkeys(nan_fields, math.nan), ref_n=0, perm_exact=False)
    if method in REFERENCE_ROWS:
        row["note"] = BASELINE_NOTES[method]
        return row
    if ref is None:
        row["note"] = f"no {reference} runs in this cell: no test"
        return row
    row.update(ref_n=len(ref), ref_mean=float(ref.mean()),
               ref_std=float(ref.std(ddof=1)) if len(ref) > 1 else math.nan)
    if method == reference:
        row["note"] = "reference"
        return row
    w = welch(vals, ref)
    p_perm, exact = permutation_p(vals, ref, seed=_cell_seed(seed, cell, method, "perm"))
    floor = p_floor(len(vals), len(ref))
    row.update(diff=w.diff, ci_low=w.ci_low, ci_high=w.ci_high, t=w.t, dof=w.dof,
               g=hedges_g(vals, ref), p_welch=w.p, p_perm=p_perm, perm_exact=exact,
               p_floor=floor)
    notes = []
    if len(vals) < 2 or len(ref) < 2:
        notes.append("fewer than 2 seeds on a side: no t-test")
    elif math.isnan(w.p):
        notes.append("no spread within either method: Welch's t is undefined")
    if floor >= alpha:
        notes.append(f"exact-test floor p = {floor:.3g} with {len(vals)} vs {len(ref)} seeds")
    if min(len(vals), len(ref)) < needed:
        notes.append(f"too few seeds to mark (< {needed})")
    if not exact and not math.isnan(p_perm):
        notes.append("permutation p from 9999 random resamples")
    row["note"] = "; ".join(notes)
    return row


def _mark(row, alpha: float, needed: int) -> str:
    if row.method == row.reference or np.isnan(row.p_holm) or min(row.n, row.ref_n) < needed:
        return ""
    if row.p_holm < alpha / 5:
        return "**"
    return "*" if row.p_holm < alpha else ""


# --------------------------------------------------------------------------- aggregates

def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all entries pooled (25% trimmed from each end)."""
    return float(sps.trim_mean(np.asarray(scores, float), 0.25, axis=None))


def aggregate_mean(scores: np.ndarray) -> float:
    """Mean of the per-task means of a (runs, tasks) matrix."""
    return float(np.mean(np.mean(np.asarray(scores, float), axis=0)))


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> float:
    return float(gamma - np.mean(np.minimum(np.asarray(scores, float), gamma)))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) of two (runs, tasks) matrices over the same tasks; 0.5 when they are identical."""
    return float(_poi_batched(np.asarray(x, float)[None], np.asarray(y, float)[None])[0])


def _iqm_batched(x: np.ndarray) -> np.ndarray:
    return sps.trim_mean(x.reshape(len(x), -1), 0.25, axis=1)


def _mean_batched(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(1, 2))  # equal runs per task, so this is the mean of per-task means


def _gap_batched(x: np.ndarray) -> np.ndarray:
    return 1.0 - np.minimum(x, 1.0).mean(axis=(1, 2))


def _poi_batched(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # x (reps, n_x, T), y (reps, n_y, T): every run pair within each task, ties count one half.
    xs, ys = x[:, :, None, :], y[:, None, :, :]
    per_task = (xs > ys).mean(axis=(1, 2)) + 0.5 * (xs == ys).mean(axis=(1, 2))
    return per_task.mean(axis=1)


BATCHED = {"iqm": _iqm_batched, "mean": _mean_batched, "optimality_gap": _gap_batched}


def _resample(x: np.ndarray, rng: np.random.Generator, reps: int) -> np.ndarray:
    """`reps` stratified resamples of a (runs, tasks) matrix: runs redrawn within each task."""
    n, t = x.shape
    return x[rng.integers(0, n, size=(reps, n, t)), np.arange(t)]


def _chunks(reps: int, per_rep: int) -> list[int]:
    size = max(1, min(reps, 4_000_000 // max(per_rep, 1)))  # bound memory to a few tens of MB
    return [min(size, reps - start) for start in range(0, reps, size)]


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 50 * (1 - confidence)
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def stratified_bootstrap(scores: np.ndarray, statistic: str = "iqm", reps: int = DEFAULT_REPS,
                         seed: Seed = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """Point estimate and percentile CI of an aggregate of a (runs, tasks) matrix.

    `statistic` is "iqm", "mean" or "optimality_gap" (gamma = 1). Strata are tasks.
    """
    if statistic not in BATCHED:
        raise ValueError(f"unknown statistic {statistic!r}; choose from {', '.join(BATCHED)}")
    x = np.asarray(scores, float)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) matrix, got shape {x.shape}")
    func = BATCHED[statistic]
    rng = np.random.default_rng(seed)
    values = np.concatenate([func(_resample(x, rng, k)) for k in _chunks(reps, x.size)])
    return float(func(x[None])[0]), *_interval(values, confidence)


def probability_of_improvement_ci(x: np.ndarray, y: np.ndarray, reps: int = DEFAULT_REPS,
                                  seed: Seed = 0, confidence: float = 0.95
                                  ) -> tuple[float, float, float]:
    """P(X > Y) with a CI from resampling each method's runs independently within each task."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or x.size == 0 or y.size == 0:
        raise ValueError(f"x and y must be (runs, tasks) over the same tasks: {x.shape}, {y.shape}")
    rng = np.random.default_rng(seed)
    per_rep = x.shape[0] * y.shape[0] * x.shape[1]
    values = np.concatenate([
        _poi_batched(_resample(x, rng, k), _resample(y, rng, k)) for k in _chunks(reps, per_rep)
    ])
    return probability_of_improvement(x, y), *_interval(values, confidence)


def score_matrix(df: pd.DataFrame, method: str, suite: str, quality: str,
                 protocol: str | None = None, metric: str = "success"
                 ) -> tuple[np.ndarray, list[str], list[str]]:
    """The (seeds, tasks) matrix of one method in one cell, for the bootstrap.

    Returns (matrix, tasks, notes). Tasks missing from some seed are dropped (noted). A cell
    stored only as task means gives a single "__mean__" column (noted).
    """
    df = check_results(df)
    sel = ((df["method"] == method) & (df["suite"] == suite) & (df["quality"] == quality)
           & (df["metric"] == metric))
    if protocol is not None:
        sel &= df["protocol"] == protocol
    sub = df[sel]
    notes: list[str] = []
    per_task = sub[sub["task"] != MEAN_TASK]
    if per_task.empty:
        per_task = sub
        if not sub.empty:
            notes.append("only task means stored: a single stratum")
    wide = per_task.pivot_table(index="seed", columns="task", values="value", aggfunc="mean")
    complete = wide.dropna(axis=1)
    if complete.shape[1] == 0 and len(wide):  # e.g. a new task combination per seed
        notes.append("no task common to all runs: each run's task mean, a single stratum")
        return wide.mean(axis=1).to_numpy(float)[:, None], [MEAN_TASK], notes
    dropped = sorted(set(wide.columns) - set(complete.columns))
    if dropped:
        notes.append(f"{len(dropped)} task(s) missing from some seeds left out: "
                     + ", ".join(map(str, dropped)))
    return complete.to_numpy(float), [str(c) for c in complete.columns], notes


def _cell_seed(seed: int, cell: dict, *parts: str) -> np.random.SeedSequence:
    # One stream per (cell, method, purpose), so adding a method or a cell moves no other interval.
    key = "|".join([*(str(cell[c]) for c in CELL), *parts])
    return np.random.SeedSequence([seed, zlib.crc32(key.encode())])


AGGREGATE_COLUMNS = (
    "suite", "quality", "protocol", "metric", "method", "runs", "tasks",
    "iqm", "iqm_low", "iqm_high", "mean", "mean_low", "mean_high",
    "gap", "gap_low", "gap_high", "reference", "poi", "poi_low", "poi_high", "note",
)
_ESTIMATES = tuple(c for c in AGGREGATE_COLUMNS[7:] if c not in ("reference", "note"))


def aggregate(df: pd.DataFrame, reference: str, metric: str = "success",
              reps: int = DEFAULT_REPS, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """IQM, mean and optimality gap with stratified-bootstrap CIs, and P(method > reference).

    One row per method × cell. The optimality gap (gamma = 1) is only filled for "success".
    P(method > reference) needs both methods on the same tasks; the tasks they share are used.
    """
    df = check_results(df)
    df = df[df["metric"] == metric]
    rows = []
    for cell_vals, group in df.groupby(list(CELL), sort=False):
        cell = dict(zip(CELL, cell_vals))
        mats = {m: score_matrix(g, m, cell["suite"], cell["quality"], cell["protocol"], metric)
                for m, g in group.groupby("method", sort=False)}
        for method, (x, tasks, notes) in mats.items():
            row = dict(cell, metric=metric, method=method, runs=x.shape[0], tasks=len(tasks),
                       reference=reference)
            row.update(dict.fromkeys(_ESTIMATES, math.nan))
            if x.size:
                for stat in ("iqm", "mean") + (("optimality_gap",) if metric == "success" else ()):
                    name = "gap" if stat == "optimality_gap" else stat
                    est = stratified_bootstrap(x, stat, reps, _cell_seed(seed, cell, method, stat),
                                               confidence)
                    row.update(zip((name, f"{name}_low", f"{name}_high"), est))
            if method != reference and reference in mats and x.size:
                y, ref_tasks, _ = mats[reference]
                shared = [t for t in tasks if t in set(ref_tasks)]
                if shared:
                    xi = [tasks.index(t) for t in shared]
                    yi = [ref_tasks.index(t) for t in shared]
                    est = probability_of_improvement_ci(
                        x[:, xi], y[:, yi], reps, _cell_seed(seed, cell, method, "poi"), confidence
                    )
                    row.update(zip(("poi", "poi_low", "poi_high"), est))
                else:
                    notes = [*notes, f"no tasks shared with {reference}"]
            row["note"] = "; ".join(notes)
            rows.append(row)
    out = pd.DataFrame(rows, columns=list(AGGREGATE_COLUMNS))
    return ordered(out, [*CELL, "method"]) if len(out) else out


__all__ = [
    "AGGREGATE_COLUMNS", "COLUMNS", "COMPARE_COLUMNS", "MEAN_TASK", "Welch", "aggregate",
    "aggregate_mean", "cell_summary", "check_results", "compare", "hedges_g", "holm", "iqm",
    "min_seeds", "optimality_gap", "p_floor", "permutation_p", "probability_of_improvement",
    "probability_of_improvement_ci", "required_seeds", "score_matrix", "seed_scores",
    "ordered", "stratified_bootstrap", "welch",
]
