"""Generation (determinism, parallelism, resume, quality ordering) and loading with validation."""
from __future__ import annotations

import json
import shutil
import signal
import threading

import numpy as np
import pytest

from mtrl_bench_envs import generate
from mtrl_bench_envs.card import read_card
from mtrl_bench_envs.common import atomic_write
from mtrl_bench_envs.dataset import (
    DatasetError,
    dataset_dir,
    default_data_root,
    ensure_dataset,
    load_dataset,
)
from mtrl_bench_envs.generate import generate_dataset

TASKS = ["basketball-v3", "button-press-v3"]
EPISODES = 6


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """mt5's first and fourth task, 6 episodes each, generated in this process."""
    out = tmp_path_factory.mktemp("data") / "small"
    return generate_dataset("mt5", EPISODES, 0, out, tasks=TASKS, workers=1, progress=False)


def _arrays(directory, task):
    with np.load(directory / f"{task}.npz") as data:
        return {k: data[k] for k in data.files}


def test_card_and_files(small):
    card = read_card(small)
    assert list(card["tasks"]) == TASKS
    assert card["episodes"] == EPISODES and card["goal_mode"] == "fixed"
    assert card["recipe"]["name"] == "scripted-replay-v2"
    along = card["tasks"]["basketball-v3"]["along"]  # 6 episodes: one per "tenth"
    assert len(along["success"]) == len(along["return"]) == 6
    assert set(card["versions"]) >= {"metaworld", "mujoco", "gymnasium", "numpy"}
    stats = card["tasks"]["basketball-v3"]["stats"]
    assert stats["near-optimal"]["episodes"] == 6 and stats["sub-optimal"]["episodes"] == 3
    assert stats["near-optimal"]["steps"] == 3000
    near = load_dataset(small, ["basketball-v3"], "near-optimal")[0]
    assert near.observations.shape == (6, 500, 39) and near.observations.dtype == np.float32
    assert near.actions.shape == (6, 500, 4) and np.abs(near.actions).max() <= 1.0
    assert near.rewards.shape == near.successes.shape == (6, 500)
    assert near.successes.dtype == np.bool_
    assert stats["near-optimal"]["return_mean"] == pytest.approx(near.returns.mean(), abs=0.01)
    assert stats["near-optimal"]["success_rate"] == pytest.approx(near.episode_success.mean(),
                                                                  abs=1e-4)
    goals = _arrays(small, "basketball-v3")["goals"]
    assert list(goals) == list(range(6))  # fixed goals cycle through the training goals
    assert "| basketball-v3 " in (small / "CARD.md").read_text()
    assert not list(small.glob(".*.tmp-*"))


def test_sub_optimal_is_first_half_and_clearly_worse(small):
    near = load_dataset(small, TASKS, "near-optimal")
    sub = load_dataset(small, TASKS, "sub-optimal")
    for n, s in zip(near, sub, strict=True):
        np.testing.assert_array_equal(s.observations, n.observations[:3])
        assert s.returns.mean() < n.returns.mean(), n.task
        assert s.episode_success.mean() < n.episode_success.mean(), n.task
        assert not n.episode_success[0] and n.episode_success[-2:].all(), n.task
    # random first, expert last: the mean return over tasks clearly grows with the buffer
    assert np.mean([s.returns.mean() for s in sub]) < 0.75 * np.mean([n.returns.mean()
                                                                     for n in near])


def test_same_arrays_for_rerun_chunking_and_two_workers(small, tmp_path, monkeypatch):
    task = TASKS[0]
    monkeypatch.setattr(generate, "CHUNK", 3)  # two chunks, so both workers get one
    two = generate_dataset("mt5", EPISODES, 0, tmp_path / "two", tasks=[task], workers=2,
                           progress=False)
    monkeypatch.setattr(generate, "CHUNK", 4)  # another work split, same episodes
    rerun = generate_dataset("mt5", EPISODES, 0, tmp_path / "rerun", tasks=[task], workers=1,
                             progress=False)
    ref = _arrays(small, task)
    for other in (two, rerun):
        got = _arrays(other, task)
        assert set(got) == set(ref)
        for key in ref:
            np.testing.assert_array_equal(ref[key], got[key], err_msg=f"{other} {key}")
        # fixed zip timestamps: equal arrays give equal checksums
        sha = read_card(other)["tasks"][task]["sha256"]
        assert sha == read_card(small)["tasks"][task]["sha256"]


def test_interrupted_generation_keeps_finished_tasks(tmp_path, monkeypatch):
    tasks = ["basketball-v3", "button-press-topdown-v3", "button-press-v3"]  # MT1 cached
    real = generate.run_unit

    def interrupted(unit):
        if unit.task == tasks[1]:
            raise KeyboardInterrupt
        return real(unit)

    monkeypatch.setattr(generate, "run_unit", interrupted)
    out = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        generate_dataset("mt5", 2, 0, out, tasks=tasks, workers=1, progress=False)
    assert list(read_card(out)["tasks"]) == [tasks[0]]
    assert sorted(p.name for p in out.glob("*.npz")) == [f"{tasks[0]}.npz"]
    assert not list(out.glob(".*.tmp-*"))
    before = (out / f"{tasks[0]}.npz").stat()

    monkeypatch.setattr(generate, "run_unit", real)
    calls = []
    monkeypatch.setattr(generate, "run_unit", lambda unit: calls.append(unit.task) or real(unit))
    generate_dataset("mt5", 2, 0, out, tasks=tasks, workers=1, progress=False)
    assert tasks[0] not in calls and set(calls) == set(tasks[1:])
    after = (out / f"{tasks[0]}.npz").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [d.task for d in load_dataset(out, tasks, "near-optimal")] == tasks


def test_atomic_write_leaves_nothing_on_interrupt(tmp_path):
    target = tmp_path / "f.npz"

    def half(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_write_lands_after_it(tmp_path, signum):
    """Ctrl-C (or a SIGTERM handler raising KeyboardInterrupt) mid-write finishes the write
    first: the file is whole and the interrupt still arrives, through the handler in place."""
    def interrupt(*_):
        raise KeyboardInterrupt

    def signalled(f):
        f.write(b"first half ")
        # to this thread: a signal sent to the process may be taken by another thread (a library's
        # helper) and reach the handler only after the write, which is not what is tested here
        signal.pthread_kill(threading.get_ident(), signum)
        f.write(b"second half")

    # the handler is the test's own for both signals: a process started in the background by a
    # shell inherits SIGINT ignored, and then Python installs no Ctrl-C handler
    before = signal.signal(signum, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_write(tmp_path / "f", signalled)
        assert signal.getsignal(signum) is interrupt
    finally:
        signal.signal(signum, before)
    assert (tmp_path / "f").read_bytes() == b"first half second half"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_ensure_dataset_uses_data_root_and_shares_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("MTRL_BENCH_DATA", str(tmp_path / "root"))
    assert default_data_root() == tmp_path / "root"
    d5 = dataset_dir("mt5", 2, 0)
    assert d5 == dataset_dir("mt50", 2, 0) != dataset_dir("mt50-rand", 2, 0)
    assert d5.parent == tmp_path / "root" and "ep2" in d5.name and "seed0" in d5.name
    assert dataset_dir("mt5", 2, 1) != d5 != dataset_dir("mt5", 3, 0)
    assert ensure_dataset("mt5", 2, 0, tasks=["button-press-v3"], progress=False) == d5
    assert list(read_card(d5)["tasks"]) == ["button-press-v3"]


@pytest.mark.parametrize("kwargs, match", [
    ({"episodes": 0}, "episodes must be an integer >= 2"),
    ({"episodes": -3}, "episodes must be"),
    ({"suite": "mt6"}, "Did you mean 'mt5'"),
    ({"tasks": ["reach-v3"]}, "not in suite 'mt5'"),
    ({"tasks": ["basketbal-v3"]}, "Did you mean 'basketball-v3'"),
    ({"workers": 0}, "workers must be >= 1"),
])
def test_bad_generation_input_writes_nothing(tmp_path, kwargs, match):
    args = {"suite": "mt5", "episodes": 2, "tasks": ["basketball-v3"], **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_dataset(args.pop("suite"), args.pop("episodes"), 0, tmp_path / "out",
                         progress=False, **args)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write to output folder"):
        generate_dataset("mt5", 2, 0, blocker / "sub", tasks=["button-press-v3"],
                         progress=False)


def test_folder_of_another_dataset_is_refused(small, tmp_path):
    copy = shutil.copytree(small, tmp_path / "copy")
    with pytest.raises(DatasetError, match="episodes=6, not 4"):
        generate_dataset("mt5", 4, 0, copy, tasks=TASKS, progress=False)


@pytest.fixture
def copy(small, tmp_path):
    return shutil.copytree(small, tmp_path / "copy")


def test_truncated_file_is_named(copy):
    path = copy / "button-press-v3.npz"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(DatasetError, match=r"button-press-v3\.npz: .*truncated"):
        load_dataset(copy, TASKS, "near-optimal")


def test_tampered_file_is_named(copy):
    path = copy / "basketball-v3.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"basketball-v3\.npz: checksum does not match"):
        load_dataset(copy, ["basketball-v3"], "sub-optimal")


def test_shapes_not_matching_the_card_are_named(copy):
    """A file and card that agree with each other but not with the suite's shapes."""
    from mtrl_bench_envs.card import save_npz, sha256_file

    path = copy / "basketball-v3.npz"
    arrays = _arrays(copy, "basketball-v3")
    arrays["observations"] = arrays["observations"][..., :12]
    with open(path, "wb") as f:
        save_npz(f, arrays)
    card = json.loads((copy / "card.json").read_text())
    card["tasks"]["basketball-v3"].update(bytes=path.stat().st_size, sha256=sha256_file(path))
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(DatasetError, match=r"basketball-v3\.npz: 'observations' has shape "
                                           r"\(6, 500, 12\), expected \(6, 500, 39\)"):
        load_dataset(copy, ["basketball-v3"], "near-optimal")


def test_missing_task_card_and_quality(copy):
    with pytest.raises(DatasetError, match="no task 'reach-v3'"):
        load_dataset(copy, ["reach-v3"], "near-optimal")
    with pytest.raises(ValueError, match="Did you mean 'sub-optimal'"):
        load_dataset(copy, TASKS, "suboptimal")
    (copy / "card.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"card\.json: not valid JSON"):
        load_dataset(copy, TASKS, "near-optimal")
    (copy / "card.json").unlink()
    with pytest.raises(DatasetError, match="no dataset card"):
        load_dataset(copy, TASKS, "near-optimal")


def test_a_complete_dataset_is_read_without_writing(smoke_data, tmp_path, monkeypatch):
    """A finished dataset (e.g. on a read-only mount) is used as it is: no lock taken, no file
    created; only missing tasks need the folder to be writable."""
    import shutil

    from mtrl_bench.config import load_profile
    from mtrl_bench_envs import generate
    from mtrl_bench_envs.dataset import ensure_dataset

    root = tmp_path / "ro"
    shutil.copytree(smoke_data, root)
    for lock in root.rglob(".lock"):
        lock.unlink()
    before = sorted(p.relative_to(root) for p in root.rglob("*"))

    def no_lock(directory):
        raise AssertionError(f"took a lock on {directory}")

    monkeypatch.setattr(generate, "locked", no_lock)
    episodes = load_profile("smoke")["data"]["episodes"]
    ensure_dataset("mt5", episodes, 0, root=root, progress=False)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
