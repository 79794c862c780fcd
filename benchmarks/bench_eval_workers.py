"""Evaluation wall time with the envs stepped in 1 and in W processes (`execution.eval_workers`),
measured side by side in one run, and what a reused pool saves.

A randomly initialised cpu-profile Prompt-DT evaluates full 500-step episodes (no early stop, so
every setting takes the same steps) at one torch thread. For each worker count, in the order
1, W, W, 1 (the machine may be shared: the ratio uses both rounds), a fresh `EnvPool` runs two
evaluations: the first builds its envs, the second reuses them (what a run's curve and final
evaluations now share). The time inside `EnvPool.step` is measured apart, so the table also says
what the envs cost per step and how far W processes are from 1/W of it (the pipes' cost and
the load imbalance between shares). Every evaluation's episodes must come out identical.

    .venv/bin/python benchmarks/bench_eval_workers.py                  # MT30 x 4 episodes, W = 2
    .venv/bin/python benchmarks/bench_eval_workers.py --suite mt50 --episodes 2 --workers 4
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from bench_eval import random_data  # a sibling script (its folder is on sys.path when run)
from tabulate import tabulate

from mtrl_bench.config import EvalConfig, ModelConfig
from mtrl_bench.evaluation import evaluate
from mtrl_bench.model import PromptDT
from mtrl_bench_envs.pool import EnvPool
from mtrl_bench_envs.suites import get_suite


class TimedPool(EnvPool):
    """An EnvPool that adds up the seconds its `step` calls take."""

    step_seconds = 0.0
    steps = 0

    def step(self, ids, actions):
        tic = time.perf_counter()
        out = super().step(ids, actions)
        self.step_seconds += time.perf_counter() - tic
        self.steps += 1
        return out


def outcome(result: dict) -> dict:
    return {t: (r["successes"], r["returns"]) for t, r in result["tasks"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="mt30")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    suite, model_cfg = get_suite(args.suite), ModelConfig()
    data = random_data(suite.tasks, model_cfg)
    torch.manual_seed(0)
    model = PromptDT(model_cfg, 39, 4).eval()
    cfg = EvalConfig(episodes_per_task=args.episodes, early_stop=False)
    print(f"{args.suite}: {data.num_tasks} tasks x {args.episodes} episodes, full episodes, "
          f"1 torch thread; load average before: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores", flush=True)
    rows, first = {}, None
    for workers in (1, args.workers, args.workers, 1):
        with TimedPool(workers) as pool:
            times = []
            for _ in range(2):  # the first evaluation builds the envs, the second reuses them
                pool.step_seconds = pool.steps = 0
                res = evaluate(model, data, suite, cfg, progress=False, pool=pool)
                first = first or outcome(res)
                assert outcome(res) == first, "results changed with the env workers"
                times.append((res["seconds"], res["build_seconds"], pool.step_seconds,
                              pool.steps))
        rows.setdefault(workers, []).append(times)
        print(f"  {workers} process(es): {times[0][0]:.1f} s built, {times[1][0]:.1f} s reused",
              flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")

    def mean(workers: int, which: int, field: int) -> float:
        return sum(r[which][field] for r in rows[workers]) / len(rows[workers])

    table = []
    for workers in (1, args.workers):
        step_ms = 1e3 * mean(workers, 1, 2) / mean(workers, 1, 3)
        in_steps = mean(workers, 1, 2) / mean(workers, 1, 0)
        table.append([workers, f"{mean(workers, 0, 0):.1f}", f"{mean(workers, 0, 1):.1f}",
                      f"{mean(workers, 1, 0):.1f}", f"{in_steps:.0%}", f"{step_ms:.1f}"])
    one, many = mean(1, 1, 0), mean(args.workers, 1, 0)
    env_one = 1e3 * mean(1, 1, 2) / mean(1, 1, 3)
    env_many = 1e3 * mean(args.workers, 1, 2) / mean(args.workers, 1, 3)
    print(tabulate(table, headers=["env processes", "1st eval s (builds)", "of which building",
                                   "2nd eval s (reuses)", "in env steps", "ms per env step call"],
                   tablefmt="github"))
    print(f"speedup of {args.workers} processes (reused pools): {one / many:.2f}x; "
          f"a step call takes {env_many:.1f} ms against the ideal {env_one / args.workers:.1f} "
          f"({(env_many - env_one / args.workers) / env_one:.0%} of one process's step: pipes "
          f"and imbalance); reuse saves {mean(1, 0, 0) - one:.1f} s of an evaluation")


if __name__ == "__main__":
    main()
