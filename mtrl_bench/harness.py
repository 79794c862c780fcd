"""Executing an experiment's runs: one run (`execute`), and the executors (local processes, Ray).

Executing a run (`execute`) is the same function on every executor: skip it when DONE, take its
lock, resume from a checkpoint when there is one, record a failure (status.json + error.txt)
instead of raising. The run lock lives in `mtrl_bench.runlock`; grids come from `mtrl_bench.grid`.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl_bench.config import GENERATED, Execution, RunConfig
from mtrl_bench.grid import GridRun
from mtrl_bench.progress import GridProgress, Watched
from mtrl_bench.runlock import RunLock
from mtrl_bench.runs import RunDir

MAX_ERROR = 2000  # characters of an error kept in summaries (the full traceback is in error.txt)
INSTALL_RAY = 'Ray is not installed; install the extra with: pip install "mtrl-bench[ray]"'
STATES = ("complete", "skipped", "failed", "locked", "interrupted")
RAY_RETRIES = 2  # times Ray restarts a run whose worker process died


# --------------------------------------------------------------------------- one run

@dataclass(frozen=True)
class RunTask:
    """What a worker needs to execute one run (picklable, paths absolute)."""

    name: str
    path: str
    config: RunConfig
    execution: Execution  # threads decided, progress off: a worker draws no bars


def _summary(task: RunTask, state: str, t0: float, **info: Any) -> dict[str, Any]:
    return {"run": task.name, "state": state, "seconds": round(time.time() - t0, 2), **info}


def _locked_by(lock: RunLock) -> str:
    holder = lock.holder() or {}
    return (f"locked by pid {holder.get('pid')} on {holder.get('host')} (delete "
            f"{lock.path} if that process is gone)")


def record_failure(run: RunDir, error: str, details: str = "") -> None:
    """A failed run keeps its files; status.json and error.txt say what went wrong."""
    from mtrl_bench_envs.common import atomic_write

    run.set_status("failed", error=error, host=socket.gethostname(), pid=os.getpid())
    atomic_write(run.path / "error.txt", (details or error).rstrip() + "\n")


def execute(task: RunTask, run: RunDir | None = None) -> dict[str, Any]:
    """Run one grid entry to completion; never raises for a failing run (it is recorded).
    `run`: its folder, when not a plain `RunDir(task.path)` (a remote worker's, see remote.py)."""
    from mtrl_bench.api import Run, RunLocked

    t0 = time.time()
    run = run or RunDir(Path(task.path))
    if run.complete:
        return _summary(task, "skipped", t0)
    try:
        resume = run.checkpoint_path.exists()
        result = Run(task.config, task.execution, run).train(resume=resume)
        if result is None:
            return _summary(task, "interrupted", t0)
        return _summary(task, "complete", t0, resumed=resume, success=result["success"])
    except RunLocked as exc:
        return _summary(task, "locked", t0, error=str(exc))
    except KeyboardInterrupt:
        raise  # the run marked itself interrupted
    except Exception as exc:  # a failed run is recorded; the grid goes on
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        # recorded even when the run failed before it began (a bad dataset root, a plugin's
        # factory raising): a folder holding only status.json and error.txt, which the report
        # reads, and which a rerun of the grid replaces
        run.path.mkdir(parents=True, exist_ok=True)
        record_failure(run, error, traceback.format_exc())
        return _summary(task, "failed", t0, error=error)


def execute_remote(task: RunTask, storage_uri: str | None = None
                   ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """`execute` on a worker that may share no disk with the driver (mtrl_bench.remote): it
    trains in its node's own folder, resumes from `storage_uri` when its node lacks the run, and
    returns its summary with the run's small files for the driver to write."""
    from mtrl_bench.remote import (
        CHECKPOINT,
        WORKER_RUNS_ENV,
        Storage,
        StoredRunDir,
        run_files,
        write_run_files,
    )
    from mtrl_bench_envs.dataset import default_data_root

    root = os.environ.get(WORKER_RUNS_ENV)
    path = Path(root) / task.name if root else Path(task.path)
    ex = task.execution
    if ex.data_dir and not Path(ex.data_dir).exists():  # the driver's folder is not here: this
        # node's own root (generation is deterministic: the same data), named in the manifest
        ex = dataclasses.replace(ex, data_dir=str(default_data_root()))
    storage = Storage(storage_uri) if storage_uri else None
    if storage is not None and not (path / CHECKPOINT).exists():
        stored = storage.get(task.name)
        if CHECKPOINT in stored:  # the run's last node is gone: continue where it stopped
            write_run_files(path, stored)
    run = StoredRunDir(path, storage) if storage is not None else RunDir(path)
    summary = execute(dataclasses.replace(task, path=str(path), execution=ex), run)
    if summary["state"] == "locked":  # the folder is another process's run in progress
        return summary, {}
    files = run_files(path)
    if storage is not None:
        storage.put(task.name, files)
    return summary, files


PARENT_POLL = 2.0  # seconds between a worker's checks that its harness is still alive
TICK = 0.5  # seconds between the driver's looks at the progress of the runs in flight


def _stop(*_: Any) -> None:
    raise KeyboardInterrupt  # the run's own Ctrl-C path: status "interrupted", lock released


def _child(task: RunTask, conn: multiprocessing.connection.Connection) -> None:
    """Entry point of a local worker process.

    Ctrl-C is the parent's: it stops launching runs and terminates these. SIGTERM (the parent's
    terminate, or `kill`) stops the run as Ctrl-C stops a single run. A worker whose harness died
    without cleaning up (SIGKILL, OOM) stops itself, so no orphan trains on holding its run.
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, daemon=True, name="watch-parent").start()
    try:
        conn.send(execute(task))
    except KeyboardInterrupt:
        sys.exit(1)
    conn.close()


# --------------------------------------------------------------------------- executors

def default_workers(device: str = "auto") -> int:
    """Runs at a time: one per core on CPU (a small model gains little from more intra-op
    threads, while separate runs scale almost linearly); one on a GPU machine."""
    import torch

    from mtrl_bench_envs.parallel import default_workers as cores

    gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return 1 if gpu else cores()


def default_threads(workers: int) -> int:
    from mtrl_bench_envs.parallel import default_workers as cores

    return max(1, cores() // max(1, workers))


def _run_local(tasks: Sequence[RunTask], workers: int,
               done: Callable[[dict[str, Any]], None], tick: Callable[[], None]) -> None:
    """One fresh "spawn" process per run, at most `workers` at a time.

    A fresh process per run (not a pool) means a crash, an out-of-memory kill or a leaked thread
    pool ends one run, never the harness or the next run.
    """
    import signal
    import threading

    ctx = multiprocessing.get_context("spawn")
    pending = list(tasks)
    active: dict[Any, tuple[Any, Any, RunTask]] = {}
    # `kill` (SIGTERM) stops the grid as Ctrl-C does: its workers stop, their runs say so
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _stop) if main else None
    try:
        while pending or active:
            while pending and len(active) < workers:
                task = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(task, send), name=f"run {task.name}")
                proc.start()
                send.close()
                active[proc.sentinel] = (proc, recv, task)
            tick()
            for sentinel in multiprocessing.connection.wait(list(active), timeout=TICK):
                proc, recv, task = active.pop(sentinel)
                summary = recv.recv() if recv.poll() else None
                proc.join()
                recv.close()
                if summary is None:  # the process died without reporting
                    summary = _died(task, f"worker process exited with code {proc.exitcode}")
                done(summary)
    except KeyboardInterrupt:
        for proc, _, _ in active.values():
            proc.terminate()
        for proc, _, task in active.values():
            proc.join()
            run = RunDir(Path(task.path))
            lock = RunLock(run.path)
            if (lock.holder() or {}).get("pid") != proc.pid:
                continue  # the child had not taken this run (another harness holds it)
            if not run.complete:  # it may have finished just before the signal
                run.set_status("interrupted")
            lock.path.unlink(missing_ok=True)  # its holder is gone
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _died(task: RunTask, error: str) -> dict[str, Any]:
    run = RunDir(Path(task.path))
    if not run.complete:
        record_failure(run, error)
    return {"run": task.name, "state": "failed", "seconds": 0.0, "error": error}


def ray_gpus_per_run(requested: float | None, device: str, cluster_gpus: float) -> float:
    """GPUs each Ray task reserves. Ray hides every GPU from a task that reserves none
    (CUDA_VISIBLE_DEVICES=""), so `--device auto` on a GPU cluster would silently train on CPU:
    by default a run reserves one GPU when the cluster has any and the device is not cpu."""
    if device.startswith("cuda:"):  # Ray numbers a task's GPUs from 0: it picks the GPU
        raise ValueError(f"--device {device}: on Ray use cuda or auto (Ray assigns each run "
                         "its GPU)")
    if requested is not None:
        if requested < 0:
            raise ValueError(f"--gpus-per-run must be >= 0, got {requested:g}")
        if requested == 0 and device == "cuda":
            raise ValueError("--device cuda with --gpus-per-run 0: Ray would hide every GPU "
                             "from the runs")
        if requested > 0 and device == "cpu":
            raise ValueError("--device cpu with --gpus-per-run > 0 would hold GPUs it never "
                             "uses")
        gpus = requested
    else:
        gpus = 1.0 if cluster_gpus and device != "cpu" else 0.0
    if device == "cuda" and not cluster_gpus:
        raise ValueError("--device cuda, but the Ray cluster has no GPU (ray.cluster_resources())")
    if gpus > max(cluster_gpus, 0):
        raise ValueError(f"--gpus-per-run {gpus:g}, but the Ray cluster has {cluster_gpus:g} "
                         "GPUs: no run could be scheduled")
    return gpus


def _run_ray(tasks: Sequence[RunTask], threads: int, address: str | None,
             done: Callable[[dict[str, Any]], None], tick: Callable[[], None],
             device: str = "auto", gpus_per_run: float | None = None,
             storage: str | None = None) -> None:
    """Each run is a Ray task reserving `threads` CPUs (so workers never share a core) and
    `ray_gpus_per_run` GPUs; a worker process serves one run and exits (max_calls=1), like the
    local executor's fresh process. Workers need not share a disk with this process: each sends
    its run's small files back, written here where the local executor would have written them,
    and with `storage` its checkpoints go there too (mtrl_bench.remote)."""
    from mtrl_bench.remote import write_run_files

    try:
        import ray
    except ImportError:
        raise RuntimeError(INSTALL_RAY) from None
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        ray.init(address=address, **kwargs) if address else ray.init(**kwargs)
    try:
        # A run whose worker dies (OOM kill, lost node) is retried: it resumes from its last
        # checkpoint. A run that fails inside `execute` is recorded, never retried.
        gpus = ray_gpus_per_run(gpus_per_run, device, ray.cluster_resources().get("GPU", 0.0))
        remote = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=RAY_RETRIES,
                            max_calls=1)(execute_remote)
        refs = {remote.remote(task, storage): task for task in tasks}
        while refs:
            tick()
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=TICK)
            for ref in ready:
                task = refs.pop(ref)
                try:
                    summary, files = ray.get(ref)
                    if files:  # none when another process holds the run
                        write_run_files(Path(task.path), files)
                except Exception as exc:  # the worker died (RayTaskError, WorkerCrashedError)
                    summary = _died(task, f"Ray task failed: {type(exc).__name__}: {exc}")
                done(summary)
    finally:
        if started:
            ray.shutdown()


def _pregenerate(runs: Sequence[GridRun], data_dir: str | None, progress: bool) -> list[str]:
    """Generate each missing dataset once, in this process, before the runs start (workers would
    otherwise queue on the dataset lock). A failure here is left to the runs to record."""
    from mtrl_bench_envs.dataset import ensure_dataset

    seen, problems = set(), []
    for r in runs:
        data = r.config.data
        key = (r.suite, data.episodes, data.data_seed, data.recipe)
        if key in seen or data.source != GENERATED:  # Minari datasets are read, never made
            continue
        seen.add(key)
        try:
            ensure_dataset(*key[:3], root=Path(data_dir) if data_dir else None,
                           progress=progress, recipe=key[3])
        except Exception as exc:  # recorded per run when the run tries again
            problems.append(f"dataset {key[0]} ({key[3]}, {key[1]} episodes, seed {key[2]}): "
                            f"{exc}")
    return problems


def run_grid(runs: Sequence[GridRun], runs_root: Path, executor: str = "local",
             workers: int = 1, execution: Execution | None = None,
             address: str | None = None, gpus_per_run: float | None = None,
             storage: str | None = None) -> list[dict[str, Any]]:
    """Execute every run of a grid; returns one summary per run (state, seconds, error).

    `execution` applies to every run; its threads default to cores // workers (0 = that).
    `gpus_per_run` (Ray only) defaults to one GPU per run on a cluster that has GPUs.
    `storage` (Ray only): a pyarrow filesystem URI for checkpoints (see mtrl_bench.remote)."""
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor '{executor}'; valid: local, ray")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if storage and executor != "ray":
        raise ValueError("storage is for the Ray executor (local runs keep their checkpoints)")
    if executor == "ray":
        try:
            import ray  # noqa: F401  (checked before any work starts)
        except ImportError:
            raise RuntimeError(INSTALL_RAY) from None
    if storage:  # opened here first: a bad URI is one error now, not one per run on the workers
        from mtrl_bench.remote import Storage

        storage = Storage(storage).uri
    execution = execution or Execution()
    threads = execution.threads or default_threads(workers)
    progress = execution.progress
    runs_root = Path(runs_root).resolve()
    data_root = execution.data_dir or os.environ.get("MTRL_BENCH_DATA") or None
    data_root = str(Path(data_root).resolve()) if data_root else None
    worker_execution = dataclasses.replace(execution, threads=threads, data_dir=data_root,
                                           progress=False)
    summaries: dict[str, dict[str, Any]] = {}
    todo = []
    for r in runs:
        run = RunDir(runs_root / r.name)
        if run.complete:
            summaries[r.name] = {"run": r.name, "state": "skipped", "seconds": 0.0}
        elif RunLock(run.path).is_held():
            summaries[r.name] = {"run": r.name, "state": "locked", "seconds": 0.0,
                                 "error": _locked_by(RunLock(run.path))}
        else:
            todo.append(r)
    if todo:
        for problem in _pregenerate(todo, data_root, progress):
            print(f"warning: {problem}", file=sys.stderr)
    tasks = [RunTask(r.name, str(runs_root / r.name), r.config, worker_execution) for r in todo]
    slots = workers if executor == "local" else 1  # Ray: as many as are seen running
    watch = GridProgress([Watched.of(t.name, Path(t.path), t.config) for t in tasks],
                         total=len(runs), slots=slots, show=progress)

    def done(summary: dict[str, Any]) -> None:
        summaries[summary["run"]] = summary
        watch.finished(summary)

    try:
        if executor == "ray":
            _run_ray(tasks, threads, address, done, watch.tick, execution.device, gpus_per_run,
                     storage)
        else:
            _run_local(tasks, workers, done, watch.tick)
    finally:
        watch.close()
    return [summaries[r.name] for r in runs if r.name in summaries]


__all__ = ["RunTask", "execute", "execute_remote", "record_failure", "run_grid"]
