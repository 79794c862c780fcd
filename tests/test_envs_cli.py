"""`mtrl-bench data ...` end to end: as a user runs it (subprocess) and through `main` in-process.

Each `mtrl-bench` process pays for the core's imports (torch), so only the round trip a user
does first runs in subprocesses; the other cases call the same `main` in this process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mtrl_bench.cli import main
from mtrl_bench_envs.experts import experts_table, load_experts
from mtrl_bench_envs.suites import MT50_ORDER


def cli(*args, root):
    env = {**os.environ, "MTRL_BENCH_DATA": str(root)}
    return subprocess.run([sys.executable, "-m", "mtrl_bench.cli", "data", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_generate_then_info_in_subprocesses(tmp_path):
    root = tmp_path / "root"
    gen = cli("generate", "--suite", "mt5", "--quality", "sub-optimal", "--episodes", "2",
              "--tasks", "button-press-v3", "--workers", "1", root=root)
    assert gen.returncode == 0, gen.stderr
    assert "button-press-v3" in gen.stdout and "sub-optimal: episodes 0..0" in gen.stdout
    assert "2/2" in gen.stderr  # the progress bar counts episodes
    (directory,) = root.iterdir()
    card = json.loads((directory / "card.json").read_text())
    assert list(card["tasks"]) == ["button-press-v3"] and card["episodes"] == 2

    info = cli("info", root=root)  # no DIR: the most recent dataset under the root
    assert info.returncode == 0, info.stderr
    assert "most recently updated of 1" in info.stdout and "button-press-v3" in info.stdout
    assert "scripted-replay-v2" in info.stdout and "sub success %" in info.stdout
    assert "success % by buffer tenth" in info.stdout

    bad = cli("generate", "--suite", "mt05", root=root)
    assert bad.returncode == 2
    assert bad.stderr == ("mtrl-bench: error: unknown suite 'mt05'. Did you mean 'mt5'? "
                          "Valid: mt5, mt30, mt50, mt50-rand, random5, random30\n")


def run(capsys, *args):
    code = main(["data", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_of_a_folder_and_a_root_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTRL_BENCH_DATA", str(tmp_path))
    code, _, err = run(capsys, "generate", "--episodes", "2", "--tasks", "button-press-v3")
    assert code == 0 and "generating 1 of 1 tasks" in err
    (directory,) = tmp_path.iterdir()
    code, out, _ = run(capsys, "info", directory)
    # one row in the card table, one in the table along the buffer
    assert code == 0 and out.count("button-press-v3") == 2 and "seed 0, 2 episodes" in out
    code, out, _ = run(capsys, "info", tmp_path)  # a folder of datasets: list them
    assert code == 0 and directory.name in out and "show one" in out
    code, out, err = run(capsys, "generate", "--episodes", "2", "--tasks",
                         "button-press-v3,basketball-v3", "--quiet")
    assert code == 0 and "generating" not in err
    assert list(json.loads((directory / "card.json").read_text())["tasks"]) == [
        "basketball-v3", "button-press-v3"]  # added the missing task, card in suite order


@pytest.mark.parametrize("args, message", [
    (["generate", "--tasks", "button-pres-v3"], "Did you mean 'button-press-v3'?"),
    (["generate", "--suite", "random5-x"], "unknown suite 'random5-x'"),
    (["generate", "--episodes", "0"], "episodes must be an integer >= 2"),
    (["generate", "--episodes", "-5"], "episodes must be an integer >= 2"),
    (["generate", "--workers", "0", "--episodes", "2"], "workers must be >= 1"),
    (["generate", "--episodes", "2", "--out", "{tmp}/file/d"], "cannot write to output folder"),
    (["info", "{tmp}/nothing"], "no dataset card"),
    (["info"], "no datasets under"),
    (["experts", "--out", "{tmp}/e.json"], "--out needs --recompute"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("MTRL_BENCH_DATA", str(tmp_path / "root"))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "file").write_text("")
    code, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith("mtrl-bench: error: ") and message in lines[0]
    assert not (tmp_path / "root").exists() and not (tmp_path / "e.json").exists()


def test_experts_table_is_committed_for_all_tasks(capsys):
    experts = load_experts()
    assert list(experts["tasks"]) == list(MT50_ORDER)
    assert experts["versions"]["metaworld"].startswith("3.1")
    assert experts["versions"]["mujoco"] == "3.3.0"
    for task, row in experts["tasks"].items():
        assert 0.0 <= row["success"] <= 1.0 and row["episodes"] == 50, task
        assert row["steps_to_success"] is None or 1 <= row["steps_to_success"] <= 500, task
    assert 0.8 < experts["mean_success"] <= 1.0
    mean_row = experts_table(experts).splitlines()[-1]
    code, out, _ = run(capsys, "experts")
    assert code == 0 and mean_row.startswith("mean") and mean_row in out
    assert "basketball-v3" in out and "metaworld 3.1" in out


def test_compute_experts_on_a_few_goals():
    from mtrl_bench_envs.experts import compute_experts

    result = compute_experts(["button-press-topdown-v3"], goals=2, workers=1, progress=False)
    row = result["tasks"]["button-press-topdown-v3"]
    assert row["success"] == 1.0 and row["episodes"] == 2
    assert 10 < row["steps_to_success"] < 500  # stopped at success, not run to 500


def test_recipe_is_selectable_and_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTRL_BENCH_DATA", str(tmp_path))
    code, out, _ = run(capsys, "generate", "--episodes", "2", "--tasks", "button-press-v3",
                       "--recipe", "scripted-replay-v1", "--quiet")
    assert code == 0 and "recipe: scripted-replay-v1" in out
    (directory,) = tmp_path.iterdir()
    assert directory.name.startswith("scripted-replay-v1__")
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        main(["data", "generate", "--recipe", "scripted-replay-v9"])
    assert "scripted-replay-v2" in capsys.readouterr().err
