"""Offline datasets in memory: locating, generating on demand, and loading with validation.

Two on-disk formats load into the same `TaskDataset`:
- ours, `<dir>/<task>.npz` per task plus `card.json` (see `generate.py`), checked against the card;
- MTDiff's, `<dir>/<task>/<i>.npz` per episode, for users who have the paper's files. That data
  comes from Meta-World *v2* environments (v2 rewards and dynamics): training on it and evaluating
  on v3 is a protocol change, and results must say so.
"""
from __future__ import annotations

import difflib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl_bench_envs.card import (
    FILE_KEYS,
    QUALITIES,
    DatasetError,
    quality_episodes,
    read_card,
    sha256_file,
)
from mtrl_bench_envs.generate import as_suite, generate_dataset, goal_mode
from mtrl_bench_envs.recipe import RECIPE, get_recipe
from mtrl_bench_envs.suites import ACT_DIM, EPISODE_LENGTH, OBS_DIM, Suite, check_task

__all__ = ["QUALITIES", "DatasetError", "TaskDataset", "dataset_dir", "default_data_root",
           "ensure_dataset", "load_dataset", "load_mtdiff"]

DATA_ENV_VAR = "MTRL_BENCH_DATA"


@dataclass
class TaskDataset:
    """One task's episodes, all of length 500."""

    task: str
    observations: np.ndarray  # (E, 500, 39) float32
    actions: np.ndarray  # (E, 500, 4) float32, in [-1, 1]
    rewards: np.ndarray  # (E, 500) float32
    successes: np.ndarray  # (E, 500) bool, info["success"] per step (all False if unknown)

    @property
    def episodes(self) -> int:
        return len(self.rewards)

    @property
    def returns(self) -> np.ndarray:
        return self.rewards.sum(1)

    @property
    def episode_success(self) -> np.ndarray:
        return self.successes.any(1)


def default_data_root() -> Path:
    """Where generated datasets live: $MTRL_BENCH_DATA, else ~/.cache/mtrl-bench/datasets."""
    return Path(os.environ.get(DATA_ENV_VAR) or "~/.cache/mtrl-bench/datasets").expanduser()


def dataset_dir(suite: Suite | str, episodes: int, seed: int, root: Path | None = None,
                recipe: str = RECIPE.name) -> Path:
    """`<root>/<recipe>__<fixed|random>-goals__ep<E>__seed<S>`.

    Not keyed by suite: a task's buffer depends only on these, so mt5, mt30 and mt50 share their
    common task files and a larger suite only adds the tasks it lacks.
    """
    goals = goal_mode(as_suite(suite))
    name = f"{get_recipe(recipe).name}__{goals}-goals__ep{episodes}__seed{seed}"
    return Path(root or default_data_root()) / name


def ensure_dataset(suite: Suite | str, episodes: int, seed: int, root: Path | None = None,
                   workers: int | None = None, progress: bool = True,
                   tasks: Sequence[str] | None = None, recipe: str = RECIPE.name) -> Path:
    """The dataset folder for (suite, episodes, seed, recipe), generating the tasks it lacks."""
    directory = dataset_dir(suite, episodes, seed, root, recipe)
    return generate_dataset(suite, episodes, seed, directory, tasks=tasks, workers=workers,
                            progress=progress, recipe=get_recipe(recipe))


def _read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file, or a DatasetError naming the file and the problem."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DatasetError(f"{path}: missing key(s) {', '.join(missing)} "
                                   f"(has {', '.join(data.files) or 'none'})")
            return {k: data[k] for k in keys}
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise DatasetError(f"{path}: unreadable, truncated or not an .npz file ({exc})") from None


def _check_shape(path: Path, key: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise DatasetError(f"{path}: '{key}' has shape {array.shape}, expected {shape} "
                           f"(episodes, {EPISODE_LENGTH} steps, obs {OBS_DIM} / act {ACT_DIM})")


def check_task_file(directory: Path, entry: dict) -> Path:
    """The task file a card entry lists, if it is there whole (size and checksum as recorded);
    DatasetError naming it otherwise."""
    path = directory / entry["file"]
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (the card lists it); regenerate the dataset")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise DatasetError(f"{path}: {size} bytes, the card says {entry['bytes']} "
                           "(truncated or modified); delete it and rerun generation")
    if sha256_file(path) != entry["sha256"]:
        raise DatasetError(f"{path}: checksum does not match the card (file modified); "
                           "delete it and rerun generation")
    return path


def _load_task_file(directory: Path, task: str, entry: dict, episodes: int) -> dict:
    path = check_task_file(directory, entry)
    arrays = _read_npz(path, FILE_KEYS)
    want = {"observations": ((episodes, EPISODE_LENGTH, OBS_DIM), np.float32),
            "actions": ((episodes, EPISODE_LENGTH, ACT_DIM), np.float32),
            "rewards": ((episodes, EPISODE_LENGTH), np.float32),
            "successes": ((episodes, EPISODE_LENGTH), np.bool_)}
    for key, (shape, dtype) in want.items():
        _check_shape(path, key, arrays[key], shape)
        if arrays[key].dtype != dtype:
            raise DatasetError(f"{path}: '{key}' has dtype {arrays[key].dtype}, expected "
                               f"{np.dtype(dtype)}")
    if np.abs(arrays["actions"]).max() > 1.0:
        raise DatasetError(f"{path}: actions outside [-1, 1]")
    return arrays


def load_dataset(directory: Path, tasks: Sequence[str], quality: str) -> list[TaskDataset]:
    """Load generated task files, verified against the card: near-optimal is the whole buffer,
    sub-optimal its first half."""
    directory = Path(directory)
    card = read_card(directory)
    episodes = card["episodes"]
    keep = quality_episodes(episodes, quality)
    out = []
    for task in tasks:
        entry = card["tasks"].get(check_task(task))
        if entry is None:
            listed = ", ".join(card["tasks"]) or "none"
            raise DatasetError(f"{directory / 'card.json'}: no task '{task}' (has {listed}); "
                               "generate it with 'mtrl-bench data generate'")
        arrays = _load_task_file(directory, task, entry, episodes)
        # Copy the first half so the discarded half's memory is freed.
        sliced = {k: v if keep == episodes else v[:keep].copy() for k, v in arrays.items()}
        out.append(TaskDataset(task, **sliced))
    return out


MTDIFF_KEYS = ("observations", "actions", "rewards")  # next_observations/terminals: not needed


def _mtdiff_task_dir(directory: Path, task: str) -> Path:
    names = (task, task.removesuffix("-v3") + "-v2")
    for name in names:
        if (directory / name).is_dir():
            return directory / name
    present = sorted(p.name for p in directory.iterdir() if p.is_dir())
    close = difflib.get_close_matches(names[1], present, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise DatasetError(f"{directory}: no folder '{names[0]}' or '{names[1]}' for task "
                       f"'{task}'.{hint}")


def load_mtdiff(directory: Path, tasks: Sequence[str], quality: str) -> list[TaskDataset]:
    """Load MTDiff-format data (`<dir>/<task>/<i>.npz`, one 500-step episode per file).

    Near-optimal uses files 0..n-1 (all n), sub-optimal 0..n/2-1. SAC actions were stored
    unclipped (up to ~2.1); they are clipped to [-1, 1], which is what Meta-World executed.
    Success flags are not stored in this format, so `successes` is all False.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: no such folder")
    out = []
    for task in tasks:
        task_dir = _mtdiff_task_dir(directory, check_task(task))
        numbered = {int(p.stem): p for p in task_dir.glob("*.npz") if p.stem.isdigit()}
        if not numbered:
            raise DatasetError(f"{task_dir}: no episode files <i>.npz")
        gaps = sorted(set(range(len(numbered))) - set(numbered))
        if gaps:
            raise DatasetError(f"{task_dir / f'{gaps[0]}.npz'}: missing (episodes must be "
                               f"numbered 0..n-1; found {len(numbered)} files)")
        keep = quality_episodes(len(numbered), quality)
        if keep == 0:
            raise DatasetError(f"{task_dir}: a single episode has no sub-optimal half")
        obs, act, rew = [], [], []
        for i in range(keep):
            path = numbered[i]
            arrays = _read_npz(path, MTDIFF_KEYS)
            _check_shape(path, "observations", arrays["observations"], (EPISODE_LENGTH, OBS_DIM))
            _check_shape(path, "actions", arrays["actions"], (EPISODE_LENGTH, ACT_DIM))
            rewards = arrays["rewards"]
            if rewards.shape == (EPISODE_LENGTH, 1):  # MTDiff stores (500, 1)
                rewards = rewards[:, 0]
            _check_shape(path, "rewards", rewards, (EPISODE_LENGTH,))
            obs.append(arrays["observations"])
            act.append(arrays["actions"])
            rew.append(rewards)
        actions = np.clip(np.stack(act), -1.0, 1.0).astype(np.float32)
        out.append(TaskDataset(task, np.stack(obs).astype(np.float32), actions,
                               np.stack(rew).astype(np.float32),
                               np.zeros((keep, EPISODE_LENGTH), bool)))
    return out
