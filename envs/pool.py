"""Built Meta-World envs, kept for reuse and stepped in this process or across worker processes.

Evaluation spends most of its time in `env.step` (67-80% of it at the cpu profile) while the
model waits. `EnvPool(workers=W)` steps the envs of a batch in this process and W - 1 spawned
ones: env k of a batch lives in share k % W, so each share holds episodes of every task and tasks
that stop early do not leave one share idle. An env steps identically in any process (same task,
goal, seed and actions), so results never depend on W.

Built envs are kept: pointing one at another goal and seed (`set_goal`, which replays exactly what
a fresh env would) costs ~1/20 of building it, so waves of episodes and a run's successive
evaluations reuse them, as many as memory allows (`trim`).
"""
from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtrl_bench_envs.parallel import ignore_sigint
from mtrl_bench_envs.suites import make_env, set_goal

__all__ = ["ENV_MIB", "EnvPool", "affordable_envs"]

Spec = tuple[str, int, int]  # make_env's (task, goal, seed)
# resident memory of one live Meta-World v3 env: building 100 MT50 envs in one process grew its
# RSS by 2,179 MiB (2026-12-04, /proc/self/statm before and after; BENCHMARKS.md says ~21 MB)
ENV_MIB = 22


class _Share:
    """The envs of one process: the free ones by task, and the batch it has open."""

    def __init__(self) -> None:
        self.free: dict[str, list] = {}
        self.opened: list[tuple[str, Any]] = []
        self.build_seconds = 0.0

    def open(self, specs: Sequence[Spec]) -> tuple[np.ndarray, float]:
        """Reset an env for each spec (a kept one when there is one); their first observations
        and this share's env-building seconds so far."""
        for task, goal, seed in specs:
            if self.free.get(task):
                env = self.free[task].pop()
                set_goal(env, task, goal, seed)
            else:
                tic = time.perf_counter()
                env = make_env(task, goal, seed)
                self.build_seconds += time.perf_counter() - tic
            self.opened.append((task, env))
        return np.array([env.reset()[0] for _, env in self.opened]), self.build_seconds

    def step(self, ids: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step opened envs `ids`: observations, rewards, info["success"], ended (terminated or
        truncated)."""
        out = [self.opened[k][1].step(a) for k, a in zip(ids, actions)]
        if not out:  # this share has no env left running
            return np.zeros((0, 0)), np.zeros(0), np.zeros(0), np.zeros(0, bool)
        return (np.array([o[0] for o in out]),
                np.array([o[1] for o in out], float),
                np.array([o[4]["success"] for o in out], float),
                np.array([o[2] or o[3] for o in out], bool))

    def release(self) -> None:
        for task, env in self.opened:
            self.free.setdefault(task, []).append(env)
        self.opened = []

    def trim(self, keep: int) -> int:
        """Close the free envs beyond the first `keep`; how many stay."""
        kept = 0
        for envs in self.free.values():
            while len(envs) > max(keep - kept, 0):
                envs.pop().close()
            kept += len(envs)
        return kept


def _serve(conn) -> None:
    """A worker process: one `_Share`, driven by (method, args) messages until the pipe closes."""
    ignore_sigint()
    share = _Share()
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):  # the parent closed the pool or died
            break
        try:
            conn.send(("ok", getattr(share, method)(*args)))
        except Exception as exc:  # reported to the parent, which raises it with this worker named
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    share.release()
    share.trim(0)


class EnvPool:
    """Envs for batches of episodes, spread over `workers` processes (this one and workers - 1
    spawned on first use). `open` a batch of specs, `step` any of its envs, `release` it; the
    envs stay built for the next batch until `trim` or `close`. Use it as a context manager, or
    call `close`, so the worker processes end with it."""

    def __init__(self, workers: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"env workers must be an integer >= 1, got {workers!r}")
        self.workers = workers
        self._local = _Share()
        self._remote: list[tuple[Any, Any]] = []  # (pipe, process)
        self._built = [0.0] * workers

    @property
    def build_seconds(self) -> float:
        """Seconds spent building envs, in every process."""
        return sum(self._built)

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # not fork: torch's thread pools are loaded
        for _ in range(self.workers - 1 - len(self._remote)):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(theirs,), daemon=True,
                               name="mtrl-bench env worker")
            proc.start()
            theirs.close()
            self._remote.append((ours, proc))

    def _each(self, method: str, args: Sequence[tuple]) -> list:
        """`method(*args[s])` on every share s; the workers run theirs while this process runs
        its own. A worker's error is raised here once every share has answered (so the pipes
        stay in step), naming the worker; a dead worker is reported, not waited for."""
        for (conn, proc), a in zip(self._remote, args[1:]):
            try:
                conn.send((method, a))
            except OSError:  # BrokenPipeError: the worker is gone
                raise _died(proc) from None
        try:
            results, failed = [getattr(self._local, method)(*args[0])], None
        except Exception as exc:  # raised once the workers' answers are read
            results, failed = [None], exc
        errors = []
        for conn, proc in self._remote:
            try:
                status, value = conn.recv()
            except (EOFError, OSError):
                raise _died(proc) from None
            if status == "error":
                errors.append(f"env worker process {proc.pid}: {value}")
            results.append(value)
        if failed is not None:
            raise failed
        if errors:
            raise RuntimeError("; ".join(errors))
        return results

    def open(self, specs: Sequence[Spec]) -> np.ndarray:
        """Reset an env for every spec; their first observations, (len(specs), obs_dim)."""
        if len(self._remote) < self.workers - 1:
            self._start()
        w = self.workers
        parts = self._each("open", [(list(specs[s::w]),) for s in range(w)])
        self._built = [seconds for _, seconds in parts]
        return _gather([obs for obs, _ in parts], [slice(s, None, w) for s in range(w)],
                       len(specs))

    def step(self, ids: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step the open envs `ids` (indices into the opened specs) with `actions` (one row
        each): their observations, rewards, info["success"] values and ended flags, in order."""
        w, share = self.workers, np.asarray(ids) % self.workers
        picks = [share == s for s in range(w)]
        parts = self._each("step", [(ids[p] // w, actions[p]) for p in picks])
        return tuple(_gather([part[f] for part in parts], picks, len(ids)) for f in range(4))

    def release(self) -> None:
        """Give the open batch's envs back to the pool."""
        self._each("release", [()] * (1 + len(self._remote)))

    def trim(self, keep: int) -> int:
        """Keep at most `keep` free envs in all (split evenly over the processes); how many stay."""
        share = -(-keep // self.workers)
        return sum(self._each("trim", [(share,)] * (1 + len(self._remote))))

    def close(self) -> None:
        """Close every env and end the worker processes."""
        self._local.release()
        self._local.trim(0)
        for conn, _ in self._remote:
            conn.close()  # the worker's recv ends, it closes its envs and exits
        for _, proc in self._remote:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        self._remote = []

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _died(proc) -> RuntimeError:
    proc.join(timeout=1)
    return RuntimeError(f"env worker process {proc.pid} died (exit code {proc.exitcode}); "
                        "the evaluation cannot continue")


def _gather(parts: list[np.ndarray], places: list, n: int) -> np.ndarray:
    """One array of n rows from the shares' parts, each put back at its places."""
    first = next((p for p in parts if len(p)), parts[0])
    out = np.empty((n, *first.shape[1:]), first.dtype)
    for part, where in zip(parts, places):
        if len(part):  # a share with nothing to step sends an empty part
            out[where] = part
    return out


def affordable_envs(fraction: float = 0.5) -> int | None:
    """How many more envs fit in `fraction` of the memory available now (None: unknown, not
    Linux). A run keeps its envs between evaluations only as far as this allows."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(int(line.split()[1]) / 1024 * fraction // ENV_MIB)
    except OSError:
        pass
    return None
