"""An experiment from grid to report: the one place that runs an experiment.

`run_experiment` expands the grid (`grid`), says what it will cost (`cost`), executes the runs that
are missing (`harness`), computes the BC references and writes the report; `write_report_files`
reports any experiment directories (one, or several as one). The `mtrl-bench run` and `report`
commands, a notebook and a comparison of a new method all call these; none of them prints a table
itself (the CLI does); `run_experiment` says what it is doing through `say`.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtrl_bench.config import Execution
from mtrl_bench.grid import MAX_RUNS, Experiment, GridRun

if TYPE_CHECKING:
    import pandas as pd

Say = Callable[[str], None]


def choose_reference(asked: str | None, methods: Sequence[str]) -> str:
    """The method the others are tested against: the one asked for (it must be among
    `methods`), else the paper's when present, else the first of `methods`."""
    from mtrl_bench.paper import paper
    from mtrl_bench_envs.common import unknown_name_message

    methods = list(methods)
    if asked is not None:
        if asked not in methods:
            raise ValueError("--reference: " + unknown_name_message("method", asked, methods))
        return asked
    return paper().reference if paper().reference in methods or not methods else methods[0]


def write_report_files(dirs: Sequence[Path], reference: str | None, out: Path | None = None,
                       quiet: bool = False, checked: bool = False,
                       keep: Callable[[pd.DataFrame], pd.DataFrame] | None = None
                       ) -> tuple[pd.DataFrame, list[str], str]:
    """Results table, report and plots of experiment directories (several: one joint report
    into `out`); says what is missing. Returns (results, problems, the reference used);
    `checked`: the reference was already checked against the experiment's methods (its runs
    may all have failed). `keep` selects the rows to report (e.g. a comparison's runs among
    folders holding more); then only the first folder's problems are said."""
    from mtrl_bench.plots import method_colours, plot_experiment, plot_mask_activity
    from mtrl_bench.report import write_report
    from mtrl_bench.results import collect, mask_activity, provenance
    from mtrl_bench_envs.common import atomic_write

    dirs = list(dirs)
    where = ", ".join(map(str, dirs))
    df, problems = collect(*dirs)
    if keep is not None:
        df = keep(df)
        problems = [p for p in problems if len(dirs) == 1 or p.startswith(f"{dirs[0]}: ")]
    out = out or dirs[0]
    if problems:  # said even when quiet
        print(f"{len(problems)} problem(s) in {where}:")
        print("\n".join(f"  - {p}" for p in problems))
    if df.empty:
        raise ValueError(f"{where}: no finished run to report"
                         + (f" ({len(problems)} problem(s), listed above)" if problems else
                            " (no run directories found)"))
    if not checked:
        reference = choose_reference(reference, sorted(set(df["method"])))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.csv", df.to_csv(index=False))
    if not (out / "report.md").exists():  # the folder is a report's from now on: if writing the
        # rest fails, running the command again may write into it (and replaces this)
        atomic_write(out / "report.md", "# mtrl-bench report\n\nNot written: the command that "
                     "writes this report stopped before the end. Run it again.\n")
    activity, trajectories = mask_activity(*dirs)
    label = dict(zip(df["run"], df["method"]))  # as reported (collect may rename a variant)
    activity = activity[activity["run"].isin(label)].assign(
        method=lambda a: a["run"].map(label))  # the finished runs reported
    trajectories = trajectories[trajectories["run"].isin(label)].assign(
        method=lambda t: t["run"].map(label))
    atomic_write(out / "mask_activity.csv", activity.to_csv(index=False))
    colours = method_colours(df["method"])  # a method's colour, the same in every figure
    figures = plot_experiment(dirs, df, out / "plots", runs=set(df["run"]) if keep else None,
                              colours=colours)
    figures += [p for p in [plot_mask_activity(trajectories, out / "plots" / "mask_activity.png",
                                               colours)]
                if p is not None]
    command = " ".join(["mtrl-bench report", *map(str, dirs), "--out", str(out),
                        "--reference", reference])
    files = [out / "results.csv", out / "mask_activity.csv",
             *write_report(df, out, reference=reference, activity=activity, figures=figures,
                           provenance=provenance(*dirs, runs=set(df["run"])), notes=problems,
                           command=command),
             *figures]
    if problems:  # the report says which runs it lacks, not only the terminal
        section = "\n## Notes on the runs\n\n" + "".join(f"- {p}\n" for p in problems)
        atomic_write(out / "report.md", (out / "report.md").read_text() + section)
    if not quiet:
        print(f"wrote {len(files)} files into {out}: "
              + ", ".join(str(f.relative_to(out)) for f in files[:8])
              + (" ..." if len(files) > 8 else ""))
    return df, problems, reference


@dataclass
class Outcome:
    """What running an experiment did."""

    runs: list[GridRun]  # the runs asked for (all of the grid, or --only-method's)
    summaries: list[dict[str, Any]]  # one per run: state, seconds, error
    results: pd.DataFrame | None  # the report's rows (None: not reported)
    reference: str
    wall_seconds: float

    @property
    def counts(self) -> dict[str, int]:
        from mtrl_bench.harness import STATES

        return {s: sum(x["state"] == s for x in self.summaries) for s in STATES}

    @property
    def unfinished(self) -> int:
        c = self.counts
        return c["failed"] + c["locked"] + c["interrupted"]


def run_experiment(exp: Experiment, out: Path, execution: Execution, *, workers: int,
                   executor: str = "local", address: str | None = None,
                   gpus_per_run: float | None = None, storage: str | None = None,
                   reference: str | None = None,
                   only_methods: Sequence[str] | None = None, max_runs: int = MAX_RUNS,
                   say: Say = print, report: bool = True) -> Outcome:
    """Run what is missing of `exp` into `out` (a folder `outputs.claim` accepted), compute
    its BC references and write its report (unless `report` is False: the caller reports)."""
    from mtrl_bench import grid, harness
    from mtrl_bench.api import Run
    from mtrl_bench.cost import PACKAGE_RESULTS, estimate
    from mtrl_bench.reference import ensure_references
    from mtrl_bench.runs import RunDir, write_json

    reference = choose_reference(reference, exp.methods)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    # grid.json lists the whole grid, so a report after --only-method says what is still missing
    everything = grid.expand(exp, out / "runs", max_runs=max_runs)
    runs = (grid.expand(exp, out / "runs", only_methods=only_methods,  # checks the names
                        max_runs=max_runs)
            if only_methods else everything)
    grid.write_grid(exp, everything, out)
    say(f"experiment '{exp.name}' ({exp.source}): {len(runs)} runs -> {out}"
        + (f"\n  {exp.description}" if exp.description else ""))
    todo = [r.config.to_dict() for r in runs if not RunDir(out / "runs" / r.name).complete]
    if todo:
        say("  cost: " + estimate(todo, [PACKAGE_RESULTS, out]).describe(workers))
    t0 = time.time()
    summaries = harness.run_grid(runs, out / "runs", executor=executor, workers=workers,
                                 execution=execution, address=address,
                                 gpus_per_run=gpus_per_run, storage=storage)
    try:  # the runs are recorded already; a failed reference leaves only its rows out
        ensure_references([r for r in runs if r.seed in exp.reference_seeds], out,
                          data_dir=execution.data_dir, progress=execution.progress,
                          threads=execution.threads or harness.default_threads(workers))
    except Exception as exc:
        print(f"warning: BC references not computed: {exc}", file=sys.stderr)
    wall = time.time() - t0
    write_json(out / "summary.json", {"experiment": exp.name, "executor": executor,
                                      "workers": workers, "wall_seconds": round(wall, 1),
                                      "runs": summaries})
    outcome = Outcome(runs, summaries, None, reference, wall)
    say("runs: " + ", ".join(f"{n} {s}" for s, n in outcome.counts.items() if n)
        + f" in {wall:.0f} s")
    for s in summaries:
        if s["state"] in ("failed", "locked"):
            say(f"  {s['state']}: {s['run']}: {s.get('error', '')}")
    stale = [r.name for r in runs if Run(r.config, execution, RunDir(out / "runs" / r.name)
                                         ).stale_code()]
    if stale:
        import warnings

        warnings.warn(f"{len(stale)} finished run(s) were trained with another version of their "
                      f"method's code (first: {stale[0]}); delete them to retrain", stacklevel=2)
    if report:
        outcome.results, _, _ = write_report_files([out], reference, checked=True,
                                                   quiet=not execution.progress)
    return outcome


__all__ = ["Outcome", "choose_reference", "run_experiment", "write_report_files"]
