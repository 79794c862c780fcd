"""The `mtrl-bench` command: each subcommand is a thin shell over the API."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

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


def cmd_train(args: argparse.Namespace) -> int:
    from mtrl_bench.api import prepare_run, run_training
    from mtrl_bench.config import parse_overrides

    overrides = parse_overrides(args.set)
    if args.steps is not None:
        overrides["train.steps"] = str(args.steps)
    cfg, run = prepare_run(args.method, args.suite, args.quality, args.seed, args.profile,
                           args.device, overrides, out=args.out, runs_root=args.runs)
    if run.complete:
        print(f"run already complete: {run.path} (delete it to retrain)")
        from mtrl_bench.runs import read_json

        _print_eval(read_json(run.eval_path))
        return 0
    if run.checkpoint_path.exists() and not args.resume:
        raise ValueError(f"{run.path} holds an unfinished run; pass --resume to continue it")
    result = run_training(cfg, run, resume=args.resume, data_dir=args.data_dir,
                          progress=not args.quiet)
    _print_eval(result)
    print(f"run: {run.path}  (train {result['train_seconds']:.0f}s, eval {result['seconds']:.0f}s)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from mtrl_bench.api import evaluate_run

    result = evaluate_run(Path(args.run_dir), episodes=args.episodes, data_dir=args.data_dir,
                          progress=not args.quiet)
    _print_eval(result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from mtrl_bench import cli_experiments
    from mtrl_bench_envs import cli as data_cli

    parser = argparse.ArgumentParser(prog="mtrl-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data_cli.add_parser(sub)

    p = sub.add_parser("methods", help="list the registered methods")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("train", help="train one run (generates its dataset if missing)")
    p.add_argument("--method", default="prompt-dt")
    p.add_argument("--suite", default="mt5")
    p.add_argument("--quality", default="near-optimal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="cpu", help="smoke | cpu | paper")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. train.lr=3e-4 or method.alpha=10")
    p.add_argument("--out", type=Path, help="run directory (default: RUNS/<derived name>)")
    p.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="root of run directories")
    p.add_argument("--data-dir", type=Path, help="dataset root (default: $MTRL_BENCH_DATA)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained run's final checkpoint again")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, help="episodes per task (default: the run's)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    cli_experiments.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
