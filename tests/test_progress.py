"""A grid you can watch: the run's progress record, the ETA arithmetic, and what a terminal, a
log and --quiet show of a real grid."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from mtrl_bench import progress
from mtrl_bench.progress import GridProgress, ProgressRecord, Watched, grid_eta, read_record


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_config(steps=100, eval_interval=40, episodes=50, curve=10):
    return SimpleNamespace(train=SimpleNamespace(steps=steps, eval_interval=eval_interval),
                           eval=SimpleNamespace(episodes_per_task=episodes,
                                                curve_episodes_per_task=curve),
                           method="m", suite="mt5")


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress.time, "time", c)
    return c


def test_the_run_estimates_what_it_has_left_from_what_it_measured(tmp_path, clock):
    """100 steps, curve evaluations (10 episodes) at steps 40 and 80, a final one of 50
    episodes: 0.2 s a step and 3 s a curve evaluation make the final one 15 s."""
    rec = ProgressRecord(tmp_path / "progress.json", fake_config())
    rec.phase("data", 0)
    assert rec.estimate(clock.now)["partial"]  # nothing measured yet
    clock.now += 1
    rec.phase("training", 0)
    clock.now += 8
    rec.step(40)
    rec.phase("curve evaluation", 40)
    est = rec.estimate(clock.now)
    assert est["partial"]  # the step rate is known, an evaluation's cost is not
    assert est["seconds_left"] == pytest.approx(60 * 0.2)
    clock.now += 3
    rec.phase("training", 40)
    clock.now += 2
    rec.step(50)
    est = rec.estimate(clock.now)
    # 50 steps x 0.2 s + one curve evaluation (step 80) x 3 s + the final 3 s x 50/10
    assert est == {"seconds_left": 28.0, "run_seconds": 41.0, "partial": False}
    written = json.loads((tmp_path / "progress.json").read_text())
    assert written["phase"] == "training" and written["step"] == 50  # 2 s passed: written
    clock.now += 10
    rec.step(100)
    rec.phase("final evaluation", 100)
    clock.now += 5
    assert rec.estimate(clock.now)["seconds_left"] == pytest.approx(10.0)  # 15 s less 5 s in


def test_a_run_writes_its_record_at_most_every_few_seconds(tmp_path, clock):
    rec = ProgressRecord(tmp_path / "progress.json", fake_config())
    rec.phase("training", 0)
    for step in range(1, 30):
        clock.now += 0.25
        rec.step(step)
    # written at 2, 4 and 6 s (steps 8, 16, 24), not at every step
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 24
    rec.clear()
    assert not (tmp_path / "progress.json").exists()


def test_grid_eta_schedules_pending_runs_on_the_first_free_slot():
    assert grid_eta([], [], slots=2) == 0
    assert grid_eta([10, 30], [], slots=2) == 30
    # slots free at 10 and 30: the first pending run (20) ends at 30, the second (5) at 35
    assert grid_eta([10, 30], [20, 5], slots=2) == 35
    assert grid_eta([], [4, 4, 4], slots=1) == 12
    assert grid_eta([], [4, 4, 4], slots=3) == 4


@pytest.mark.parametrize("content", [
    "", "not json", "[1, 2]", '{"phase": "lunch", "step": 1, "total": 2}',
    '{"phase": "training", "step": "1", "total": 2, "time": 2e9, "seconds_left": 1, '
    '"run_seconds": 1, "phase_seconds": 0}',
    '{"phase": "training", "step": true, "total": 2, "time": 2e9, "seconds_left": 1, '
    '"run_seconds": 1, "phase_seconds": 0}',
])
def test_a_damaged_or_foreign_record_is_ignored(tmp_path, content):
    (tmp_path / "progress.json").write_text(content)
    assert read_record(tmp_path, since=0) is None


def test_a_record_left_by_an_earlier_attempt_is_not_shown(tmp_path):
    record = {"phase": "training", "step": 5, "total": 10, "time": 100.0, "seconds_left": 1,
              "run_seconds": 2, "phase_seconds": 0, "partial": False}
    (tmp_path / "progress.json").write_text(json.dumps(record))
    assert read_record(tmp_path, since=50) == record
    assert read_record(tmp_path, since=200) is None


def test_pending_runs_cost_what_a_measured_run_of_their_shape_costs(tmp_path, clock):
    """Two runs of one shape on one slot: the one in flight has 30 s left of a 100 s run, so
    the grid ends in 130 s; a run of another method but the same suite costs the same."""
    cfg = fake_config()
    runs = [Watched.of(f"r{i}", tmp_path / f"r{i}", cfg) for i in range(2)]
    runs.append(Watched.of("r2", tmp_path / "r2", SimpleNamespace(**{**vars(cfg),
                                                                      "method": "other"})))
    watch = GridProgress(runs, total=3, slots=1, show=False)
    record = {"phase": "training", "step": 70, "total": 100, "time": clock.now,
              "seconds_left": 30.0, "run_seconds": 100.0, "phase_seconds": 1, "partial": False}
    (tmp_path / "r0").mkdir()
    (tmp_path / "r0" / "progress.json").write_text(json.dumps(record))
    watch.show = True  # read the records without drawing (no stream asked for)
    watch.every = 1e9
    watch.tick()
    assert watch._eta() == (230.0, False)
    assert watch._eta_text() == "ETA 3m50s"


# --------------------------------------------------------------------------- a real grid

GRID = """
methods = ["prompt-dt", "socodt"]
suites = ["mt5"]
qualities = ["sub-optimal"]
seeds = [0]
profile = "smoke"
reference_seeds = []  # no BC baselines: the grid's own display is under test
[overrides]
train.steps = 300
train.eval_interval = 100
"""


def grid_command(tmp_path: Path, smoke_data: Path, *extra: str) -> list[str]:
    (tmp_path / "g.toml").write_text(textwrap.dedent(GRID))
    return [sys.executable, "-m", "mtrl_bench.cli", "run", str(tmp_path / "g.toml"), "--out",
            str(tmp_path / "out"), "--workers", "2", "--data-dir", str(smoke_data), *extra]


def through_a_terminal(cmd: list[str], env: dict[str, str]) -> str:
    """Everything `cmd` writes to a 40 x 150 pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=600) == 0
    return b"".join(chunks).decode(errors="replace")


RUN_LINE = re.compile(r"mt5__(prompt-dt|socodt)__sub-optimal__s0__\w{8}: +\d+%\|.*\| "
                      r"(training \d+/300|curve evaluation at step \d+/300)")


@pytest.mark.slow
def test_a_terminal_shows_each_run_its_phase_and_the_grid_eta(tmp_path, smoke_data):
    out = through_a_terminal(grid_command(tmp_path, smoke_data), dict(os.environ))
    frames = re.split(r"[\r\n]", out)
    assert any(RUN_LINE.search(f) for f in frames), out[-3000:]
    assert {m.group(1) for f in frames for m in [RUN_LINE.search(f)] if m} == {"prompt-dt",
                                                                             "socodt"}
    assert any(re.search(r"runs: .*\d/2 .*ETA (>= )?\d+", f) for f in frames)
    done = re.findall(r"done mt5__\S+: success \d+\.\d% in \d+", out)
    assert len(done) == 2, out[-3000:]


@pytest.mark.slow
def test_a_log_gets_plain_lines_and_quiet_gets_none(tmp_path, smoke_data):
    env = {**os.environ, "MTRL_BENCH_PROGRESS_EVERY": "1"}
    log = subprocess.run(grid_command(tmp_path, smoke_data), env=env, capture_output=True,
                         text=True, timeout=600, check=True).stderr
    assert "\r" not in log and "\x1b" not in log  # no bars drawn into a file
    assert re.search(r"^\[\d\d:\d\d:\d\d\] runs 0/2 done, 2 running, ETA", log, re.M), log
    assert re.search(r"^  mt5__\w+__sub-optimal__s0__\w{8}: (training \d+/300|"
                     r"curve evaluation at step \d+/300|data at step 0/300)", log, re.M), log
    assert len(re.findall(r"^\[\d\d:\d\d:\d\d\] done mt5__.*: success", log, re.M)) == 2
    assert not list((tmp_path / "out" / "runs").glob("*/progress.json"))  # gone when done

    quiet = tmp_path / "quiet"
    quiet.mkdir()
    log = subprocess.run(grid_command(quiet, smoke_data, "--quiet"), env=env,
                         capture_output=True, text=True, timeout=600, check=True).stderr
    assert "runs " not in log and "done " not in log and "ETA" not in log, log
