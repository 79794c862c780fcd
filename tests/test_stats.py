"""Statistics: checked against scipy on fixed data and against hand-worked cases."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mtrl_bench import stats


def results(values: dict[str, list[list[float]]], suite: str = "mt5",
            quality: str = "near-optimal", metric: str = "success") -> pd.DataFrame:
    """A long table from {method: [[task values of seed 0], [seed 1], ...]}."""
    rows = [dict(method=m, suite=suite, quality=quality, seed=s, task=f"task{t}", metric=metric,
                 value=v, protocol="v3-scripted")
            for m, seeds in values.items() for s, tasks in enumerate(seeds)
            for t, v in enumerate(tasks)]
    return pd.DataFrame(rows)


A = [0.61, 0.72, 0.68, 0.70]
B = [0.55, 0.60, 0.52]


def test_welch_matches_scipy_and_hand_ci():
    w = stats.welch(A, B)
    ref = sps.ttest_ind(A, B, equal_var=False)
    assert w.t == pytest.approx(ref.statistic, rel=1e-12)
    assert w.p == pytest.approx(ref.pvalue, rel=1e-12)
    # Welch–Satterthwaite by hand
    va, vb = np.var(A, ddof=1) / len(A), np.var(B, ddof=1) / len(B)
    dof = (va + vb) ** 2 / (va**2 / (len(A) - 1) + vb**2 / (len(B) - 1))
    half = sps.t.ppf(0.975, dof) * math.sqrt(va + vb)
    diff = np.mean(A) - np.mean(B)
    assert w.dof == pytest.approx(dof)
    assert (w.diff, w.ci_low, w.ci_high) == pytest.approx((diff, diff - half, diff + half))


def test_welch_undefined_without_spread_or_seeds():
    assert math.isnan(stats.welch([0.5, 0.5], [0.5, 0.5]).p)
    assert math.isnan(stats.welch([0.5], [0.2, 0.3]).t)
    assert stats.welch([1.0, 1.0], [0.5, 0.5]).diff == pytest.approx(0.5)


def test_hedges_g_by_hand():
    # diff 1, pooled sd 1, m = 4: J = Γ(2) / (sqrt(2) Γ(1.5)) = 0.7978845608
    assert stats.hedges_g([1, 2, 3], [0, 1, 2]) == pytest.approx(0.7978845608)
    assert math.isnan(stats.hedges_g([1, 1], [1, 1]))


def test_permutation_three_vs_three_separated_is_point_one():
    p, exact = stats.permutation_p([0.9, 0.8, 0.85], [0.1, 0.2, 0.15])
    assert exact and p == pytest.approx(0.1)
    # One overlap: 2 of the 20 splits are at least as extreme on each side.
    p, _ = stats.permutation_p([3.0, 5.0, 6.0], [1.0, 2.0, 4.0])
    assert p == pytest.approx(0.2)


def test_p_floor_and_seeds_needed():
    assert stats.p_floor(3, 3) == pytest.approx(0.1)
    assert stats.p_floor(4, 4) == pytest.approx(2 / 70)
    assert stats.p_floor(5, 5) == pytest.approx(2 / 252)
    assert stats.min_seeds(0.05) == 4
    assert stats.min_seeds(0.05, comparisons=2) == 5  # 2 * 0.0286 > 0.05


def test_holm_hand_worked():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.02, np.nan, 0.04]), [0.04, np.nan, 0.04])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])


def test_required_seeds_textbook_value():
    # d = 1, alpha 0.05 two-sided, power 0.8: 17 per group (standard power tables).
    assert stats.required_seeds(1.0, 1.0, 1.0) == 17
    with pytest.raises(ValueError):
        stats.required_seeds(1.0, 1.0, 0.0)


def test_seed_scores_average_tasks_first_and_prefer_per_task_rows():
    df = results({"socodt": [[0.2, 0.4], [0.6, 1.0]]})
    stale = df.iloc[:1].assign(task=stats.MEAN_TASK, value=0.99)  # per-task rows must win
    only_mean = results({"prompt-dt": [[0.5]]}).assign(task=stats.MEAN_TASK)
    scores = stats.seed_scores(pd.concat([df, stale, only_mean]))
    got = {(r.method, r.seed): (r.value, r.n_tasks) for r in scores.itertuples()}
    assert got == {("socodt", 0): (pytest.approx(0.3), 2), ("socodt", 1): (pytest.approx(0.8), 2),
                   ("prompt-dt", 0): (0.5, 0)}


def test_cell_summary_uses_sample_std():
    summary = stats.cell_summary(results({"socodt": [[0.2], [0.4], [0.9]]}))
    row = summary.iloc[0]
    assert (row["n"], row["mean"]) == (3, pytest.approx(0.5))
    assert row["std"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))


def test_compare_matches_scipy_on_seed_means_and_applies_holm():
    ref = [[0.8, 0.9], [0.7, 0.8], [0.9, 0.9]]
    df = results({"socodt": ref, "prompt-dt": [[0.3, 0.5], [0.4, 0.5], [0.6, 0.2]],
                  "harmodt-f": [[0.7, 0.8], [0.6, 0.9], [0.8, 0.7]]})
    out = stats.compare(df, "socodt").set_index("method")
    pd_means = [0.4, 0.45, 0.4]
    ref_means = [0.85, 0.75, 0.9]
    assert out.loc["prompt-dt", "p_welch"] == pytest.approx(
        sps.ttest_ind(pd_means, ref_means, equal_var=False).pvalue)
    np.testing.assert_allclose(out.loc[["prompt-dt", "harmodt-f"], "p_holm"],
                               stats.holm(out.loc[["prompt-dt", "harmodt-f"], "p_welch"]))
    assert out.loc["prompt-dt", "p_perm"] == pytest.approx(0.1)
    assert out.loc["prompt-dt", "diff"] == pytest.approx(np.mean(pd_means) - np.mean(ref_means))
    # 3 seeds: far apart, but the mark is refused and the note says why
    assert out.loc["prompt-dt", "mark"] == ""
    assert "floor p = 0.1" in out.loc["prompt-dt", "note"]
    assert out.loc["socodt", "note"] == "reference"
    assert list(stats.compare(df, "socodt").columns) == list(stats.COMPARE_COLUMNS)


def test_bc_reference_rows_are_shown_but_not_tested():
    ref = [[0.8, 0.9], [0.7, 0.8], [0.9, 0.9]]
    methods = {"socodt": ref, "prompt-dt": [[0.3, 0.5], [0.4, 0.5], [0.6, 0.2]]}
    alone = stats.compare(results(methods), "socodt").set_index("method")
    both = stats.compare(results({**methods, "bc-top20": [[1.0, 1.0], [0.9, 1.0], [1.0, 0.9]]}),
                         "socodt")
    both = both.set_index("method")
    assert both.loc["bc-top20", "n"] == 3 and np.isnan(both.loc["bc-top20", "p_welch"])
    assert "not tested" in both.loc["bc-top20", "note"]
    # the Holm family is the methods' alone
    assert both.loc["prompt-dt", "p_holm"] == alone.loc["prompt-dt", "p_holm"]


def test_compare_marks_with_enough_seeds_and_notes_missing_reference():
    def seeds(values: list[float]) -> list[list[float]]:
        return [[v] for v in values]

    df = results({"socodt": seeds([0.90, 0.91, 0.89, 0.92, 0.88, 0.90]),
                  "prompt-dt": seeds([0.30, 0.31, 0.29, 0.33, 0.28, 0.30]),
                  "harmodt-f": seeds([0.85, 0.95, 0.88, 0.93, 0.86, 0.92])})
    out = stats.compare(df, "socodt").set_index("method")
    assert out.loc["prompt-dt", "mark"] == "**"
    assert out.loc["harmodt-f", "mark"] == ""
    other = results({"prompt-dt": [[0.1], [0.2]]}, suite="mt30")
    lone = stats.compare(other, "socodt")
    assert "no socodt runs" in lone.iloc[0]["note"]
    assert stats.compare(df, reference="harmodt-f").set_index("method").loc[
        "harmodt-f", "note"] == "reference"


def test_one_seed_a_side_gets_no_test_and_says_so():
    df = results({"socodt": [[0.6]], "prompt-dt": [[0.4]]})
    out = stats.compare(df, "socodt").set_index("method")
    row = out.loc["prompt-dt"]
    assert np.isnan(row["p_welch"]) and np.isnan(row["p_perm"])
    assert row["note"].startswith("fewer than 2 seeds on a side: no t-test")
    assert "resamples" not in row["note"]  # no permutation test ran at all


def test_iqm_by_hand():
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert stats.iqm([[0, 1, 2, 3], [4, 5, 6, 100]]) == pytest.approx(3.5)  # pooled entries
    assert stats.aggregate_mean([[0.0, 1.0], [1.0, 1.0]]) == pytest.approx(0.75)
    assert stats.optimality_gap([[0.5, 1.0]]) == pytest.approx(0.25)


def test_stratified_bootstrap_reproducible_and_contains_point():
    x = np.random.default_rng(1).uniform(size=(5, 10))
    first = stats.stratified_bootstrap(x, "iqm", reps=2000, seed=7)
    assert first == stats.stratified_bootstrap(x, "iqm", reps=2000, seed=7)
    assert first != stats.stratified_bootstrap(x, "iqm", reps=2000, seed=8)
    point, lo, hi = first
    assert point == pytest.approx(stats.iqm(x))
    assert lo < point < hi
    point, lo, hi = stats.stratified_bootstrap(x, "mean", reps=2000, seed=7)
    assert lo < point < hi and point == pytest.approx(x.mean())
    assert stats.stratified_bootstrap(np.full((3, 4), 0.5), "mean", reps=100) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="unknown statistic"):
        stats.stratified_bootstrap(x, "median")


def test_bootstrap_resamples_within_tasks():
    # Task 0 is always 0, task 1 always 1: a within-task resample never mixes them.
    x = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    rows = stats._resample(x, np.random.default_rng(0), 50)
    assert (rows[..., 0] == 0).all() and (rows[..., 1] == 1).all()


def test_probability_of_improvement_by_hand():
    # pairs: 3>2, 3>1, 1<2, 1=1 (counts ½): 2.5 / 4
    assert stats.probability_of_improvement([[3.0], [1.0]], [[2.0], [1.0]]) == pytest.approx(0.625)
    x = [[3.0, 0.5], [1.0, 0.5]]
    y = [[2.0, 0.5], [1.0, 0.5]]
    assert stats.probability_of_improvement(x, y) == pytest.approx((0.625 + 0.5) / 2)
    assert stats.probability_of_improvement(y, y) == pytest.approx(0.5)
    point, lo, hi = stats.probability_of_improvement_ci(x, y, reps=500, seed=3)
    assert 0.0 <= lo <= point <= hi <= 1.0
    assert (point, lo, hi) == stats.probability_of_improvement_ci(x, y, reps=500, seed=3)


def test_aggregate_reproducible_and_unmoved_by_other_methods():
    base = {"socodt": [[0.9, 0.8, 0.7], [0.8, 0.9, 0.6], [0.7, 0.9, 0.8]],
            "harmodt-f": [[0.5, 0.6, 0.7], [0.6, 0.4, 0.6], [0.7, 0.5, 0.5]]}
    one = stats.aggregate(results(base), "socodt", reps=300, seed=0).set_index("method")
    more = stats.aggregate(results({**base, "prompt-dt": [[0.1, 0.2, 0.3]] * 3}), "socodt",
                           reps=300, seed=0).set_index("method")
    cols = ["iqm", "iqm_low", "iqm_high", "mean_low", "poi", "poi_low", "poi_high"]
    pd.testing.assert_series_equal(one.loc["harmodt-f", cols], more.loc["harmodt-f", cols])
    assert one.loc["harmodt-f", "poi"] < 0.5 and math.isnan(one.loc["socodt", "poi"])
    assert one.loc["socodt", "iqm_low"] <= one.loc["socodt", "iqm"] <= one.loc["socodt", "iqm_high"]


def test_check_results_names_missing_columns():
    with pytest.raises(ValueError, match="lacks column.*protocol"):
        stats.seed_scores(results({"socodt": [[1.0]]}).drop(columns="protocol"))


def test_methods_sort_in_the_paper_order_with_sweep_labels_after_their_method():
    from mtrl_bench.display import sorted_names

    names = ["bc-all", "socodt[beta_scale=0.01]", "zeta", "prompt-dt", "socodt", "mtdt"]
    assert sorted_names(names, "method") == [
        "mtdt", "prompt-dt", "socodt", "socodt[beta_scale=0.01]", "bc-all", "zeta"]


def test_suites_are_shown_in_the_order_and_with_the_labels_of_their_one_definition(monkeypatch):
    """A suite added to envs/suites.py is ordered and labelled by that entry alone."""
    from mtrl_bench.display import sorted_names, suite_label
    from mtrl_bench_envs import suites

    added = suites.Suite("mt7", suites.MT50_ORDER[:7], label="MT7")
    monkeypatch.setitem(suites.SUITES, "mt7", added)
    assert sorted_names(["mt7", "random5-3", "mt30", "mt5"], "suite") == [
        "mt5", "mt30", "mt7", "random5-3"]
    assert [suite_label(s) for s in ("mt7", "mt50-rand", "random5-3")] == [
        "MT7", "MT50-rand", "random5-3"]


def test_runs_on_disjoint_task_sets_are_bootstrapped_by_their_means():
    # "random5-{seed}": every seed draws other tasks, so no task is common to all runs
    rows = [("m", "random5", "near-optimal", seed, task, "success", value, "p")
            for seed, tasks in enumerate([{"a": 0.2, "b": 0.4}, {"c": 1.0, "d": 0.6}])
            for task, value in tasks.items()]
    df = pd.DataFrame(rows, columns=list(stats.COLUMNS))
    matrix, tasks, notes = stats.score_matrix(df, "m", "random5", "near-optimal")
    assert tasks == [stats.MEAN_TASK] and matrix[:, 0].tolist() == pytest.approx([0.3, 0.8])
    assert "no task common" in notes[0]
