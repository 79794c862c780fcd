"""Minari's format: export a generated dataset, read it back into the same training batches,
train on it, and refuse what does not fit the suite (or would run code) with one line naming it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mtrl_bench.api import ConfigMismatch, Run
from mtrl_bench.cli import main
from mtrl_bench.config import ConfigError, DataConfig, ModelConfig, RunConfig
from mtrl_bench.data import OfflineData
from mtrl_bench_envs.card import DatasetError, read_card
from mtrl_bench_envs.dataset import load_dataset
from mtrl_bench_envs.minari_format import (
    PROVENANCE_KEY,
    export_minari,
    load_minari,
    minari_identity,
)
from mtrl_bench_envs.suites import get_suite

minari = pytest.importorskip("minari",
                             reason='Minari is optional: pip install "mtrl-bench[minari]"')
TASKS = get_suite("mt5").tasks
SOURCE = "minari:test/smoke"


@pytest.fixture(scope="module")
def dataset(smoke_data):
    return next(p.parent for p in smoke_data.glob("*/card.json"))


@pytest.fixture(scope="module")
def exported(dataset, tmp_path_factory):
    """The Minari root holding the smoke dataset, exported through the CLI as test/smoke."""
    root = tmp_path_factory.mktemp("minari")
    assert main(["data", "export", str(dataset), "--format", "minari", "--out", str(root),
                 "--namespace", "test/smoke"]) == 0
    return root


def _copy(exported, tmp_path):
    shutil.copytree(exported, tmp_path / "root")
    return tmp_path / "root"


def _metadata_path(root, task):
    return root / "test/smoke" / f"{task}-v0" / "data" / "metadata.json"


def _edit_metadata(root, task, edit):
    path = _metadata_path(root, task)
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _refused(root, match, source=SOURCE, tasks=TASKS):
    with pytest.raises(DatasetError) as info:
        load_minari(source, tasks, "near-optimal", root)
    message = str(info.value)
    assert "\n" not in message
    for part in match:
        assert part in message, message
    return message


@pytest.mark.parametrize("quality", ["near-optimal", "sub-optimal"])
def test_a_round_trip_gives_the_same_training_batches(dataset, exported, quality):
    ours, theirs = load_dataset(dataset, TASKS, quality), load_minari(SOURCE, TASKS, quality,
                                                                      exported)
    assert [d.task for d in theirs] == list(TASKS)
    assert theirs[0].episodes == (4 if quality == "near-optimal" else 2)
    for a, b in zip(ours, theirs, strict=True):
        for key in ("observations", "actions", "rewards", "successes"):
            x, y = getattr(a, key), getattr(b, key)
            assert x.dtype == y.dtype and x.shape == y.shape, key
            np.testing.assert_array_equal(x, y, err_msg=key)
    assert any(d.successes.any() for d in theirs)  # success flags travel, not just zeros
    model = ModelConfig(context_len=5, prompt_len=2)
    batches = [OfflineData(d, DataConfig(), model).sample(np.random.default_rng(3), 4)
               for d in (ours, theirs)]
    for part_a, part_b in zip(*batches):  # (segments, prompts)
        for f in part_a.__annotations__:
            np.testing.assert_array_equal(getattr(part_a, f).numpy(),
                                          getattr(part_b, f).numpy(), err_msg=f)


def test_a_folder_path_reads_as_the_namespace_does(exported):
    by_path = load_minari(f"minari:{exported / 'test/smoke'}", TASKS[:2], "near-optimal")
    by_namespace = load_minari(SOURCE, TASKS[:2], "near-optimal", exported)
    for a, b in zip(by_path, by_namespace, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)


def test_the_export_carries_the_env_spec_spaces_and_provenance(dataset, exported):
    card = read_card(dataset)
    task = TASKS[1]
    meta = json.loads(_metadata_path(exported, task).read_text())
    assert meta["dataset_id"] == f"test/smoke/{task}-v0" and meta["data_format"] == "hdf5"
    assert meta["total_episodes"] == card["episodes"] == 4
    assert meta["total_steps"] == 4 * 500
    spec = json.loads(meta["env_spec"])
    assert (spec["id"], spec["entry_point"]) == ("Meta-World/MT1", "metaworld:make_mt_envs")
    assert spec["kwargs"] == {"name": task, "seed": 1} and spec["max_episode_steps"] == 500
    assert json.loads(meta["action_space"])["shape"] == [4]
    assert json.loads(meta["observation_space"])["shape"] == [39]
    prov = meta[PROVENANCE_KEY]
    assert prov["source_sha256"] == card["tasks"][task]["sha256"]
    assert prov["source_file"] == card["tasks"][task]["file"]
    assert (prov["recipe"], prov["seed"], prov["episodes"]) == (card["recipe"], 0, 4)
    assert prov["versions"] == card["versions"] and prov["dataset"] == dataset.name
    assert f"metaworld=={card['versions']['metaworld']}" in meta["requirements"]


def test_the_recorded_env_spec_builds_the_tasks_env(exported):
    data = minari.MinariDataset(_metadata_path(exported, TASKS[0]).parent)
    env = data.recover_environment()
    try:
        assert env.unwrapped.__class__.__name__ == "SawyerBasketballEnvV3"
        assert env.action_space == data.action_space
        assert env.observation_space.shape == data.observation_space.shape == (39,)
        assert env.unwrapped.max_path_length == 500
    finally:
        env.close()


def test_export_by_suite_selection_and_its_refusal(smoke_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTRL_BENCH_DATA", str(smoke_data))
    out = tmp_path / "root"
    assert main(["data", "export", "--format", "minari", "--suite", "mt5", "--episodes", "4",
                 "--seed", "0", "--out", str(out)]) == 0
    (namespace,) = (p for p in (out / "mtrl-bench").iterdir() if p.is_dir())
    assert sorted(p.name for p in namespace.iterdir() if p.is_dir()) == sorted(
        f"{t}-v0" for t in TASKS)
    printed = capsys.readouterr().out
    assert f"--set data.source=minari:mtrl-bench/{namespace.name}" in printed
    assert main(["data", "export", "--format", "minari", "--episodes", "7"]) == 2
    err = capsys.readouterr().err
    assert "ep7__seed0: no such dataset; generate it with 'mtrl-bench data generate --suite " \
           "mt5 --episodes 7 --seed 0" in err and err.count("\n") == 1


def test_an_existing_export_is_not_overwritten(dataset, exported):
    with pytest.raises(DatasetError, match=r"test/smoke/basketball-v3-v0: a Minari dataset "
                                           r"with this id exists"):
        export_minari(dataset, exported, "test/smoke")


def test_the_cli_refuses_an_export_in_one_line(dataset, exported, tmp_path, capsys):
    for argv, named in [([str(tmp_path / "nowhere")], tmp_path / "nowhere" / "card.json"),
                        ([str(dataset), "--out", str(exported), "--namespace", "test/smoke"],
                         exported / "test/smoke" / f"{TASKS[0]}-v0")]:
        assert main(["data", "export", *argv, "--format", "minari"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"mtrl-bench: error: {named}: "), err


def test_a_run_trains_on_a_minari_source_and_records_what_it_read(exported, tmp_path,
                                                                   monkeypatch):
    root = _copy(exported, tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))

    def prepare():
        return Run.prepare("prompt-dt", "mt5", "near-optimal", 0, "smoke",
                           {"train.steps": "2", "train.checkpoint_interval": "1",
                            "data.source": SOURCE},
                           execution={"device": "cpu", "progress": False, "threads": 1},
                           out=tmp_path / "run")

    assert prepare().train(stop_after=1) is None  # a checkpoint at step 1
    run = prepare()
    assert json.loads(run.dir.config_path.read_text())["data"]["source"] == SOURCE
    record = json.loads(run.dir.manifest_path.read_text())["executions"][-1]["minari"]
    assert record == minari_identity(SOURCE, TASKS, root)
    assert record["folder"] == str(root / "test/smoke")
    assert record["datasets"] == [f"test/smoke/{t}-v0" for t in TASKS]
    assert len(record["sha256"]) == 64
    # the same path now holds other data: the hash tells, and a resume is refused
    _edit_metadata(root, TASKS[2], lambda meta: meta.update(description="edited"))
    assert minari_identity(SOURCE, TASKS, root)["sha256"] != record["sha256"]
    with pytest.raises(ConfigMismatch, match=rf"trained on data with sha256 {record['sha256']}"
                                             rf", {SOURCE} holds [0-9a-f]{{64}} now"):
        run.train(resume=True)


def test_missing_datasets_name_the_path(exported, tmp_path):
    root = _copy(exported, tmp_path)
    _refused(root, [f"{root / 'elsewhere'}: no such folder of Minari datasets under the "
                    f"Minari root {root}"], source="minari:elsewhere")
    _refused(root, [f"{tmp_path / 'nowhere'}: no such folder of Minari datasets"],
             source=f"minari:{tmp_path / 'nowhere'}")
    folder = root / "test/smoke"
    (folder / "button-press-v3-v0").rename(folder / "button-press-v2-v0")
    _refused(root, [f"{folder / 'button-press-v3-v0'}: missing, no dataset for task "
                    "'button-press-v3'. Did you mean 'button-press-v2'?"])


def test_a_dataset_of_a_task_the_suite_does_not_know(exported, tmp_path):
    root = _copy(exported, tmp_path)

    def spec_task(name):
        def edit(meta):
            spec = json.loads(meta["env_spec"])
            spec["kwargs"]["name"] = name
            meta["env_spec"] = json.dumps(spec)
        return edit

    _edit_metadata(root, TASKS[0], spec_task("basketball-v2"))
    _refused(root, [f"{_metadata_path(root, TASKS[0])}: env spec of unknown task "
                    "'basketball-v2'. Did you mean 'basketball-v3'?"])
    _edit_metadata(root, TASKS[0], spec_task("reach-v3"))
    _refused(root, ["the env spec is task 'reach-v3', the dataset's name says 'basketball-v3'"])


def test_other_spaces_are_refused(exported, tmp_path):
    root = _copy(exported, tmp_path)

    def reshape(key, n, bound):
        def edit(meta):
            space = json.loads(meta[key])
            space.update(shape=[n], low=[-bound] * n, high=[bound] * n)
            meta[key] = json.dumps(space)
        return edit

    _edit_metadata(root, TASKS[0], reshape("action_space", 6, 1.0))
    _refused(root, [f"{_metadata_path(root, TASKS[0])}: action space Box(",
                    "expected a Box of shape (4,) within [-1, 1]"])
    _edit_metadata(root, TASKS[0], reshape("action_space", 4, 2.0))
    _refused(root, ["action space Box(-2.0, 2.0, (4,), float32), expected"])
    shutil.copy(_metadata_path(exported, TASKS[0]), _metadata_path(root, TASKS[0]))
    _edit_metadata(root, TASKS[1], reshape("observation_space", 40, 1.0))
    _refused(root, [f"{_metadata_path(root, TASKS[1])}: observation space Box(",
                    "expected a Box of shape (39,)"])


def test_reading_never_builds_the_env_a_dataset_names(exported, tmp_path):
    """Without its spaces in the metadata, Minari's reader makes the env the spec names, running
    its entry point: such a dataset is refused before Minari opens it."""
    from minari.dataset.minari_storage import MinariStorage

    root = _copy(exported, tmp_path)
    marker = tmp_path / "code-ran"

    def planted(meta):
        del meta["observation_space"]
        meta["env_spec"] = json.dumps({**json.loads(meta["env_spec"]), "entry_point":
                                       "os:makedirs", "kwargs": {"name": str(marker)}})

    _edit_metadata(root, TASKS[0], planted)
    _refused(root, [f"{_metadata_path(root, TASKS[0])}: no 'observation_space'; Minari would "
                    "build the env the dataset names to find it (running its code)"])
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - the premise: Minari itself would run it
        MinariStorage.read(_metadata_path(root, TASKS[0]).parent)
    assert marker.is_dir()


def test_malformed_files_are_named(exported, tmp_path):
    root = _copy(exported, tmp_path)
    _edit_metadata(root, TASKS[0], lambda meta: meta.update(data_format="arrow"))
    _refused(root, [f"{_metadata_path(root, TASKS[0])}: data_format 'arrow'; only HDF5"])
    _metadata_path(root, TASKS[0]).write_text("{not json")
    _refused(root, [f"{_metadata_path(root, TASKS[0])}: not valid JSON"])
    _metadata_path(root, TASKS[0]).write_text("[]")
    _refused(root, [f"{_metadata_path(root, TASKS[0])}: not a JSON object"])
    shutil.copy(_metadata_path(exported, TASKS[0]), _metadata_path(root, TASKS[0]))
    data = _metadata_path(root, TASKS[1]).parent
    victim = data / "main_data.hdf5"
    victim.write_bytes(victim.read_bytes()[:200])
    _refused(root, [f"{data.parent}: not a readable Minari dataset (OSError"])


def _write(root, dataset_id, episodes, steps):
    """A Minari dataset of random steps with the suite's spaces, written by Minari itself."""
    from minari.data_collector import EpisodeBuffer

    from mtrl_bench_envs.minari_format import _datasets_path, _spaces

    rng = np.random.default_rng(0)
    obs_space, act_space = _spaces()
    buffers = [EpisodeBuffer(id=e, observations=rng.normal(size=(steps + 1, 39)),
                             actions=rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
                             rewards=rng.normal(size=steps), terminations=np.zeros(steps, bool),
                             truncations=np.arange(steps) == steps - 1)
               for e in range(episodes)]
    with _datasets_path(root), pytest.warns(UserWarning):
        minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=obs_space,
                                           action_space=act_space)


def test_other_episode_lengths_and_an_empty_half_are_refused(tmp_path):
    _write(tmp_path, f"short/{TASKS[0]}-v0", episodes=1, steps=10)
    _refused(tmp_path, [f"{tmp_path / 'short' / f'{TASKS[0]}-v0'}: episode 0 has 10 steps and "
                        "11 observations; the suite trains on episodes of 500 steps"],
             source="minari:short", tasks=TASKS[:1])
    _write(tmp_path, f"one/{TASKS[0]}-v0", episodes=1, steps=500)
    one = load_minari("minari:one", TASKS[:1], "near-optimal", tmp_path)[0]
    assert one.episodes == 1 and not one.successes.any()  # no success infos: all False
    with pytest.raises(DatasetError, match=r"one/basketball-v3-v0: no sub-optimal episodes "
                                           r"\(the dataset has 1; sub-optimal is the first half"):
        load_minari("minari:one", TASKS[:1], "sub-optimal", tmp_path)


@pytest.mark.parametrize("source, problem", [
    ("d4rl:x", "data.source: 'd4rl:x' is neither 'generated'"),
    ("minari:", "data.source 'minari:': expected 'minari:<namespace>'"),
    ("minari:./here", "data.source 'minari:./here': expected"),
    ("minari:a/../b", "data.source 'minari:a/../b': expected"),
])
def test_a_malformed_source_is_a_config_error(source, problem):
    with pytest.raises(ConfigError) as info:
        RunConfig("prompt-dt", data=DataConfig(source=source)).validate()
    assert str(info.value).startswith(problem)
