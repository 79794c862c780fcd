"""Dataset generation throughput against the raw loop, with 1 and 2 workers, in one run.

raw loop:  the scripted policy steps the env (clipped actions, goals cycling), nothing stored;
generate:  `generate_dataset` end to end: the recipe's actions, arrays, .npz files, card;
generate (expert actions): the same with a recipe that never takes a random step, so every step
           calls the policy as the raw loop does (the worst case for generation's overhead).

Part 1 alternates raw and recipe episodes in one process, episode by episode: the per-step cost
of generation, robust to load from other processes. Part 2 runs the same episodes end to end
through the process pool (start-up, env construction, files and card included) with 1 and 2
workers. "parent CPU %" is the share of all CPU spent in the parent (collecting chunks, writing
files, checksums): the serial part that bounds scaling with more workers (Amdahl). Usage:

    .venv/bin/python benchmarks/bench_generation.py --suite mt5 --episodes 20 --repeats 2
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from tabulate import tabulate

from mtrl_bench_envs.generate import CHUNK, as_suite, close_envs, env_for, generate_dataset
from mtrl_bench_envs.parallel import imap_unordered
from mtrl_bench_envs.recipe import RECIPE, Recipe, make_policy, plan_episode, rollout
from mtrl_bench_envs.suites import EPISODE_LENGTH, NUM_GOALS, make_env, set_goal

EXPERT_ACTIONS = Recipe(name="bench-expert-actions", random_prob=((0.0, 0.0),),
                        noise_std=((0.0, 0.1),))


def raw_episode(env, policy, task: str, episode: int) -> None:
    """The raw loop: policy -> clip -> step for 500 steps, nothing kept."""
    set_goal(env, task, episode % NUM_GOALS, episode)
    obs, _ = env.reset()
    for _ in range(EPISODE_LENGTH):
        obs, *_ = env.step(np.clip(policy.get_action(obs), -1.0, 1.0))


def raw_unit(unit: tuple[str, int, int]) -> int:
    """Episodes [start, stop) of one task through the raw loop."""
    task, start, stop = unit
    env, policy = env_for(task)  # the per-process env cache generation uses
    warnings.simplefilter("ignore", UserWarning)
    for e in range(start, stop):
        raw_episode(env, policy, task, e)
    return (stop - start) * EPISODE_LENGTH


def interleaved(suite, episodes: int) -> list[list]:
    """Per-episode alternation in one process, so machine load hits every side alike: the
    recipe's per-step cost (plan, action mixing, storing arrays) without processes or files."""
    warnings.simplefilter("ignore", UserWarning)
    modes = {"rollout (recipe)": RECIPE, "rollout (expert actions)": EXPERT_ACTIONS}
    seconds = dict.fromkeys(["raw loop", *modes], 0.0)
    for task in suite.tasks:
        env, policy = make_env(task, 0, 0), make_policy(task)
        for e in range(episodes):
            start = time.perf_counter()
            raw_episode(env, policy, task, e)
            seconds["raw loop"] += time.perf_counter() - start
            for mode, recipe in modes.items():
                start = time.perf_counter()
                plan = plan_episode(suite, task, 0, e, episodes, recipe)
                set_goal(env, task, plan.goal, plan.env_seed)
                rollout(env, policy, plan)
                seconds[mode] += time.perf_counter() - start
        env.close()
    steps = len(suite.tasks) * episodes * EPISODE_LENGTH
    return [[mode, steps / sec, seconds["raw loop"] / sec] for mode, sec in seconds.items()]


def _cpu() -> tuple[float, float]:
    """(this process, its reaped children) CPU seconds."""
    own, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float, float]:
    """Wall seconds, total CPU seconds, and the parent's share of that CPU (the serial part)."""
    wall, (own, kids) = time.perf_counter(), _cpu()
    fn()
    wall, (own2, kids2) = time.perf_counter() - wall, _cpu()
    total = own2 - own + kids2 - kids
    return wall, total, (own2 - own) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="mt5")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1, help="best of N per measurement")
    args = parser.parse_args()
    suite = as_suite(args.suite)
    steps = len(suite.tasks) * args.episodes * EPISODE_LENGTH
    units = [(t, s, min(s + CHUNK, args.episodes)) for t in suite.tasks
             for s in range(0, args.episodes, CHUNK)]
    print(f"{suite.name}: {len(suite.tasks)} tasks x {args.episodes} episodes = {steps} steps; "
          f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start")

    print("\nIn one process, alternating episode by episode:")
    print(tabulate(interleaved(suite, args.episodes), ["mode", "steps/s", "vs raw"],
                   floatfmt=".2f"))
    print("\nEnd to end through the process pool (best of --repeats):")

    def run_raw(workers: int) -> None:
        assert sum(imap_unordered(raw_unit, units, workers)) == steps
        close_envs()  # in-process (1 worker): do not hand generation a warm env

    def run_gen(workers: int, recipe: Recipe | None = None) -> None:
        extra = {"recipe": recipe} if recipe else {}
        with tempfile.TemporaryDirectory() as tmp:
            generate_dataset(suite, args.episodes, 0, Path(tmp), workers=workers,
                             progress=False, **extra)

    rows, gen_wall = [], {}
    for workers in args.workers:
        best: dict[str, tuple[float, float, float]] = {}
        for _ in range(args.repeats):  # interleaved, so load changes hit all modes alike
            for mode, fn in (("raw loop", lambda w=workers: run_raw(w)),
                             ("generate", lambda w=workers: run_gen(w)),
                             ("generate (expert actions)",
                              lambda w=workers: run_gen(w, EXPERT_ACTIONS))):
                result = timed(fn)
                if mode not in best or result[0] < best[mode][0]:
                    best[mode] = result
        raw_wall, raw_cpu, _ = best["raw loop"]
        for mode, (wall, cpu, parent) in best.items():
            rows.append([mode, workers, wall, steps / wall, steps / wall / workers,
                         steps / cpu, raw_wall / wall, raw_cpu / cpu,
                         100 * parent if workers > 1 else None])
        gen_wall[workers] = best["generate"][0]
    print(tabulate(rows, ["mode", "workers", "wall s", "steps/s", "steps/s/worker",
                          "steps/CPU-s", "vs raw (wall)", "vs raw (CPU)", "parent CPU %"],
                   floatfmt=".2f", missingval="-"))
    if 1 in gen_wall and len(gen_wall) > 1:
        for workers, wall in gen_wall.items():
            if workers > 1:
                print(f"generate scaling 1 -> {workers} workers: "
                      f"{gen_wall[1] / wall:.2f}x (linear: {workers}x)")
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
