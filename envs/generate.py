"""Parallel, resumable generation of the per-task replay buffers (one `<task>.npz` per task).

Work is split into chunks of `CHUNK` episodes. Every episode's randomness is a pure function of
(seed, task, episode) (see `recipe.plan_episode`), so the arrays do not depend on the number of
workers. The parent process alone writes files: a task's file once all its chunks are in, then
the card, each atomically, under an exclusive lock on the dataset folder.
"""
from __future__ import annotations

import contextlib
import fcntl
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mtrl_bench_envs.card import (
    CARD_FORMAT,
    CARD_JSON,
    FILE_KEYS,
    DatasetError,
    along_buffer,
    quality_stats,
    read_card,
    save_npz,
    sha256_file,
    write_card,
)
from mtrl_bench_envs.common import SIMULATION_PACKAGES, atomic_write, dataset_versions
from mtrl_bench_envs.parallel import imap_unordered
from mtrl_bench_envs.recipe import RECIPE, Recipe, make_policy, plan_episode, rollout
from mtrl_bench_envs.suites import (
    EPISODE_LENGTH,
    Suite,
    check_task,
    get_suite,
    make_env,
    set_goal,
)

CHUNK = 5  # episodes per work unit: ~1.5 s of simulation; mt5 x 10 episodes is 10 units
MIN_EPISODES = 2  # the buffer runs from random (u=0) to expert (u=1); sub-optimal is half of it


def as_suite(suite: Suite | str) -> Suite:
    return suite if isinstance(suite, Suite) else get_suite(suite)


def goal_mode(suite: Suite) -> str:
    return "random" if suite.random_goals else "fixed"


def select_tasks(suite: Suite, tasks: Sequence[str] | None) -> tuple[str, ...]:
    """The suite's tasks, or the given subset of them (in suite order)."""
    if not tasks:
        return suite.tasks
    for task in tasks:
        if check_task(task) not in suite.tasks:
            raise ValueError(f"task '{task}' is not in suite '{suite.name}'")
    return tuple(t for t in suite.tasks if t in tasks)


def check_episodes(episodes: int) -> int:
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < MIN_EPISODES:
        raise ValueError(f"episodes must be an integer >= {MIN_EPISODES} (the buffer runs from "
                         f"random to expert and sub-optimal is its first half), got {episodes!r}")
    return episodes


@dataclass(frozen=True)
class Unit:
    suite: Suite
    task: str
    seed: int
    episodes: int  # the whole buffer's size (sets each episode's progress u)
    start: int
    stop: int
    recipe: Recipe


_ENVS: dict[str, tuple[Any, Any]] = {}  # per process: the current task's (env, policy)


def env_for(task: str) -> tuple[Any, Any]:
    if task not in _ENVS:
        close_envs()  # chunks arrive task by task: keep one env alive, not fifty
        _ENVS[task] = (make_env(task, 0, 0), make_policy(task))
    return _ENVS[task]


def close_envs() -> None:
    for env, _ in _ENVS.values():
        env.close()
    _ENVS.clear()


def run_unit(unit: Unit) -> tuple[Unit, dict[str, np.ndarray]]:
    """Simulate episodes [start, stop) of a task's buffer."""
    env, policy = env_for(unit.task)
    episodes, goals = [], []
    for e in range(unit.start, unit.stop):
        plan = plan_episode(unit.suite, unit.task, unit.seed, e, unit.episodes, unit.recipe)
        set_goal(env, unit.task, plan.goal, plan.env_seed)
        episodes.append(rollout(env, policy, plan))
        goals.append(plan.goal)
    arrays = {key: np.stack([getattr(ep, key) for ep in episodes]) for key in FILE_KEYS}
    arrays["goals"] = np.array(goals, np.int16)
    return unit, arrays


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Exclusive lock on a dataset folder: two runs needing the same dataset take turns."""
    with open(directory / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A script without a __main__ guard lands here too: spawned workers re-run it.
            print(f"waiting for another process generating {directory} (if this never ends: a "
                  "script generating with workers > 1 needs an `if __name__ == '__main__':` "
                  "guard)", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def new_card(suite: Suite, episodes: int, seed: int, recipe: Recipe) -> dict[str, Any]:
    return {
        "format": CARD_FORMAT,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "episodes": episodes,
        "episode_length": EPISODE_LENGTH,
        "goal_mode": goal_mode(suite),
        "versions": dataset_versions(),
        "tasks": {},
    }


def open_card(directory: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """The folder's card if it holds the same dataset (resume), else a fresh one; a folder holding
    a different dataset, or one simulated with other package versions, is an error."""
    if not (directory / CARD_JSON).exists():
        return wanted
    card = read_card(directory)
    for key in ("recipe", "seed", "episodes", "episode_length", "goal_mode"):
        if card.get(key) != wanted[key]:
            raise DatasetError(f"{directory / CARD_JSON}: holds a dataset with {key}="
                               f"{card.get(key)!r}, not {wanted[key]!r}; use another output folder")
    for name in SIMULATION_PACKAGES:
        was, now = card["versions"].get(name), wanted["versions"][name]
        if was != now:
            raise DatasetError(f"{directory / CARD_JSON}: made with {name} {was}, installed is "
                               f"{now}; resuming would mix simulator versions, use another folder")
    return card


def unfinished_reason(directory: Path, card: dict[str, Any], task: str) -> str | None:
    """Why a task must be (re)generated, or None when its file is there as the card says
    (recorded size; the loader verifies the checksum)."""
    entry = card["tasks"].get(task)
    path = directory / f"{task}.npz"
    if entry is None:
        return "not generated yet"
    if not path.is_file():
        return f"{path}: missing although the card lists it"
    if path.stat().st_size != entry["bytes"]:
        return f"{path}: {path.stat().st_size} bytes, the card says {entry['bytes']} (damaged)"
    return None


def prepare_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".lock"
        probe.touch()
    except OSError as exc:
        raise OSError(f"cannot write to output folder {directory}: {exc.strerror or exc}") from None
    for stale in directory.glob(".*.tmp-*"):  # left by a killed process; we hold the lock now
        stale.unlink(missing_ok=True)


def generate_dataset(suite: Suite | str, episodes: int, seed: int, directory: Path,
                     tasks: Sequence[str] | None = None, workers: int | None = None,
                     progress: bool = True, recipe: Recipe = RECIPE) -> Path:
    """Generate the missing task files of `suite` in `directory`; finished tasks are skipped."""
    suite = as_suite(suite)
    tasks = select_tasks(suite, tasks)
    check_episodes(episodes)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    directory = Path(directory)
    # Finished data is only read: no lock file, no write, so a dataset on a read-only mount
    # trains (task files and the card are written whole, atomically, so no lock is needed).
    if (directory / CARD_JSON).exists():
        card = open_card(directory, new_card(suite, episodes, seed, recipe))
        if all(unfinished_reason(directory, card, task) is None for task in tasks):
            return directory
    prepare_directory(directory)
    with locked(directory):
        card = open_card(directory, new_card(suite, episodes, seed, recipe))
        todo = []
        for task in tasks:
            why = unfinished_reason(directory, card, task)
            if why is not None:
                todo.append(task)
                if why != "not generated yet":  # a self-repair: say which file and why
                    print(f"regenerating {task}: {why}", file=sys.stderr)
        if not todo:
            return directory
        units = [Unit(suite, task, seed, episodes, start, min(start + CHUNK, episodes), recipe)
                 for task in todo for start in range(0, episodes, CHUNK)]
        if progress:
            print(f"generating {len(todo)} of {len(tasks)} tasks x {episodes} episodes into "
                  f"{directory}", file=sys.stderr)
        pending: dict[str, list[tuple[Unit, dict[str, np.ndarray]]]] = {t: [] for t in todo}
        bar = tqdm(total=len(todo) * episodes, unit="ep", desc=f"{suite.name} seed {seed}",
                   disable=not progress, file=sys.stderr)
        try:
            with contextlib.closing(imap_unordered(run_unit, units, workers)) as results:
                for unit, arrays in results:
                    pending[unit.task].append((unit, arrays))
                    bar.update(unit.stop - unit.start)
                    if sum(u.stop - u.start for u, _ in pending[unit.task]) == episodes:
                        chunks = sorted(pending.pop(unit.task), key=lambda c: c[0].start)
                        _finish_task(directory, card, unit.task, [a for _, a in chunks])
        finally:
            bar.close()
            close_envs()
    return directory


def _finish_task(directory: Path, card: dict[str, Any], task: str,
                 chunks: list[dict[str, np.ndarray]]) -> None:
    """Write the task's file, then record it in the card (the card never lists a missing file)."""
    arrays = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    path = directory / f"{task}.npz"
    atomic_write(path, lambda f: save_npz(f, arrays))
    card["tasks"][task] = {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "stats": quality_stats(arrays["rewards"].sum(1), arrays["successes"].any(1)),
        "along": along_buffer(arrays["rewards"].sum(1), arrays["successes"].any(1)),
    }
    write_card(directory, card)
