"""Minari's format: export a generated dataset, read it back into the same training batches,
train on it, and refuse what does not fit the suite with one line naming it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mtrl_bench.api import Run
from mtrl_bench.cli import main
from mtrl_bench.config import DataConfig, ModelConfig
from mtrl_bench.data import OfflineData
from mtrl_bench_envs.card import DatasetError
from mtrl_bench_envs.dataset import load_dataset
from mtrl_bench_envs.minari_format import export_minari, load_minari
from mtrl_bench_envs.suites import get_suite

pytest.importorskip("minari", reason='Minari is optional: pip install "mtrl-bench[minari]"')
TASKS = get_suite("mt5").tasks


@pytest.fixture(scope="module")
def dataset(smoke_data):
    return next(p.parent for p in smoke_data.glob("*/card.json"))


@pytest.fixture(scope="module")
def exported(dataset, tmp_path_factory):
    """(Minari root, data.source) of the smoke dataset exported through the CLI."""
    root = tmp_path_factory.mktemp("minari")
    assert main(["data", "export", str(dataset), "--format", "minari", "--out", str(root),
                 "--namespace", "test/smoke"]) == 0
    return root, "minari:test/smoke"


@pytest.mark.parametrize("quality", ["near-optimal", "sub-optimal"])
def test_a_round_trip_gives_the_same_training_batches(dataset, exported, quality):
    root, source = exported
    ours, theirs = load_dataset(dataset, TASKS, quality), load_minari(source, TASKS, quality, root)
    for a, b in zip(ours, theirs):
        assert a.task == b.task
        for key in ("observations", "actions", "rewards", "successes"):
            x, y = getattr(a, key), getattr(b, key)
            assert x.dtype == y.dtype and np.array_equal(x, y), key
    model = ModelConfig(context_len=5, prompt_len=2)
    batches = [OfflineData(d, DataConfig(), model).sample(np.random.default_rng(3), 4)
               for d in (ours, theirs)]
    for part_a, part_b in zip(*batches):  # (segments, prompts)
        for f in part_a.__annotations__:
            assert np.array_equal(getattr(part_a, f).numpy(), getattr(part_b, f).numpy()), f


def test_the_export_carries_the_cards_provenance(dataset, exported):
    root, _ = exported
    card = json.loads((dataset / "card.json").read_text())
    meta = json.loads((root / "test/smoke" / f"{TASKS[0]}-v0" / "data" / "metadata.json")
                      .read_text())
    assert card["tasks"][TASKS[0]]["sha256"] in meta["description"]
    assert meta["mtrl_bench"] == {
        "dataset": dataset.name, "task": TASKS[0], "recipe": card["recipe"], "seed": card["seed"],
        "episodes": card["episodes"], "goal_mode": card["goal_mode"],
        "source_sha256": card["tasks"][TASKS[0]]["sha256"], "versions": card["versions"]}
    assert card["recipe"]["name"] in meta["algorithm_name"]
    assert meta["total_episodes"] == card["episodes"]


def test_a_run_trains_on_a_minari_source_and_records_it(exported, tmp_path, monkeypatch):
    root, source = exported
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    run = Run.prepare("prompt-dt", "mt5", "near-optimal", 0, "smoke",
                      {"train.steps": "2", "data.source": source},
                      execution={"device": "cpu", "progress": False, "threads": 1},
                      out=tmp_path / "run")
    assert run.train() is not None
    assert json.loads(run.dir.config_path.read_text())["data"]["source"] == source
    record = json.loads(run.dir.manifest_path.read_text())["executions"][-1]["minari"]
    assert record["root"] == str(root) and len(record["datasets_sha256"]) == 16
    assert record["datasets"] == [f"test/smoke/{task}-v0" for task in TASKS]


def _copy(exported, tmp_path):
    root, source = exported
    shutil.copytree(root, tmp_path / "root")
    return tmp_path / "root", source


def test_refusals_name_the_problem(exported, tmp_path):
    root, source = _copy(exported, tmp_path)
    with pytest.raises(DatasetError, match=r"no Minari namespace 'elsewhere'"):
        load_minari("minari:elsewhere", TASKS, "near-optimal", root)
    with pytest.raises(DatasetError, match=r"expected 'generated' or 'minari:<namespace>'"):
        load_minari("minari:", TASKS, "near-optimal", root)
    with pytest.raises(ValueError, match=r"unknown task 'reach-v9'.*reach-v3"):
        load_minari(source, ["reach-v9"], "near-optimal", root)
    shutil.rmtree(root / "test/smoke" / f"{TASKS[1]}-v0")
    with pytest.raises(DatasetError, match=rf"{TASKS[1]}-v0: missing"):
        load_minari(source, TASKS, "near-optimal", root)


def test_a_dataset_with_other_spaces_is_refused(exported, tmp_path):
    root, source = _copy(exported, tmp_path)
    meta_path = root / "test/smoke" / f"{TASKS[0]}-v0" / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    space = json.loads(meta["action_space"])
    space["shape"] = [6]
    space["low"], space["high"] = [-1.0] * 6, [1.0] * 6
    meta["action_space"] = json.dumps(space)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=rf"{TASKS[0]}-v0: action space .* shape \(4,\)"):
        load_minari(source, TASKS, "near-optimal", root)


def test_a_damaged_file_is_named(exported, tmp_path):
    root, source = _copy(exported, tmp_path)
    data = root / "test/smoke" / f"{TASKS[0]}-v0" / "data"
    victim = next(p for p in data.iterdir() if p.suffix in (".hdf5", ".h5"))
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DatasetError, match=rf"{TASKS[0]}-v0: not a readable Minari dataset"):
        load_minari(source, TASKS, "near-optimal", root)


def test_an_existing_export_is_not_overwritten(dataset, exported):
    root, _ = exported
    with pytest.raises(DatasetError, match="exists"):
        export_minari(dataset, root, "test/smoke")


def test_an_unknown_source_is_a_config_error():
    from mtrl_bench.config import ConfigError, RunConfig

    with pytest.raises(ConfigError, match="data.source: 'd4rl:x'"):
        RunConfig("prompt-dt", data=DataConfig(source="d4rl:x")).validate()


def _metadata(root, task):
    return root / "test/smoke" / f"{task}-v0" / "data" / "metadata.json"


def test_a_dataset_naming_an_env_instead_of_its_spaces_runs_no_code(exported, tmp_path):
    """Without spaces in its metadata Minari would build the env the spec names, importing and
    calling its entry point: a crafted dataset could run any importable callable."""
    root, source = _copy(exported, tmp_path)
    bait, marker = tmp_path / "bait", tmp_path / "ran"
    bait.write_text("x")
    path = _metadata(root, TASKS[0])
    meta = json.loads(path.read_text())
    del meta["observation_space"], meta["action_space"]
    meta["env_spec"] = json.dumps({
        "id": "Crafted-v0", "entry_point": "shutil:copy", "kwargs": {"src": str(bait),
                                                                     "dst": str(marker)},
        "additional_wrappers": [], "vector_entry_point": None})
    path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=rf"{path}: no observation_space"):
        load_minari(source, TASKS, "near-optimal", root)
    assert not marker.exists()


@pytest.mark.parametrize("damage, problem", [
    (lambda text: text[:40], "not valid JSON"),
    (lambda text: "[]", "not a JSON object"),
    (lambda text: text.replace('"hdf5"', '"arrow"'), "data_format 'arrow'")])
def test_a_malformed_metadata_file_is_named(exported, tmp_path, damage, problem):
    root, source = _copy(exported, tmp_path)
    path = _metadata(root, TASKS[0])
    path.write_text(damage(path.read_text()))
    with pytest.raises(DatasetError, match=rf"{path}: {problem}"):
        load_minari(source, TASKS, "near-optimal", root)


def test_the_cli_refuses_in_one_line(dataset, exported, tmp_path, capsys):
    root, _ = exported
    for argv, named in [([str(tmp_path / "nowhere")], tmp_path / "nowhere"),
                        ([str(dataset), "--out", str(root), "--namespace", "test/smoke"],
                         root / "test/smoke" / f"{TASKS[0]}-v0")]:
        assert main(["data", "export", *argv, "--format", "minari"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mtrl-bench: error: ") and str(named) in err
