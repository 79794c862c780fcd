"""The malformed-input corpus: names, numbers, TOML, --set, datasets, cards, checkpoints, run
files and plugins. Each case is a one-line error naming the bad thing, a non-zero exit, no
traceback and nothing half-written; or a named self-repair."""
from __future__ import annotations

import gzip
import json
import shutil
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mtrl_bench.cli import main

SMOKE = ["--profile", "smoke", "--quiet"]


@dataclass
class Case:
    argv: list[str]  # {tmp} and {data} are filled in
    names: str  # what the one-line error must say (a substring)
    setup: Callable[[Path, Path], None] | None = None  # (tmp, data root) -> None
    untouched: list[str] = field(default_factory=list)  # paths under tmp that must not appear


def _experiment(text: str, name: str = "exp.toml") -> Callable[[Path, Path], None]:
    def setup(tmp: Path, data: Path) -> None:
        (tmp / name).write_text(text)
    return setup


GOOD_GRID = """methods = ["prompt-dt"]
suites = ["mt5"]
qualities = ["sub-optimal"]
seeds = [0]
profile = "smoke"
"""


def _dataset_copy(edit: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    """A copy of the smoke dataset under tmp/data, edited."""
    def setup(tmp: Path, data: Path) -> None:
        shutil.copytree(data, tmp / "data")
        (folder,) = (tmp / "data").iterdir()
        edit(folder)
    return setup


def _truncated_task_file(tmp: Path, data: Path) -> None:
    """A copy of the smoke dataset at tmp/ds whose first task file lost its second half."""
    shutil.copytree(data, tmp / "copy")
    (folder,) = (tmp / "copy").iterdir()
    folder.rename(tmp / "ds")
    first = sorted((tmp / "ds").glob("*.npz"))[0]
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])


def _edit_card(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        card = json.loads((folder / "card.json").read_text())
        change(card)
        (folder / "card.json").write_text(json.dumps(card))
    return edit


def _first_task(card: dict) -> dict:
    return next(iter(card["tasks"].values()))


def _run_dir(write: Callable[[Path], None], complete: bool = False
             ) -> Callable[[Path, Path], None]:
    """A smoke run directory at tmp/run (its real config.json and manifest), then `write`."""
    def setup(tmp: Path, data: Path) -> None:
        from mtrl_bench.api import Run, method_fingerprint
        from mtrl_bench.plugins import registry

        run = Run.prepare("prompt-dt", "mt5", "near-optimal", 0, "smoke", out=tmp / "run")
        run.dir.create(run.config, registry().distributions(), method_fingerprint("prompt-dt"))
        if complete:
            (tmp / "run" / "DONE").write_text("")
        write(tmp / "run")
    return setup


def _grid(text: str) -> Callable[[Path, Path], None]:
    """An experiment folder (tmp) whose grid.json is `text`: a folder from elsewhere."""
    def setup(tmp: Path, data: Path) -> None:
        (tmp / "runs").mkdir()
        (tmp / "grid.json").write_text(text)
    return setup


def _checkpoint(payload: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    return _run_dir(payload)


def _torch_save(obj: object) -> Callable[[Path], None]:
    def write(run: Path) -> None:
        import torch

        torch.save(obj, run / "checkpoint.pt")
    return write


TRAIN = ["train", *SMOKE, "--runs", "{tmp}/runs", "--data-dir", "{data}"]
RESUME = ["train", *SMOKE, "--out", "{tmp}/run", "--data-dir", "{data}", "--resume"]
RUN = ["run", "--out", "{tmp}/exp", "--data-dir", "{data}", "--quiet"]

CASES = {
    # --- names
    "method": Case([*TRAIN, "--method", "socodtt"], "Did you mean 'socodt'", untouched=["runs"]),
    "suite": Case([*TRAIN, "--suite", "mt6"], "unknown suite 'mt6'", untouched=["runs"]),
    "quality": Case([*TRAIN, "--quality", "suboptimal"], "Did you mean 'sub-optimal'",
                    untouched=["runs"]),
    "profile": Case([*TRAIN, "--profile", "smok"], "Did you mean 'smoke'", untouched=["runs"]),
    "experiment": Case([*RUN, "quik"], "Did you mean 'quick'", untouched=["exp"]),
    "experiment stem ..": Case(["run", "{tmp}/...toml", "--data-dir", "{data}", "--quiet"],
                               "experiment name '..' is not a plain name",
                               _experiment(GOOD_GRID, "...toml")),
    "only-method": Case([*RUN, "{tmp}/exp.toml", "--only-method", "socodt"],
                        "method of experiment", _experiment(GOOD_GRID), ["exp"]),
    "reference": Case([*RUN, "{tmp}/exp.toml", "--reference", "socodtt"], "--reference",
                      _experiment(GOOD_GRID), ["exp"]),
    "run suite": Case([*RUN, "{tmp}/exp.toml", "--suite", "mt31"], "unknown suite 'mt31'",
                      _experiment(GOOD_GRID), ["exp"]),
    "suite without out": Case(["run", "{tmp}/exp.toml", "--suite", "mt5", "--data-dir",
                               "{data}", "--quiet"], "give --out", _experiment(GOOD_GRID),
                              ["runs"]),
    "gpus locally": Case([*RUN, "{tmp}/exp.toml", "--gpus-per-run", "1"], "--executor ray",
                         _experiment(GOOD_GRID), ["exp"]),
    "data suite": Case(["data", "generate", "--suite", "mt7", "--out", "{tmp}/d"],
                       "unknown suite 'mt7'", untouched=["d"]),
    "method field": Case([*TRAIN, "--set", "method.alpha=3"], "has no config fields",
                         untouched=["runs"]),
    "recipe": Case([*TRAIN, "--set", "data.recipe=v9"], "unknown recipe 'v9'",
                   untouched=["runs"]),
    "lr schedule": Case([*TRAIN, "--set", "train.lr_schedule=linear"], "train.lr_schedule",
                        untouched=["runs"]),
    # --- numbers
    "steps 0": Case([*TRAIN, "--steps", "0"], "train.steps must be positive", untouched=["runs"]),
    "steps -5": Case([*TRAIN, "--steps", "-5"], "train.steps must be positive",
                     untouched=["runs"]),
    "checkpoint 0": Case([*TRAIN, "--set", "train.checkpoint_interval=0"],
                         "train.checkpoint_interval", untouched=["runs"]),
    "log 0": Case([*TRAIN, "--set", "train.log_interval=0"], "train.log_interval",
                  untouched=["runs"]),
    "mask 0": Case([*TRAIN, "--method", "socodt", "--set", "train.mask_interval=0"],
                   "train.mask_interval", untouched=["runs"]),
    "n_head": Case([*TRAIN, "--set", "model.n_head=3"], "model.n_head (3) must divide",
                   untouched=["runs"]),
    "batch 0": Case([*TRAIN, "--set", "train.batch_per_task=0"], "train.batch_per_task",
                    untouched=["runs"]),
    "context 0": Case([*TRAIN, "--set", "model.context_len=0"], "model.context_len",
                      untouched=["runs"]),
    "episodes 0": Case([*TRAIN, "--set", "eval.episodes_per_task=0"], "eval.episodes_per_task",
                       untouched=["runs"]),
    "curve -1": Case([*TRAIN, "--set", "eval.curve_episodes_per_task=-1"],
                     "eval.curve_episodes_per_task", untouched=["runs"]),
    "dropout": Case([*TRAIN, "--set", "model.dropout=1.5"], "model.dropout", untouched=["runs"]),
    "workers 0": Case([*RUN, "{tmp}/exp.toml", "--workers", "0"], "--workers must be >= 1",
                      _experiment(GOOD_GRID), ["exp"]),
    "threads -1": Case([*TRAIN, "--threads", "-1"], "threads must be an integer >= 0",
                       untouched=["runs"]),
    "eval workers -1": Case([*TRAIN, "--eval-workers", "-1"],
                            "eval_workers must be an integer >= 0", untouched=["runs"]),
    "seed type": Case([*TRAIN, "--seed", "x"], "--seed: invalid int value", untouched=["runs"]),
    "amp": Case([*TRAIN, "--amp", "fp16"], "unknown amp mode 'fp16'", untouched=["runs"]),
    "episodes -1": Case(["data", "generate", "--episodes", "-1", "--out", "{tmp}/d"], "episodes",
                        untouched=["d"]),
    # --- TOML experiment files
    "toml syntax": Case([*RUN, "{tmp}/exp.toml"], "malformed TOML",
                        _experiment("methods = [\n"), ["exp"]),
    "toml binary": Case([*RUN, "{tmp}/exp.toml"], "not a text TOML file",
                        lambda t, d: (t / "exp.toml").write_bytes(b"\xff\xfe\x00\x81"), ["exp"]),
    "toml no methods": Case([*RUN, "{tmp}/exp.toml"], "missing 'methods'",
                            _experiment(GOOD_GRID.replace('methods = ["prompt-dt"]\n', "")),
                            ["exp"]),
    "toml unknown key": Case([*RUN, "{tmp}/exp.toml"], "unknown key 'method'",
                             _experiment(GOOD_GRID.replace("methods", "method")), ["exp"]),
    "grid of 1e6 seeds": Case([*RUN, "{tmp}/exp.toml"], "1,000,000 runs (1 methods x 1 suites",
                              _experiment(GOOD_GRID.replace("seeds = [0]",
                                                            "seeds = " + str(list(range(10**6))))),
                              ["exp"]),
    "toml sweep list": Case([*RUN, "{tmp}/exp.toml"], "sweep number 1 is a int",
                            _experiment(GOOD_GRID + "sweep = [1, 2]\n"), ["exp"]),
    "toml deep": Case([*RUN, "{tmp}/exp.toml"], "exp.toml: malformed TOML: nested too deeply",
                      _experiment("a = " + "[" * 5000 + "]" * 5000 + "\n"), ["exp"]),
    "generate seed -1": Case(["data", "generate", "--seed", "-1", "--out", "{tmp}/ds",
                              "--quiet"], "--seed must be >= 0", untouched=["ds"]),
    "suite unicode digit": Case([*TRAIN, "--suite", "random5-\u0663"], "unknown suite",
                                untouched=["runs"]),
    "suite leading zero": Case([*TRAIN, "--suite", "random5-03"], "unknown suite",
                               untouched=["runs"]),
    "toml seeds": Case([*RUN, "{tmp}/exp.toml"], "'seeds' must be a non-empty list of int",
                       _experiment(GOOD_GRID.replace("seeds = [0]", 'seeds = ["a"]')), ["exp"]),
    "toml field": Case([*RUN, "{tmp}/exp.toml"], "unknown field 'train.nope'",
                       _experiment(GOOD_GRID + "[overrides]\ntrain.nope = 1\n"), ["exp"]),
    "toml missing": Case([*RUN, "{tmp}/nowhere.toml"], "experiment file not found",
                         untouched=["exp"]),
    # --- --set
    "set no =": Case([*TRAIN, "--set", "train.lr"], "--set expects section.field=value",
                     untouched=["runs"]),
    "set section": Case([*TRAIN, "--set", "bogus.x=1"], "override 'bogus.x' must look like",
                        untouched=["runs"]),
    "set field": Case([*TRAIN, "--set", "train.nope=1"], "unknown field 'train.nope'",
                      untouched=["runs"]),
    "set empty key": Case([*TRAIN, "--set", "=3"], "--set expects", untouched=["runs"]),
    "set type": Case([*TRAIN, "--set", "train.lr=fast"], "'train.lr' expects float",
                     untouched=["runs"]),
    # --- datasets and cards (under tmp/data, a copy of the smoke dataset)
    "card not json": Case([*TRAIN, "--data-dir", "{tmp}/data"], "card.json: not valid JSON",
                          _dataset_copy(lambda f: (f / "card.json").write_text("{oops")),
                          ["runs"]),
    "card tasks list": Case([*TRAIN, "--data-dir", "{tmp}/data"], "'tasks' is a list",
                            _dataset_copy(_edit_card(lambda c: c.update(tasks=list(c["tasks"])))),
                            ["runs"]),
    "card no bytes": Case([*TRAIN, "--data-dir", "{tmp}/data"], "lacks 'bytes'",
                          _dataset_copy(_edit_card(lambda c: _first_task(c).pop("bytes"))),
                          ["runs"]),
    "card no stats": Case([*TRAIN, "--data-dir", "{tmp}/data"], "lacks 'stats'",
                          _dataset_copy(_edit_card(lambda c: _first_task(c).pop("stats"))),
                          ["runs"]),
    "card checksum": Case([*TRAIN, "--data-dir", "{tmp}/data"], "checksum does not match",
                          _dataset_copy(_edit_card(
                              lambda c: _first_task(c).update(sha256="0" * 64))), ["runs"]),
    "data info": Case(["data", "info", "{tmp}/nodata"], "no dataset card"),
    "data info truncated": Case(["data", "info", "{tmp}/ds"], "(truncated or modified)",
                                _truncated_task_file),
    # --- checkpoints
    "ckpt empty": Case(RESUME, "damaged checkpoint",
                       _checkpoint(lambda r: (r / "checkpoint.pt").write_bytes(b""))),
    "ckpt garbage": Case(RESUME, "damaged checkpoint",
                         _checkpoint(lambda r: (r / "checkpoint.pt").write_bytes(b"\x80not"))),
    "ckpt keys": Case(RESUME, "missing optimizer", _checkpoint(_torch_save(
        {"step": 3, "config": {}, "model": {}}))),
    "ckpt other run": Case(RESUME, "holds another run (config.json: seed", _run_dir(
        lambda r: (r / "config.json").write_text(
            (r / "config.json").read_text().replace('"seed": 0', '"seed": 7')))),
    # --- run files
    "config json": Case(["eval", "{tmp}/run"], "config.json: damaged",
                        _run_dir(lambda r: (r / "config.json").write_text("{"))),
    "not a run": Case(["eval", "{tmp}"], "not a run directory"),
    "metrics line": Case(["plot", "{tmp}/run"], "metrics.jsonl: damaged line 1", _run_dir(
        lambda r: (r / "metrics.jsonl").write_text('{"step": 1, "kind"\n{"step": 2}\n'))),
    "metrics gzip": Case(["plot", "{tmp}/run"], "metrics.jsonl.gz: damaged (not gzip", _run_dir(
        lambda r: (r / "metrics.jsonl.gz").write_bytes(b"not gzip at all"))),
    "metrics gzip line": Case(["plot", "{tmp}/run"], "metrics.jsonl.gz: damaged line 1",
                              _run_dir(lambda r: (r / "metrics.jsonl.gz").write_bytes(
                                  gzip.compress(b'{"step": 1, "kind"\n{"step": 2}\n')))),
    "compact nowhere": Case(["compact", "{tmp}/nowhere"], "no such directory: "),
    "compact metrics": Case(["compact", "{tmp}"], "metrics.jsonl: damaged line 1", _run_dir(
        lambda r: (r / "metrics.jsonl").write_text('{"step": 1, "kind"\n{"step": 2}\n'),
        complete=True)),
    "eval no ckpt": Case(["eval", "{tmp}/run"], "has no checkpoint to evaluate",
                         _run_dir(lambda r: None)),
    "report empty": Case(["report", "{tmp}/none"], "no such experiment directory"),
    "report no runs": Case(["report", "{tmp}"], "no finished run to report"),
    "report two, no out": Case(["report", "{tmp}", "{tmp}"], "reported as one need --out"),
    "grid a list": Case(["report", "{tmp}"], "grid.json: not a grid", _grid("[1, 2]")),
    "grid runs 5": Case(["report", "{tmp}"], "grid.json: not a grid", _grid('{"runs": 5}')),
    "grid run fields": Case(["report", "{tmp}"], "run 0: 'method' is missing",
                            _grid('{"runs": [{"name": "x"}]}')),
    "grid run outside": Case(["report", "{tmp}"], "run 0: run name '../../x' is not a plain name",
                             _grid(json.dumps({"runs": [{
                                 "name": "../../x", "method": "a", "label": "a", "suite": "mt5",
                                 "suite_label": "mt5", "quality": "sub-optimal", "seed": 0,
                                 "config": {}}]}))),
    "grid seeds": Case(["report", "{tmp}"], "'reference_seeds' is not a list of integers",
                       _grid('{"runs": [], "reference_seeds": [true]}')),
    "grid not an object": Case([*RUN, "quick"], "holds experiment None, not 'quick'",
                        lambda tmp, data: (tmp / "exp").mkdir() or (tmp / "exp" / "grid.json")
                        .write_text("[1]")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_is_one_named_line(name, tmp_path, smoke_data, capsys, monkeypatch):
    monkeypatch.setenv("MTRL_BENCH_DATA", str(smoke_data))
    case = CASES[name]
    if case.setup:
        case.setup(tmp_path, smoke_data)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = [a.format(tmp=tmp_path, data=smoke_data) for a in case.argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code not in (0, None), err
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("mtrl-bench: error:")]
    assert len(errors) == 1 and case.names in errors[0], err
    for path in case.untouched:
        assert not (tmp_path / path).exists(), f"{path} was written"
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    new = [p for p in after if p not in before and ".lock" not in str(p)]
    assert all(p.name in ("status.json", "LOCK.break") for p in new), new  # at most a record


def test_corpus_is_large():
    assert len(CASES) >= 40


# --------------------------------------------------------------------------- self-repair

def test_a_damaged_task_file_is_regenerated_naming_it(smoke_data, tmp_path, capsys):
    from mtrl_bench_envs.dataset import ensure_dataset

    shutil.copytree(smoke_data, tmp_path / "data")
    (folder,) = (tmp_path / "data").iterdir()
    target = folder / "basketball-v3.npz"
    target.write_bytes(target.read_bytes()[:100])  # truncated, as by a full disk
    ensure_dataset("mt5", 4, 0, root=tmp_path / "data", progress=False)
    err = capsys.readouterr().err
    assert "regenerating basketball-v3" in err and "basketball-v3.npz: 100 bytes" in err
    assert target.stat().st_size > 100


def test_a_torn_last_metrics_line_is_cut_and_the_rest_reported(tmp_path):
    from mtrl_bench.runs import RunDir

    run = RunDir(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "kind": "train", "loss": 1}\n{"st')
    assert [r["step"] for r in run.metrics()] == [1]
    run.truncate_metrics(1)
    assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")


def test_a_plugin_that_fails_to_import_is_one_warning_line(monkeypatch, capsys):
    import importlib.metadata

    from mtrl_bench import plugins

    class Broken:
        name, value = "broken", "broken_mod"
        dist = types.SimpleNamespace(name="broken-dist", version="1")

        def load(self):
            raise ImportError("No module named 'missing_dependency'")

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [*real(group=group), Broken()])
    monkeypatch.setattr(plugins, "_REGISTRY", None)
    assert main(["methods"]) == 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtrl-bench: warning: plugin 'broken' from "
                                                   "'broken-dist' failed to load"), err


def test_a_duplicate_method_from_another_package_stops_every_command(monkeypatch, capsys):
    import importlib.metadata

    from mtrl_bench import plugins
    from mtrl_bench.plugins import hookimpl

    real = list(importlib.metadata.entry_points(group="mtrl_bench"))
    (socodt,) = [ep for ep in real if ep.name == "socodt"]
    module = types.ModuleType("impostor")  # another package's module, same method names
    module.mtrl_bench_methods = hookimpl(lambda: socodt.load().mtrl_bench_methods())

    class Impostor:
        name, value = "socodt", "impostor"
        dist = types.SimpleNamespace(name="impostor-dist", version="6.6")

        def load(self):
            return module

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [*real, Impostor()])
    for argv in (["methods"], ["train", "--method", "socodt", "--profile", "smoke"]):
        monkeypatch.setattr(plugins, "_REGISTRY", None)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "registered by both 'mtrl-bench' and 'impostor-dist'" in err
        assert len(err.strip().splitlines()) == 1


def test_eval_of_a_run_whose_config_was_edited_names_config_json(finished_run, tmp_path, capsys):
    """config.json says another model than the checkpoint holds: one line naming config.json
    and the first mismatch, not PyTorch's many-line state_dict report; nothing written."""
    shutil.copytree(finished_run, tmp_path / "exp")
    run = tmp_path / "exp" / "runs" / "run"
    config = json.loads((run / "config.json").read_text())
    config["model"]["embed_dim"] *= 2
    (run / "config.json").write_text(json.dumps(config))
    before = sorted(run.iterdir())
    code = main(["eval", str(run), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code not in (0, None)
    assert len(err) == 1 and "config.json: the model it describes does not fit" in err[0], err
    assert "size mismatch" in err[0]
    assert sorted(run.iterdir()) == before


@pytest.mark.parametrize("manifest, ok", [('{"executions": [], "note": "edited by hand"}', True),
                                          ('["not", "a", "manifest"]', False)])
def test_resume_after_the_manifest_was_edited(manifest, ok, finished_run, smoke_data, tmp_path,
                                              capsys):
    """The manifest is provenance: a hand edit is kept and appended to (identity lives in
    config.json); one that is not a manifest stops the resume with one line, metrics intact."""
    shutil.copytree(finished_run, tmp_path / "exp")
    run = tmp_path / "exp" / "runs" / "run"
    (run / "DONE").unlink()
    (run / "manifest.json").write_text(manifest)
    metrics = (run / "metrics.jsonl.gz").read_bytes() if (run / "metrics.jsonl.gz").exists() \
        else (run / "metrics.jsonl").read_bytes()
    code = main(["train", "--profile", "smoke", "--quiet", "--steps", "4", "--out", str(run),
                 "--resume", "--data-dir", str(smoke_data)])
    err = capsys.readouterr().err
    if ok:
        assert code in (0, None), err
        kept = json.loads((run / "manifest.json").read_text())
        assert kept["note"] == "edited by hand" and kept["executions"][-1]["resumed_at"] == 4
    else:
        assert code not in (0, None)
        assert "manifest.json: not a run manifest" in err
        stored = [p for p in run.iterdir() if p.name.startswith("metrics.jsonl")]
        assert [p.read_bytes() for p in stored] == [metrics]


def test_resume_without_its_checkpoint_refuses_and_keeps_the_records(finished_run, smoke_data,
                                                                     tmp_path, capsys):
    """--resume after the checkpoint was deleted: one line saying what is missing, exit != 0,
    the logged metrics untouched (it used to restart from step 0 and drop them, exit 0)."""
    shutil.copytree(finished_run, tmp_path / "exp")
    run = tmp_path / "exp" / "runs" / "run"
    for name in ("DONE", "checkpoint.pt"):
        (run / name).unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code = main(["train", "--profile", "smoke", "--quiet", "--steps", "4", "--out", str(run),
                 "--resume", "--data-dir", str(smoke_data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code not in (0, None)
    assert len(err) == 1 and "checkpoint.pt: missing, so --resume cannot continue" in err[0]
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.name != "status.json"}
    assert after == {k: v for k, v in before.items() if k != "status.json"}
