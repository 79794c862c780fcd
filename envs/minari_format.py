"""Datasets in Minari's format (the Farama Foundation's offline-RL datasets, D4RL's successor):
writing the suite's generated datasets as local Minari datasets, and training on Minari datasets.

Layout: one Minari dataset per task, `<namespace>/<task>-v0` under a Minari root (Minari's own
`$MINARI_DATASETS_PATH`, default ~/.minari/datasets). The export's namespace is
`mtrl-bench/<dataset folder name>` (recipe, goals, episodes, seed), so a training config names
its data as `data.source = "minari:mtrl-bench/scripted-replay-v2__fixed-goals__ep200__seed0"`,
or by the folder itself, `data.source = "minari:/abs/path/to/<namespace>"`.

Minari stores an episode of T steps with T + 1 observations (the last one after the last step)
and T + 1 infos (the first from reset). The suite's buffers keep the T observations the policy
acted on, so the export repeats the last one (the metadata says so) and puts a False success
first; reading drops both, so a round trip gives back exactly the arrays that were written.

Reading is data only. Minari keeps arrays in HDF5 and its metadata in JSON, but its reader
builds the env a dataset's spec names (importing and calling its entry point) when the metadata
lacks a space: a dataset is refused before Minari opens it unless both spaces are there, its
format is HDF5 (h5py reads arrays, never pickles) and its spaces are the suite's.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtrl_bench_envs.card import DatasetError, quality_episodes, read_card, sha256_file
from mtrl_bench_envs.common import SIMULATION_PACKAGES, did_you_mean, unknown_name_message
from mtrl_bench_envs.suites import (
    ACT_DIM,
    EPISODE_LENGTH,
    GOAL_SEED,
    MT50_ORDER,
    OBS_DIM,
    check_task,
)

__all__ = ["INSTALL_MINARI", "PREFIX", "check_source", "export_minari", "load_minari",
           "minari_identity", "minari_root", "source_folder"]

PREFIX = "minari:"  # data.source = "minari:<namespace>" or "minari:/path/to/<namespace>"
INSTALL_MINARI = 'Minari is not installed; install the extra with: pip install "mtrl-bench[minari]"'
VERSION = 0  # every exported dataset is version 0 of its id
METADATA = "metadata.json"
PROVENANCE_KEY = "mtrl_bench"  # the card's provenance, in each dataset's metadata
DATASET_NAME = re.compile(r"(?P<task>.+)-v(?P<version>\d+)")  # Minari's <name>-v<version>


def _minari():
    try:
        import minari
    except ImportError:
        raise DatasetError(INSTALL_MINARI) from None
    return minari


def minari_root(root: Path | str | None = None) -> Path:
    """Where Minari datasets live: `root`, else $MINARI_DATASETS_PATH, else Minari's default."""
    if root is not None:
        return Path(root)
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def check_source(source: str) -> str:
    """`source` if it names Minari datasets well ("minari:<namespace>", or an absolute path or
    ~/... to their folder); ValueError otherwise. A relative path would make a run's data depend
    on the folder it was started from, so it is refused."""
    rest = source.removeprefix(PREFIX)
    parts = rest.split("/")
    if (not source.startswith(PREFIX) or not rest.strip("/")
            or (rest[0] not in "/~" and ("." in parts or ".." in parts))):
        raise ValueError(f"data.source '{source}': expected '{PREFIX}<namespace>' (under the "
                         f"Minari root, e.g. {PREFIX}mtrl-bench/<dataset>) or "
                         f"'{PREFIX}/absolute/path/to/<namespace>'")
    return source


def source_folder(source: str, root: Path | None = None) -> Path:
    """The folder holding a source's per-task datasets: the path it names, or its namespace
    under the Minari root."""
    rest = check_source(source).removeprefix(PREFIX)
    if rest[0] in "/~":
        return Path(rest).expanduser()
    return minari_root(root) / rest.strip("/")


@contextlib.contextmanager
def _datasets_path(root: Path) -> Iterator[None]:
    """Minari writes under $MINARI_DATASETS_PATH: point it at `root` for one call."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def _env_spec(task: str):
    """The Gymnasium spec that makes the task's env with the suite's 50 training goals: what
    `gym.make("Meta-World/MT1", env_name=task, seed=GOAL_SEED)` builds. Meta-World registers that
    id with a lambda, which a spec cannot store as JSON, so the spec names the function behind
    it; `MinariDataset.recover_environment()` then builds the env with Meta-World alone."""
    from gymnasium.envs.registration import EnvSpec

    return EnvSpec(id="Meta-World/MT1", entry_point="metaworld:make_mt_envs",
                   max_episode_steps=EPISODE_LENGTH, kwargs={"name": task, "seed": GOAL_SEED})


def _spaces():
    """(observation, action) spaces of the exported datasets. The observation space is Meta-World
    v3's shape and dtype, unbounded: its declared bounds put the goal at 0, which the recorded
    goals (the last 3 entries) are not."""
    from gymnasium.spaces import Box

    return (Box(-np.inf, np.inf, (OBS_DIM,), np.float64),
            Box(-1.0, 1.0, (ACT_DIM,), np.float32))


def _episode_buffers(data) -> list:
    """Minari's episodes of one TaskDataset (T + 1 observations and infos, see above)."""
    from minari.data_collector import EpisodeBuffer

    last = np.arange(EPISODE_LENGTH) == EPISODE_LENGTH - 1
    return [EpisodeBuffer(
        id=e, observations=np.concatenate([obs, obs[-1:]]).astype(np.float64), actions=act,
        rewards=rew.astype(np.float64), terminations=np.zeros(EPISODE_LENGTH, bool),
        truncations=last, infos={"success": np.concatenate([[False], succ])})
        for e, (obs, act, rew, succ) in enumerate(zip(
            data.observations, data.actions, data.rewards, data.successes))]


def export_minari(directory: Path, root: Path | None = None, namespace: str | None = None,
                  tasks: Sequence[str] | None = None) -> list[str]:
    """Write a generated dataset (`directory`, with its card) as one Minari dataset per task
    (all the card's, or `tasks`); returns their ids. Refuses to overwrite: Minari datasets are
    immutable by id."""
    from mtrl_bench_envs.dataset import load_dataset

    minari = _minari()
    directory, root = Path(directory), minari_root(root)
    card = read_card(directory)
    tasks = list(card["tasks"]) if tasks is None else [check_task(t) for t in tasks]
    absent = [t for t in tasks if t not in card["tasks"]]
    if absent:
        raise DatasetError(f"{directory / 'card.json'}: no task '{absent[0]}' (has "
                           f"{', '.join(card['tasks']) or 'none'}); generate it with "
                           "'mtrl-bench data generate'")
    namespace = namespace or f"mtrl-bench/{directory.name}"
    ids = [f"{namespace}/{task}-v{VERSION}" for task in tasks]
    taken = [i for i in ids if (root / i).exists()]
    if taken:
        raise DatasetError(f"{root / taken[0]}: a Minari dataset with this id exists (ids are "
                           "immutable); delete it or export under another --namespace")
    obs_space, act_space = _spaces()
    for dataset_id, task in zip(ids, tasks):
        data = load_dataset(directory, [task], "near-optimal")[0]  # one task in memory at once
        entry = card["tasks"][task]
        # Minari warns about every field left unset and Gymnasium's checker about Meta-World's
        # goal bounds (see _spaces): neither concerns the data written
        with _datasets_path(root), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dataset = minari.create_dataset_from_buffers(
                dataset_id, _episode_buffers(data), env=_env_spec(task),
                observation_space=obs_space, action_space=act_space, author="mtrl-bench",
                algorithm_name=f"mtrl-bench {card['recipe']['name']}",
                description=(
                    f"Meta-World v3 task {task}: {data.episodes} episodes of {EPISODE_LENGTH} "
                    f"steps from mtrl-bench's dataset {directory.name}; provenance under "
                    f"'{PROVENANCE_KEY}'. Each episode's final observation repeats the last one "
                    "acted on (the source does not record the observation after the last step)."),
                requirements=[f"{name}=={card['versions'][name]}"
                              for name in (*SIMULATION_PACKAGES, "gymnasium")
                              if name in card["versions"]])
        dataset.storage.update_metadata({PROVENANCE_KEY: {
            "dataset": directory.name, "task": task, "recipe": card["recipe"],
            "goal_mode": card.get("goal_mode"), "seed": card["seed"],
            "episodes": card["episodes"], "episode_length": EPISODE_LENGTH,
            "source_file": entry["file"], "source_sha256": entry["sha256"],
            "versions": card["versions"]}})
    return ids


# -- reading -------------------------------------------------------------------------------------

def _task_datasets(folder: Path) -> dict[str, Path]:
    """{name: dataset folder} of the Minari datasets directly in `folder` (the highest version
    of each name, as Minari loads an id without a version)."""
    found: dict[str, tuple[int, Path]] = {}
    for path in folder.iterdir():
        match = DATASET_NAME.fullmatch(path.name)
        if match and (path / "data").is_dir():
            version = int(match["version"])
            if version >= found.get(match["task"], (-1, path))[0]:
                found[match["task"]] = (version, path)
    return {name: path for name, (_, path) in sorted(found.items())}


def _read_metadata(path: Path) -> dict[str, Any]:
    """A dataset's metadata.json, parsed as JSON only."""
    file = path / "data" / METADATA
    try:
        metadata = json.loads(file.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{file}: missing; not a Minari dataset") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise DatasetError(f"{file}: not a JSON object (Minari's metadata)")
    return metadata


def _check_metadata(path: Path, task: str, metadata: dict[str, Any]) -> None:
    """Refuse, naming the file, what Minari would read by running code or what is not the
    suite's task: missing spaces, a storage other than HDF5, other spaces, another env."""
    from gymnasium.spaces import Box
    from minari.serialization import deserialize_space  # JSON only

    file = path / "data" / METADATA
    for key in ("observation_space", "action_space"):
        if not isinstance(metadata.get(key), str):
            raise DatasetError(f"{file}: no '{key}'; Minari would build the env the dataset "
                               "names to find it (running its code), so it is not read")
    if metadata.get("data_format") != "hdf5":
        raise DatasetError(f"{file}: data_format {metadata.get('data_format')!r}; only HDF5 "
                           "Minari datasets are read (arrays only, nothing unpickled)")
    try:
        obs = deserialize_space(metadata["observation_space"])
        act = deserialize_space(metadata["action_space"])
    except Exception as exc:  # JSON or space errors: a damaged file
        raise DatasetError(f"{file}: unreadable spaces ({type(exc).__name__}: {exc})") from None
    if not (isinstance(obs, Box) and obs.shape == (OBS_DIM,)):
        raise DatasetError(f"{file}: observation space {obs}, expected a Box of shape "
                           f"({OBS_DIM},) (a Meta-World v3 task)")
    if not (isinstance(act, Box) and act.shape == (ACT_DIM,)
            and np.all(act.low >= -1.0) and np.all(act.high <= 1.0)):
        raise DatasetError(f"{file}: action space {act}, expected a Box of shape ({ACT_DIM},) "
                           "within [-1, 1] (a Meta-World v3 task)")
    named = _spec_task(file, metadata.get("env_spec"))
    if named is not None and named != task:
        if named not in MT50_ORDER:
            raise DatasetError(f"{file}: env spec of " + unknown_name_message(
                "task", named, MT50_ORDER))
        raise DatasetError(f"{file}: the env spec is task '{named}', the dataset's name "
                           f"says '{task}'")


def _spec_task(file: Path, spec: Any) -> str | None:
    """The Meta-World task an env spec (JSON text, read as data) makes, if it names one."""
    if spec is None:
        return None
    try:
        kwargs = json.loads(spec).get("kwargs") or {}
    except (TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{file}: unreadable env_spec ({exc})") from None
    named = kwargs.get("env_name", kwargs.get("name")) if isinstance(kwargs, dict) else None
    return named if isinstance(named, str) else None


def _successes(path: Path, episode: int, infos: dict | None) -> np.ndarray:
    """info["success"] per step: T values, or T + 1 with reset's first (dropped); all False when
    the dataset has none."""
    success = (infos or {}).get("success")
    if success is None:
        return np.zeros(EPISODE_LENGTH, bool)
    success = np.asarray(success) > 0
    if success.shape == (EPISODE_LENGTH + 1,):
        return success[1:]
    if success.shape != (EPISODE_LENGTH,):
        raise DatasetError(f"{path}: episode {episode}'s infos['success'] has shape "
                           f"{success.shape}, expected ({EPISODE_LENGTH + 1},) or "
                           f"({EPISODE_LENGTH},)")
    return success


def _read_task(path: Path, task: str, quality: str):
    """One task's Minari dataset as a TaskDataset of the quality's episodes, checked: near-optimal
    is every episode, sub-optimal the first half (by episode id), as for the suite's own data."""
    from minari import MinariDataset

    from mtrl_bench_envs.dataset import TaskDataset

    _check_metadata(path, task, _read_metadata(path))
    try:
        dataset = MinariDataset(path / "data")
        keep = quality_episodes(dataset.total_episodes, quality)
        episodes = list(dataset.iterate_episodes(range(keep)))
    except Exception as exc:  # h5py's, JSON's and Minari's own errors: a damaged dataset
        raise DatasetError(f"{path}: not a readable Minari dataset ({type(exc).__name__}: "
                           f"{exc})") from None
    if not episodes:
        raise DatasetError(f"{path}: no {quality} episodes (the dataset has "
                           f"{dataset.total_episodes}; sub-optimal is the first half)")
    fields: dict[str, list] = {"observations": [], "actions": [], "rewards": [],
                               "successes": []}
    for ep in episodes:
        steps = len(ep.actions)
        if steps != EPISODE_LENGTH or len(ep.observations) != steps + 1:
            raise DatasetError(f"{path}: episode {ep.id} has {steps} steps and "
                               f"{len(ep.observations)} observations; the suite trains on "
                               f"episodes of {EPISODE_LENGTH} steps (+1 final observation)")
        fields["observations"].append(ep.observations[:-1])
        fields["actions"].append(ep.actions)
        fields["rewards"].append(ep.rewards)
        fields["successes"].append(_successes(path, ep.id, ep.infos))
    arrays = {k: np.stack(v) for k, v in fields.items()}
    if np.abs(arrays["actions"]).max() > 1.0:
        raise DatasetError(f"{path}: actions outside [-1, 1]")
    dtypes = {"observations": np.float32, "actions": np.float32, "rewards": np.float32,
              "successes": np.bool_}
    return TaskDataset(task, **{k: arrays[k].astype(dtypes[k]) for k in fields})


def _task_paths(source: str, tasks: Sequence[str], root: Path | None) -> list[Path]:
    """Each task's dataset folder in the source's folder, or a DatasetError naming what lacks."""
    folder = source_folder(source, root)
    if not folder.is_dir():
        where = "" if source.removeprefix(PREFIX)[0] in "/~" else (
            f" under the Minari root {minari_root(root)} (set $MINARI_DATASETS_PATH, or give "
            f"the folder: {PREFIX}/path/to/<namespace>)")
        raise DatasetError(f"{folder}: no such folder of Minari datasets{where}")
    present = _task_datasets(folder)
    paths = []
    for task in tasks:
        if check_task(task) not in present:
            raise DatasetError(
                f"{folder / f'{task}-v{VERSION}'}: missing, no dataset for task '{task}'."
                f"{did_you_mean(task, present)} The folder has: {', '.join(present) or 'none'} "
                "(one dataset per task, named <task>-v<N>)")
        paths.append(present[task])
    return paths


def load_minari(source: str, tasks: Sequence[str], quality: str, root: Path | None = None):
    """The tasks' datasets from the Minari datasets `source` names (see `check_source`)."""
    _minari()
    return [_read_task(path, task, quality)
            for task, path in zip(tasks, _task_paths(source, tasks, root))]


def minari_identity(source: str, tasks: Sequence[str], root: Path | None = None
                    ) -> dict[str, Any]:
    """What a run trained on, beyond the source its config names: the folder, the datasets'
    ids and a sha256 over their files (names and contents), which tells two different folders
    at the same path apart."""
    paths = _task_paths(source, tasks, root)
    digest = hashlib.sha256()
    for path in paths:
        for file in sorted(p for p in (path / "data").rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path.parent)}\0{sha256_file(file)}\n".encode())
    ids = [str(_read_metadata(p).get("dataset_id", p.name)) for p in paths]
    return {"folder": str(source_folder(source, root)), "datasets": ids,
            "sha256": digest.hexdigest()}
