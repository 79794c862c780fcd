"""Experiment grids -> runs, and the executors that run them (local processes or Ray).

An *experiment* is a TOML file (built-ins in ``mtrl_bench/experiments/``; a user's own file works
the same way)::

    description = "one line"
    methods = ["prompt-dt", "socodt"]
    suites = ["mt5"]              # "random5-{seed}": the task combination follows the seed
    qualities = ["sub-optimal"]
    seeds = [0, 1, 2]
    profile = "cpu"               # smoke | cpu | paper

    [overrides]                   # `section.field` values for every run (config.py sections)
    train.steps = 600
    method.beta_scale = 0.01      # method.* applies to the methods that have the field

    [[sweep]]                     # optional; each sweep adds its points to the grid
    name = "alpha"
    method.alpha = [5, 10, 20, 40]          # a list is an axis (cross product within a sweep)
    "method.q1,method.q3" = [[0.01, 0.99]]  # coupled keys move together

A list in ``[overrides]`` is an axis of every point. The grid is methods × suites × qualities ×
seeds × points; identical resolved configs are one run (a run is keyed by its config hash, so the
default point shared by several sweeps trains once). A run whose point changes a value of the
base config is labelled ``method[field=value, ...]``; that label is the results table's method.

Executing a run (`execute`) is the same function on every executor: skip it when DONE, take its
lock, resume from a checkpoint when there is one, record a failure (status.json + error.txt)
instead of raising. The lock is a file created with O_CREAT|O_EXCL holding pid, host, process
start time and a random token; a lock whose pid is dead on this host (or was reused by another
process) is stale and is broken under a second O_EXCL "breaker" file, so two harnesses can never
both take one run.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from mtrl_bench.runs import RunDir, read_json, write_json

SECTIONS = ("model", "data", "train", "eval", "method")
GRID_KEYS = ("description", "methods", "suites", "qualities", "seeds", "profile", "overrides",
             "sweep")
SEED_FIELD = "{seed}"  # in a suite name: the suite is drawn with the run's training seed
MAX_ERROR = 2000  # characters of an error kept in summaries (the full traceback is in error.txt)
INSTALL_RAY = 'Ray is not installed; install the extra with: pip install "mtrl-bench[ray]"'
STATES = ("complete", "skipped", "failed", "locked", "interrupted")


# --------------------------------------------------------------------------- experiments

@dataclass(frozen=True)
class Sweep:
    """A set of override points: the cross product of its axes (coupled keys move together)."""

    name: str
    axes: dict[str, list[Any]]  # "train.steps" or "method.q1,method.q3" -> values

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.axes)
        out = []
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            point: dict[str, Any] = {}
            for key, value in zip(keys, combo):
                parts = key.split(",")
                point.update(zip(parts, value) if len(parts) > 1 else {key: value})
            out.append(point)
        return out


@dataclass(frozen=True)
class Experiment:
    name: str
    source: str  # the file it came from
    text: str  # the TOML as written (copied into the experiment directory)
    description: str
    methods: tuple[str, ...]
    suites: tuple[str, ...]
    qualities: tuple[str, ...]
    seeds: tuple[int, ...]
    profile: str
    overrides: dict[str, Any]  # scalar values only
    axes: dict[str, list[Any]]  # list-valued [overrides]: axes of every point
    sweeps: tuple[Sweep, ...]


def builtin_experiments() -> list[str]:
    folder = resources.files("mtrl_bench").joinpath("experiments")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                  if p.name.endswith(".toml"))


def load_experiment(name_or_path: str | Path) -> Experiment:
    """A built-in experiment by name, or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"experiment file not found: {path}")
        return parse_experiment(path.read_text(), str(path), path.stem)
    names = builtin_experiments()
    if str(name_or_path) not in names:
        from mtrl_bench_envs.suites import unknown_name_message

        raise ValueError(unknown_name_message("experiment", str(name_or_path), names)
                         + " (or give the path of a .toml file)")
    res = resources.files("mtrl_bench").joinpath(f"experiments/{name_or_path}.toml")
    return parse_experiment(res.read_text(), f"mtrl_bench/experiments/{name_or_path}.toml",
                            str(name_or_path))


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 1}} -> {"train.steps": 1}; a key "q1,q3" under "method" becomes
    "method.q1,method.q3"."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        full = ",".join(prefix + part.strip() for part in key.split(","))
        if isinstance(value, dict):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _check_axis(source: str, key: str, values: Any) -> list[Any]:
    coupled = len(key.split(","))
    if not isinstance(values, list) or not values:
        raise ValueError(f"{source}: '{key}' must be a non-empty list of values")
    if coupled > 1 and not all(isinstance(v, list) and len(v) == coupled for v in values):
        raise ValueError(f"{source}: coupled keys '{key}' need a list of {coupled}-element lists")
    return values


def _check_key(source: str, key: str) -> None:
    for part in key.split(","):
        section, _, name = part.partition(".")
        if section not in SECTIONS or not name:
            raise ValueError(f"{source}: override '{part}' must look like section.field with "
                             f"section in {', '.join(SECTIONS)}")


def _names(source: str, data: dict[str, Any], key: str, kind: type) -> tuple[Any, ...]:
    if key not in data:
        raise ValueError(f"{source}: missing '{key}' (a list)")
    values = data[key]
    if isinstance(values, kind):
        values = [values]
    ok = isinstance(values, list) and values and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in values)
    if not ok:
        raise ValueError(f"{source}: '{key}' must be a non-empty list of {kind.__name__}")
    if len(set(values)) != len(values):
        raise ValueError(f"{source}: '{key}' lists a value twice")
    return tuple(values)


def parse_experiment(text: str, source: str, name: str) -> Experiment:
    """Parse and check the shape of an experiment; names are checked by `expand`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: malformed TOML: {exc}") from None  # names line and column
    from mtrl_bench_envs.suites import unknown_name_message

    for key in data:
        if key not in GRID_KEYS:
            raise ValueError(f"{source}: " + unknown_name_message("key", key, GRID_KEYS))
    profile = data.get("profile", "cpu")
    if not isinstance(profile, str):
        raise ValueError(f"{source}: 'profile' must be a string")
    raw = data.get("overrides", {})
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: [overrides] must be a table")
    overrides, axes = {}, {}
    for key, value in _flatten(raw).items():
        _check_key(source, key)
        if isinstance(value, list) or "," in key:
            axes[key] = _check_axis(source, key, value)
        else:
            overrides[key] = value
    sweeps = []
    raw_sweeps = data.get("sweep", [])
    if not isinstance(raw_sweeps, list):
        raise ValueError(f"{source}: sweeps are written [[sweep]] (an array of tables)")
    for i, table in enumerate(raw_sweeps):
        table = dict(table)
        label = table.pop("name", None)
        flat = _flatten(table)
        if not flat:
            raise ValueError(f"{source}: [[sweep]] number {i + 1} sets no field")
        for key, value in flat.items():
            _check_key(source, key)
            flat[key] = _check_axis(source, key, value if isinstance(value, list) else [value])
        parts = [part for key in flat for part in key.split(",")]
        sweeps.append(Sweep(str(label or "+".join(parts)), flat))
    return Experiment(
        name=name, source=source, text=text, description=str(data.get("description", "")),
        methods=_names(source, data, "methods", str), suites=_names(source, data, "suites", str),
        qualities=_names(source, data, "qualities", str), seeds=_names(source, data, "seeds", int),
        profile=profile, overrides=overrides, axes=axes, sweeps=tuple(sweeps))


def with_overrides(exp: Experiment, profile: str | None = None,
                   overrides: dict[str, Any] | None = None) -> Experiment:
    """The experiment with a command line's --profile and --set applied on top (they win)."""
    overrides = dict(overrides or {})
    for key in overrides:
        _check_key("--set", key)
    return dataclasses.replace(
        exp, profile=profile or exp.profile, overrides={**exp.overrides, **overrides},
        axes={k: v for k, v in exp.axes.items() if k not in overrides})


# --------------------------------------------------------------------------- grid expansion

@dataclass
class GridRun:
    """One run of an experiment: what to train, where, and how it is labelled in results."""

    name: str  # run directory name: {suite}__{method}__{quality}__s{seed}__{hash}
    method: str
    label: str  # method, or method[field=value, ...] for a sweep point off the base config
    suite: str
    suite_label: str  # the suite as tabulated: "random5" for the combinations "random5-{seed}"
    quality: str
    seed: int
    config: dict[str, Any]
    sweeps: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "point"}]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _method_fields(method: str) -> set[str]:
    from mtrl_bench.plugins import registry

    return {f.name for f in dataclasses.fields(registry().method(method).spec.config_cls)}


def _validate_names(exp: Experiment, methods: Sequence[str]) -> None:
    """Every name of the grid, before anything is built or run (close-match suggestions)."""
    from mtrl_bench.config import QUALITIES, load_profile
    from mtrl_bench.plugins import registry
    from mtrl_bench_envs.suites import get_suite, unknown_name_message

    reg = registry()
    for method in methods:
        reg.method(method)  # KeyError with a suggestion
    for suite in exp.suites:
        get_suite(suite.replace(SEED_FIELD, str(exp.seeds[0])))
    for quality in exp.qualities:
        if quality not in QUALITIES:
            raise ValueError(unknown_name_message("quality", quality, QUALITIES))
    load_profile(exp.profile)
    keys = {k for k in exp.overrides} | {p for k in exp.axes for p in k.split(",")}
    keys |= {p for s in exp.sweeps for k in s.axes for p in k.split(",")}
    method_fields = set().union(*(_method_fields(m) for m in methods))
    for key in sorted(k for k in keys if k.startswith("method.")):
        name = key.removeprefix("method.")
        if name not in method_fields:
            valid = sorted(method_fields) or ["(none: these methods have no fields)"]
            raise ValueError(unknown_name_message("method field", name, valid)
                             + f" (fields of {', '.join(methods)})")


def _points(exp: Experiment) -> list[tuple[dict[str, Any], str | None]]:
    """(overrides of a point, sweep name) for every point of the grid."""
    base = Sweep("", exp.axes).points() if exp.axes else [{}]
    if not exp.sweeps:
        return [(p, None) for p in base]
    return [({**b, **p}, s.name) for s in exp.sweeps for p in s.points() for b in base]


def _label(method: str, point: dict[str, Any], base: dict[str, Any]) -> str:
    """method[field=value, ...] over the point's fields whose value differs from the base."""
    changed = []
    for key, value in point.items():
        section, _, name = key.partition(".")
        current = (base["method_config"] if section == "method" else base[section]).get(name)
        if current != value:
            changed.append(f"{name if section == 'method' else key}={value}")
    return f"{method}[{', '.join(changed)}]" if changed else method


def expand(exp: Experiment, runs_root: Path, only_methods: Iterable[str] | None = None,
           device: str = "auto") -> list[GridRun]:
    """Validate the experiment and list its runs (deduplicated by resolved config)."""
    from mtrl_bench.api import prepare_run
    from mtrl_bench_envs.suites import unknown_name_message

    try:
        _validate_names(exp, exp.methods)  # the whole grid, whatever subset runs now
    except (KeyError, ValueError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise ValueError(f"{exp.source}: {msg}") from None
    methods = list(exp.methods)
    if only_methods:
        for name in only_methods:
            if name not in methods:
                raise ValueError("--only-method: " + unknown_name_message(
                    f"method of experiment '{exp.name}'", name, methods))
        methods = [m for m in methods if m in set(only_methods)]
    fields_of = {m: _method_fields(m) for m in methods}
    runs: dict[str, GridRun] = {}
    base_cfg: dict[str, dict[str, Any]] = {}
    grid = itertools.product(exp.seeds, exp.suites, exp.qualities, _points(exp), methods)
    for seed, suite_name, quality, (point, sweep), method in grid:
        # method.* fields apply to the methods that have them (e.g. socodt's alpha, not prompt-dt)
        keep = {k: v for k, v in point.items()
                if not k.startswith("method.") or k.removeprefix("method.") in fields_of[method]}
        base = {k: v for k, v in exp.overrides.items()
                if not k.startswith("method.") or k.removeprefix("method.") in fields_of[method]}
        suite = suite_name.replace(SEED_FIELD, str(seed))
        try:
            cfg, run = prepare_run(method, suite, quality, seed, exp.profile, device,
                                   {**base, **keep}, runs_root=runs_root)
            if method not in base_cfg:
                base_cfg[method] = prepare_run(method, suite, quality, seed, exp.profile, device,
                                               base, runs_root=runs_root)[0].to_dict()
        except (KeyError, ValueError) as exc:
            msg = exc.args[0] if exc.args else str(exc)
            raise ValueError(f"{exp.source}: {method} on {suite}: {msg}") from None
        name = run.path.name
        entry = runs.get(name)
        if entry is None:
            entry = runs[name] = GridRun(
                name, method, _label(method, keep, base_cfg[method]), suite,
                suite_name.replace("-" + SEED_FIELD, "").replace(SEED_FIELD, ""), quality, seed,
                cfg.to_dict())
        if sweep is not None:
            entry.sweeps.append({"name": sweep, "point": keep})
    return list(runs.values())


def write_grid(exp: Experiment, runs: Sequence[GridRun], out: Path) -> None:
    """experiment.toml (as written) and grid.json (every run, its label and sweeps)."""
    from mtrl_bench.runs import atomic_write

    atomic_write(out / "experiment.toml", exp.text)
    write_json(out / "grid.json", {"experiment": exp.name, "source": exp.source,
                                   "description": exp.description,
                                   "runs": [r.to_dict() for r in runs]})


def read_grid(experiment_dir: Path) -> dict[str, Any] | None:
    path = Path(experiment_dir) / "grid.json"
    return read_json(path) if path.exists() else None


# --------------------------------------------------------------------------- the run lock

def _process_start(pid: int) -> str | None:
    """Kernel start time of a process (Linux), to tell a live holder from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat, counted after "(comm)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunLock:
    """An exclusive claim on one run directory, safe across processes and hosts.

    Taking it is ``os.open(LOCK, O_CREAT | O_EXCL)``, atomic on local filesystems and NFS v3+.
    """

    NAME = "LOCK"
    EMPTY_GRACE = 60.0  # seconds an unreadable (just created, not yet written) lock is trusted

    def __init__(self, run_path: Path) -> None:
        self.path = Path(run_path) / self.NAME
        self.breaker = Path(run_path) / (self.NAME + ".break")
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "start": _process_start(os.getpid()), "time": time.time(),
                     "token": uuid.uuid4().hex}
        self.acquired = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def holder(self) -> dict[str, Any] | None:
        """The current holder's info, or None when unlocked (or the file is unreadable)."""
        return self._read(self.path)

    def _stale(self, path: Path, info: dict[str, Any] | None) -> bool:
        if info is None:  # created but not yet written, or its writer died in between
            try:
                return time.time() - path.stat().st_mtime > self.EMPTY_GRACE
            except OSError:
                return False
        if info.get("host") != socket.gethostname():
            return False  # cannot see another host's processes: never break its lock
        pid = int(info.get("pid", -1))
        if not _pid_alive(pid):
            return True
        start = _process_start(pid)
        return start is not None and info.get("start") is not None and start != info["start"]

    def is_held(self) -> bool:
        """Held by a live process (stale locks count as free)."""
        return self.path.exists() and not self._stale(self.path, self.holder())

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                seen = self.holder()
                if not self._stale(self.path, seen):
                    return False
                self._break(seen)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.info, f)
                f.flush()
                os.fsync(f.fileno())
            self.acquired = True
            return True
        return False

    def _break(self, seen: dict[str, Any] | None) -> None:
        """Remove a stale lock, but only the one judged stale: the breaker file serialises the
        check-and-unlink, so a fresh lock taken meanwhile by another harness is never removed."""
        try:
            fd = os.open(self.breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if self._stale(self.breaker, self._read(self.breaker)):
                self.breaker.unlink(missing_ok=True)  # its owner died mid-break
            return
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.info, f)
            now = self.holder()
            if now == seen and self._stale(self.path, now):
                self.path.unlink(missing_ok=True)
        finally:
            self.breaker.unlink(missing_ok=True)

    def release(self) -> None:
        if self.acquired and (self.holder() or {}).get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)
        self.acquired = False


# --------------------------------------------------------------------------- one run

@dataclass(frozen=True)
class RunTask:
    """What a worker needs to execute one run (picklable, paths absolute)."""

    name: str
    path: str
    config: dict[str, Any]
    data_dir: str | None
    threads: int  # torch threads for this run (config value 0 = decided by the harness)


def _summary(task: RunTask, state: str, t0: float, **info: Any) -> dict[str, Any]:
    return {"run": task.name, "state": state, "seconds": round(time.time() - t0, 2), **info}


def _locked_by(lock: RunLock) -> str:
    holder = lock.holder() or {}
    return (f"locked by pid {holder.get('pid')} on {holder.get('host')} (delete "
            f"{lock.path} if that process is gone)")


def record_failure(run: RunDir, error: str, details: str = "") -> None:
    """A failed run keeps its files; status.json and error.txt say what went wrong."""
    from mtrl_bench.runs import atomic_write

    run.set_status("failed", error=error, host=socket.gethostname(), pid=os.getpid())
    atomic_write(run.path / "error.txt", (details or error).rstrip() + "\n")


def execute(task: RunTask) -> dict[str, Any]:
    """Run one grid entry to completion; never raises for a failing run (it is recorded)."""
    from mtrl_bench.config import RunConfig

    t0 = time.time()
    run = RunDir(Path(task.path))
    if run.complete:
        return _summary(task, "skipped", t0)
    lock = RunLock(run.path)
    if not lock.acquire():
        return _summary(task, "locked", t0, error=_locked_by(lock))
    try:
        if run.complete:  # finished by another harness between our check and the lock
            return _summary(task, "skipped", t0)
        cfg = RunConfig.from_dict(task.config)
        resume = run.checkpoint_path.exists()
        if cfg.train.threads == 0:
            # An execution detail, not part of the run's identity (the directory name hashes the
            # grid's config); a resumed run keeps the count it started with, as its checkpoint
            # config must match.
            if resume and run.config_path.exists():
                cfg.train.threads = read_json(run.config_path)["train"]["threads"]
            else:
                cfg.train.threads = task.threads
        from mtrl_bench.api import run_training

        data_dir = Path(task.data_dir) if task.data_dir else None
        result = run_training(cfg, run, resume=resume, data_dir=data_dir, progress=False)
        if result is None:
            return _summary(task, "interrupted", t0)
        return _summary(task, "complete", t0, resumed=resume, success=result["success"])
    except KeyboardInterrupt:
        run.set_status("interrupted")
        raise
    except Exception as exc:  # a failed run is recorded; the grid goes on
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        record_failure(run, error, traceback.format_exc())
        return _summary(task, "failed", t0, error=error)
    finally:
        lock.release()


def _child(task: RunTask, conn: multiprocessing.connection.Connection) -> None:
    """Entry point of a local worker process."""
    import signal

    # Ctrl-C is the parent's: it stops launching runs and waits for these to stop cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(execute(task))
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
               done: Callable[[dict[str, Any]], None]) -> None:
    """One fresh "spawn" process per run, at most `workers` at a time.

    A fresh process per run (not a pool) means a crash, an out-of-memory kill or a leaked thread
    pool ends one run, never the harness or the next run.
    """
    ctx = multiprocessing.get_context("spawn")
    pending = list(tasks)
    active: dict[Any, tuple[Any, Any, RunTask]] = {}
    try:
        while pending or active:
            while pending and len(active) < workers:
                task = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(task, send), name=f"run {task.name}")
                proc.start()
                send.close()
                active[proc.sentinel] = (proc, recv, task)
            for sentinel in multiprocessing.connection.wait(list(active)):
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


def _died(task: RunTask, error: str) -> dict[str, Any]:
    run = RunDir(Path(task.path))
    if not run.complete:
        record_failure(run, error)
    return {"run": task.name, "state": "failed", "seconds": 0.0, "error": error}


def _run_ray(tasks: Sequence[RunTask], threads: int, address: str | None,
             done: Callable[[dict[str, Any]], None]) -> None:
    """Each run is a Ray task reserving `threads` CPUs, so workers never share a core; a worker
    process serves one run and exits (max_calls=1), like the local executor's fresh process."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(INSTALL_RAY) from None
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        ray.init(address=address, **kwargs) if address else ray.init(**kwargs)
    try:
        remote = ray.remote(num_cpus=threads, max_retries=0, max_calls=1)(execute)
        refs = {remote.remote(task): task for task in tasks}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                task = refs.pop(ref)
                try:
                    summary = ray.get(ref)
                except Exception as exc:  # the worker died (RayTaskError, WorkerCrashedError)
                    summary = _died(task, f"Ray task failed: {type(exc).__name__}: {exc}")
                done(summary)
    finally:
        if started:
            ray.shutdown()


def _pregenerate(runs: Sequence[GridRun], data_dir: Path | None, progress: bool) -> list[str]:
    """Generate each missing dataset once, in this process, before the runs start (workers would
    otherwise queue on the dataset lock). A failure here is left to the runs to record."""
    from mtrl_bench_envs.dataset import ensure_dataset

    seen, problems = set(), []
    for r in runs:
        key = (r.suite, r.config["data"]["episodes"], r.config["data"]["data_seed"])
        if key in seen:
            continue
        seen.add(key)
        try:
            ensure_dataset(key[0], key[1], key[2], root=data_dir, progress=progress)
        except Exception as exc:  # recorded per run when the run tries again
            problems.append(f"dataset {key[0]} ({key[1]} episodes, seed {key[2]}): {exc}")
    return problems


def run_grid(runs: Sequence[GridRun], runs_root: Path, executor: str = "local",
             workers: int = 1, threads: int | None = None, address: str | None = None,
             data_dir: Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Execute every run of a grid; returns one summary per run (state, seconds, error)."""
    from tqdm.auto import tqdm

    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor '{executor}'; valid: local, ray")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if executor == "ray":
        try:
            import ray  # noqa: F401  (checked before any work starts)
        except ImportError:
            raise RuntimeError(INSTALL_RAY) from None
    threads = threads or default_threads(workers)
    runs_root = Path(runs_root).resolve()
    data_root = data_dir or (Path(os.environ["MTRL_BENCH_DATA"])
                             if os.environ.get("MTRL_BENCH_DATA") else None)
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
    tasks = [RunTask(r.name, str(runs_root / r.name), r.config,
                     str(Path(data_root).resolve()) if data_root else None, threads)
             for r in todo]
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="runs", unit="run",
               disable=not progress, dynamic_ncols=True)

    def done(summary: dict[str, Any]) -> None:
        summaries[summary["run"]] = summary
        bar.update(1)
        counts = {s: sum(v["state"] == s for v in summaries.values()) for s in STATES}
        bar.set_postfix({k: v for k, v in counts.items() if v})
        if summary["state"] == "failed":
            bar.write(f"run failed: {summary['run']}: {summary.get('error')}")

    try:
        if executor == "ray":
            _run_ray(tasks, threads, address, done)
        else:
            _run_local(tasks, workers, done)
    finally:
        bar.close()
    return [summaries[r.name] for r in runs if r.name in summaries]


__all__ = [
    "Experiment", "GridRun", "RunLock", "RunTask", "Sweep", "builtin_experiments", "execute",
    "expand", "load_experiment", "parse_experiment", "read_grid", "run_grid", "with_overrides",
    "write_grid",
]
