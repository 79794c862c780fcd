"""Nothing lost, nothing silent: runs under kills, locks, resumes and changed code."""
from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtrl_bench.api import Run, RunLocked
from mtrl_bench.cli import main
from mtrl_bench.runlock import RunLock
from mtrl_bench.runs import RunDir


@pytest.fixture
def smoke(smoke_data, tmp_path):
    def make(name="run", method="prompt-dt", **overrides):
        return Run.prepare(method, "mt5", "near-optimal", 0, "smoke",
                           {k.replace("__", "."): str(v) for k, v in overrides.items()},
                           execution={"device": "cpu", "progress": False,
                                      "data_dir": str(smoke_data)},
                           out=tmp_path / name)
    return make


def test_a_zombie_does_not_hold_a_lock(tmp_path):
    """A killed process its parent has not reaped answers kill(pid, 0) but holds nothing."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child.kill()
        deadline = time.time() + 10
        while time.time() < deadline:  # not reaped (no wait()): a zombie
            state = open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.05)
        assert state == "Z"
        (tmp_path / "LOCK").write_text(json.dumps(
            {"pid": child.pid, "host": socket.gethostname(), "start": None, "token": "z"}))
        assert not RunLock(tmp_path).is_held() and RunLock(tmp_path).acquire()
    finally:
        child.wait()


def test_a_run_killed_before_its_first_checkpoint_logs_each_step_once(smoke):
    run = smoke(train__steps=20, train__checkpoint_interval=20, train__log_interval=2)
    assert run.train(stop_after=8) is None  # no checkpoint yet: steps 2..8 logged
    assert not run.dir.checkpoint_path.exists()
    again = smoke(train__steps=20, train__checkpoint_interval=20, train__log_interval=2)
    again.train()  # starts over from step 0
    steps = [r["step"] for r in again.dir.metrics() if r["kind"] == "train"]
    assert steps == sorted(set(steps)) == list(range(2, 21, 2))


def test_a_deleted_checkpoint_stops_resume_and_retrains_from_zero_when_asked(smoke):
    """--resume without its checkpoint refuses and keeps the records; training anew (a grid
    does so for a run with no checkpoint) starts from zero without the old records."""
    from mtrl_bench.runs import RunFileError

    run = smoke()
    run.train(stop_after=12)
    run.dir.checkpoint_path.unlink()
    logged = run.dir.metrics()
    with pytest.raises(RunFileError, match="checkpoint.pt: missing"):
        run.train(resume=True)
    assert run.dir.metrics() == logged
    result = run.train(resume=False)
    steps = [r["step"] for r in run.dir.metrics() if r["kind"] == "train"]
    assert result is not None and steps == sorted(set(steps))


def test_logged_floats_keep_six_digits_and_mask_diagnostics_four(tmp_path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.log({"step": 3, "kind": "train", "loss": 0.06633950769901276, "ok": True,
             "task_loss": [0.987654321],
             "mask": {"cosine": [[1 / 3, -2 / 3]], "size": 7, "big": 123456789.0,
                      "huge": 1234567.25, "nan": float("nan")},
             "strategy": {"threshold": [-1.23456789e-07]}})
    [record] = run.metrics()
    assert record["loss"] == 0.0663395 and record["ok"] is True and record["step"] == 3
    assert record["task_loss"] == [0.987654]
    assert record["mask"]["cosine"] == [[0.3333, -0.6667]]
    assert record["mask"]["size"] == 7 and record["mask"]["big"] == 123456789.0  # a count
    assert record["mask"]["huge"] == 1235000.0
    assert record["mask"]["nan"] != record["mask"]["nan"]
    assert record["strategy"]["threshold"] == [-1.235e-07]


RECORDS = [{"step": s, "kind": "train", "loss": 1 / s, "mask": {"density": [0.5, 0.25 + s]}}
           for s in range(1, 41)] + [{"step": 40, "kind": "eval", "success": 0.75}]


def _logged(path: Path) -> RunDir:
    run = RunDir(path)
    run.path.mkdir()
    for record in RECORDS:
        run.log(record)
    return run


def test_a_finished_runs_log_is_gzipped_and_reads_as_logged(tmp_path):
    plain, finished = _logged(tmp_path / "plain"), _logged(tmp_path / "finished")
    finished.mark_complete()
    assert not finished.metrics_path.exists() and finished.compact_metrics_path.exists()
    assert finished.metrics() == plain.metrics() and len(plain.metrics()) == len(RECORDS)
    # the same lines, readable by any gzip tool, in a fraction of the bytes
    unzipped = gzip.decompress(finished.compact_metrics_path.read_bytes())
    assert unzipped == plain.metrics_path.read_bytes()
    assert finished.compact_metrics_path.stat().st_size < len(unzipped) / 3
    before = finished.compact_metrics_path.read_bytes()
    finished.compact_metrics(finished.metrics())  # again: the same bytes (no timestamp)
    assert finished.compact_metrics_path.read_bytes() == before


def test_a_torn_compressed_log_loses_only_its_torn_tail(tmp_path):
    """Cut anywhere (a copy or a disk that gave out), the .gz still reads: every record
    decompressed whole, never an error; a second gzip member (`cat`) is read too."""
    run = _logged(tmp_path / "r")
    run.mark_complete()
    data, whole = run.compact_metrics_path.read_bytes(), run.metrics()
    seen = set()
    for cut in range(len(data) + 1):
        run.compact_metrics_path.write_bytes(data[:cut])
        got = run.metrics()
        assert got == whole[:len(got)], cut
        seen.add(len(got))
    assert len(got) == len(RECORDS) and len(seen) > len(RECORDS) / 2
    run.compact_metrics_path.write_bytes(data + gzip.compress(b'{"step": 41, "kind": "train"}\n'))
    assert [r["step"] for r in run.metrics()][-2:] == [40, 41]


def test_a_compacted_log_cut_back_on_resume_is_plain_again(tmp_path):
    run = _logged(tmp_path / "r")
    run.mark_complete()
    run.done_path.unlink()  # deleted to retrain, say
    run.truncate_metrics(10)
    assert run.metrics_path.exists() and not run.compact_metrics_path.exists()
    run.log({"step": 11, "kind": "train", "loss": 0.5})
    assert [r["step"] for r in run.metrics()] == list(range(1, 12))
    run.compact_metrics()
    run.log({"step": 12, "kind": "train", "loss": 0.5})  # appends to the compacted records
    assert [r["step"] for r in run.metrics()] == list(range(1, 13))


def test_while_the_plain_log_exists_it_is_the_log(tmp_path):
    """A kill between writing one form and removing the other leaves both: the plain file is
    the newer (a resume writes it before removing the .gz; compacting, the two are equal)."""
    run = _logged(tmp_path / "r")
    run.mark_complete()
    run.metrics_path.write_text('{"step": 1, "kind": "train", "loss": 2.0}\n')
    assert run.metrics() == [{"step": 1, "kind": "train", "loss": 2.0}]


def test_two_trainings_of_one_run_never_interleave(smoke, tmp_path):
    run = smoke()
    hold = ("import sys, time; from mtrl_bench.runlock import RunLock; "
            "l = RunLock(sys.argv[1]); assert l.acquire(); print('held', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(run.dir.path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {proc.pid}"):
            run.train()
        assert not run.dir.metrics_path.exists() and not run.dir.config_path.exists()
        code = main(["train", "--profile", "smoke", "--quiet", "--out", str(run.dir.path),
                     "--data-dir", str(tmp_path)])
        assert code == 2
    finally:
        proc.kill()
        proc.wait()


def test_temp_files_of_a_kill_are_cleaned_and_train_seconds_add_up(smoke):
    run = smoke()
    run.train(stop_after=12)
    first = run.dir.load_checkpoint()["train_seconds"]
    leftover = run.dir.path / f".checkpoint.pt.tmp-{os.getpid() + 1}"
    leftover.write_bytes(b"half a checkpoint")
    time.sleep(0.2)
    result = run.train(resume=True)
    assert not leftover.exists()
    assert result["train_seconds"] > first > 0


def test_eval_of_an_unfinished_run_names_its_step(smoke, capsys):
    run = smoke(train__steps=20, train__checkpoint_interval=10)
    run.train(stop_after=12)  # checkpoint at step 10
    assert main(["eval", str(run.dir.path), "--episodes", "1", "--quiet",
                 "--data-dir", run.execution.data_dir]) == 0
    out = capsys.readouterr().out
    assert "not finished" in out and "step 10 of 20" in out


def test_a_strategy_writing_nan_fails_the_run_naming_the_method(smoke):
    """Not 'running' forever, and not a non-finite loss two steps later: the masks are named."""
    import dataclasses

    from mtrl_bench.masking import MaskStrategy
    from mtrl_bench.plugins import MethodSpec, hookimpl, registry

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        pass

    class WritesNaN(MaskStrategy):
        def update(self, ctx):
            self.masks[1, :5] = float("nan")
            return {}

    class Plugin:
        @hookimpl
        def mtrl_bench_methods(self):
            return [MethodSpec("nan-writer", Cfg, lambda ctx: WritesNaN(
                torch.ones(ctx.num_tasks, ctx.layout.numel)), "writes NaN")]

    reg, plugin = registry(), Plugin()
    reg.register(plugin, name="nan-writer", distribution="tests", version="0")
    try:
        run = smoke(method="nan-writer")
        with pytest.raises(ValueError, match=r"method 'nan-writer'.*update at step 5.*non-finite"):
            run.train()
        status = run.dir.status()
        assert status["state"] == "failed" and status["step"] == 5
        assert "nan-writer" in status["error"]
    finally:
        reg.pm.unregister(plugin)
        del reg.methods["nan-writer"]


def test_a_changed_plugin_warns_on_its_stored_result(smoke, capsys):
    run = smoke()
    run.train()
    manifest = json.loads(run.dir.manifest_path.read_text())
    manifest["method"]["version"] = "0.0.1"  # as if trained by an older release
    run.dir.manifest_path.write_text(json.dumps(manifest))
    assert main(["train", "--profile", "smoke", "--quiet", "--out", str(run.dir.path),
                 "--data-dir", run.execution.data_dir]) == 0
    captured = capsys.readouterr()
    assert "already complete" in captured.out
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "0.0.1 -> 0.1.0" in warning[0] and "delete" in warning[0]


def test_report_names_a_damaged_run_and_reports_the_rest(tmp_path, capsys):
    from test_results import make_run

    runs = tmp_path / "runs"
    for seed in range(2):
        make_run(runs, f"good{seed}", seed=seed)
    bad = make_run(runs, "bad", seed=5)
    bad.eval_path.write_text("{not json")
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bad: damaged, left out" in out and "eval.json" in out
    assert (tmp_path / "report.md").exists()


def test_run_exits_non_zero_when_a_run_is_locked(tmp_path, smoke_data, capsys):
    exp = tmp_path / "exp.toml"
    exp.write_text('methods = ["prompt-dt"]\nsuites = ["mt5"]\nqualities = ["sub-optimal"]\n'
                   'seeds = [0, 1]\nprofile = "smoke"\n')
    from mtrl_bench import grid

    runs = grid.expand(grid.load_experiment(exp), tmp_path / "out" / "runs")
    hold = ("import sys, time; from mtrl_bench.runlock import RunLock; "
            "l = RunLock(sys.argv[1]); assert l.acquire(); print('held', flush=True); "
            "time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "out" / "runs" /
                                                              runs[1].name)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        code = main(["run", str(exp), "--out", str(tmp_path / "out"), "--data-dir",
                     str(smoke_data), "--quiet", "--workers", "1"])
    finally:
        proc.kill()
        proc.wait()
    captured = capsys.readouterr()
    assert code == 1
    assert "1 complete, 1 locked" in captured.out
    assert "did not finish" in captured.err and "report is incomplete" in captured.err
    assert RunDir(tmp_path / "out" / "runs" / runs[0].name).complete


@pytest.mark.parametrize("method", ["mtdt", "mtbc"])
def test_task_id_methods_train_and_evaluate(smoke, method):
    result = smoke(name=method, method=method).train()
    assert 0.0 <= result["success"] <= 1.0 and len(result["tasks"]) == 5


def test_train_help_lists_the_valid_names(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("mt50-rand", "randomK-S", "near-optimal | sub-optimal", "registered methods:",
                 "socodt", "mtdt", "(default: prompt-dt)", "(default: mt5)"):
        assert name in out, name


def test_run_writes_where_git_ignores_unless_given_a_path(tmp_path, smoke_data, monkeypatch):
    """A fresh clone's `mtrl-bench run` must not touch committed results/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(
        'methods = ["prompt-dt"]\nsuites = ["mt5"]\nqualities = ["sub-optimal"]\nseeds = [0]\n'
        'profile = "smoke"\nreference_seeds = []\n')
    assert main(["run", "tiny.toml", "--data-dir", str(smoke_data), "--quiet"]) == 0
    assert (tmp_path / "runs" / "tiny" / "report.md").exists()
    assert not (tmp_path / "results").exists()
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "/runs/" in ignored


@pytest.mark.slow
def test_train_stopped_by_kill_is_interrupted_not_running(tmp_path, smoke_data):
    """`kill` (SIGTERM) stops `train` as Ctrl-C does: status "interrupted", exit 130, the lock
    released, and `--resume` continues from the last checkpoint."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "mtrl_bench.cli", "train", "--profile", "smoke", "--quiet",
            "--steps", "100000", "--data-dir", str(smoke_data), "--out", str(run)]
    child = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "checkpoint.pt").exists():
            time.sleep(0.2)
        assert (run / "checkpoint.pt").exists(), "no checkpoint within 120 s"
        child.terminate()
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert RunDir(run).status()["state"] == "interrupted"
    assert not RunLock(run).is_held()


def test_the_manifest_records_the_threads_that_ran(smoke_data, tmp_path):
    """Not given, threads default to the machine's cores and evaluation's env processes to the
    threads; the manifest says how many ran."""
    run = Run.prepare("prompt-dt", "mt5", "near-optimal", 0, "smoke", {"train.steps": "2"},
                      execution={"device": "cpu", "progress": False, "threads": 0,
                                 "data_dir": str(smoke_data)}, out=tmp_path / "run")
    before = torch.get_num_threads()
    try:
        run.train()
    finally:
        torch.set_num_threads(before)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["executions"][-1]["threads"] == (os.cpu_count() or 1)
    assert manifest["executions"][-1]["eval_workers"] == (os.cpu_count() or 1)


def test_a_runs_results_do_not_depend_on_its_eval_workers(smoke_data, tmp_path):
    """Envs stepped in 3 processes (a curve evaluation, then the final one on the same pool):
    the same successes and returns, episode by episode, as in one."""
    results = []
    for workers in (1, 3):
        run = Run.prepare("prompt-dt", "mt5", "near-optimal", 0, "smoke",
                          {"train.steps": "4", "train.eval_interval": "2"},
                          execution={"device": "cpu", "progress": False, "threads": 1,
                                     "eval_workers": workers, "data_dir": str(smoke_data)},
                          out=tmp_path / f"w{workers}")
        result = run.train()
        results.append(({t: (r["successes"], r["returns"]) for t, r in result["tasks"].items()},
                        [r for r in run.dir.metrics() if r["kind"] == "eval"]))
        manifest = json.loads(run.dir.manifest_path.read_text())
        assert manifest["executions"][-1]["eval_workers"] == workers
    (final_1, curve_1), (final_3, curve_3) = results
    assert final_1 == final_3
    assert [(r["step"], r["task_success"]) for r in curve_1] == \
        [(r["step"], r["task_success"]) for r in curve_3]


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_a_run_that_fails_before_it_begins_removes_only_what_it_made(
        failure, smoke_data, tmp_path, monkeypatch):
    """Run A creates the runs root R; while A loads its data, run B starts in R; A is stopped.
    A removes its own empty folder only: R and B's run stay (once, A removed all of R)."""
    import mtrl_bench.api as api

    root = tmp_path / "R"
    other = root / "other-run"

    def meanwhile(*args, **kwargs):
        other.mkdir(parents=True)
        (other / "config.json").write_text("{}")  # another process's run, begun
        raise failure("stopped while loading data")

    monkeypatch.setattr(api, "load_datasets", meanwhile)
    run = Run.prepare("prompt-dt", "mt5", "near-optimal", 0, "smoke",
                      execution={"device": "cpu", "progress": False,
                                 "data_dir": str(smoke_data)}, out=root / "a" / "run")
    with pytest.raises(failure):
        run.train()
    assert (other / "config.json").exists()
    assert not (root / "a").exists()  # A's own folders, empty, are gone


def test_a_grid_run_that_fails_before_it_begins_is_reported_failed(tmp_path, monkeypatch,
                                                                    capsys):
    """A bad dataset root fails every run before config.json: the report says "failed" and
    why, not "not run yet"; the record is a status file, not a half run."""
    from mtrl_bench.results import collect

    (tmp_path / "g.toml").write_text('methods = ["prompt-dt"]\nsuites = ["mt5"]\n'
                                     'qualities = ["sub-optimal"]\nseeds = [0]\n'
                                     'profile = "smoke"\nreference_seeds = []\n')
    monkeypatch.setenv("MTRL_BENCH_DATA", "/etc/hostname")
    main(["run", str(tmp_path / "g.toml"), "--out", str(tmp_path / "G"), "--quiet",
          "--workers", "1"])
    _, problems = collect(tmp_path / "G")
    assert problems and "failed:" in problems[0] and "not run yet" not in problems[0], problems
    (folder,) = (tmp_path / "G" / "runs").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["error.txt", "status.json"]


def test_a_planted_symlink_does_not_make_a_run_write_elsewhere(tmp_path):
    """A dangling metrics.jsonl symlink: logging refuses, naming it; the target never appears."""
    from mtrl_bench.runs import RunFileError

    run = tmp_path / "run"
    run.mkdir()
    outside = tmp_path / "outside" / "planted.txt"
    outside.parent.mkdir()
    (run / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(RunFileError, match="metrics.jsonl: a symlink"):
        RunDir(run).log({"step": 1, "loss": 0.5})
    assert not outside.exists()


def _user_folder(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f"the user's own {name}\n")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


GRID = ('methods = ["prompt-dt"]\nsuites = ["mt5"]\nqualities = ["sub-optimal"]\n'
        'seeds = [0]\nprofile = "smoke"\nreference_seeds = []\n')


@pytest.mark.parametrize("case", ["train into user files", "report over a user's results.csv",
                                  "run B into A's experiment"])
def test_outputs_never_overwrite_what_the_project_did_not_write(case, finished_run, smoke_data,
                                                                 tmp_path, capsys):
    """Outputs go only into new or empty folders or into the project's own folders of the same
    kind; anything else is one line naming the folder, and every file in it is untouched."""
    target = tmp_path / "target"
    if case == "train into user files":
        kept = _user_folder(target, ("manifest.json", "metrics.jsonl"))
        argv = ["train", "--profile", "smoke", "--quiet", "--steps", "2", "--out", str(target),
                "--data-dir", str(smoke_data)]
    elif case == "report over a user's results.csv":
        kept = _user_folder(target, ("results.csv",))
        argv = ["report", str(finished_run), "--out", str(target)]
    else:
        (tmp_path / "a.toml").write_text(GRID)
        (tmp_path / "b.toml").write_text(GRID.replace("[0]", "[1]"))
        assert main(["run", str(tmp_path / "a.toml"), "--out", str(target), "--quiet",
                     "--data-dir", str(smoke_data)]) == 0
        capsys.readouterr()
        kept = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
        argv = ["run", str(tmp_path / "b.toml"), "--out", str(target), "--quiet",
                "--data-dir", str(smoke_data)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code not in (0, None)
    assert len(err) == 1 and str(target) in err[0], err
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == kept


def test_a_full_disk_while_checkpointing_says_so_and_keeps_the_last_checkpoint(tmp_path,
                                                                                monkeypatch):
    """torch.save on a full disk fails deep in its zip writer; the user reads "no space left on
    device" and the file, and the previous checkpoint is still there, whole."""
    run = RunDir(tmp_path / "run")
    run.save_checkpoint({"step": 10, "model": {"w": torch.ones(2)}})

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="checkpoint.pt: no space left on device"):
        run.save_checkpoint({"step": 20, "model": {"w": torch.zeros(2)}})
    monkeypatch.undo()
    assert torch.load(run.checkpoint_path, weights_only=True)["step"] == 10
    assert [p.name for p in run.path.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_a_report_that_failed_halfway_can_be_written_again(finished_run, tmp_path, monkeypatch,
                                                           capsys):
    """A report that stops midway (here: a plot that raises) leaves a folder the next attempt
    may write into, not one refused as someone else's files; its report.md says it is unfinished
    until the full report replaces it."""
    from mtrl_bench import plots

    target = tmp_path / "report"

    def broken(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "plot_experiment", broken)
    assert main(["report", str(finished_run), "--out", str(target)]) not in (0, None)
    assert "plotting failed" in capsys.readouterr().err
    assert "Not written" in (target / "report.md").read_text()
    monkeypatch.undo()
    assert main(["report", str(finished_run), "--out", str(target)]) in (0, None)
    assert "Not written" not in (target / "report.md").read_text()
    assert (target / "plots").is_dir()
