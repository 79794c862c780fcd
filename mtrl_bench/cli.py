"""The `mtrl-bench` command: each subcommand parses, calls the API and prints (runs: `api.Run`;
experiments: `experiment`; tables: `results`, `report`, `plots`)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import NoReturn

from tabulate import tabulate

from mtrl_bench.outputs import claim

DEFAULT_RUNS = Path("runs")


def cmd_methods(args: argparse.Namespace) -> int:
    from mtrl_bench.plugins import registry

    reg = registry()
    rows = [(name, m.distribution, ", ".join(sorted(m.spec.capabilities)) or "-",
             m.spec.description) for name, m in sorted(reg.methods.items())]
    print(tabulate(rows, headers=["method", "from", "capabilities", "description"]))
    return 0  # plugins that failed to load were already warned about, by name


def _print_eval(result: dict) -> None:
    rows = [(task, f"{100 * r['success']:.1f}", f"{r['return']:.1f}", r["episodes"])
            for task, r in result["tasks"].items()]
    rows.append(("mean", f"{100 * result['success']:.1f}", f"{result['return']:.1f}", ""))
    print(tabulate(rows, headers=["task", "success %", "return", "episodes"]))


def _execution(args: argparse.Namespace) -> dict:
    """Execution settings given on the command line (the profile's apply to the rest)."""
    given = {"device": args.device, "threads": args.threads, "amp": args.amp,
             "eval_workers": args.eval_workers,
             "data_dir": str(args.data_dir) if args.data_dir else None,
             "progress": False if args.quiet else None}
    return {k: v for k, v in given.items() if v is not None}


def cmd_train(args: argparse.Namespace) -> int:
    from mtrl_bench.api import Run
    from mtrl_bench.config import parse_overrides
    from mtrl_bench.paper import paper
    from mtrl_bench.runs import read_json

    overrides = parse_overrides(args.set)
    if args.steps is not None:
        overrides["train.steps"] = str(args.steps)
    method = args.method or paper().default_method
    if args.out is not None:
        claim(args.out, "run")
    run = Run.prepare(method, args.suite, args.quality, args.seed, args.profile, overrides,
                      execution=_execution(args), out=args.out, runs_root=args.runs)
    if run.complete:
        print(f"run already complete: {run.dir.path} (delete it to retrain)")
        stale = run.stale_code()
        if stale:
            warnings.warn(stale, stacklevel=1)
        _print_eval(read_json(run.dir.eval_path))
        return 0
    if run.dir.checkpoint_path.exists() and not args.resume:
        raise ValueError(f"{run.dir.path} holds an unfinished run; pass --resume to continue it")
    result = run.train(resume=args.resume)
    _print_eval(result)
    print(f"run: {run.dir.path}  (train {result['train_seconds']:.0f}s, "
          f"eval {result['seconds']:.0f}s)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from mtrl_bench.api import Run
    from mtrl_bench.config import build_execution
    from mtrl_bench.runs import RunDir

    profile = RunDir(Path(args.run_dir)).config().profile
    run = Run.open(Path(args.run_dir), build_execution(profile, _execution(args)))
    result = run.evaluate(episodes=args.episodes)
    _print_eval(result)
    if not run.complete:
        print(f"note: {run.dir.path} is not finished: this evaluated its last checkpoint, at step "
              f"{result['step']} of {run.config.train.steps}")
    return 0


def add_execution_options(p: argparse.ArgumentParser) -> None:
    """How runs execute: never part of a run's identity (its directory name)."""
    g = p.add_argument_group("execution (recorded in the run's manifest, not in its name)")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: auto)")
    g.add_argument("--threads", type=int, help="torch threads per run (default: all cores for "
                   "one run, cores // workers in a grid; the smoke profile: 1)")
    g.add_argument("--eval-workers", type=int, metavar="N",
                   help="processes stepping the evaluation envs (default: as many as the run's "
                   "threads; results do not depend on it)")
    g.add_argument("--amp", help="bf16 autocast: auto | bf16 | none (default: the profile's, "
                   "else auto: bf16 where the hardware has it; the cpu profile: none)")
    g.add_argument("--data-dir", type=Path,
                   help="dataset root (default: $MTRL_BENCH_DATA, else ~/.cache/mtrl-bench)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


DEFAULT_EXPERIMENT = "quick"
# A user's experiments go where git ignores them; committed evidence (results/) only by --out.
EXPERIMENTS_ROOT = Path("runs")


def cmd_run(args: argparse.Namespace) -> int:
    from mtrl_bench import grid, harness
    from mtrl_bench.config import build_execution, parse_overrides, split_overrides
    from mtrl_bench.experiment import run_experiment
    from mtrl_bench.report import comparison_text

    if (args.suite or args.seed) and not args.out:
        raise ValueError("--suite/--seed change the experiment's grid: give --out (its own "
                         "directory keeps the grid it was run with)")
    overrides, settings = split_overrides(parse_overrides(args.set))
    exp = grid.with_overrides(grid.load_experiment(args.experiment), args.profile, overrides,
                              args.suite or (), args.seed or ())
    execution = build_execution(exp.profile, {**settings, **_execution(args)})
    out = claim((args.out or EXPERIMENTS_ROOT / exp.name).resolve(), "experiment", exp.name)
    if args.storage and args.executor != "ray":
        raise ValueError("--storage is for --executor ray (locally, runs keep their checkpoints "
                         "in their folders)")
    if args.gpus_per_run is not None and args.executor != "ray":
        raise ValueError("--gpus-per-run is for --executor ray (locally, --workers sets the "
                         "runs at a time)")
    workers = args.workers if args.workers is not None else harness.default_workers(
        execution.device)
    outcome = run_experiment(exp, out, execution, workers=workers, executor=args.executor,
                             address=args.address, gpus_per_run=args.gpus_per_run,
                             storage=args.storage, reference=args.reference,
                             only_methods=args.only_method,
                             max_runs=args.max_runs or grid.MAX_RUNS)
    print()
    print(comparison_text(outcome.results, outcome.reference))
    print(f"\nreport: {out / 'report.md'}")
    if outcome.unfinished:
        print(f"mtrl-bench: error: {outcome.unfinished} run(s) did not finish (failed, locked by "
              "another process, or interrupted): the report is incomplete; rerun to continue",
              file=sys.stderr)
        return 1
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mtrl_bench import harness
    from mtrl_bench.compare import compare
    from mtrl_bench.config import build_execution, parse_overrides, split_overrides
    from mtrl_bench.report import comparison_text

    overrides, settings = split_overrides(parse_overrides(args.set))
    execution = build_execution(args.profile, {**settings, **_execution(args)})
    out = claim((args.out or EXPERIMENTS_ROOT / f"compare-{args.method}").resolve(),
                "experiment", f"compare-{args.method}")
    workers = args.workers if args.workers is not None else harness.default_workers(
        execution.device)
    result = compare(args.method, out, execution, suites=args.suite or ["mt5"],
                     qualities=args.quality or ["near-optimal", "sub-optimal"],
                     seeds=args.seed or list(range(5)), profile=args.profile,
                     overrides=overrides, against=args.against, references=args.references,
                     train_references=args.train_references, workers=workers,
                     executor=args.executor)
    print()
    print(comparison_text(result.results, result.reference))
    activity = result.report.parent / "mask_activity.csv"
    print("\n" + _activity_text(activity))
    print(f"\nreport: {result.report}")
    if result.unfinished:
        print(f"mtrl-bench: error: {result.unfinished} of your runs did not finish: the "
              "comparison is incomplete; rerun to continue", file=sys.stderr)
        return 1
    return 0


def _activity_text(path: Path) -> str:
    """Did each masked method's masks move? Density at the start and end, per cell."""
    import pandas as pd

    act = pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()
    if act.empty:
        return "mask activity: no masked method in this comparison"
    rows = []
    for (method, suite, quality), g in act.groupby(["method", "suite", "quality"], sort=False):
        rows.append([method, suite, quality, len(g),
                     f"{g['density_initial'].mean():.3f} -> {g['density_final'].mean():.3f}",
                     "inert: masks barely moved" if g["inert"].all() else "masks moved"])
    return "mask activity\n" + tabulate(rows, headers=["method", "suite", "quality", "seeds",
                                                      "density", ""])


def cmd_report(args: argparse.Namespace) -> int:
    dirs = [Path(d) for d in args.experiment_dir]
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"no such experiment directory: {d}")
    if len(dirs) > 1 and args.out is None:
        raise ValueError(f"{len(dirs)} experiment directories reported as one need --out "
                         "(a directory of its own for the joint report)")
    from mtrl_bench.report import comparison_text

    if args.out is not None:
        claim(args.out, "report")
    from mtrl_bench.experiment import write_report_files

    df, _, reference = write_report_files(dirs, args.reference, out=args.out)
    print()
    print(comparison_text(df, reference))
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


def cmd_compact(args: argparse.Namespace) -> int:
    from mtrl_bench.compact import compact

    print(compact(*args.dirs))
    return 0


def add_experiment_parsers(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--gpus-per-run", type=float, metavar="G",
                   help="Ray: GPUs each run reserves (default: 1 when the cluster has GPUs and "
                   "--device is not cpu; 0.5 puts two runs on a GPU)")
    p.add_argument("--storage", metavar="URI",
                   help="Ray: where workers put checkpoints (a path, s3://..., gs://...), so a "
                   "run whose node died resumes on another; without it, workers send their "
                   "runs' small files back and keep checkpoints to themselves")
    p.add_argument("--out", type=Path, help="experiment directory (default: runs/<name>, which "
                   "git ignores; committed evidence goes to results/<name> only when asked)")
    p.add_argument("--only-method", action="append", metavar="METHOD",
                   help="run only this method of the grid (repeatable)")
    p.add_argument("--max-runs", type=int, metavar="N",
                   help="refuse a grid of more runs than this (default 10,000)")
    p.add_argument("--profile", help="override the experiment's profile (smoke | cpu | paper)")
    p.add_argument("--suite", action="append", metavar="SUITE",
                   help="run these suites instead of the experiment's (repeatable)")
    p.add_argument("--seed", action="append", type=int, metavar="SEED",
                   help="run these seeds instead of the experiment's (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field in every run (changes the runs' identity)")
    p.add_argument("--reference", help="method the others are tested against (default: the "
                   "paper's, mtrl_bench/paper/paper.toml)")
    add_execution_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="your method against reference runs of the same "
                       "protocol (default: the committed ones): trains only what is missing",
                       description="Train the runs of METHOD that are missing (suites x "
                       "qualities x seeds at --profile, with --set overrides), find the finished "
                       "reference runs of exactly that protocol (apart from method and seed) "
                       "in --against (default: the clone's results/), and report METHOD "
                       "against each reference method: mean ± std, Welch and exact permutation "
                       "p, Holm over the family, IQM, probability of improvement, the BC floors "
                       "and whether masks moved. Refuses, naming the differing fields, when no "
                       "reference run shares the protocol.")
    p.add_argument("method")
    p.add_argument("--suite", action="append", metavar="SUITE", help="(repeatable; default mt5)")
    p.add_argument("--quality", action="append", metavar="QUALITY",
                   help="(repeatable; default: near-optimal and sub-optimal)")
    p.add_argument("--seed", action="append", type=int, metavar="SEED",
                   help="(repeatable; default 0-4: 4 seeds a side are the fewest for a mark at "
                   "p < 0.05 with the exact test)")
    p.add_argument("--profile", default="cpu", help="smoke | cpu | paper (default: cpu)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field of your method's runs (e.g. method.alpha=10)")
    p.add_argument("--against", action="append", type=Path, metavar="DIR",
                   help="experiment folders holding reference runs (repeatable; default: every "
                   "experiment under results/)")
    p.add_argument("--references", nargs="+", metavar="METHOD",
                   help="the reference methods (default: every base method found; with "
                   "--train-references: socodt harmodt-f prompt-dt)")
    p.add_argument("--train-references", action="store_true",
                   help="train the reference methods' missing runs too, beside yours")
    p.add_argument("--workers", type=int, help="runs at a time (default: one per core)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--out", type=Path, help="your runs and the comparison (default: "
                   "runs/compare-METHOD)")
    add_execution_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="results table, report and plots of an experiment dir "
                       "(several: one joint report, e.g. Table 1's MT5 and MT30 grids)")
    p.add_argument("experiment_dir", nargs="+")
    p.add_argument("--reference", help="method the others are tested against (default: the "
                   "paper's)")
    p.add_argument("--out", type=Path, help="where to write (default: the experiment dir; "
                   "required with several)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plot", help="mask diagnostics and training curve of one run (PNG)")
    p.add_argument("run_dir")
    p.add_argument("--out", type=Path, help="where to write (default: RUN_DIR/plots)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("compact", help="shrink stored runs: gzip finished runs' metrics, drop "
                       "per-run PNGs (idempotent)",
                       description="For every finished run under the directories given: gzip "
                       "its metrics.jsonl, store per-task mean gradient cosines in place of the "
                       "N x N matrices older runs logged, and delete its per-run PNGs "
                       "(`mtrl-bench plot` draws them on demand). Reports read the same numbers "
                       "before and after; unfinished runs are left alone; running it again "
                       "changes nothing.")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="experiment directories, folders of runs or runs")
    p.set_defaults(func=cmd_compact)


def _list_methods_in_help(p: argparse.ArgumentParser) -> None:
    """`--help` ends with the registered methods (plugins load only when help is shown)."""
    plain = p.format_help

    def format_help() -> str:
        from mtrl_bench.plugins import registry

        return plain() + "\nregistered methods: " + ", ".join(sorted(registry().methods)) + "\n"

    p.format_help = format_help  # type: ignore[method-assign]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"mtrl-bench: error: {self.prog.removeprefix('mtrl-bench ')}: {message} "
                     f"(see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from mtrl_bench.paper import paper
    from mtrl_bench_envs import cli as data_cli

    parser = _Parser(prog="mtrl-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data_cli.add_parser(sub)

    p = sub.add_parser("methods", help="list the registered methods")
    p.set_defaults(func=cmd_methods)

    from mtrl_bench_envs.card import QUALITIES
    from mtrl_bench_envs.suites import SUITES

    p = sub.add_parser("train", help="train one run (generates its dataset if missing)")
    p.add_argument("--method", help="a registered method, listed below (default: "
                   f"{paper().default_method})")
    p.add_argument("--suite", default="mt5", help=f"{' | '.join(SUITES)} | randomK-S (K tasks "
                   "drawn from MT50 with seed S) (default: mt5)")
    p.add_argument("--quality", default="near-optimal",
                   help=f"{' | '.join(QUALITIES)} (default: near-optimal)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--profile", default="cpu", help="smoke | cpu | paper (default: cpu)")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. train.lr=3e-4 or method.alpha=10")
    p.add_argument("--out", type=Path, help="run directory (default: RUNS/<derived name>)")
    p.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="root of run directories")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    add_execution_options(p)
    p.set_defaults(func=cmd_train)
    _list_methods_in_help(p)

    p = sub.add_parser("eval", help="evaluate a trained run's final checkpoint again")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, help="episodes per task (default: the run's)")
    add_execution_options(p)
    p.set_defaults(func=cmd_eval)

    add_experiment_parsers(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (no file:line, no source line): they are for users."""
    print(f"mtrl-bench: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():  # restores the caller's warning display afterwards
        warnings.showwarning = _one_line_warning
        return _main(argv)


def _terminate(*_: object) -> None:
    raise KeyboardInterrupt  # `kill` stops a command as Ctrl-C does: records kept, status set


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main_thread else None
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mtrl-bench: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtrl-bench: interrupted; finished work is kept. Rerun the same command to "
              "continue (`train` needs --resume)", file=sys.stderr)
        return 130
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
