"""Watching runs while they train: each run keeps a small progress record, a grid draws them.

A run rewrites RUN_DIR/progress.json (atomically; at most every WRITE_EVERY seconds and at each
change of phase) with its phase, its step and what it has measured so far: seconds per training
step and per learning-curve evaluation, and from those the seconds it has left. Writing it reads
the clock only, never a random generator, so a watched run trains exactly as an unwatched one.
The record is removed when the run stops; it is never part of a run's results.

A grid's driver (`GridProgress`) polls the records of the runs in flight. On a terminal it
draws one bar per run in flight under the grid's bar; on any other stream it prints a plain
block every few seconds (LINE_EVERY, or $MTRL_BENCH_PROGRESS_EVERY); quiet, it prints nothing.
Its ETA comes from measured rates only: a run in flight reports its own, and a run not started
yet is assumed to cost what a measured run of the same shape (method, suite, steps, evaluation)
costs. While some cost is still unmeasured the ETA is a lower bound, shown as "ETA >= ...".
"""
from __future__ import annotations

import heapq
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from mtrl_bench.config import RunConfig

FILE = "progress.json"
PHASES = ("data", "training", "curve evaluation", "final evaluation")
WRITE_EVERY = 2.0  # seconds between a run's progress writes (phase changes write at once)
LINE_EVERY = 60.0  # seconds between the plain progress blocks of a non-terminal stream
DRAW_EVERY = 0.5  # seconds between redraws of the terminal bars
RUN_BAR = "{desc}: {percentage:3.0f}%|{bar}| {phase}"  # no rate: the driver did not time it


def duration(seconds: float) -> str:
    """3h05m, 12m07s or 41s."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


# --------------------------------------------------------------------------- in the run

class ProgressRecord:
    """What a run writes about itself; see the module docstring."""

    def __init__(self, path: Path, cfg: RunConfig) -> None:
        self.path = Path(path)
        self.total = cfg.train.steps
        self.interval = cfg.train.eval_interval
        final, curve = cfg.eval.episodes_per_task, cfg.eval.curve_episodes_per_task
        self.final_scale = final / curve if curve else 1.0  # final evaluation / a curve one
        self.phase_name, self.step_now = "data", 0
        self.phase_start = self.last_write = time.time()
        self.train_seconds, self.trained = 0.0, 0  # this attempt's training phases only
        self.curve_seconds: list[float] = []
        self.train_from = 0

    def phase(self, name: str, step: int) -> None:
        now = time.time()
        if self.phase_name == "training":
            self.train_seconds += now - self.phase_start
            self.trained += step - self.train_from
        elif self.phase_name == "curve evaluation":
            self.curve_seconds.append(now - self.phase_start)
        self.phase_name, self.step_now, self.phase_start = name, step, now
        self.train_from = step
        self._write(now)

    def step(self, step: int) -> None:
        self.step_now = step
        now = time.time()
        if now - self.last_write >= WRITE_EVERY:
            self._write(now)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def _seconds_per_step(self, now: float) -> float | None:
        seconds, steps = self.train_seconds, self.trained
        if self.phase_name == "training":
            seconds += now - self.phase_start
            steps += self.step_now - self.train_from
        return seconds / steps if steps > 0 else None

    def estimate(self, now: float) -> dict[str, Any]:
        """Seconds left and a whole run's seconds, from what was measured; `partial` when some
        part (the step rate or an evaluation) is not measured yet and counts as zero."""
        per_step = self._seconds_per_step(now)
        per_curve = (sum(self.curve_seconds) / len(self.curve_seconds)
                     if self.curve_seconds else None)
        curves = (self.total - 1) // self.interval if self.interval else 0
        curves_left = ((self.total - 1) // self.interval - self.step_now // self.interval
                       if self.interval else 0)
        in_phase = now - self.phase_start
        if self.phase_name == "curve evaluation":
            curves_left += 1  # the one running now counts below, less its elapsed time
        final = per_curve * self.final_scale if per_curve is not None else None
        partial = per_step is None or per_curve is None  # unmeasured parts count as zero
        ps, pc, fe = per_step or 0.0, per_curve or 0.0, final or 0.0
        left = (self.total - self.step_now) * ps + curves_left * pc + fe
        if self.phase_name in ("curve evaluation", "final evaluation"):
            left = max(0.0, left - in_phase)
        whole = self.total * ps + curves * pc + fe
        return {"seconds_left": round(left, 1), "run_seconds": round(whole, 1),
                "partial": partial}

    def _write(self, now: float) -> None:
        from mtrl_bench_envs.common import atomic_write

        record = {"phase": self.phase_name, "step": self.step_now, "total": self.total,
                  "phase_seconds": round(now - self.phase_start, 1), "time": now,
                  **self.estimate(now)}
        atomic_write(self.path, json.dumps(record))
        self.last_write = now


# --------------------------------------------------------------------------- in the driver

@dataclass(frozen=True)
class Watched:
    """A grid run as the driver sees it: where its record is and what it is like."""

    name: str
    path: Path
    shape: tuple  # runs of one shape cost the same: (method, suite, steps, evaluation)

    @classmethod
    def of(cls, name: str, path: Path, cfg: RunConfig) -> Watched:
        return cls(name, Path(path), (cfg.method, cfg.suite, cfg.train.steps,
                                      cfg.train.eval_interval, cfg.eval.episodes_per_task,
                                      cfg.eval.curve_episodes_per_task))


def read_record(path: Path, since: float) -> dict[str, Any] | None:
    """A run's record if it is well-formed and written since `since` (else None: the file is
    the run's own and may be anything, or left over from an earlier attempt)."""
    try:
        record = json.loads((path / FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("phase") not in PHASES:
        return None
    numbers = ("step", "total", "time", "seconds_left", "run_seconds", "phase_seconds")
    if not all(isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool)
               for k in numbers):
        return None
    return record if record["time"] >= since else None


def grid_eta(running: Sequence[float], pending: Sequence[float], slots: int) -> float:
    """Seconds until the last run ends: the runs in flight end after their seconds left, and
    each pending run starts on the first slot that frees (in order)."""
    free = sorted(running)[:slots] + [0.0] * max(0, slots - len(running))
    heapq.heapify(free)
    for cost in pending:
        heapq.heappush(free, heapq.heappop(free) + cost)
    return max(free, default=0.0)


class GridProgress:
    """The driver's view of a grid; `tick()` while runs go, `finished()` as each ends."""

    def __init__(self, runs: Sequence[Watched], total: int, slots: int, show: bool,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.runs = {r.name: r for r in runs}
        self.pending = list(self.runs)  # not finished, in launch order
        self.total, self.finished_count, self.slots = total, total - len(runs), max(1, slots)
        self.show = show
        self.tty = show and self.stream.isatty()
        self.since = time.time()
        self.records: dict[str, dict[str, Any]] = {}
        self.cost: dict[tuple, float] = {}  # measured whole-run seconds per shape
        self.cost_by_suite: dict[tuple, float] = {}  # the same without the method
        self.last_draw = self.last_line = 0.0
        self.every = float(os.environ.get("MTRL_BENCH_PROGRESS_EVERY") or LINE_EVERY)
        self.bar = self.run_bars = None
        if self.tty:
            self.bar = tqdm(total=total, initial=self.finished_count, desc="runs", unit="run",
                            file=self.stream, dynamic_ncols=True)
            self.run_bars = {}
        elif show:
            self._say(f"runs {self.finished_count}/{total} done, {len(runs)} to run")
            self.last_line = time.time()

    def tick(self) -> None:
        """Read the records of the runs in flight and redraw (rate-limited)."""
        now = time.time()
        if not self.show or now - self.last_draw < DRAW_EVERY:
            return
        self.last_draw = now
        for name in self.pending:
            record = read_record(self.runs[name].path, self.since)
            if record is not None:
                self.records[name] = record
                if not record["partial"]:
                    shape = self.runs[name].shape
                    self.cost[shape] = self.cost_by_suite[shape[1:]] = record["run_seconds"]
        if self.tty:
            self._draw_bars()
        elif now - self.last_line >= self.every:
            self.last_line = now
            self._say(self._summary() + "".join(f"\n  {n}: {self._phase(r)}"
                                                for n, r in self._running()))

    def finished(self, summary: dict[str, Any]) -> None:
        name = summary["run"]
        if name in self.pending:
            self.pending.remove(name)
        self.records.pop(name, None)
        self.finished_count += 1
        if self.run_bars is not None and name in self.run_bars:
            self.run_bars.pop(name).close()
        state = summary["state"]
        took = f" in {duration(summary.get('seconds', 0))}"
        line = {"complete": f"done {name}: success {100 * summary.get('success', 0):.1f}%"
                            + took,
                "failed": f"run failed: {name}: {summary.get('error')}",
                "interrupted": f"interrupted {name}",
                "locked": f"skipped {name}: {summary.get('error')}"}.get(state)
        if state == "failed":  # said even when quiet: a failure must not pass unseen
            self._say(line, stamp=self.show)
        elif self.show and line:
            self._say(line)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(self._eta_text())
        self.last_draw = 0.0

    def close(self) -> None:
        for bar in (self.run_bars or {}).values():
            bar.close()
        if self.bar is not None:
            self.bar.close()

    # -- drawing ---------------------------------------------------------------------------------
    def _running(self) -> list[tuple[str, dict[str, Any]]]:
        return [(n, self.records[n]) for n in self.pending if n in self.records]

    @staticmethod
    def _phase(record: dict[str, Any]) -> str:
        step = f"{record['step']}/{record['total']}"
        if record["phase"] == "training":
            return f"training {step}"
        # records are not rewritten during a phase without steps: count on from the last one
        seconds = record["phase_seconds"] + time.time() - record["time"]
        return f"{record['phase']} at step {step} ({duration(seconds)})"

    def _eta(self) -> tuple[float, bool]:
        """(seconds, lower bound?) until the grid ends."""
        running = self._running()
        self.slots = max(self.slots, len(running))  # Ray runs as many as its cluster fits
        lower = any(r["partial"] for _, r in running)
        now = time.time()
        left = [max(0.0, r["seconds_left"] - (now - r["time"])) for _, r in running]
        costs = []
        for name in self.pending:
            if name in self.records:
                continue
            shape = self.runs[name].shape
            cost = self.cost.get(shape, self.cost_by_suite.get(shape[1:]))
            lower |= cost is None
            costs.append(cost or 0.0)
        return grid_eta(left, costs, self.slots), lower

    def _eta_text(self) -> str:
        if not self.pending:
            return ""
        seconds, lower = self._eta()
        if lower and seconds == 0:
            return "ETA: measuring"
        return f"ETA {'>= ' if lower else ''}{duration(seconds)}"

    def _summary(self) -> str:
        running = len(self._running())
        return (f"runs {self.finished_count}/{self.total} done, {running} running, "
                f"{self._eta_text()}").rstrip(", ")

    def _say(self, text: str, stamp: bool = True) -> None:
        prefix = time.strftime("[%H:%M:%S] ") if stamp and not self.tty else ""
        if self.bar is not None:
            self.bar.write(prefix + text, file=self.stream)
        else:
            print(prefix + text, file=self.stream, flush=True)

    def _draw_bars(self) -> None:
        for name, record in self._running():
            bar = self.run_bars.get(name)
            if bar is None:
                bar = self.run_bars[name] = _RunBar(total=record["total"], desc=name,
                                                 file=self.stream, leave=False,
                                                 dynamic_ncols=True, bar_format=RUN_BAR)
            bar.n = record["step"]  # the run's own count; the bar's clock is not the run's
            bar.phase = self._phase(record)
            bar.refresh()
        self.bar.set_postfix_str(self._eta_text())


class _RunBar(tqdm):
    """A run's bar: its text says the run's phase (a field tqdm's format does not have)."""

    phase = ""

    @property
    def format_dict(self) -> dict[str, Any]:
        return {**super().format_dict, "phase": self.phase}


__all__ = ["FILE", "GridProgress", "ProgressRecord", "Watched", "duration", "grid_eta",
           "read_record"]
