"""Datasets in Minari's format (the Farama Foundation's offline-RL datasets, D4RL's successor):
writing the suite's generated datasets as local Minari datasets, and training on Minari datasets.

Layout: one Minari dataset per task, `<namespace>/<task>-v0` under a Minari root (Minari's own
`$MINARI_DATASETS_PATH`, default ~/.minari/datasets). The export's namespace is
`mtrl-bench/<dataset folder name>` (recipe, goals, episodes, seed), so a training config names
its data as `data.source = "minari:mtrl-bench/scripted-replay-v2__fixed-goals__ep200__seed0"`.

Minari stores an episode of T steps with T + 1 observations (the last one after the last step).
The suite's buffers keep the T observations the policy acted on, so the export repeats the last
one and says so in the dataset's description; reading drops the final observation, so a round
trip gives back exactly the arrays that were written. `info["success"]` travels as the step
infos' `success` (all False when a dataset has none).

Reading is data only, so a dataset from someone else cannot run code: the arrays are HDF5 (h5py
reads numbers and strings, never pickles) and the metadata JSON. One path in Minari does run
code: a metadata file without its spaces makes Minari build the env its spec names (gym.make
imports and calls the spec's entry point). `_read_metadata` checks the file first and refuses
it, and nothing here calls `recover_environment`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mtrl_bench_envs.card import DatasetError, quality_episodes, read_card
from mtrl_bench_envs.common import unknown_name_message
from mtrl_bench_envs.suites import ACT_DIM, EPISODE_LENGTH, OBS_DIM, check_task

__all__ = ["INSTALL_MINARI", "PREFIX", "content_hash", "dataset_ids", "export_minari",
           "load_minari", "minari_root", "source_namespace"]

PREFIX = "minari:"  # data.source = "minari:<namespace>"
INSTALL_MINARI = 'Minari is not installed; install the extra with: pip install "mtrl-bench[minari]"'
VERSION = 0  # every exported dataset is version 0 of its id


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


def source_namespace(source: str) -> str:
    """The namespace of a `data.source` that names Minari datasets ("minari:<namespace>")."""
    namespace = source.removeprefix(PREFIX).strip("/")
    if not source.startswith(PREFIX) or not namespace or ".." in namespace.split("/"):
        raise DatasetError(f"data.source '{source}': expected 'generated' or "
                           f"'{PREFIX}<namespace>' (e.g. {PREFIX}mtrl-bench/<dataset>)")
    return namespace


def _dataset_id(namespace: str, task: str) -> str:
    return f"{namespace}/{task}-v{VERSION}"


def dataset_ids(source: str, tasks: Sequence[str]) -> list[str]:
    """The Minari dataset ids a `data.source` reads for the tasks (one per task)."""
    return [_dataset_id(source_namespace(source), task) for task in tasks]


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


def _spaces():
    from gymnasium.spaces import Box

    return (Box(-np.inf, np.inf, (OBS_DIM,), np.float64),
            Box(-1.0, 1.0, (ACT_DIM,), np.float32))


def export_minari(directory: Path, root: Path | None = None,
                  namespace: str | None = None) -> list[str]:
    """Write a generated dataset (`directory`, with its card) as one Minari dataset per task;
    returns their ids. Refuses to overwrite: Minari datasets are immutable by id."""
    from mtrl_bench_envs.dataset import load_dataset

    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    directory, root = Path(directory), minari_root(root)
    card = read_card(directory)
    namespace = namespace or f"mtrl-bench/{directory.name}"
    ids = [_dataset_id(namespace, task) for task in card["tasks"]]
    taken = [i for i in ids if (root / i).exists()]
    if taken:
        raise DatasetError(f"{root / taken[0]}: a Minari dataset with this id exists (ids are "
                           "immutable); delete it or export under another --namespace")
    obs_space, act_space = _spaces()
    for dataset_id, data in zip(ids, load_dataset(directory, list(card["tasks"]),
                                                  "near-optimal")):
        episodes = [EpisodeBuffer(
            id=e, observations=np.concatenate([obs, obs[-1:]]).astype(np.float64),
            actions=act, rewards=rew.astype(np.float64), terminations=np.zeros(len(rew), bool),
            truncations=np.arange(len(rew)) == len(rew) - 1, infos={"success": succ})
            for e, (obs, act, rew, succ) in enumerate(zip(
                data.observations, data.actions, data.rewards, data.successes))]
        entry = card["tasks"][data.task]
        with _datasets_path(root):
            written = minari.create_dataset_from_buffers(
                dataset_id, episodes, observation_space=obs_space, action_space=act_space,
                algorithm_name=f"mtrl-bench {card['recipe']['name']}",
                code_permalink="https://github.com/Farama-Foundation/Metaworld",
                description=(
                    f"Meta-World v3 task {data.task}: {data.episodes} episodes of "
                    f"{EPISODE_LENGTH} steps from mtrl-bench's dataset {directory.name} (recipe "
                    f"{card['recipe']['name']}, seed {card['seed']}, source file sha256 "
                    f"{entry['sha256']}). Each episode's final observation repeats the last one "
                    "acted on (the source does not record the observation after the last step)."),
                requirements=[f"{name}=={version}"
                              for name, version in card.get("versions", {}).items()])
        written.storage.update_metadata({"mtrl_bench": _provenance(card, directory, data.task)})
    return ids


def _provenance(card: dict, directory: Path, task: str) -> dict:
    """The card's account of where a task's data came from, as Minari metadata a program can
    read (the description says the same in words)."""
    return {"dataset": directory.name, "task": task, "recipe": card["recipe"],
            "seed": card["seed"], "episodes": card["episodes"],
            "goal_mode": card.get("goal_mode"), "source_sha256": card["tasks"][task]["sha256"],
            "versions": card.get("versions", {})}


def _check_spaces(path: Path, dataset) -> None:
    from gymnasium.spaces import Box

    obs, act = dataset.observation_space, dataset.action_space
    if not (isinstance(obs, Box) and obs.shape == (OBS_DIM,)):
        raise DatasetError(f"{path}: observation space {obs}, expected a Box of shape "
                           f"({OBS_DIM},) (a Meta-World v3 task)")
    if not (isinstance(act, Box) and act.shape == (ACT_DIM,)
            and np.all(act.low >= -1.0) and np.all(act.high <= 1.0)):
        raise DatasetError(f"{path}: action space {act}, expected a Box of shape ({ACT_DIM},) "
                           "within [-1, 1] (a Meta-World v3 task)")


def _read_metadata(path: Path) -> dict:
    """A dataset's metadata.json, refused unless Minari can read the dataset without building an
    env (both spaces given, see the module docstring) from HDF5 storage (the one read here)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: not a JSON object")
    for space in ("observation_space", "action_space"):
        if not isinstance(meta.get(space), str):
            raise DatasetError(f"{path}: no {space} (Minari would build the env its spec "
                               "names to find it, running that env's code; refused)")
    if meta.get("data_format") != "hdf5":
        raise DatasetError(f"{path}: data_format {meta.get('data_format')!r}; the suite reads "
                           "Minari's HDF5 storage (the format its export writes)")
    return meta


def _read_task(path: Path, task: str):
    """One task's Minari dataset as TaskDataset arrays (all its episodes), checked."""
    from minari import MinariDataset

    from mtrl_bench_envs.dataset import TaskDataset

    if not (path / "data").is_dir():
        raise DatasetError(f"{path}: no Minari dataset for task '{task}' (expected a folder "
                           "with data/ in it); export one with 'mtrl-bench data export'")
    _read_metadata(path / "data" / "metadata.json")
    try:
        dataset = MinariDataset(path / "data")
        _check_spaces(path, dataset)
        episodes = list(dataset.iterate_episodes())
    except DatasetError:
        raise
    except Exception as exc:  # h5py, JSON and Minari's own errors: a damaged dataset
        raise DatasetError(f"{path}: not a readable Minari dataset ({type(exc).__name__}: "
                           f"{exc})") from None
    fields = {"observations": [], "actions": [], "rewards": [], "successes": []}
    for ep in episodes:
        steps = len(ep.actions)
        if steps != EPISODE_LENGTH or len(ep.observations) != steps + 1:
            raise DatasetError(f"{path}: episode {ep.id} has {steps} steps and "
                               f"{len(ep.observations)} observations; the suite trains on "
                               f"episodes of {EPISODE_LENGTH} steps (+1 final observation)")
        success = (ep.infos or {}).get("success")
        fields["observations"].append(ep.observations[:-1])
        fields["actions"].append(ep.actions)
        fields["rewards"].append(ep.rewards)
        fields["successes"].append(np.zeros(steps, bool) if success is None
                                   else np.asarray(success) > 0)
    if not episodes:
        raise DatasetError(f"{path}: the Minari dataset has no episodes")
    arrays = {k: np.stack(v) for k, v in fields.items()}
    if np.abs(arrays["actions"]).max() > 1.0:
        raise DatasetError(f"{path}: actions outside [-1, 1]")
    dtypes = {"observations": np.float32, "actions": np.float32, "rewards": np.float32,
              "successes": np.bool_}
    return TaskDataset(task, **{k: arrays[k].astype(dtypes[k]) for k in fields})


def load_minari(source: str, tasks: Sequence[str], quality: str, root: Path | None = None):
    """The tasks' datasets from the Minari datasets `source` names ("minari:<namespace>"):
    near-optimal is every episode, sub-optimal the first half, as for the suite's own data."""
    _minari()
    namespace, root = source_namespace(source), minari_root(root)
    folder = root / namespace
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no Minari namespace '{namespace}' under {root} "
                           "(set $MINARI_DATASETS_PATH to the Minari root)")
    out = []
    for task in tasks:
        check_task(task)
        path = root / _dataset_id(namespace, task)
        if not path.exists():
            present = sorted(p.name.removesuffix(f"-v{VERSION}") for p in folder.iterdir()
                             if p.is_dir())
            raise DatasetError(f"{path}: missing; "
                               + unknown_name_message("task in this namespace", task, present))
        data = _read_task(path, task)
        keep = quality_episodes(data.episodes, quality)
        if keep < data.episodes:
            data = type(data)(task, *(getattr(data, k)[:keep].copy() for k in
                                      ("observations", "actions", "rewards", "successes")))
        out.append(data)
    return out


def content_hash(source: str, tasks: Sequence[str], root: Path | None = None) -> str:
    """A sha256 over the tasks' Minari data files, for a run's manifest (what it trained on)."""
    namespace, root, digest = source_namespace(source), minari_root(root), hashlib.sha256()
    for task in tasks:
        for f in sorted((root / _dataset_id(namespace, task) / "data").rglob("*")):
            if f.is_file():
                digest.update(f.name.encode())
                digest.update(f.read_bytes())
    return digest.hexdigest()[:16]
