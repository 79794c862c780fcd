"""Plots from synthetic stored results: each writes a real, non-empty PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest
from test_results import MASK_RECORDS, make_run  # tests/ is on sys.path (no package)

from mtrl_bench import plots, results

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path | None) -> bool:
    return path is not None and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def table(methods=("prompt-dt", "socodt"), seeds=3, tasks=4) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [dict(method=m, suite="mt5", quality="sub-optimal", seed=s, task=f"t{t}",
                 metric="success", value=float(rng.uniform()), protocol="p", run=f"{m}{s}")
            for m in methods for s in range(seeds) for t in range(tasks)]
    return pd.DataFrame(rows)


def test_performance_profile_by_hand():
    scores = np.array([[0.0, 1.0], [0.5, 1.0]])  # 2 runs x 2 tasks
    frac, low, high = plots.performance_profile(scores, np.array([-0.1, 0.25, 0.75, 1.0]))
    # task 0: 1, 1/2, 0, 0 of runs above; task 1: 1, 1, 1, 0 -> averaged over tasks
    assert frac.tolist() == [1.0, 0.75, 0.5, 0.0]
    assert (low <= frac + 1e-12).all() and (frac <= high + 1e-12).all()
    again = plots.performance_profile(scores, np.array([0.25]), seed=0)
    assert np.array_equal(again[1], plots.performance_profile(scores, np.array([0.25]))[1])


def test_profiles_and_curves(tmp_path):
    assert is_png(plots.plot_profiles(table(), tmp_path / "profile.png"))
    curves = pd.DataFrame([
        dict(method=m, suite="mt5", quality="sub-optimal", seed=s, protocol="p", run=f"{m}{s}",
             step=step, kind="eval", metric="success", value=step / 1000 + s / 10)
        for m in ("prompt-dt", "socodt") for s in range(3) for step in (250, 500, 1000)])
    assert is_png(plots.plot_curves(curves, tmp_path / "curves.png"))
    assert plots.plot_curves(curves, tmp_path / "none.png", metric="return") is None
    assert not (tmp_path / "none.png").exists()


def test_sweeps(tmp_path):
    df = table(methods=("socodt", "socodt[alpha=10]", "socodt[alpha=40]"))
    df = pd.concat([df, df.groupby(["method", "seed", "run"], as_index=False)["value"].mean()
                    .assign(task="__mean__", metric="success")], ignore_index=True)
    entry = {"suite_label": "mt5", "quality": "sub-optimal"}
    grid = [{**entry, "name": f"{m}{s}", "sweeps": [{"name": "alpha", "point": {
        "method.alpha": a}}]} for m, a in (("socodt", 20.0), ("socodt[alpha=10]", 10.0),
                                           ("socodt[alpha=40]", 40.0)) for s in range(3)]
    assert is_png(plots.plot_sweeps(df, grid, tmp_path / "sweeps.png"))
    assert plots.plot_sweeps(df, [{**g, "sweeps": []} for g in grid], tmp_path / "x.png") is None


def test_plot_run_with_and_without_masks(tmp_path):
    masked = make_run(tmp_path, "masked", metrics=MASK_RECORDS)
    paths, has_masks = plots.plot_run(masked.path)
    assert has_masks and {p.name for p in paths} == {"training.png", "masks.png"}
    assert all(is_png(p) for p in paths)
    plain = make_run(tmp_path, "plain", method="prompt-dt", metrics=MASK_RECORDS[:1])
    paths, has_masks = plots.plot_run(plain.path, tmp_path / "out")
    assert not has_masks and [p.name for p in paths] == ["training.png"]


def test_mask_panels_cover_every_logged_key(tmp_path):
    run = make_run(tmp_path, "m", metrics=MASK_RECORDS)
    diag = results.mask_diagnostics(run.path)
    path = plots.plot_mask_diagnostics(diag, tmp_path / "m.png", "t", ["reach", "push"])
    assert is_png(path)
    assert plots.plot_mask_diagnostics(diag.iloc[:0], tmp_path / "e.png", "t") is None


def test_a_third_party_method_gets_labelled_panels(tmp_path):
    """Panels come from the method's MethodSpec.diagnostics: registering a plugin is enough."""
    import dataclasses

    from mtrl_bench.plugins import MethodSpec, hookimpl, registry

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        pass

    class Plugin:
        @hookimpl
        def mtrl_bench_methods(self):
            return [MethodSpec("panel-test", Cfg, lambda ctx: None, "test",
                               diagnostics={"wobble": "wobble of the masks"})]

    reg = registry()
    plugin = Plugin()
    reg.register(plugin, name="panel-test", distribution="tests", version="0")
    try:
        record = {"step": 5, "kind": "train", "loss": 1.0, "mask": {"density": [0.8, 0.6]},
                  "strategy": {"wobble": [0.1, 0.3], "other": 1.0}}
        run = make_run(tmp_path, "m", method="panel-test", metrics=[record])
        diag = results.mask_diagnostics(run.path)
        titles = [t for _, _, t in plots.mask_panels(diag, plots.method_panels("panel-test"))]
        assert titles == ["density (fraction with M = 1)", "wobble of the masks", "other"]
        paths, has_masks = plots.plot_run(run.path)
        assert has_masks and "masks.png" in {p.name for p in paths}
    finally:
        reg.pm.unregister(plugin)
        del reg.methods["panel-test"]


def test_experiment_plots(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(2):
        make_run(runs, f"s{seed}", seed=seed, metrics=MASK_RECORDS, early_stop=False)
    df, _ = results.collect(tmp_path)
    paths = plots.plot_experiment(tmp_path, df)
    names = {p.name for p in paths}
    # full-episode returns get their own curve; a run's masks are `plot_run`'s, on demand
    assert names == {"curves_success.png", "curves_return.png", "profile_success.png"}
    assert all(is_png(p) for p in paths)
    assert not (runs / "s0" / "plots").exists()


def test_sweep_points_share_one_mask_figure(tmp_path):
    """A sweep's runs are drawn together (sweeps_masks.png), not one diagnostics figure each;
    a run outside every sweep gets none in the report either."""
    from test_results import grid_entry

    from mtrl_bench.runs import write_json

    runs = tmp_path / "runs"
    entries = []
    for name, alpha in (("a10", 10.0), ("a40", 40.0)):
        record = {"step": 5, "kind": "train", "loss": 1.0,
                  "mask": {"density": [alpha / 100, 0.5], "soft_fraction": [0.0, 0.1]}}
        run = make_run(runs, name, metrics=[record, {**record, "step": 10}])
        entries.append({**grid_entry(run, f"socodt[alpha={alpha:g}]"),
                        "sweeps": [{"name": "alpha", "point": {"method.alpha": alpha}}]})
    alone = make_run(runs, "alone", seed=1, metrics=MASK_RECORDS)
    entries.append(grid_entry(alone, "socodt[beta_scale=1]"))
    write_json(tmp_path / "grid.json", {"runs": entries})
    df, _ = results.collect(tmp_path)
    names = {p.name for p in plots.plot_experiment(tmp_path, df)}
    assert {"sweeps_success.png", "sweeps_masks.png"} <= names
    assert not names & {"a10.png", "a40.png", "alone.png"}
    assert is_png(tmp_path / "plots" / "sweeps_masks.png")
    # nothing swept with masks: no figure
    assert plots.plot_sweep_masks({}, entries, tmp_path / "none.png") is None


def test_task_scaling_by_hand(tmp_path):
    """Two suites of 2 and 3 tasks: per method and task count, the mean over seeds of the
    task-averaged success and its 95% t half-width; one suite alone draws nothing."""
    rows = []
    for suite, seeds in (("a2", {0: [0.2, 0.4], 1: [0.6, 0.8]}),  # runs 0.3, 0.7
                         ("b3", {0: [0.0, 0.3, 0.6]})):            # one run 0.3
        for seed, values in seeds.items():
            rows += [dict(method="prompt-dt", suite=suite, quality="near-optimal", seed=seed,
                          task=f"{suite}{t}", metric="success", value=v, protocol="p",
                          run=f"{suite}{seed}") for t, v in enumerate(values)]
    df = pd.DataFrame(rows)
    table = plots.task_scaling(df).set_index("n_tasks")
    assert table.loc[2, "mean"] == pytest.approx(0.5) and table.loc[2, "n"] == 2
    # std of (0.3, 0.7) = 0.2828, sem 0.2, t(0.975, 1 dof) = 12.706
    assert table.loc[2, "half"] == pytest.approx(0.2 * 12.7062, rel=1e-4)
    assert table.loc[3, "mean"] == pytest.approx(0.3) and table.loc[3, "half"] == 0.0
    assert is_png(plots.plot_task_scaling(df, tmp_path / "scaling.png"))
    one_suite = df[df["suite"] == "a2"]
    assert plots.task_scaling(one_suite).empty
    assert plots.plot_task_scaling(one_suite, tmp_path / "none.png") is None


def test_a_dozen_methods_get_a_dozen_colours(tmp_path, monkeypatch):
    """A joint report draws a dozen methods; none may share another's colour (with Matplotlib's
    ten, the eleventh looked like the first)."""
    methods = [f"method{i:02d}" for i in range(12)]
    df = pd.DataFrame([dict(method=m, suite=s, quality="near-optimal", seed=0, task=f"{s}{t}",
                            metric="success", value=0.5, protocol="p", run=f"{m}{s}")
                       for m in methods for s, n in (("a2", 2), ("b3", 3)) for t in range(n)])
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig) and path)
    plots.plot_task_scaling(df, tmp_path / "scaling.png")
    bars = [c for c in drawn["fig"].axes[0].containers if c.get_label() in methods]
    assert len(bars) == 12
    assert len({matplotlib.colors.to_hex(c.lines[0].get_color()) for c in bars}) == 12


def test_mask_activity_names_each_method_and_cell_once(tmp_path, monkeypatch):
    """Six cells of three methods (a joint report): every cell has its own line style, every
    method its own colour, and the legend names each once, beside the panels, not over them."""
    cells = [(s, q) for s in ("mt5", "mt30", "mt50") for q in ("near-optimal", "sub-optimal")]
    methods = ["harmodt-f", "socodt", "socodt-signed"]
    traj = pd.DataFrame([dict(method=m, suite=s, quality=q, protocol="p", run=f"{m}{s}{q}",
                              key=key, step=step, value=0.8)
                         for m in methods for s, q in cells for key in ("density", "conflict")
                         for step in (30, 60)])
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig) and path)
    plots.plot_mask_activity(traj, tmp_path / "activity.png")
    fig = drawn["fig"]
    assert all(ax.get_legend() is None for ax in fig.axes)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert labels == methods + [f"{s} {q}" for s, q in cells]
    lines = fig.axes[0].get_lines()
    assert len(lines) == 18
    # the dash pattern as drawn (get_linestyle() says "--" for every custom pattern)
    styles = {(line.get_color(), str(line._dash_pattern)) for line in lines}
    assert len(styles) == 18  # no two (method, cell) lines look alike


def test_a_method_keeps_its_colour_in_every_panel_and_figure(tmp_path, monkeypatch):
    """HarmoDT-R runs on near-optimal data only: with colours taken from each panel's own
    methods, every method after it changed colour between the panels (and between figures)."""
    def cell(quality, methods):
        return table(methods=methods).assign(quality=quality,
                                             run=lambda d: d["run"] + quality)
    df = pd.concat([cell("near-optimal", ("prompt-dt", "harmodt-r", "harmodt-f", "socodt")),
                    cell("sub-optimal", ("prompt-dt", "harmodt-f", "socodt"))])
    curves = df.assign(step=500, kind="eval")
    traj = df[df["method"] != "prompt-dt"].assign(key="density", step=30, value=0.8)
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    colours = plots.method_colours(df["method"])
    plots.plot_profiles(df, tmp_path / "p.png", reps=10, colours=colours)
    plots.plot_curves(curves, tmp_path / "c.png", colours=colours)
    plots.plot_mask_activity(traj, tmp_path / "m.png", colours)
    seen = {}
    for fig in drawn:
        for ax in fig.axes:
            for line in ax.get_lines():
                method = line.get_label().split(" (n=")[0]
                if method in colours:
                    seen.setdefault(method, set()).add(matplotlib.colors.to_hex(line.get_color()))
    assert set(seen) == set(colours)
    assert len(drawn) == 3 and all(drawn[2].axes[0].get_lines())
    assert all(found == {matplotlib.colors.to_hex(colours[m])} for m, found in seen.items())
    assert len(set(colours.values())) == 4
