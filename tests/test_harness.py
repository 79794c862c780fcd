"""The experiment harness: grid files and their errors, skip/resume/failure/lock, Ray, the CLI."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import TWO_SEEDS

from mtrl_bench import grid, harness
from mtrl_bench.config import Execution, RunConfig
from mtrl_bench.runlock import RunLock
from mtrl_bench.runs import RunDir, read_json

# A tiny real grid: two methods, and an axis whose lr = 1e30 turns the loss to NaN at step 2,
# so those two runs fail for real while training.
GRID = """
description = "harness test grid"
methods = ["prompt-dt", "socodt"]
suites = ["mt5"]
qualities = ["sub-optimal"]
seeds = [0]
profile = "smoke"

[overrides]
train.steps = 12
train.checkpoint_interval = 4
train.lr = [1e-4, 1e30]
"""


def _quiet(data_dir: Path) -> Execution:
    """One thread, the smoke datasets, no progress bars."""
    return Execution(threads=1, data_dir=str(data_dir), progress=False)


def write(tmp_path: Path, text: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def expand_text(tmp_path: Path, text: str, **kw) -> list[grid.GridRun]:
    exp = grid.load_experiment(write(tmp_path, text))
    return grid.expand(exp, tmp_path / "runs", **kw)


# --------------------------------------------------------------------------- grid files

def test_builtin_experiments_expand(tmp_path):
    names = grid.builtin_experiments()
    assert {"quick", "table1", "table2", "table3", "table4", "fig5"} <= set(names)
    sizes = {n: len(grid.expand(grid.load_experiment(n), tmp_path)) for n in names}
    assert sizes["quick"] == 3 * 4 and sizes["table2"] == 7 * 2 * 3
    assert sizes["table1"] == (7 + 1) * 2 * 5  # SoCo-DT twice: both readings of beta
    assert sizes["cpu-protocol"] == 3 * 2 * 5 and sizes["table1-mt30"] == (4 + 1) * 2 * 3
    assert sizes["table3"] == 2 * 3 * 2 * 5 and sizes["table4"] == 4 * 2 * 5
    assert sizes["methods"] == 8


def test_suites_and_seeds_from_the_command_line_replace_the_experiments(tmp_path):
    exp = grid.with_overrides(grid.load_experiment("table1"), "smoke", suites=["mt30", "mt50"],
                              seeds=[0, 1, 2, 1])
    runs = grid.expand(exp, tmp_path)
    assert len(runs) == 8 * 2 * 2 * 3  # 8 rows x 2 suites x 2 qualities x 3 seeds
    assert {r.suite for r in runs} == {"mt30", "mt50"} and {r.seed for r in runs} == {0, 1, 2}
    # BC references follow the seeds: the file's among them, else the first new seed
    assert exp.reference_seeds == (0, 1, 2)
    later = grid.with_overrides(grid.load_experiment("table1"), seeds=[7, 8])
    assert later.reference_seeds == (7,)
    none = grid.with_overrides(grid.load_experiment("table4"), seeds=[7])
    assert none.reference_seeds == ()  # table4 asks for no BC reference


def test_drawn_combinations_follow_the_seed_or_stand_alone(tmp_path):
    exp = grid.parse_experiment(textwrap.dedent("""
        methods = ["prompt-dt"]
        suites = ["random5-{seed}", "random5-7", "mt5"]
        qualities = ["near-optimal"]
        seeds = [1, 2]
        profile = "smoke"
    """), "inline.toml", "inline")
    runs = grid.expand(exp, tmp_path)
    assert sorted((r.suite, r.seed) for r in runs) == [
        ("mt5", 1), ("mt5", 2), ("random5-1", 1), ("random5-2", 2), ("random5-7", 1),
        ("random5-7", 2)]
    # a combination per seed pools under its family; a named combination is its own suite
    assert {r.suite: r.suite_label for r in runs} == {
        "random5-1": "random5", "random5-2": "random5", "random5-7": "random5-7", "mt5": "mt5"}


def test_table3_crosses_three_combinations_with_five_seeds(tmp_path):
    runs = grid.expand(grid.load_experiment("table3"), tmp_path)
    cells = {(r.suite, r.seed) for r in runs}
    assert cells == {(f"random5-{c}", s) for c in range(3) for s in range(5)}
    assert all(r.suite_label == r.suite for r in runs)  # 5 seeds per combination and cell


def test_table4_runs_full_episodes(tmp_path):
    runs = grid.expand(grid.load_experiment("table4"), tmp_path)
    assert all(r.config.eval.early_stop is False for r in runs)
    # beta read as a percentage for all four, so the rows are labelled by method alone
    assert all(r.config.method_config["beta_scale"] == 0.01 for r in runs)
    assert {r.label for r in runs} == {r.method for r in runs}


def test_fig5_sweeps_share_the_default_run(tmp_path):
    exp = grid.load_experiment("fig5")
    runs = grid.expand(exp, tmp_path)
    points = sum(len(s.points()) for s in exp.sweeps)
    default = [r for r in runs if r.label == "socodt"]
    # every sweep that includes the default value shares one run per seed
    assert len(default) == 2 and len(default[0].sweeps) >= 5
    assert len(runs) == 2 * (points - len(default[0].sweeps) + 1)
    assert {r.config.method_config["beta_scale"] for r in runs} == {0.01, 1.0}
    q = [r for r in runs if r.seed == 0 and r.config.method_config["q1"] == 0.25]
    assert len(q) == 1 and q[0].config.method_config["q3"] == 0.75
    assert q[0].label == "socodt[q1=0.25, q3=0.75]"


def test_axes_sweeps_labels_and_dedup(tmp_path):
    runs = expand_text(tmp_path, """
        methods = ["prompt-dt"]
        suites = ["mt5"]
        qualities = ["near-optimal"]
        seeds = [0, 1]
        profile = "smoke"
        [overrides.train]
        lr = 0.001
        [[sweep]]
        name = "steps"
        train.steps = [20, 30]
        [[sweep]]
        "train.steps,train.batch_per_task" = [[20, 2], [30, 4]]
    """)
    labels = sorted({r.label for r in runs})
    # steps 20 and batch 2 are the smoke profile's values: that point is the base run
    assert labels == ["prompt-dt", "prompt-dt[train.steps=30, train.batch_per_task=4]",
                      "prompt-dt[train.steps=30]"]
    assert len(runs) == 2 * 3
    base = [r for r in runs if r.label == "prompt-dt" and r.seed == 0][0]
    assert [s["name"] for s in base.sweeps] == ["steps", "train.steps+train.batch_per_task"]
    assert base.config.train.lr == 0.001


@pytest.mark.parametrize("text, needle", [
    ('methods = ["socodtt"]\nsuites = ["mt5"]\nqualities = ["near-optimal"]\nseeds = [0]',
     "Did you mean 'socodt'"),
    ('methods = ["socodt"]\nsuites = ["mt6"]\nqualities = ["near-optimal"]\nseeds = [0]',
     "Did you mean 'mt5'"),
    ('methods = ["socodt"]\nsuites = ["mt5"]\nqualities = ["sub-optimall"]\nseeds = [0]',
     "Did you mean 'sub-optimal'"),
    ('method = ["socodt"]\nsuites = ["mt5"]\nqualities = ["near-optimal"]\nseeds = [0]',
     "Did you mean 'methods'"),
    ('methods = ["socodt"]\nsuites = ["mt5"]\nqualities = ["near-optimal"]\nseeds = [0]\n'
     '[overrides]\nmethod.alpah = 3.0', "Did you mean 'alpha'"),
    ('methods = ["socodt"]\nsuites = ["mt5"]\nqualities = ["near-optimal"]\nseeds = [0]\n'
     '[overrides]\ntrain.stepz = 3', "unknown field 'train.stepz'"),
    ('methods = ["socodt"]\nsuites = ["mt5"]\nqualities = ["near-optimal"]\nseeds = [0]\n'
     'profile = "smok"', "Did you mean 'smoke'"),
    ('methods = ["socodt"]\nsuites = ["mt5"]\nqualities = ["near-optimal"]', "missing 'seeds'"),
    ('methods = ["socodt"]\nsuites = ["mt5"]\nqualities = ["near-optimal"]\nseeds = [0]\n'
     'reference_seeds = [1]', "'reference_seeds' must be a list of the grid's seeds (0)"),
])
def test_bad_grids_are_refused_before_anything_runs(tmp_path, text, needle):
    with pytest.raises(ValueError) as info:
        expand_text(tmp_path, text)
    assert needle in str(info.value) and "grid.toml" in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_malformed_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, 'methods = ["socodt"]\nsuites = ["mt5"\nseeds = [0]\n', "bad.toml")
    with pytest.raises(ValueError, match=r"bad\.toml: malformed TOML: .*line 3"):
        grid.load_experiment(path)


def test_unknown_experiment_suggests(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'quick'"):
        grid.load_experiment("quik")
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        grid.load_experiment(tmp_path / "nope.toml")


def test_only_method_filters_and_checks(tmp_path):
    exp = grid.load_experiment("quick")
    assert {r.method for r in grid.expand(exp, tmp_path, only_methods=["socodt"])} == {
        "socodt"}
    with pytest.raises(ValueError, match="Did you mean 'socodt'"):
        grid.expand(exp, tmp_path, only_methods=["socodtt"])


# --------------------------------------------------------------------------- the lock

HOLD = """
import sys, time
from pathlib import Path
from mtrl_bench.runlock import RunLock
lock = RunLock(Path(sys.argv[1]))
assert lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/held (killed at teardown, by its pid)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "held")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield tmp_path / "held", proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_released(tmp_path):
    a, b = RunLock(tmp_path / "r"), RunLock(tmp_path / "r")
    assert a.acquire() and not b.acquire()
    a.release()
    assert b.acquire() and not a.acquire()
    b.release()
    assert not (tmp_path / "r" / "LOCK").exists()


def test_lock_held_by_a_live_process_is_respected(holder):
    path, proc = holder
    lock = RunLock(path)
    assert lock.is_held() and not lock.acquire()
    assert lock.holder()["pid"] == proc.pid
    task = harness.RunTask("held", str(path), RunConfig("prompt-dt"), Execution(threads=1))
    summary = harness.execute(task)
    assert summary["state"] == "locked" and str(proc.pid) in summary["error"]
    assert not (path / "status.json").exists()  # nothing was started


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    path = tmp_path / "r"
    path.mkdir()
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "start": None, "token": "old"}
    (path / "LOCK").write_text(json.dumps(stale))
    lock = RunLock(path)
    assert not lock.is_held() and lock.acquire()
    assert lock.holder()["token"] == lock.info["token"]
    # a lock from another host is never broken: its pid cannot be checked from here
    lock.release()
    (path / "LOCK").write_text(json.dumps({**stale, "host": "elsewhere"}))
    assert RunLock(path).is_held() and not RunLock(path).acquire()


def test_lock_of_a_reused_pid_is_stale(tmp_path):
    path = tmp_path / "r"
    path.mkdir()
    # our own pid is alive, but with another start time it is a different process
    info = {"pid": os.getpid(), "host": socket.gethostname(), "start": "1", "token": "x"}
    (path / "LOCK").write_text(json.dumps(info))
    assert RunLock(path).acquire()


# --------------------------------------------------------------------------- real runs

@pytest.fixture(scope="module")
def grid_run(smoke_data, tmp_path_factory):
    """The GRID run once for real (2 workers): one interrupted run with a stale lock resumes,
    one trains fresh, two fail. Returns (experiment dir, grid, summaries, file times)."""
    from mtrl_bench.api import Run

    out = tmp_path_factory.mktemp("experiment")
    exp = grid.load_experiment(write(out, GRID))
    runs = grid.expand(exp, out / "runs")
    grid.write_grid(exp, runs, out)
    by = {(r.method, "diverges" if r.config.train.lr > 1 else "ok"): r for r in runs}
    # An interrupted run, as a killed harness leaves it: a checkpoint at step 4, metrics up to
    # step 5, status "running" and the lock of a dead process.
    first = by["prompt-dt", "ok"]
    run = RunDir(out / "runs" / first.name)
    assert Run(first.config, _quiet(smoke_data), run).train(stop_after=6) is None
    run.set_status("running", step=6)
    (run.path / "LOCK").write_text(json.dumps(
        {"pid": dead_pid(), "host": socket.gethostname(), "start": None, "token": "dead"}))
    t0 = time.time()
    summaries = harness.run_grid(runs, out / "runs", workers=2, execution=_quiet(smoke_data))
    seconds = time.time() - t0
    return out, by, {s["run"]: s for s in summaries}, seconds


def _stamp(run: RunDir) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in run.path.iterdir() if p.is_file()}


@pytest.mark.slow
def test_grid_resumes_trains_and_records_failures(grid_run):
    out, by, summaries, _ = grid_run
    resumed = summaries[by["prompt-dt", "ok"].name]
    assert resumed["state"] == "complete" and resumed["resumed"] is True
    fresh = summaries[by["socodt", "ok"].name]
    assert fresh["state"] == "complete" and fresh["resumed"] is False
    run = RunDir(out / "runs" / by["prompt-dt", "ok"].name)
    # logged every 5 steps; step 5 was logged before the interruption and cut back to the
    # step-4 checkpoint on resume, so it appears once
    assert [r["step"] for r in run.metrics() if r["kind"] == "train"] == [5, 10]
    assert [r["step"] for r in run.metrics() if r["kind"] == "eval"] == [12]
    assert run.complete and not (run.path / "LOCK").exists()
    for method in ("prompt-dt", "socodt"):
        failed = RunDir(out / "runs" / by[method, "diverges"].name)
        summary = summaries[failed.path.name]
        assert summary["state"] == "failed" and summary["error"]
        assert failed.status()["state"] == "failed"
        assert summary["error"] in failed.status()["error"]
        assert "Traceback" in (failed.path / "error.txt").read_text()
        assert not failed.complete and not (failed.path / "LOCK").exists()


@pytest.mark.slow
def test_finished_runs_are_not_trained_again(grid_run, smoke_data):
    out, by, _, _ = grid_run
    done = [RunDir(out / "runs" / by[m, "ok"].name) for m in ("prompt-dt", "socodt")]
    before = [_stamp(r) for r in done]
    runs = grid.expand(grid.load_experiment(out / "grid.toml"), out / "runs")
    finished = [r for r in runs if r.name in {d.path.name for d in done}]
    summaries = harness.run_grid(finished, out / "runs", workers=1, execution=_quiet(smoke_data))
    assert [s["state"] for s in summaries] == ["skipped", "skipped"]
    assert [_stamp(r) for r in done] == before  # not a single file rewritten


@pytest.mark.slow
def test_locked_run_is_left_to_its_holder(grid_run, smoke_data, holder):
    path, proc = holder
    out, by, _, _ = grid_run
    # the holder's lock sits on a fresh copy of a not-yet-run entry's directory name
    entry = by["socodt", "ok"]
    target = out / "locked" / entry.name
    target.mkdir(parents=True)
    os.replace(path / "LOCK", target / "LOCK")
    summaries = harness.run_grid([entry], out / "locked", workers=1, execution=_quiet(smoke_data))
    assert summaries[0]["state"] == "locked" and str(proc.pid) in summaries[0]["error"]
    assert not (target / "config.json").exists()


CONCURRENT = """
import json, sys
from pathlib import Path
from mtrl_bench import grid, harness
from mtrl_bench.config import Execution
exp = grid.load_experiment(Path(sys.argv[1]))
runs = grid.expand(exp, Path(sys.argv[2]))
execution = Execution(threads=1, data_dir=sys.argv[3], progress=False)
print(json.dumps(harness.run_grid(runs, Path(sys.argv[2]), workers=1, execution=execution)))
"""


def harness_command(tmp_path: Path, smoke_data: Path, seed: int, steps: int) -> list[str]:
    """A harness process running a one-run Prompt-DT grid into tmp_path / "runs"."""
    grid_file = write(tmp_path, f"""
        methods = ["prompt-dt"]
        suites = ["mt5"]
        qualities = ["sub-optimal"]
        seeds = [{seed}]
        profile = "smoke"
        [overrides]
        train.steps = {steps}
    """)
    return [sys.executable, "-c", CONCURRENT, str(grid_file), str(tmp_path / "runs"),
            str(smoke_data)]


@pytest.mark.slow
def test_two_harnesses_never_run_one_run_twice(tmp_path, smoke_data):
    cmd = harness_command(tmp_path, smoke_data, seed=5, steps=6)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1])
               for p in procs]
    states: dict[str, list[str]] = {}
    for summaries in outputs:
        for s in summaries:
            states.setdefault(s["run"], []).append(s["state"])
    assert len(states) == 1
    for run, seen in states.items():
        assert sorted(seen) in (["complete", "locked"], ["complete", "skipped"]), (run, seen)
        evals = [r for r in RunDir(tmp_path / "runs" / run).metrics() if r["kind"] == "eval"]
        assert len(evals) == 1


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_harness_leaves_no_worker_training(tmp_path, smoke_data, signum):
    """`kill` stops the grid as Ctrl-C does; after `kill -9` (nothing cleans up) the worker sees
    its harness gone and stops itself. Either way its run says "interrupted" and is not locked."""
    root = tmp_path / "runs"
    harness_proc = subprocess.Popen(harness_command(tmp_path, smoke_data, seed=0, steps=100000),
                                    stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    worker = None
    while worker is None and time.time() < deadline:
        time.sleep(0.2)
        for run in root.glob("*/"):
            trained = [r for r in RunDir(run).metrics() if r["kind"] == "train"]
            if trained:
                worker = (RunLock(run).holder() or {}).get("pid"), RunDir(run)
    assert worker is not None, "the worker never started training"
    pid, run = worker
    assert pid and pid != harness_proc.pid
    harness_proc.send_signal(signum)
    harness_proc.wait(timeout=60)
    deadline = time.time() + 60
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the worker trains on after its harness was killed"
    assert run.status()["state"] == "interrupted" and not (run.path / "LOCK").exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")



def ray_grid(ray, runs, root: Path, execution: Execution, **resources) -> list[dict]:
    """run_grid on a fresh local Ray of 2 CPUs (plus `resources`, e.g. num_gpus)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, **resources)
    try:
        return harness.run_grid(runs, root, executor="ray", execution=execution)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_runs_the_same_grid_to_the_same_results(grid_run, smoke_data, tmp_path):
    ray = pytest.importorskip("ray", reason='Ray is optional: pip install "mtrl-bench[ray]"')
    out, by, _, _ = grid_run
    entry = by["socodt", "ok"]
    summaries = ray_grid(ray, [entry], tmp_path, _quiet(smoke_data))
    assert summaries[0]["state"] == "complete", summaries
    local, remote = RunDir(out / "runs" / entry.name), RunDir(tmp_path / entry.name)
    assert read_json(remote.eval_path)["tasks"] == read_json(local.eval_path)["tasks"]
    losses = [[r["loss"] for r in run.metrics() if r["kind"] == "train"]
              for run in (local, remote)]
    assert losses[0] == losses[1]
    assert read_json(remote.manifest_path)["executions"][-1]["threads"] == 1


@pytest.mark.slow
def test_a_ray_grid_survives_a_killed_worker(tmp_path, smoke_data):
    """kill -9 of the worker training a run mid-way: Ray starts it again, it resumes from its
    checkpoint, and the grid completes with every step logged once."""
    import signal
    import threading

    ray = pytest.importorskip("ray", reason='Ray is optional: pip install "mtrl-bench[ray]"')
    exp = write(tmp_path, TWO_SEEDS + """
    [overrides]
    train.steps = 400
    train.checkpoint_interval = 20
    train.log_interval = 10
    """)
    runs = grid.expand(grid.load_experiment(exp), tmp_path / "runs")
    target = tmp_path / "runs" / runs[0].name
    killed: dict[str, int] = {}

    def kill_the_worker() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            try:
                if (target / "checkpoint.pt").exists():
                    pid = json.loads((target / "LOCK").read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed["pid"] = pid
            except (OSError, ValueError, KeyError):
                pass  # the lock is being written or the run moved on: look again
            time.sleep(0.02)

    thread = threading.Thread(target=kill_the_worker)
    thread.start()
    try:
        summaries = ray_grid(ray, runs, tmp_path / "runs", _quiet(smoke_data))
    finally:
        thread.join()
    assert killed, "the run finished before its worker could be killed"
    assert [s["state"] for s in summaries] == ["complete", "complete"], summaries
    assert summaries[0]["resumed"]  # the retry picked up the checkpoint
    steps = [r["step"] for r in RunDir(target).metrics() if r["kind"] == "train"]
    assert steps == list(range(10, 401, 10))


@pytest.mark.parametrize("requested, device, cluster, expected", [
    (None, "auto", 0.0, 0.0), (None, "auto", 8.0, 1.0), (None, "cpu", 8.0, 0.0),
    (None, "cuda", 8.0, 1.0), (0.5, "auto", 1.0, 0.5), (0.0, "auto", 8.0, 0.0),
    (None, "cuda", 0.0, "no GPU"), (0.0, "cuda", 8.0, "hide every GPU"),
    (2.0, "auto", 1.0, "has 1 GPUs"), (-1.0, "auto", 8.0, ">= 0"),
    (None, "cuda:1", 8.0, "Ray assigns"), (1.0, "cpu", 8.0, "never uses")])
def test_ray_runs_reserve_a_gpu_when_the_cluster_has_them(requested, device, cluster, expected):
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            harness.ray_gpus_per_run(requested, device, cluster)
    else:
        assert harness.ray_gpus_per_run(requested, device, cluster) == expected


@pytest.mark.slow
def test_a_ray_cluster_with_one_gpu_runs_one_run_at_a_time_on_it(tmp_path, smoke_data):
    """Without num_gpus Ray hides the GPUs from a task (CUDA_VISIBLE_DEVICES=""): each run must
    reserve one, so on a 1-GPU cluster two runs see GPU 0 and never overlap, CPUs to spare."""
    ray = pytest.importorskip("ray", reason='Ray is optional: pip install "mtrl-bench[ray]"')
    runs = grid.expand(grid.load_experiment(write(tmp_path, TWO_SEEDS)), tmp_path / "runs")
    summaries = ray_grid(ray, runs, tmp_path / "runs", _quiet(smoke_data), num_gpus=1)
    assert [s["state"] for s in summaries] == ["complete", "complete"], summaries
    spans = []
    for r in runs:
        run = RunDir(tmp_path / "runs" / r.name)
        [execution] = read_json(run.manifest_path)["executions"]
        assert execution["cuda_visible_devices"] == "0"
        spans.append((os.path.getmtime(run.config_path), os.path.getmtime(run.done_path)))
    (a0, a1), (b0, b1) = sorted(spans)
    assert a1 <= b0, spans


def test_ray_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RuntimeError, match=r'pip install "mtrl-bench\[ray\]"'):
        harness.run_grid([], tmp_path, executor="ray")


# --------------------------------------------------------------------------- the CLI

def cli(argv: list[str]) -> int:
    from mtrl_bench.cli import main

    return main(argv)


@pytest.mark.slow
def test_cli_run_reports_and_plots(grid_run, smoke_data, capsys):
    out, by, _, _ = grid_run
    code = cli(["run", str(out / "grid.toml"), "--out", str(out), "--data-dir", str(smoke_data),
                "--threads", "1", "--quiet", "--reference", "socodt"])
    captured = capsys.readouterr()
    text = captured.out
    assert code == 1, captured.err  # the two diverging runs fail again
    assert "2 skipped, 2 failed" in text and "p Welch" in text and "prompt-dt" in text
    # the BC references of seed 0, on the same data and evaluation, are rows of the table
    assert "bc-all" in text and "bc-top20" in text
    refs = sorted(p.name for p in (out / "references").iterdir())
    assert refs == ["bc-all__mt5__sub-optimal__s0.json", "bc-top20__mt5__sub-optimal__s0.json"]
    for name in ("report.md", "report.tex", "comparison.csv", "results.csv", "summary.json"):
        assert (out / name).stat().st_size > 0
    pngs = list((out / "plots").rglob("*.png"))
    assert {p.name for p in pngs} >= {"curves_success.png", "profile_success.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "failed" in (out / "report.md").read_text() or "failed" in text
    # a run's own mask diagnostics are drawn on demand, from its compacted log
    socodt = out / "runs" / by["socodt", "ok"].name
    assert (socodt / "metrics.jsonl.gz").exists() and not (socodt / "plots").exists()
    assert cli(["plot", str(socodt)]) == 0
    assert (socodt / "plots" / "masks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors(tmp_path, capsys):
    assert cli(["run", "quik", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'quick'" in capsys.readouterr().err
    bad = write(tmp_path, "methods = [\n", "broken.toml")
    assert cli(["run", str(bad)]) == 2
    assert "broken.toml: malformed TOML" in capsys.readouterr().err
    assert cli(["report", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert cli(["report", str(tmp_path / "empty")]) == 2
    assert "no finished run" in capsys.readouterr().err
