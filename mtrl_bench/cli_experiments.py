"""The `run`, `report` and `plot` subcommands: experiments end to end, reports, run plots."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_EXPERIMENT = "quick"
RESULTS_ROOT = Path("results")


def _report(experiment_dir: Path, reference: str, out: Path | None = None,
            quiet: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Results table, report and plots of an experiment directory; prints what is missing."""
    from mtrl_bench.plots import plot_experiment
    from mtrl_bench.report import write_report
    from mtrl_bench.results import collect

    df, problems = collect(experiment_dir)
    out = out or experiment_dir
    if problems:
        print(f"{len(problems)} problem(s) in {experiment_dir}:")
        print("\n".join(f"  - {p}" for p in problems))
    if df.empty:
        raise ValueError(f"{experiment_dir}: no finished run to report"
                         + (f" ({len(problems)} unfinished, listed above)" if problems else
                            " (no run directories found)"))
    out.mkdir(parents=True, exist_ok=True)
    from mtrl_bench_envs.common import atomic_write

    atomic_write(out / "results.csv", df.to_csv(index=False))
    files = [out / "results.csv", *write_report(df, out, reference=reference)]
    if problems:  # the report says which runs it lacks, not only the terminal
        section = "\n## Runs without results\n\n" + "".join(f"- {p}\n" for p in problems)
        atomic_write(out / "report.md", (out / "report.md").read_text() + section)
    files += plot_experiment(experiment_dir, df, out / "plots")
    if not quiet:
        print(f"wrote {len(files)} files into {out}: "
              + ", ".join(str(f.relative_to(out)) for f in files[:8])
              + (" ..." if len(files) > 8 else ""))
    return df, problems


def cmd_run(args: argparse.Namespace) -> int:
    from mtrl_bench import grid, harness
    from mtrl_bench.config import parse_overrides
    from mtrl_bench.report import comparison_text

    exp = grid.with_overrides(grid.load_experiment(args.experiment), args.profile,
                              parse_overrides(args.set))
    out = (args.out or RESULTS_ROOT / exp.name).resolve()
    # grid.json lists the whole grid, so a report after --only-method says what is still missing
    runs = grid.expand(exp, out / "runs", device=args.device)
    grid.write_grid(exp, runs, out)
    if args.only_method:  # expanded again to check the names (with suggestions)
        runs = grid.expand(exp, out / "runs", only_methods=args.only_method, device=args.device)
    print(f"experiment '{exp.name}' ({exp.source}): {len(runs)} runs -> {out}"
          + (f"\n  {exp.description}" if exp.description else ""))
    t0 = time.time()
    workers = args.workers or harness.default_workers(args.device)
    summaries = harness.run_grid(runs, out / "runs", executor=args.executor,
                                 workers=workers, threads=args.threads,
                                 address=args.address, data_dir=args.data_dir,
                                 progress=not args.quiet)
    from mtrl_bench.reference import ensure_references

    try:  # the runs are recorded already; a failed reference leaves only its rows out
        ensure_references([r for r in runs if r.seed in exp.reference_seeds], out,
                          data_dir=args.data_dir, progress=not args.quiet)
    except Exception as exc:
        print(f"warning: BC references not computed: {exc}", file=sys.stderr)
    wall = time.time() - t0
    from mtrl_bench.runs import write_json

    write_json(out / "summary.json", {"experiment": exp.name, "executor": args.executor,
                                      "workers": workers, "wall_seconds": round(wall, 1),
                                      "runs": summaries})
    counts = {s: sum(x["state"] == s for x in summaries) for s in harness.STATES}
    print("runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + f" in {wall:.0f} s")
    for s in summaries:
        if s["state"] in ("failed", "locked"):
            print(f"  {s['state']}: {s['run']}: {s.get('error', '')}")
    df, _ = _report(out, args.reference, quiet=args.quiet)
    print()
    print(comparison_text(df, args.reference))
    print(f"\nreport: {out / 'report.md'}")
    return 1 if counts["failed"] else 0


def cmd_report(args: argparse.Namespace) -> int:
    experiment_dir = Path(args.experiment_dir)
    if not experiment_dir.is_dir():
        raise FileNotFoundError(f"no such experiment directory: {experiment_dir}")
    df, _ = _report(experiment_dir, args.reference, out=args.out)
    from mtrl_bench.report import comparison_text
    print()
    print(comparison_text(df, args.reference))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from mtrl_bench.plots import plot_run
    from mtrl_bench.plugins import registry
    from mtrl_bench.runs import RunDir

    paths, has_masks = plot_run(Path(args.run_dir), args.out)
    if not has_masks:
        method = RunDir(Path(args.run_dir)).config().method
        known = method in registry().methods
        why = ("has no parameter masks" if known and registry().method(method).spec.strategy
               is None else "logged no mask update yet")
        print(f"{args.run_dir}: no mask diagnostics: method '{method}' {why}; only the "
              "training curve is drawn")
    if not paths:
        raise ValueError(f"{args.run_dir}: nothing to plot yet (no metrics logged)")
    print("\n".join(str(p) for p in paths))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run an experiment grid, then report it",
                       description="Run every run of an experiment (skipping finished ones, "
                       "resuming interrupted ones), then write the results table, the report "
                       "and the plots into the experiment directory.")
    p.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT,
                   help="a built-in experiment (quick, methods, table1-4, fig5) or a .toml file "
                   f"(default: {DEFAULT_EXPERIMENT})")
    p.add_argument("--workers", type=int,
                   help="runs at a time, each with cores // workers torch threads (default: one "
                   "per core on CPU, 1 with a GPU; each holds its datasets in memory)")
    p.add_argument("--threads", type=int,
                   help="torch threads per run (default: cores // workers)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--out", type=Path, help="experiment directory (default: results/<name>)")
    p.add_argument("--data-dir", type=Path, help="dataset root (default: $MTRL_BENCH_DATA)")
    p.add_argument("--only-method", action="append", metavar="METHOD",
                   help="run only this method of the grid (repeatable)")
    p.add_argument("--profile", help="override the experiment's profile (smoke | cpu | paper)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field in every run (changes the runs' identity)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--reference", default="socodt", help="method the others are tested against")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="results table, report and plots of an experiment dir")
    p.add_argument("experiment_dir")
    p.add_argument("--reference", default="socodt")
    p.add_argument("--out", type=Path, help="where to write (default: the experiment dir)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plot", help="mask diagnostics and training curve of one run (PNG)")
    p.add_argument("run_dir")
    p.add_argument("--out", type=Path, help="where to write (default: RUN_DIR/plots)")
    p.set_defaults(func=cmd_plot)


__all__ = ["add_parsers"]
