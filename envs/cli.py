"""`mtrl-bench data ...`: generate datasets, show their cards, show the expert reference."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from mtrl_bench_envs.card import CARD_JSON, QUALITIES, quality_episodes, read_card, render_card
from mtrl_bench_envs.dataset import check_task_file, dataset_dir, default_data_root
from mtrl_bench_envs.experts import (
    compute_experts,
    experts_table,
    load_experts,
    stale_versions,
    write_experts,
)
from mtrl_bench_envs.generate import check_episodes, generate_dataset
from mtrl_bench_envs.recipe import RECIPE, RECIPES, get_recipe

DEFAULT_EPISODES = 200  # per task: the cpu profile's data.episodes (a test keeps them equal)
DEFAULT_SEED = 0


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="generate and inspect offline datasets",
                          description="Generate and inspect offline Meta-World datasets.")
    data.set_defaults(func=lambda args: data.print_help())
    cmds = data.add_subparsers(dest="data_command", metavar="{generate,info,export,experts}")

    gen = cmds.add_parser(
        "generate", help="generate a suite's per-task replay buffers (resumable)",
        description="Generate per-task replay buffers from Meta-World's scripted policies. "
                    "Near-optimal is the whole buffer, sub-optimal its first half; both come "
                    "from the same files. Finished tasks are kept: rerun to resume.")
    _add_selection(gen)
    gen.add_argument("--quality", default="near-optimal", choices=QUALITIES,
                     help="the part of the buffer to summarise (both are generated)")
    gen.add_argument("--tasks", type=lambda s: [t for t in s.split(",") if t],
                     help="comma-separated subset of the suite's tasks")
    gen.add_argument("--out", type=Path,
                     help="dataset folder (default: under $MTRL_BENCH_DATA or "
                          "~/.cache/mtrl-bench/datasets, named by recipe, goals, episodes, seed)")
    gen.add_argument("--workers", type=int, help="processes (default: number of cores)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_generate)

    info = cmds.add_parser("info", help="show a dataset card",
                           description="Show a dataset's card. DIR is a dataset folder, or a "
                                       "folder of datasets to list; without DIR, the most "
                                       "recently updated dataset under the data root.")
    info.add_argument("dir", nargs="?", type=Path, metavar="DIR")
    info.set_defaults(func=cmd_info)

    export = cmds.add_parser(
        "export", help="write a dataset in another format (Minari)",
        description="Write a generated dataset as local Minari datasets, one per task "
                    "(<namespace>/<task>-v0 under the Minari root); train on them with "
                    "--set data.source=minari:<namespace>. The dataset is DIR, or the one "
                    "--suite/--episodes/--seed/--recipe name under the data root (that suite's "
                    "tasks).")
    export.add_argument("dir", nargs="?", type=Path, metavar="DIR",
                        help="a generated dataset folder (all the tasks its card lists)")
    export.add_argument("--format", required=True, choices=["minari"])
    _add_selection(export)
    export.add_argument("--out", type=Path, help="Minari root (default: $MINARI_DATASETS_PATH, "
                        "else ~/.minari/datasets)")
    export.add_argument("--namespace", help="default: mtrl-bench/<the dataset folder's name>")
    export.set_defaults(func=cmd_export)

    experts = cmds.add_parser("experts", help="the scripted experts' success per task",
                              description="Show (or recompute) the expert reference table.")
    experts.add_argument("--recompute", action="store_true",
                         help="measure it on the installed versions (50 goals x 50 tasks)")
    experts.add_argument("--workers", type=int, help="processes for --recompute")
    experts.add_argument("--out", type=Path, help="with --recompute: write the JSON here "
                         "(envs/experts.json to update the committed table)")
    experts.set_defaults(func=cmd_experts)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    """The options that name a generated dataset: suite, episodes, seed, recipe."""
    parser.add_argument("--suite", default="mt5", help="mt5, mt30, mt50, mt50-rand, random5, "
                        "random30 or randomK-S (default: mt5)")
    parser.add_argument("--episodes", type=int, default=DEFAULT_EPISODES,
                        help=f"buffer episodes per task (default {DEFAULT_EPISODES}; paper 2000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--recipe", default=RECIPE.name, choices=sorted(RECIPES),
                        help=f"how episodes depart from the expert (default {RECIPE.name}; "
                             "see mtrl_bench_envs/recipe.py)")


def cmd_generate(args: argparse.Namespace) -> int:
    check_episodes(args.episodes)  # before dataset_dir names a folder after a bad count
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    directory = args.out or dataset_dir(args.suite, args.episodes, args.seed,
                                        recipe=args.recipe)
    try:
        generate_dataset(args.suite, args.episodes, args.seed, directory, tasks=args.tasks,
                         workers=args.workers, progress=not args.quiet,
                         recipe=get_recipe(args.recipe))
    except KeyboardInterrupt:
        # Resuming is automatic here: say so instead of the core's generic "--resume" hint.
        print(f"mtrl-bench: interrupted; finished tasks are kept in {directory}, rerun the same "
              "command to resume", file=sys.stderr)
        return 130
    print(render_card(read_card(directory), directory))
    used = quality_episodes(args.episodes, args.quality)
    print(f"\n{args.quality}: episodes 0..{used - 1} of each task's {args.episodes}-episode "
          f"buffer. Show again: mtrl-bench data info {directory}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mtrl_bench_envs.minari_format import PREFIX, export_minari, minari_root
    from mtrl_bench_envs.suites import get_suite

    tasks = None
    directory = args.dir
    if directory is None:  # the dataset the selection names, that suite's tasks only
        tasks = get_suite(args.suite).tasks
        directory = dataset_dir(args.suite, args.episodes, args.seed, recipe=args.recipe)
        if not (directory / CARD_JSON).exists():
            raise ValueError(f"{directory}: no such dataset; generate it with 'mtrl-bench data "
                             f"generate --suite {args.suite} --episodes {args.episodes} --seed "
                             f"{args.seed} --recipe {args.recipe}', or give its folder as DIR")
    ids = export_minari(directory, args.out, args.namespace, tasks)
    namespace = ids[0].rsplit("/", 1)[0]
    print(f"wrote {len(ids)} Minari dataset(s) under {minari_root(args.out)}: "
          f"{namespace}/<task>-v0\ntrain on them: mtrl-bench train ... "
          f"--set data.source={PREFIX}{namespace}")
    return 0


def _datasets_under(root: Path) -> list[Path]:
    return sorted((p.parent for p in root.glob(f"*/{CARD_JSON}")),
                  key=lambda d: (d / CARD_JSON).stat().st_mtime)


def cmd_info(args: argparse.Namespace) -> int:
    directory = args.dir
    if directory is None or not (directory / CARD_JSON).exists():
        root = directory or default_data_root()
        found = _datasets_under(root) if root.is_dir() else []
        if not found:
            if directory is not None:
                read_card(directory)  # raises the "no dataset card" error naming the file
            raise ValueError(f"no datasets under {root}; make one with 'mtrl-bench data "
                             "generate' (the root is $MTRL_BENCH_DATA if set)")
        if directory is not None:
            _print_listing(found)
            return 0
        directory = found[-1]
        print(f"(the most recently updated of {len(found)} dataset(s) under {root})")
    card = read_card(directory)
    for entry in card["tasks"].values():  # a card is only as good as the files it lists
        check_task_file(directory, entry)
    print(render_card(card, directory))
    return 0


def _print_listing(found: list[Path]) -> None:
    rows = []
    for d in found:
        card = read_card(d)
        rows.append([d, card["recipe"]["name"], card["goal_mode"], card["episodes"],
                     card["seed"], len(card["tasks"])])
    print(tabulate(rows, ["dataset", "recipe", "goals", "episodes", "seed", "tasks"]))
    print("\nshow one: mtrl-bench data info DIR")


def cmd_experts(args: argparse.Namespace) -> int:
    if args.out and not args.recompute:
        raise ValueError("--out needs --recompute")
    experts = compute_experts(workers=args.workers) if args.recompute else load_experts()
    if not experts["tasks"]:
        raise ValueError("this installation ships no expert table; run with --recompute")
    print(experts_table(experts))
    versions = ", ".join(f"{k} {v}" for k, v in experts["versions"].items())
    print(f"\n{experts['description']}\nversions: {versions}")
    for name, (was, now) in stale_versions(experts).items():
        print(f"warning: measured with {name} {was}, installed is {now}; "
              "run 'mtrl-bench data experts --recompute'", file=sys.stderr)
    if args.out:
        write_experts(experts, args.out)
        print(f"wrote {args.out}")
    return 0
