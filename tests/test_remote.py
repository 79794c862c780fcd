"""Grids on machines that share no disk: a worker's run files reach the driver, crafted files are
refused, checkpoints in storage let a run resume elsewhere; and a real two-node Ray cluster on
this machine whose nodes have their own run roots."""
from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import TWO_SEEDS

from mtrl_bench import grid, harness
from mtrl_bench.api import Run
from mtrl_bench.config import Execution
from mtrl_bench.harness import execute_remote
from mtrl_bench.remote import WORKER_RUNS_ENV, Storage, run_files, write_run_files
from mtrl_bench.runs import RunDir, read_json

GRID = TWO_SEEDS + """
    [overrides]
    train.steps = 60
    train.checkpoint_interval = 10
    train.log_interval = 10
"""


def _runs(tmp_path: Path, root: Path) -> list[grid.GridRun]:
    exp = tmp_path / "grid.toml"
    exp.write_text(textwrap.dedent(GRID))
    return grid.expand(grid.load_experiment(exp), root)


def _quiet(data_dir: Path) -> Execution:
    return Execution(threads=1, data_dir=str(data_dir), progress=False)


def test_a_finished_runs_files_make_a_complete_run_elsewhere(finished_run, tmp_path):
    source = finished_run / "runs" / "run"
    files = run_files(source)
    assert "checkpoint.pt" not in files and not any(n.startswith("LOCK") for n in files)
    assert {"config.json", "manifest.json", "eval.json", "DONE"} <= set(files)
    copy = RunDir(tmp_path / "run")
    assert sorted(write_run_files(copy.path, files)) == sorted(files)
    assert copy.complete and read_json(copy.eval_path) == read_json(source / "eval.json")
    assert write_run_files(copy.path, files) == []  # the same files again: nothing rewritten


def test_the_driver_folder_ends_as_the_workers_does(finished_run, tmp_path):
    """An earlier attempt's plain metrics log would hide the finished run's compacted one: it
    goes; the driver's own checkpoint and folders (plots/, tb/) stay; storage likewise."""
    files = run_files(finished_run / "runs" / "run")
    target = tmp_path / "driver" / "run"
    (target / "plots").mkdir(parents=True)
    for stale in ("metrics.jsonl", "error.txt", "checkpoint.pt"):
        (target / stale).write_text("an earlier attempt")
    write_run_files(target, files)
    assert sorted(f.name for f in target.iterdir()) == sorted([*files, "checkpoint.pt", "plots"])
    assert RunDir(target).metrics() == RunDir(finished_run / "runs" / "run").metrics()
    store = Storage(str(tmp_path / "store"))
    store.put("run", {"metrics.jsonl": b"", "checkpoint.pt": b"ckpt"})  # while it trained
    store.put("run", files)  # finished: no checkpoint sent, the stored one stays
    assert store.get("run") == {**files, "checkpoint.pt": b"ckpt"}


@pytest.mark.parametrize("name", ["../escape", "/tmp/escape", "sub/escape", ".hidden", "LOCK",
                                  "progress.json", "", "a\\b"])
def test_crafted_run_files_are_refused_and_nothing_is_written(tmp_path, name):
    target = tmp_path / "driver" / "run"
    with pytest.raises(ValueError, match="not plain file names"):
        write_run_files(target, {"config.json": b"{}", name: b"x"})
    assert not target.exists() and not (tmp_path / "escape").exists()


def test_storage_paths_are_absolute_and_bad_uris_fail_before_any_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Storage("store")  # a worker's cwd is not ours: the path it is given is absolute
    assert store.uri == str(tmp_path / "store")
    store.put("run", {"DONE": b""})
    assert Storage(str(tmp_path / "store")).get("run") == {"DONE": b""}
    with pytest.raises(ValueError, match="--storage nope://x"):
        Storage("nope://x")
    with pytest.raises(ValueError, match="Ray executor"):
        harness.run_grid([], tmp_path, storage=str(tmp_path / "store"))


def test_a_run_resumes_from_storage_on_a_node_that_never_saw_it(smoke_data, tmp_path,
                                                                 monkeypatch):
    """Stopped after 30 of 60 steps on node A, its checkpoint in storage: node B (an empty run
    root) continues from step 30 and ends where an uninterrupted run ends."""
    runs = _runs(tmp_path, tmp_path / "driver")
    entry, store = runs[0], Storage(str(tmp_path / "store"))
    ex = _quiet(smoke_data)
    node_a = tmp_path / "node-a" / entry.name
    Run(entry.config, ex, RunDir(node_a)).train(stop_after=30)
    store.put(entry.name, run_files(node_a, checkpoint=True))
    monkeypatch.setenv(WORKER_RUNS_ENV, str(tmp_path / "node-b"))
    task = harness.RunTask(entry.name, str(tmp_path / "driver" / entry.name), entry.config, ex)
    summary, files = execute_remote(task, str(tmp_path / "store"))
    assert summary["state"] == "complete" and summary["resumed"], summary
    manifest = json.loads(files["manifest.json"])
    assert [e["resumed_at"] for e in manifest["executions"]] == [0, 30]
    Run(entry.config, ex, RunDir(tmp_path / "whole")).train()
    assert json.loads(files["eval.json"])["tasks"] == read_json(tmp_path / "whole" / "eval.json")[
        "tasks"]
    assert "DONE" in store.get(entry.name)  # storage holds the finished run too


@pytest.mark.slow
def test_a_node_without_the_drivers_data_folder_generates_the_same_data(smoke_data, tmp_path,
                                                                         monkeypatch):
    """The driver's --data-dir does not exist on the node: the run reads the node's own root
    (named in its manifest), where the dataset is generated identical to the driver's."""
    entry = _runs(tmp_path, tmp_path / "driver")[0]
    monkeypatch.setenv(WORKER_RUNS_ENV, str(tmp_path / "node"))
    monkeypatch.setenv("MTRL_BENCH_DATA", str(tmp_path / "node-data"))
    ex = _quiet(tmp_path / "driver-data")  # a path only the driver has
    task = harness.RunTask(entry.name, str(tmp_path / "driver" / entry.name), entry.config, ex)
    summary, files = execute_remote(task)
    assert summary["state"] == "complete", summary
    manifest = json.loads(files["manifest.json"])
    assert manifest["executions"][0]["data_dir"] == str(tmp_path / "node-data")
    ours = sorted(p.relative_to(smoke_data) for p in smoke_data.rglob("*") if p.is_file()
                  and not p.name.startswith("."))
    theirs = sorted(p.relative_to(tmp_path / "node-data")
                    for p in (tmp_path / "node-data").rglob("*") if p.is_file()
                    and not p.name.startswith("."))
    assert theirs == ours
    assert all((smoke_data / f).read_bytes() == (tmp_path / "node-data" / f).read_bytes()
               for f in ours)
    assert not (tmp_path / "driver-data").exists() and not (tmp_path / "driver").exists()


@pytest.mark.slow
def test_a_ray_cluster_without_a_shared_disk(smoke_data, tmp_path):
    """Two Ray worker nodes on this machine, each training into its own run root, neither the
    driver's (whose head node runs no task). The driver's run folders come out with the files
    and results of the local executor's; the node training a run dies after the run's first
    checkpoint reached storage (its worker killed, its disk deleted, its raylet gone) and Ray
    retries the run on the other node, which resumes it from storage."""
    ray = pytest.importorskip("ray", reason='Ray is optional: pip install "mtrl-bench[ray]"')
    from ray.cluster_utils import Cluster

    local = _runs(tmp_path, tmp_path / "local")
    harness.run_grid(local, tmp_path / "local", workers=2, execution=_quiet(smoke_data))
    roots = {n: tmp_path / n for n in ("node-a", "node-b")}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = {n: cluster.add_node(num_cpus=1, env_vars={WORKER_RUNS_ENV: str(root)})
             for n, root in roots.items()}
    driver = tmp_path / "driver"
    runs = _runs(tmp_path, driver)
    target, killed = runs[0].name, {}

    def kill_a_node_after_the_first_stored_checkpoint() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            if (tmp_path / "store" / target / "checkpoint.pt").exists():
                for name, root in roots.items():
                    try:
                        pid = json.loads((root / target / "LOCK").read_text())["pid"]
                    except (OSError, ValueError, KeyError):
                        continue
                    os.kill(pid, signal.SIGKILL)
                    shutil.rmtree(root, ignore_errors=True)  # the node's disk is lost
                    cluster.remove_node(nodes[name], allow_graceful=False)
                    killed["node"] = name
                    break
            time.sleep(0.02)

    thread = threading.Thread(target=kill_a_node_after_the_first_stored_checkpoint)
    ray.init(address=cluster.address, log_to_driver=False)
    thread.start()
    try:
        summaries = harness.run_grid(runs, driver, executor="ray",
                                     execution=_quiet(smoke_data), storage=str(tmp_path / "store"))
    finally:
        thread.join()
        ray.shutdown()
        cluster.shutdown()
    assert killed, "the run finished before its node could be killed"
    assert [s["state"] for s in summaries] == ["complete", "complete"], summaries
    survivor = roots[next(n for n in roots if n != killed["node"])]
    assert (survivor / target / "DONE").exists()  # the retry trained on the other node
    assert not any(driver.glob("*/LOCK"))  # nothing trained in the driver's folders
    for ours, theirs in zip(runs, local):
        run, reference = RunDir(driver / ours.name), tmp_path / "local" / theirs.name
        assert run.complete and not run.checkpoint_path.exists()
        assert sorted(f.name for f in run.path.iterdir()) == sorted(  # tb/: the node's view
            f.name for f in reference.iterdir() if f.is_file() and f.name != "checkpoint.pt")
        assert read_json(run.eval_path)["tasks"] == read_json(reference / "eval.json")["tasks"]
    resumed = [e["resumed_at"] for e in read_json(driver / target / "manifest.json")["executions"]]
    assert resumed[0] == 0 and resumed[-1] > 0, resumed
