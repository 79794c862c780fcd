"""PNG plots from stored results: training curves (paper Fig. 4), mask diagnostics of a run, the
Fig. 5 hyperparameter sweeps and performance profiles (rliable-style, computed here).

Figures are built with `matplotlib.figure.Figure` (Agg canvas, no pyplot state), so plotting
works headless and inside worker processes. Every function returns the path it wrote, or None
when there was nothing to draw.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import TABLEAU_COLORS
from matplotlib.figure import Figure

from mtrl_bench.display import MASK_DIAGNOSTICS, axis_label, metric_scale, order_key, sorted_names
from mtrl_bench.stats import MEAN_TASK, seed_scores
from mtrl_bench_envs.common import atomic_write

TASK_ALL = -1
# Matplotlib's ten default colours, then eight more: a joint report draws a dozen methods, and
# with ten colours the eleventh would share the first one's
PALETTE = [*TABLEAU_COLORS, "black", "darkgoldenrod", "navy", "lime", "magenta", "teal",
           "maroon", "slategray"]


def method_colours(methods: Iterable[str]) -> dict[str, str]:
    """One colour per method, in the methods' canonical order. A report draws all its figures
    with one such map, so a method keeps its colour in every panel and every figure."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted_names(methods, "method"))}


def _colour(colours: dict[str, str], method: str) -> str:
    """`method`'s colour; a method the map lacks gets the next free one (and keeps it)."""
    return colours.setdefault(method, PALETTE[len(colours) % len(PALETTE)])


def _save(fig: Figure, path: Path) -> Path:
    """Write atomically, so a half-written PNG never stands in for a plot."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    return path


def _grid(n: int, width: float = 4.2, height: float = 3.0) -> tuple[Figure, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes:
        ax.set_prop_cycle(color=PALETTE)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _scale(metric: str) -> tuple[float, str]:
    """(display factor, axis label), as in the report."""
    return metric_scale(metric)[0], axis_label(metric)


def _band(ax: Any, x: np.ndarray, groups: pd.DataFrame, label: str, colour: str) -> None:
    """Mean over seeds with a ±1 std band (ddof=1; no band for one seed)."""
    mean = groups.mean(axis=1).to_numpy()
    std = groups.std(axis=1, ddof=1).fillna(0).to_numpy()
    marker = "o" if len(x) < 3 else None
    ax.plot(x, mean, marker=marker, label=f"{label} (n={groups.shape[1]})", color=colour)
    if groups.shape[1] > 1:
        ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=colour)


# --------------------------------------------------------------------------- Fig. 4

def plot_curves(curves: pd.DataFrame, path: Path, metric: str = "success",
                colours: dict[str, str] | None = None) -> Path | None:
    """Evaluation `metric` over training steps, one panel per cell, one line per method
    (coloured by `colours`, default `method_colours` of these curves)."""
    ev = curves[(curves["kind"] == "eval") & (curves["metric"] == metric)]
    if ev.empty:
        return None
    colours = method_colours(ev["method"]) if colours is None else colours
    factor, ylabel = _scale(metric)
    cells = ev[["suite", "quality", "protocol"]].drop_duplicates().sort_values(
        ["suite", "quality"], key=lambda s: order_key(s.name)(s))
    fig, axes = _grid(len(cells))
    for ax, cell in zip(axes, cells.itertuples(index=False)):
        here = ev[(ev["suite"] == cell.suite) & (ev["quality"] == cell.quality)
                  & (ev["protocol"] == cell.protocol)]
        for method in sorted_names(here["method"], "method"):
            table = here[here["method"] == method].pivot_table(
                index="step", columns="seed", values="value", aggfunc="mean") * factor
            _band(ax, table.index.to_numpy(), table, method, _colour(colours, method))
        only_final = here.groupby("run")["step"].nunique().max() == 1
        ax.set_title(f"{cell.suite} {cell.quality}" + (" (final eval only)" if only_final
                                                       else ""), fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{metric} over training: mean ± std over seeds", fontsize=10)
    return _save(fig, path)


def plot_loss(curve: pd.DataFrame, path: Path, title: str) -> Path | None:
    """One run: training loss (left) and evaluation success where it was evaluated (right)."""
    train = curve[curve["metric"] == "loss"]
    ev = curve[(curve["kind"] == "eval") & (curve["metric"] == "success")]
    if train.empty and ev.empty:
        return None
    fig, (ax_loss, ax_eval) = _grid(2)
    ax_loss.plot(train["step"], train["value"])
    ax_loss.set(xlabel="training step", ylabel="loss (mean over tasks)", title="training loss")
    ax_eval.plot(ev["step"], ev["value"] * 100, marker="o")
    ax_eval.set(xlabel="training step", ylabel="success (%)", title="evaluation success",
                ylim=(-5, 105))
    for ax in (ax_loss, ax_eval):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------- mask diagnostics

def method_panels(method: str) -> dict[str, str]:
    """Plot labels of a method's own diagnostics, from its MethodSpec (none if it is not
    installed here: its panels are then titled by key)."""
    from mtrl_bench.plugins import registry

    known = registry().methods.get(method.split("[")[0])
    return dict(known.spec.diagnostics) if known else {}


def mask_panels(diag: pd.DataFrame, labels: dict[str, str] | None = None
                ) -> list[tuple[str, str, str]]:
    """(source, key, title) of every panel: the trainer's diagnostics in the order of
    MASK_DIAGNOSTICS, then the method's, titled by `labels` (its MethodSpec.diagnostics) in that
    order, then any other key by name."""
    labels = labels or {}
    present = set(zip(diag["source"], diag["key"].replace({"grad_cosine_mean": "grad_cosine"})))
    panels = [("mask", k, v) for k, v in MASK_DIAGNOSTICS.items() if ("mask", k) in present]
    panels += [("strategy", k, v) for k, v in labels.items() if ("strategy", k) in present]
    listed = {(src, k) for src, k, _ in panels}
    return panels + [(src, k, k) for src, k in sorted(present - listed)]


def plot_mask_diagnostics(diag: pd.DataFrame, path: Path, title: str,
                          tasks: Sequence[str] | None = None,
                          labels: dict[str, str] | None = None) -> Path | None:
    """Every logged mask quantity over training, one panel each (`mask_panels`): a line per
    task, the all-task value dashed (the mean over tasks when none was logged)."""
    if diag.empty:
        return None
    diag = diag.replace({"key": {"grad_cosine_mean": "grad_cosine"}})
    keys = mask_panels(diag, labels)
    fig, axes = _grid(len(keys), width=4.0, height=2.8)
    for ax, (source, key, label) in zip(axes, keys):
        rows = diag[(diag["source"] == source) & (diag["key"] == key)]
        marker = "o" if rows["step"].nunique() < 4 else None  # a lone point has no line
        if TASK_ALL not in set(rows["task"]) and rows["task"].nunique() > 1:
            mean = rows.groupby("step", as_index=False)["value"].mean().assign(task=TASK_ALL)
            rows = pd.concat([rows, mean], ignore_index=True)
        for task, group in rows.groupby("task", sort=True):
            if task == TASK_ALL:
                ax.plot(group["step"], group["value"], "k--", lw=1.5, marker=marker,
                        label="all tasks")
            else:
                name = tasks[task] if tasks and task < len(tasks) else f"task {task}"
                ax.plot(group["step"], group["value"], lw=1, marker=marker, label=name)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # one legend for the figure: the union of lines
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6),
               fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig. 5

def _sweep_x(points: list[dict[str, Any]]) -> tuple[list[str], list[Any]]:
    """The keys that vary across a sweep's points, and each point's x value."""
    keys = [k for k in points[0] if len({repr(p.get(k)) for p in points}) > 1] or list(points[0])
    xs = [p.get(keys[0]) if len(keys) == 1 else " / ".join(str(p.get(k)) for k in keys)
          for p in points]
    return keys, xs


def _order(x: Any) -> tuple[int, Any]:
    """Numbers in numeric order, anything else after them as text."""
    return (0, x) if isinstance(x, (int, float)) else (1, str(x))


def plot_sweeps(df: pd.DataFrame, grid_runs: list[dict[str, Any]], path: Path,
                metric: str = "success") -> Path | None:
    """Fig. 5: the task-averaged `metric` against each swept value (mean ± std over seeds)."""
    means = df[(df["task"] == MEAN_TASK) & (df["metric"] == metric)].set_index("run")["value"]
    members: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for entry in grid_runs:
        for s in entry.get("sweeps", []):
            members.setdefault(s["name"], []).append((entry, s["point"]))
    if not members or means.empty:
        return None
    factor, ylabel = _scale(metric)
    fig, axes = _grid(len(members), width=3.6, height=2.8)
    for ax, (name, items) in zip(axes, members.items()):
        keys, xs = _sweep_x([p for _, p in items])
        rows = pd.DataFrame([
            {"x": x, "cell": f"{e['suite_label']} {e['quality']}",
             "value": means.get(e["name"], math.nan) * factor}
            for (e, _), x in zip(items, xs)]).dropna()
        numeric = rows["x"].map(lambda v: isinstance(v, (int, float))).all()
        for cell, group in rows.groupby("cell"):
            stats = group.groupby("x")["value"].agg(["mean", "std", "count"]).sort_index()
            x = stats.index.to_numpy() if numeric else np.arange(len(stats))
            ax.errorbar(x, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3,
                        label=cell)
            if not numeric:
                ax.set_xticks(x, [str(v) for v in stats.index], fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(", ".join(k.removeprefix("method.") for k in keys), fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Hyperparameter sweeps: {metric}, mean ± std over seeds", fontsize=10)
    return _save(fig, path)


SWEEP_MASK_KEYS = ("density", "soft_fraction", "top_fisher_masked")


def plot_sweep_masks(diags: dict[str, pd.DataFrame], grid_runs: list[dict[str, Any]],
                     path: Path, keys: Sequence[str] = SWEEP_MASK_KEYS) -> Path | None:
    """The masks of every sweep point in one figure: a row per sweep, a column per trainer
    diagnostic in `keys`, one line per swept value (its run in `diags`, the mean over tasks).
    It stands in for one full diagnostics figure per point, which a 25-point sweep makes
    unreadable side by side (and ~0.4 MB each)."""
    members: dict[str, list[tuple[str, Any]]] = {}
    for entry in grid_runs:
        for s in entry.get("sweeps", []):
            if entry["name"] in diags and not diags[entry["name"]].empty:
                members.setdefault(s["name"], []).append((entry["name"], s["point"]))
    if not members:
        return None
    fig = Figure(figsize=(3.6 * len(keys), 2.5 * len(members)), layout="constrained")
    axes = fig.subplots(len(members), len(keys), squeeze=False)
    for row, (name, items) in zip(axes, members.items()):
        swept, xs = _sweep_x([point for _, point in items])
        for ax, key in zip(row, keys):
            for (run, _), x in sorted(zip(items, xs), key=lambda item: _order(item[1])):
                diag = diags[run]
                rows = diag[(diag["source"] == "mask") & (diag["key"] == key)]
                if rows.empty:
                    continue
                mean = rows.groupby("step")["value"].mean()
                ax.plot(mean.index, mean.to_numpy(), lw=1, label=str(x))
            ax.set_title(f"{name}: {MASK_DIAGNOSTICS.get(key, key)}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=6, title=", ".join(k.removeprefix("method.") for k in swept),
                      title_fontsize=6)
        row[-1].set_xlabel("training step", fontsize=7)
    fig.suptitle("Masks across each sweep (mean over tasks, lowest seed)", fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------- profiles

def performance_profile(scores: np.ndarray, taus: np.ndarray, reps: int = 1000,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score distribution of a (runs, tasks) matrix: for each τ the fraction of runs scoring
    above τ, averaged over tasks (rliable's run-score distribution), with a 95% interval from a
    stratified bootstrap (runs resampled within each task)."""
    above = (scores[:, :, None] > taus[None, None, :]).mean(axis=0).mean(axis=0)
    rng = np.random.default_rng(seed)
    runs, tasks = scores.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    resampled = np.take_along_axis(scores[None].repeat(reps, 0), idx, axis=1)
    boot = (resampled[..., None] > taus).mean(axis=(1, 2))
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    return above, low, high


def plot_profiles(df: pd.DataFrame, path: Path, metric: str = "success", seed: int = 0,
                  reps: int = 1000, colours: dict[str, str] | None = None) -> Path | None:
    """Performance profiles per cell: fraction of runs with per-task score > τ, per method."""
    data = df[(df["metric"] == metric) & (df["task"] != MEAN_TASK)]
    if data.empty:
        return None
    colours = method_colours(data["method"]) if colours is None else colours
    factor, xlabel = _scale(metric)
    cells = data[["suite", "quality", "protocol"]].drop_duplicates().sort_values(
        ["suite", "quality"], key=lambda s: order_key(s.name)(s))
    top = float(data["value"].max()) if metric != "success" else 1.0
    taus = np.linspace(0.0, max(top, 1e-9), 101)
    fig, axes = _grid(len(cells))
    for ax, cell in zip(axes, cells.itertuples(index=False)):
        here = data[(data["suite"] == cell.suite) & (data["quality"] == cell.quality)
                    & (data["protocol"] == cell.protocol)]
        for method in sorted_names(here["method"], "method"):
            matrix = here[here["method"] == method].pivot_table(
                index="seed", columns="task", values="value", aggfunc="mean").dropna(axis=1)
            frac, low, high = performance_profile(matrix.to_numpy(), taus, reps, seed)
            colour = _colour(colours, method)
            ax.step(taus * factor, frac, where="post", label=f"{method} (n={len(matrix)})",
                    color=colour)
            ax.fill_between(taus * factor, low, high, step="post", alpha=0.15, color=colour)
        ax.set_title(f"{cell.suite} {cell.quality}", fontsize=9)
        ax.set_xlabel(f"τ ({xlabel})")
        ax.set_ylabel("fraction of runs with score > τ")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Performance profiles (per-task {metric}; 95% stratified-bootstrap band, "
                 f"seed {seed})", fontsize=10)
    return _save(fig, path)


def task_scaling(df: pd.DataFrame, metric: str = "success",
                 confidence: float = 0.95) -> pd.DataFrame:
    """Per quality, protocol, method and number of tasks: the mean over seeds of the
    task-averaged score, the seeds behind it and the half-width of its t-interval (0 for one
    seed). Only (quality, protocol) groups that span at least two task counts are kept."""
    from scipy import stats as sps

    runs = seed_scores(df, metric)
    runs = runs[runs["n_tasks"] > 0]
    spans = runs.groupby(["quality", "protocol"])["n_tasks"].transform("nunique")
    cells = runs[spans > 1].groupby(["quality", "protocol", "method", "n_tasks"], sort=False)
    out = cells["value"].agg(mean="mean", n="size", sem="sem").reset_index()
    t = sps.t.ppf(0.5 + confidence / 2, (out["n"] - 1).clip(lower=1))
    out["half"] = (out.pop("sem") * t).fillna(0.0)
    return out


def plot_task_scaling(df: pd.DataFrame, path: Path, metric: str = "success",
                      confidence: float = 0.95, colours: dict[str, str] | None = None
                      ) -> Path | None:
    """Success against the number of tasks (e.g. MT5, MT30, MT50 reported together): one panel
    per data quality, one line per method with its t-interval (`task_scaling`). None unless the
    results span at least two task counts of one protocol and quality."""
    table = task_scaling(df, metric, confidence)
    if table.empty:
        return None
    factor, ylabel = _scale(metric)
    panels = list(table.groupby(["quality", "protocol"], sort=False))
    fig, axes = _grid(len(panels), width=4.8)
    colours = method_colours(table["method"]) if colours is None else colours
    for ax, ((quality, protocol), here) in zip(axes, panels):
        for method in sorted_names(here["method"].unique(), "method"):
            line = here[here["method"] == method].sort_values("n_tasks")
            ax.errorbar(line["n_tasks"], line["mean"] * factor, yerr=line["half"] * factor,
                        marker="o", capsize=3, label=method,
                        color=_colour(colours, method))
        ax.set_xticks(sorted(here["n_tasks"].unique()))
        ax.set_title(f"{quality} [{protocol}], {here['n'].min()}-{here['n'].max()} seeds "
                     "per point", fontsize=9)
        ax.set_xlabel("number of tasks")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), fontsize=7, loc="center left",
               bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{metric} against the number of tasks: mean over seeds, "
                 f"{confidence:.0%} t-interval", fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------- entry points

def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> tuple[list[Path], bool]:
    """Mask diagnostics and training curve of one run; returns (paths, whether it has masks)."""
    from mtrl_bench.results import mask_diagnostics, run_curve
    from mtrl_bench.runs import RunDir

    run = RunDir(Path(run_dir))
    cfg = run.config()
    out = Path(out_dir) if out_dir else run.path / "plots"
    title = f"{cfg.method} · {cfg.suite} {cfg.quality} · seed {cfg.seed} ({run.path.name})"
    paths = [plot_loss(run_curve(run.path), out / "training.png", title)]
    diag = mask_diagnostics(run.path)
    tasks = _suite_tasks(cfg.suite)
    paths.append(plot_mask_diagnostics(diag, out / "masks.png", title, tasks,
                                       method_panels(cfg.method)))
    return [p for p in paths if p is not None], not diag.empty


def _suite_tasks(suite: str) -> list[str] | None:
    try:
        from mtrl_bench_envs.suites import get_suite

        return [t.removesuffix("-v3") for t in get_suite(suite).tasks]
    except ValueError:
        return None


ACTIVITY_PANELS = {"density": "density (share with M = 1)",
                   "conflict_size": "conflict set per update (share of entries)",
                   "recover_size": "recover set per update (share of entries)"}


# line styles of the cells of a mask-activity figure (a joint report has five or six)
DASHES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)),
          (0, (3, 1, 3, 1, 1, 1))]


def plot_mask_activity(trajectories: pd.DataFrame, path: Path,
                       colours: dict[str, str] | None = None) -> Path | None:
    """What the masks did over training, per masked method: density and, for strategies that
    report them, conflict and recover set sizes (means over tasks and seeds; one colour per
    method, one line style per cell, each named once in a legend beside the panels). None when
    no run has masks."""
    from matplotlib.lines import Line2D

    if trajectories.empty:
        return None
    keys = [k for k in ACTIVITY_PANELS if k in set(trajectories["key"])]
    fig, axes = _grid(len(keys), width=5.0)
    cells = [tuple(c) for c in trajectories[["suite", "quality", "protocol"]]
             .drop_duplicates().to_numpy()]
    styles = {c: DASHES[i % len(DASHES)] for i, c in enumerate(cells)}
    methods = sorted_names(trajectories["method"], "method")
    colours = method_colours(methods) if colours is None else colours
    for ax, key in zip(axes, keys):
        data = trajectories[trajectories["key"] == key]
        for (method, suite, quality, protocol), g in data.groupby(
                ["method", "suite", "quality", "protocol"], sort=False):
            mean = g.groupby("step")["value"].mean()
            ax.plot(mean.index, mean.to_numpy(), linestyle=styles[suite, quality, protocol],
                    color=_colour(colours, method), label=method)
        ax.set_title(ACTIVITY_PANELS[key], fontsize=9)
        ax.set_xlabel("training step")
        if key != "density":
            ax.set_yscale("symlog", linthresh=1e-5)
    several = len({c[2] for c in cells}) > 1
    handles = [Line2D([], [], color=_colour(colours, m), label=m) for m in methods] + [
        Line2D([], [], color="grey", linestyle=styles[c],
               label=f"{c[0]} {c[1]}" + (f" [{c[2]}]" if several else "")) for c in cells]
    fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def plot_experiment(experiment_dirs: str | Path | Sequence[str | Path], df: pd.DataFrame,
                    out_dir: str | Path | None = None, seed: int = 0,
                    runs: set[str] | None = None,
                    colours: dict[str, str] | None = None) -> list[Path]:
    """Every plot of one experiment (or of several reported together): curves, profiles, and
    for sweeps their results and the masks of every point (lowest seed) in one figure. A run's
    own diagnostics are `plot_run`'s (`mtrl-bench plot`, on demand): one figure per run would
    weigh more than the run's stored results."""
    from mtrl_bench.grid import read_grid
    from mtrl_bench.results import mask_diagnostics, run_folders, training_curves

    dirs = ([Path(experiment_dirs)] if isinstance(experiment_dirs, (str, Path))
            else [Path(d) for d in experiment_dirs])
    out = Path(out_dir) if out_dir else dirs[0] / "plots"
    curves = training_curves(*dirs)
    if runs is not None:  # a selection of the folders' runs (a comparison)
        curves = curves[curves["run"].isin(runs)]
    colours = method_colours(df["method"]) if colours is None else colours
    paths = [plot_curves(curves, out / "curves_success.png", colours=colours),
             plot_profiles(df, out / "profile_success.png", seed=seed, colours=colours),
             plot_task_scaling(df, out / "success_vs_tasks.png", colours=colours)]
    if "return" in set(df["metric"]):
        paths.append(plot_curves(curves, out / "curves_return.png", metric="return",
                                 colours=colours))
    grid_runs = [e for d in dirs for e in (read_grid(d) or {}).get("runs", [])
                 if runs is None or e["name"] in runs]
    swept = {e["name"] for e in grid_runs if e.get("sweeps")}
    if swept:
        paths.append(plot_sweeps(df, grid_runs, out / "sweeps_success.png"))
        folders = {name: path for name, (_, path) in run_folders(*dirs).items()}
        first = df.sort_values("seed").drop_duplicates(["method", "suite", "quality", "protocol"])
        diags = {r: mask_diagnostics(folders[r]) for r in first["run"] if r in swept & set(folders)}
        paths.append(plot_sweep_masks(diags, grid_runs, out / "sweeps_masks.png"))
    return [p for p in paths if p is not None]


__all__ = ["method_colours", "performance_profile", "plot_curves", "plot_experiment", "plot_loss",
           "mask_panels", "method_panels", "plot_mask_activity", "plot_mask_diagnostics",
           "plot_profiles", "plot_run", "plot_task_scaling", "task_scaling",
           "plot_sweep_masks", "plot_sweeps"]
