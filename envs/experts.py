"""Expert reference: the scripted policies' success per task over the 50 training goals.

This is the ceiling every table is read against, measured on the pinned simulator versions and
shipped as package data (`experts.json`). Regenerate it with
`mtrl-bench data experts --recompute --out envs/experts.json`.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate
from tqdm import tqdm

from mtrl_bench_envs.common import SIMULATION_PACKAGES, atomic_write, dataset_versions
from mtrl_bench_envs.parallel import imap_unordered
from mtrl_bench_envs.recipe import make_policy, rollout
from mtrl_bench_envs.suites import (
    EPISODE_LENGTH,
    GOAL_SEED,
    MT50_ORDER,
    NUM_GOALS,
    check_task,
    make_env,
    set_goal,
)

EXPERTS_FILE = "experts.json"


@functools.lru_cache(maxsize=1)
def load_experts() -> dict[str, Any]:
    """The committed expert table; `{"tasks": {}}` if the package ships none."""
    path = resources.files("mtrl_bench_envs").joinpath(EXPERTS_FILE)
    if not path.is_file():
        return {"tasks": {}}
    return json.loads(path.read_text())


def stale_versions(experts: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Simulation packages whose installed version differs from the table's: name -> (was, is)."""
    now, was = dataset_versions(), experts.get("versions", {})
    return {k: (was.get(k, "?"), now[k]) for k in SIMULATION_PACKAGES if was.get(k) != now[k]}


def _expert_task(args: tuple[str, int]) -> tuple[str, list[int]]:
    """Steps to first success per goal (0 = never succeeded within 500 steps)."""
    task, goals = args
    env, policy = make_env(task, 0, 0), make_policy(task)
    steps = []
    for goal in range(goals):
        set_goal(env, task, goal, seed=goal)
        episode = rollout(env, policy, stop_at_success=True)
        steps.append(episode.steps if episode.successes[-1] else 0)
    env.close()
    return task, steps


def compute_experts(tasks: Sequence[str] = MT50_ORDER, goals: int = NUM_GOALS,
                    workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every task's scripted policy (no noise) once per training goal, stopping at success."""
    for task in tasks:
        check_task(task)
    results = {}
    with tqdm(total=len(tasks), desc="expert reference", unit="task", disable=not progress) as bar:
        for task, steps in imap_unordered(_expert_task, [(t, goals) for t in tasks], workers):
            ok = np.array(steps) > 0
            results[task] = {
                "success": round(float(ok.mean()), 4),
                "steps_to_success": round(float(np.mean(np.array(steps)[ok])), 1) if ok.any()
                else None,
                "episodes": goals,
            }
            bar.update()
    ordered = {t: results[t] for t in MT50_ORDER if t in results}
    return {
        "description": "Scripted-policy success per task: one episode per training goal "
                       f"(metaworld.MT1(task, seed={GOAL_SEED})), actions clipped to [-1, 1], "
                       f"no noise, at most {EPISODE_LENGTH} steps, stopped at first success.",
        "computed": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "versions": dataset_versions(),
        "mean_success": round(float(np.mean([r["success"] for r in ordered.values()])), 4),
        "tasks": ordered,
    }


def write_experts(experts: dict[str, Any], path: Path) -> None:
    atomic_write(Path(path), json.dumps(experts, indent=2) + "\n")


def experts_table(experts: dict[str, Any], fmt: str = "simple") -> str:
    rows = [[task, 100 * r["success"], r["steps_to_success"]]
            for task, r in experts["tasks"].items()]
    if rows:
        steps = [r[2] for r in rows if r[2] is not None]
        rows.append(["mean", float(np.mean([r[1] for r in rows])),
                     float(np.mean(steps)) if steps else None])
    return tabulate(rows, ["task", "success %", "steps to success"], tablefmt=fmt,
                    floatfmt=".1f", missingval="-")
