"""Dataset recipes side by side: their buffers along the way, and how far BC gets on each.

For every recipe (scripted-replay-v1, -v2): the MT5 buffer's success and return by tenth of the
buffer (collection order; sub-optimal = the first five tenths), both qualities' means, and the
two BC references (`mtrl_bench.reference`: all episodes, each task's top 20% by return) trained
on each quality and evaluated with the project's `evaluate`. Prints Markdown.

    python benchmarks/bench_recipes.py [--episodes-per-task 50] [--seeds 0 1 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tabulate import tabulate

from mtrl_bench.config import build_config
from mtrl_bench.evaluation import EnvPool
from mtrl_bench.reference import VARIANTS, bc_reference
from mtrl_bench_envs.card import QUALITIES, along_buffer, quality_episodes, read_card
from mtrl_bench_envs.dataset import ensure_dataset, load_dataset
from mtrl_bench_envs.recipe import RECIPES, progress
from mtrl_bench_envs.suites import get_suite


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="mt5")
    p.add_argument("--episodes", type=int, default=100, help="buffer episodes per task")
    p.add_argument("--episodes-per-task", type=int, default=50, help="evaluation episodes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    suite = get_suite(args.suite)
    along_rows, summary_rows, bc_rows = [], [], []
    pool = EnvPool()
    for name in RECIPES:
        directory = ensure_dataset(suite, args.episodes, 0, recipe=name, progress=False)
        card = read_card(directory)
        near = load_dataset(directory, suite.tasks, "near-optimal")
        for d in near:
            along = along_buffer(d.rewards.sum(1), d.episode_success)
            along_rows.append([name, d.task, *(f"{100 * s:.0f}" for s in along["success"])])
        for quality in QUALITIES:
            n = quality_episodes(args.episodes, quality)
            stats = [card["tasks"][t]["stats"][quality] for t in suite.tasks]
            recipe = RECIPES[name]
            random_share = np.mean([recipe.at(progress(e, args.episodes))["random_prob"]
                                    for e in range(n)])  # the schedule's expected share
            summary_rows.append([name, quality, n,
                                 np.mean([s["success_rate"] for s in stats]) * 100,
                                 np.mean([s["return_mean"] for s in stats]), random_share * 100])
            datasets = load_dataset(directory, suite.tasks, quality)
            for variant in VARIANTS:
                scores, seconds = [], []
                for seed in args.seeds:
                    cfg = build_config("prompt-dt", args.suite, quality, seed, "cpu", "cpu",
                                       {"data.recipe": name, "data.episodes": args.episodes,
                                        "eval.episodes_per_task": args.episodes_per_task})
                    tic = time.perf_counter()
                    result = bc_reference(cfg, datasets, variant, pool=pool)
                    seconds.append(time.perf_counter() - tic)
                    scores.append(100 * result["success"])
                bc_rows.append([name, quality, variant, f"{np.mean(scores):.1f}"
                                + (f" ± {np.std(scores, ddof=1):.1f}" if len(scores) > 1 else ""),
                                len(scores), f"{np.mean(seconds):.0f}"])
    pool.close()
    tenths = [f"{i + 1}" for i in range(len(along_rows[0]) - 2)]
    print("## Success % of the buffer's episodes by tenth (collection order)\n")
    print(tabulate(along_rows, ["recipe", "task", *tenths], tablefmt="github"))
    print("\n## Both qualities\n")
    print(tabulate(summary_rows, ["recipe", "quality", "episodes/task", "success %", "return",
                                  "uniform-random actions %"], tablefmt="github",
                   floatfmt=".1f"))
    print(f"\n## BC references ({args.episodes_per_task} evaluation episodes per task)\n")
    print(tabulate(bc_rows, ["recipe", "quality", "reference", "success %", "seeds",
                             "seconds per seed"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
