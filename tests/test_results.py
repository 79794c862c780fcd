"""The results table, curves and mask diagnostics, from run directories written by hand."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from mtrl_bench import results
from mtrl_bench.config import RunConfig
from mtrl_bench.masking import mask_diagnostics
from mtrl_bench.report import write_report
from mtrl_bench.runs import RunDir, write_json
from mtrl_bench_envs.suites import get_suite

TASKS = ("basketball-v3", "bin-picking-v3")  # the first two tasks of MT5 and MT30
EPISODES = 40  # per task: every success below is a whole number of episodes


def eval_result(suite: str, success: tuple[float, ...], returns: tuple[float, ...]) -> dict:
    """An evaluation result as the evaluator writes it: `success` and `returns` are the first
    tasks' values, the suite's other tasks get their mean (so the run's mean is theirs)."""
    tasks = get_suite(suite).tasks
    fill = len(tasks) - len(success)
    success = (*success, *[sum(success) / len(success)] * fill)
    returns = (*returns, *[sum(returns) / len(returns)] * fill)
    per_task = {}
    for task, s, r in zip(tasks, success, returns):
        won = round(s * EPISODES)
        assert math.isclose(won, s * EPISODES), f"{s} is not a whole number of {EPISODES} episodes"
        per_task[task] = {"success": won / EPISODES, "return": r, "episodes": EPISODES,
                          "successes": [1] * won + [0] * (EPISODES - won),
                          "returns": [r] * EPISODES}
    return {"tasks": per_task, "success": sum(success) / len(success),
            "return": sum(returns) / len(returns)}


def make_run(root: Path, name: str, method: str = "socodt", seed: int = 0,
             success: tuple[float, ...] | None = (1.0, 0.5), returns: tuple[float, ...] = (
                 400.0, 200.0), state: str = "complete", early_stop: bool = True,
             metrics: list[dict] | None = None, suite: str = "mt5") -> RunDir:
    """A run directory as the trainer leaves it (success=None: no eval.json); `success` and
    `returns` as in `eval_result`."""
    cfg = RunConfig(method=method, suite=suite, quality="sub-optimal", seed=seed, profile="cpu")
    cfg.eval.early_stop = early_stop
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    write_json(run.config_path, cfg.to_dict())
    for record in metrics or []:
        run.log(record)
    if success is not None:
        write_json(run.eval_path, eval_result(suite, success, returns))
    if state == "complete":
        run.mark_complete()
    else:
        run.set_status(state, step=3, **({"error": "RuntimeError: boom"}
                                          if state == "failed" else {}))
    return run


def grid_entry(run: RunDir, label: str | None = None, suite_label: str | None = None) -> dict:
    c = json.loads(run.config_path.read_text())
    return {"name": run.path.name, "method": c["method"], "label": label or c["method"],
            "suite": c["suite"], "suite_label": suite_label or c["suite"],
            "quality": c["quality"], "seed": c["seed"], "config": c, "sweeps": []}


def test_collect_long_table_from_run_dirs(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "a", "socodt", 0, (1.0, 0.5))
    make_run(runs, "b", "prompt-dt", 0, (0.0, 0.5))
    df, problems = results.collect(tmp_path)
    assert problems == []
    assert set(df.columns) >= {"method", "suite", "quality", "seed", "task", "metric", "value",
                               "protocol", "run"}
    soco = df[(df["method"] == "socodt")]
    assert set(soco["task"]) == {*get_suite("mt5").tasks, "__mean__"}
    assert soco.set_index("task").loc["__mean__", "value"] == 0.75
    assert set(df["metric"]) == {"success"}  # early-stopped episodes: no return rows
    assert set(df["protocol"]) == {"v3-scripted-replay-v2/cpu"}


def test_runs_of_different_numerics_are_named(tmp_path):
    runs = tmp_path / "runs"
    for name, seed, amp in [("a", 0, "bfloat16"), ("b", 1, "None"), ("c", 2, "None")]:
        run = make_run(runs, name, seed=seed)
        write_json(run.manifest_path, {"executions": [{"amp": amp, "device": "cpu"}]})
    _, notes = results.collect(tmp_path)
    assert notes == ["runs of different numerics pooled (autocast as recorded in the "
                     "manifests): fp32 2, bfloat16 1"]
    write_json(RunDir(runs / "a").manifest_path, {"executions": [{"amp": "None"}]})
    assert results.collect(tmp_path)[1] == []  # all fp32: nothing to say


def test_protocol_names_the_recipe():
    cfg = RunConfig("prompt-dt").to_dict()
    assert results.protocol_id(cfg) == "v3-scripted-replay-v2/cpu"
    cfg["data"]["recipe"] = "scripted-replay-v1"
    assert results.protocol_id(cfg) == "v3-scripted-replay/cpu"  # as before recipes existed
    del cfg["data"]["recipe"]
    assert results.protocol_id(cfg) == "v3-scripted-replay/cpu"


def _reference_file(folder: Path, config: dict, variant: str, success: float) -> None:
    from mtrl_bench.baselines import reference_protocol

    name = f"{variant}__{config['suite']}__{config['quality']}__s{config['seed']}.json"
    write_json(folder / name,
               {"reference": variant, "suite_label": config["suite"], "config": config,
                "protocol": reference_protocol(config, variant),
                "result": eval_result(config["suite"], (success,), (1.0,))})


def test_references_of_the_runs_are_rows_and_stale_ones_are_left_out(tmp_path):
    run = make_run(tmp_path / "runs", "a", "socodt", 0, (1.0, 0.5))
    config = json.loads(run.config_path.read_text())
    folder = tmp_path / "references"
    folder.mkdir()
    _reference_file(folder, config, "bc-top20", 0.9)
    other_seed = {**config, "seed": 7}  # no run of this seed
    _reference_file(folder, other_seed, "bc-all", 0.1)
    old = {**config, "eval": {**config["eval"], "episodes_per_task": 3}}  # another protocol
    _reference_file(folder, old, "bc-all", 0.2)
    (folder / "bc-all__mt5__sub-optimal__s0.json").rename(folder / "stale.json")
    df, problems = results.collect(tmp_path)
    means = df[df["task"] == "__mean__"].set_index("method")["value"]
    assert dict(means) == {"socodt": 0.75, "bc-top20": 0.9}
    assert any("2 reference file(s)" in p for p in problems)


def _drop_task(r: dict) -> None:
    """The hardest task gone and the mean recomputed: consistent, but not the suite's."""
    del r["tasks"][TASKS[1]]
    r["success"] = sum(t["success"] for t in r["tasks"].values()) / len(r["tasks"])


def _first(r: dict) -> dict:
    return r["tasks"][TASKS[0]]


CRAFTED_EVALS = {
    "task dropped": (_drop_task, "its tasks are not mt5's (4 for 5; differ in bin-picking-v3)"),
    "task added": (lambda r: r["tasks"].update({"reach-v3": _first(r)}), "differ in reach-v3"),
    "success above 1": (lambda r: _first(r).update(success=7), "success 7 is not the mean"),
    "success as text": (lambda r: _first(r).update(success="1"), "success '1' is not the mean"),
    "mean edited": (lambda r: r.update(success=0.9), "success 0.9 is not the mean over"),
    "episode of 2": (lambda r: _first(r)["successes"].__setitem__(0, 2), "not 0 or 1"),
    "episodes miscounted": (lambda r: _first(r).update(episodes=50), "'episodes' (50)"),
    "return not a number": (lambda r: _first(r)["returns"].__setitem__(0, "x"),
                            "returns: not a list of finite numbers"),
    "no tasks": (lambda r: r.update(tasks=[]), "no per-task results"),
    "not an object": (lambda r: r.clear(), "no per-task results"),
}


@pytest.mark.parametrize("case", list(CRAFTED_EVALS))
def test_a_crafted_evaluation_is_left_out_naming_its_file_and_fault(case, tmp_path):
    """A run folder from someone else is untrusted: its eval.json must be what the evaluator
    writes, or the run is left out with a one-line reason, the others reported."""
    edit, fault = CRAFTED_EVALS[case]
    runs = tmp_path / "runs"
    make_run(runs, "good")
    bad = make_run(runs, "bad", seed=1)
    result = json.loads(bad.eval_path.read_text())
    edit(result)
    write_json(bad.eval_path, result)
    df, problems = results.collect(tmp_path)
    assert set(df["run"]) == {"good"}
    (problem,) = problems
    assert problem.startswith("bad: damaged, left out: eval.json: ") and fault in problem


def test_a_crafted_reference_is_left_out_naming_its_file(tmp_path):
    run = make_run(tmp_path / "runs", "a")
    folder = tmp_path / "references"
    folder.mkdir()
    _reference_file(folder, json.loads(run.config_path.read_text()), "bc-top20", 0.9)
    (path,) = folder.iterdir()
    ref = json.loads(path.read_text())
    _drop_task(ref["result"])
    write_json(path, ref)
    df, problems = results.collect(tmp_path)
    assert set(df["method"]) == {"socodt"}
    assert any(f"damaged: {path.name}: its tasks are not mt5's" in p for p in problems)


def test_returns_only_from_full_episodes(tmp_path):
    make_run(tmp_path / "runs", "full", early_stop=False)
    df, _ = results.collect(tmp_path)
    ret = df[df["metric"] == "return"].set_index("task")["value"]
    assert ret[TASKS[0]] == 400.0 and ret["__mean__"] == 300.0


def test_problems_name_missing_failed_and_unfinished_runs(tmp_path):
    runs = tmp_path / "runs"
    done = make_run(runs, "done")
    failed = make_run(runs, "failed", seed=1, success=None, state="failed")
    half = make_run(runs, "half", seed=2, success=None, state="interrupted")
    stray = make_run(runs, "stray", seed=9)  # on disk, not in the grid: left out
    entries = [grid_entry(r) for r in (done, failed, half)]
    missing = dict(entries[0], name="never-started", seed=3)
    write_json(tmp_path / "grid.json", {"runs": [*entries, missing]})
    df, problems = results.collect(tmp_path)
    assert set(df["run"]) == {"done"} and stray.path.name not in set(df["run"])
    text = "\n".join(problems)
    assert "seed 1: failed: RuntimeError: boom" in text
    assert "seed 2: interrupted at step 3 of" in text
    assert "seed 3: not run yet (never-started)" in text
    assert "not in this experiment's grid" in text


def test_grid_labels_become_the_method_and_suite(tmp_path):
    runs = tmp_path / "runs"
    a = make_run(runs, "a", suite="random5-1")
    b = make_run(runs, "b", seed=1, suite="random5-2")
    write_json(tmp_path / "grid.json", {"runs": [
        grid_entry(a, "socodt[alpha=10]", "random5"), grid_entry(b, "socodt", "random5")]})
    df, _ = results.collect(tmp_path)
    assert set(df["suite"]) == {"random5"} and set(df["suite_id"]) == {"random5-1", "random5-2"}
    assert set(df["method"]) == {"socodt[alpha=10]", "socodt"}
    assert set(df["base_method"]) == {"socodt"}


def test_several_directories_make_one_table(tmp_path, capsys):
    """Table 1's MT5 and MT30 grids run apart and are reported together; a run both hold (the
    same identity, e.g. one config in two experiments) counts once, from the first."""
    from mtrl_bench.cli import main

    mt5, mt30 = tmp_path / "table1", tmp_path / "table1-mt30"
    shared = make_run(mt5 / "runs", "shared", metrics=MASK_RECORDS)
    make_run(mt5 / "runs", "p0", "prompt-dt")
    make_run(mt30 / "runs", "shared", success=(0.0, 0.0))  # the later copy: not counted
    make_run(mt30 / "runs", "big", suite="mt30", success=(0.2, 0.4), metrics=MASK_RECORDS)
    df, problems = results.collect(mt5, mt30)
    means = df[df["task"] == "__mean__"].set_index("run")["value"]
    assert means.to_dict() == pytest.approx({"shared": 0.75, "p0": 0.75, "big": 0.3})
    assert any(p.startswith(f"{mt30}: 1 run(s) also in an earlier directory") for p in problems)
    curves = results.training_curves(mt5, mt30)
    assert set(curves["run"]) == {"shared", "big"}  # p0 logged nothing
    assert results.run_folders(mt5, mt30)["shared"][1] == shared.path
    out = tmp_path / "joint"
    assert main(["report", str(mt5), str(mt30), "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "results.csv")["suite"]) == {"mt5", "mt30"}
    assert (out / "plots" / "curves_success.png").exists()
    assert not (out / "plots" / "masks").exists()  # a run's own figure: `mtrl-bench plot`
    assert not (mt5 / "results.csv").exists()  # the sources are only read
    assert "also in an earlier directory" in capsys.readouterr().out


def test_collected_table_feeds_the_report(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        make_run(runs, f"s{seed}", "socodt", seed, (1.0, 0.5 + 0.1 * seed))
        make_run(runs, f"p{seed}", "prompt-dt", seed, (0.0, 0.2 * seed))
    df, _ = results.collect(tmp_path)
    paths = write_report(df, tmp_path / "report", reps=200)
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv")
    row = comparison[comparison["method"] == "prompt-dt"].iloc[0]
    assert row["n"] == 3 and math.isclose(row["diff"], 0.1 - 0.8, abs_tol=1e-9)
    assert all(p.stat().st_size > 0 for p in paths)


def test_empty_or_missing_directory(tmp_path):
    df, problems = results.collect(tmp_path)
    assert df.empty and problems == []
    with pytest.raises(FileNotFoundError):
        results.collect(tmp_path / "nope")


MASK_RECORDS = [
    {"step": 5, "kind": "train", "loss": 0.9},
    {"step": 5, "kind": "train", "loss": 0.8, "mask": {
        "density": [0.8, 0.7], "mean_mask": [0.85, 0.75], "beta": 20.0,
        "conflict_size/0": 3.0, "conflict_size/1": 5.0, "conflict_size": 4.0,
        "grad_cosine": [[1.0, 0.2], [0.2, 1.0]], "flag": True}},
    {"step": 10, "kind": "eval", "success": 0.5, "return": 100.0, "task_success": [1.0, 0.0]},
]


def test_method_and_trainer_diagnostics_never_collide(tmp_path):
    """A method may log its own "density": it is kept apart from the trainer's."""
    record = {"step": 5, "kind": "train", "loss": 1.0, "mask": {"density": [0.8, 0.6]},
              "strategy": {"density": [0.1, 0.3], "beta": 2.0}}
    diag = results.mask_diagnostics(make_run(tmp_path, "m", metrics=[record]).path)
    rows = {(r.source, r.key, r.task): r.value for r in diag.itertuples()}
    assert rows["mask", "density", 1] == 0.6 and rows["strategy", "density", 1] == 0.3
    assert rows["strategy", "beta", -1] == 2.0


def test_logged_gradient_cosine_is_each_tasks_mean_with_the_others(tmp_path):
    """Three tasks, two parameters, by hand: g0 = (1, 0), g1 = (0, 2), g2 = (1, 1). Cosines:
    c01 = 0, c02 = c12 = 1/sqrt(2); task 0 and 1 mean 1/(2 sqrt 2), task 2 mean 1/sqrt 2. The old
    log (the full matrix) reads the same."""
    grads = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    masks = torch.tensor([[1.0, 0.0], [1.0, 0.5], [1.0, 1.0]])
    logged = mask_diagnostics(masks, grads, top_fraction=0.5)
    r = 1 / math.sqrt(2)
    assert logged["grad_cosine"] == pytest.approx([r / 2, r / 2, r])
    assert logged["density"] == [0.5, 0.5, 1.0] and logged["soft_fraction"] == [0.0, 0.5, 0.0]
    assert logged["top_fisher_masked"] == [0.0, 1.0, 0.0]  # task 1's top entry (2) is soft
    assert "grad_cosine" not in mask_diagnostics(masks[:1], grads[:1])  # no other task
    matrix = [[1.0, 0.0, r], [0.0, 1.0, r], [r, r, 1.0]]
    for i, cosine in enumerate([logged["grad_cosine"], matrix]):
        run = make_run(tmp_path / str(i), "m", metrics=[
            {"step": 5, "kind": "train", "loss": 1.0, "mask": {"grad_cosine": cosine}}])
        diag = results.mask_diagnostics(run.path)
        rows = {(row.key, row.task): row.value for row in diag.itertuples()}
        assert rows["grad_cosine", 2] == pytest.approx(r, abs=1e-4)  # logged to 4 digits
        assert rows["grad_cosine_mean", -1] == pytest.approx(2 * r / 3, abs=1e-4)


def test_mask_diagnostics_and_curves(tmp_path):
    run = make_run(tmp_path / "runs", "m", metrics=MASK_RECORDS)
    diag = results.mask_diagnostics(run.path)
    rows = {(r.key, r.task): r.value for r in diag.itertuples()}
    assert rows["density", 1] == 0.7 and rows["beta", -1] == 20.0
    assert rows["conflict_size", 1] == 5.0 and rows["conflict_size", -1] == 4.0  # old "name/i"
    sources = dict(zip(diag["key"], diag["source"]))
    assert sources["density"] == "mask" and sources["beta"] == "strategy"
    assert rows["grad_cosine", 0] == pytest.approx(0.2)
    assert rows["grad_cosine_mean", -1] == pytest.approx(0.2)
    assert ("flag", -1) not in rows  # booleans are not plotted
    curve = results.run_curve(run.path)
    assert curve[curve["metric"] == "loss"]["value"].tolist() == [0.9, 0.8]
    curves = results.training_curves(tmp_path)
    ev = curves[curves["metric"] == "success"]
    assert ev["value"].tolist() == [0.5] and ev["method"].tolist() == ["socodt"]
    assert results.mask_diagnostics(make_run(tmp_path / "runs", "plain").path).empty


def test_maskable_entries_is_the_models_mask_layout():
    from mtrl_bench.config import build_config
    from mtrl_bench.model import PromptDT

    for profile in ("smoke", "cpu", "paper"):
        cfg = build_config("prompt-dt", "mt5", "near-optimal", 0, profile)
        model = PromptDT(cfg.model, state_dim=39, act_dim=4)
        n = sum(p.numel() for p in model.maskable_parameters().values())
        assert results.maskable_entries(cfg.to_dict()) == n


def _activity_records(densities, conflicts=None, moved=None):
    out = []
    for i, d in enumerate(densities):
        rec = {"step": 30 * (i + 1), "kind": "train", "loss": 1.0, "mask": {"density": d}}
        if moved is not None:
            rec["mask"] |= {"masked": moved[i][0], "restored": moved[i][1]}
        if conflicts is not None:
            rec["strategy"] = {"conflict_size": conflicts[i], "recover_size": [0.0, 0.0]}
        out.append(rec)
    return out


def test_mask_activity_by_hand(tmp_path):
    """Two tasks, cpu profile (98,304 maskable entries), three updates.
    A: conflict sets [1024, 0], [0, 0], [0, 0] entries -> mean 1024 / 6 entries = 1/576 of
    the entries; one of six task-updates non-empty; density 0.80 -> 0.85: it moved (5 points).
    B: density 0.80 -> 0.81 and no conflicts: inert on density alone (switches not logged).
    C: density constant but 1,000 + 1,000 entries switched per task and update: 2,000 / 98,304
    = 2.03% per update, 6.1% over the run: not inert (a swap keeps density)."""
    from mtrl_bench.config import build_config

    cfg = build_config("prompt-dt", "mt5", "near-optimal", 0, "cpu").to_dict()
    cfg["method_config"] = {"sparsity": 0.2}
    n = results.maskable_entries(cfg)
    assert n == 98_304
    diag = results.mask_diagnostics(make_run(tmp_path, "a", metrics=_activity_records(
        [[0.8, 0.8], [0.82, 0.84], [0.84, 0.86]], [[1024.0, 0.0], [0.0, 0.0], [0.0, 0.0]])).path)
    a = results.run_activity(cfg, diag)
    assert a["conflict_share"] == pytest.approx(1 / 576) and a["conflict_nonempty"] == 1 / 6
    assert a["density_initial"] == pytest.approx(0.8) and a["density_final"] == 0.85
    assert a["updates"] == 3 and not a["inert"] and math.isnan(a["moved_share"])
    diag = results.mask_diagnostics(make_run(tmp_path, "b", metrics=_activity_records(
        [[0.8, 0.8], [0.805, 0.805], [0.81, 0.81]], [[0.0, 0.0]] * 3)).path)
    b = results.run_activity(cfg, diag)
    assert b["inert"] and b["inert_basis"] == "density" and b["conflict_nonempty"] == 0
    diag = results.mask_diagnostics(make_run(tmp_path, "c", metrics=_activity_records(
        [[0.8, 0.8]] * 3, moved=[([1000.0, 1000.0], [1000.0, 1000.0])] * 3)).path)
    c = results.run_activity(cfg, diag)
    assert c["moved_share"] == pytest.approx(2000 / n) and not c["inert"]
    assert c["inert_basis"] == "density and switches" and math.isnan(c["conflict_share"])
    assert results.run_activity(cfg, results.mask_diagnostics(
        make_run(tmp_path, "plain").path)) is None  # no masks: no activity


def test_precision_pairs_runs_of_one_identity_by_name(tmp_path):
    """tools/compare_precision.py: runs of the same name in two directories, trained under
    different numerics, are paired by seed; the difference is b − a."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare_precision", Path(__file__).parents[1] / "tools" / "compare_precision.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for side, amp, successes in (("a", "bfloat16", [(1.0, 0.5), (0.5, 0.5)]),
                                 ("b", "None", [(1.0, 1.0), (0.5, 0.75)])):
        for seed, success in enumerate(successes):
            run = make_run(tmp_path / side / "runs", f"r{seed}", seed=seed, success=success)
            write_json(run.manifest_path, {"executions": [{"amp": amp}]})
    table = tool.paired_table(tmp_path / "a", tmp_path / "b")
    row = table.iloc[0]
    assert (row["pairs"], row["numerics_a"], row["numerics_b"]) == (2, "bfloat16", "fp32")
    assert row["mean_a"] == pytest.approx(0.625) and row["diff"] == pytest.approx(0.1875)
    assert row["diff_std"] == pytest.approx(0.125 / 2**0.5) and len(table) == 1


# --------------------------------------------------------------------------- compacting

def old_run(root: Path, name: str, **kwargs) -> RunDir:
    """A finished run as the code before compaction left it: a plain metrics.jsonl, DONE."""
    run = make_run(root, name, state="running", **kwargs)
    (run.path / "DONE").write_text("")
    run.set_status("complete")
    return run


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_compacting_keeps_every_number_a_report_or_plot_reads(tmp_path):
    """Old runs (plain logs, N x N cosine matrices, per-run PNGs) compacted: the report's files
    are byte-identical, curves and diagnostics read the same (cosines to the log's 6 digits);
    unfinished runs are untouched, and compacting again changes nothing."""
    from mtrl_bench.cli import main
    from mtrl_bench.compact import compact

    exp, runs = tmp_path / "exp", tmp_path / "exp" / "runs"
    r = 1 / 3
    matrix = [[1.0, r, -r], [r, 1.0, 0.5], [-r, 0.5, 1.0]]  # old form, three tasks
    logged = [{"step": s, "kind": "train", "loss": 1 / s, "mask": {
        "density": [0.8, 0.7, 0.6], "grad_cosine": matrix}, "strategy": {"beta": 2.0}}
        for s in (5, 10)] + MASK_RECORDS
    for seed in range(2):
        old_run(runs, f"s{seed}", seed=seed, metrics=logged)
        old_run(runs, f"p{seed}", method="prompt-dt", seed=seed, success=(0.5, 0.5),
                metrics=MASK_RECORDS[:1])
    training = make_run(runs, "training", seed=2, state="running", metrics=logged)
    (runs / "s0" / "plots").mkdir()
    for png in ("s0/plots/training.png", "s0/plots/masks.png", "../plots/masks/s0.png"):
        (runs / png).parent.mkdir(parents=True, exist_ok=True)
        (runs / png).write_bytes(b"\x89PNG")
    (runs / "s0" / "plots" / "notes.txt").write_text("mine")  # not a plot: kept

    def report() -> tuple[dict[str, bytes], dict[str, pd.DataFrame]]:
        assert main(["report", str(exp), "--out", str(tmp_path / "report")]) == 0
        files = {n: (tmp_path / "report" / n).read_bytes() for n in (
            "results.csv", "mask_activity.csv", "aggregate.csv", "comparison.csv", "report.md",
            "report.tex")}
        read = {name: pd.concat([results.run_curve(runs / name),
                                 results.mask_diagnostics(runs / name)])
                for name in ("s0", "s1", "p0", "training")}
        return files, read

    files, read = report()
    untouched = training.metrics_path.read_bytes()
    done = compact(exp)
    assert (done.logs, done.matrices, done.finished, done.unfinished, done.pngs) == (4, 2, 4, 1, 3)
    assert done.bytes_after < done.bytes_before
    assert files == report()[0]
    for name, now in report()[1].items():
        cosine = read[name]["key"].astype(str).str.startswith("grad_cosine")
        pd.testing.assert_frame_equal(now[~cosine], read[name][~cosine])
        pd.testing.assert_frame_equal(now[cosine], read[name][cosine], atol=1e-6, rtol=0)
    assert sorted(p.name for p in (runs / "s0").iterdir()) == [
        "DONE", "config.json", "eval.json", "metrics.jsonl.gz", "plots", "status.json"]
    assert [p.name for p in (runs / "s0" / "plots").iterdir()] == ["notes.txt"]
    assert not (exp / "plots" / "masks").exists()
    assert training.metrics_path.read_bytes() == untouched
    assert not training.compact_metrics_path.exists()
    before = _tree(exp)
    again = compact(exp)
    assert (again.logs, again.pngs) == (0, 0) and _tree(exp) == before


def test_compacting_a_damaged_log_changes_nothing(tmp_path):
    from mtrl_bench.compact import compact

    good = old_run(tmp_path, "a", metrics=MASK_RECORDS)
    bad = old_run(tmp_path, "b", metrics=MASK_RECORDS)
    bad.metrics_path.write_text('{"step": 1, "kind"\n{"step": 2}\n')
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match=r"b/metrics.jsonl: damaged line 1"):
        compact(tmp_path)
    assert _tree(tmp_path) == before and good.metrics_path.exists()
    with pytest.raises(FileNotFoundError, match="no such directory"):
        compact(tmp_path / "nowhere")


def test_a_runs_evaluation_is_stored_on_one_line(tmp_path):
    from mtrl_bench.runs import rounded

    path = tmp_path / "eval.json"
    write_json(path, rounded({"success": 0.8119999999999998, "tasks": {"a": {"returns": [
        256.702058012166]}}}), compact=True)
    assert path.read_text() == '{"success":0.812,"tasks":{"a":{"returns":[256.702]}}}\n'


def test_runs_of_one_profile_but_another_protocol_are_not_pooled(finished_run, tmp_path):
    """Two folders of runs with the same seed, profile and recipe, one trained for other steps
    and evaluated on other episodes: each keeps its own protocol (never one cell of two
    'seeds 0'), and the report says which fields differ."""
    import json
    import shutil

    from mtrl_bench.results import collect

    for name, steps in (("a", None), ("b", 40)):  # (another config: another run name)
        shutil.copytree(finished_run / "runs" / "run", tmp_path / name / "runs" / f"run{name}")
        if steps:
            path = tmp_path / name / "runs" / f"run{name}" / "config.json"
            cfg = json.loads(path.read_text())
            cfg["train"]["steps"], cfg["eval"]["episodes_per_task"] = steps, 5
            path.write_text(json.dumps(cfg))
    df, problems = collect(tmp_path / "a", tmp_path / "b", tmp_path / "a")
    protocols = sorted(set(df["protocol"]))
    # a tie (1 run each): either keeps the plain id, the other is named by its differences
    assert len(protocols) == 2 and protocols[1] in (
        protocols[0] + "[eval.episodes_per_task=5,train.steps=40]",
        protocols[0] + "[eval.episodes_per_task=1,train.steps=4]")
    assert df.groupby("protocol")["seed"].nunique().tolist() == [1, 1]
    assert any(re.search(r"differ from its other 1 in eval.episodes_per_task=\d, "
                         r"train.steps=\d+: not pooled", p) for p in problems), problems
    alone, problems = collect(tmp_path / "b")  # alone, a folder is its own protocol
    assert set(alone["protocol"]) == {protocols[0]} and not any("pooled" in p for p in problems)


def test_one_label_with_two_method_configs_is_two_methods(finished_run, tmp_path):
    """Fig. 5's grid labels its β-as-% runs plain 'socodt'; beside Table 1's literal ones, the
    same label must not pool two methods (seed 0 of each averaged into one seed)."""
    import json
    import shutil

    from mtrl_bench.results import collect

    for name, extra in (("a", {}), ("b", {"beta_scale": 0.01})):
        run = tmp_path / name / "runs" / f"run{name}"
        shutil.copytree(finished_run / "runs" / "run", run)
        cfg = json.loads((run / "config.json").read_text())
        cfg["method_config"] = {**cfg["method_config"], **extra}
        (run / "config.json").write_text(json.dumps(cfg))
    df, problems = collect(tmp_path / "a", tmp_path / "b")
    methods = sorted(set(df["method"]))
    assert len(methods) == 2 and methods[1] in (f"{methods[0]}[beta_scale=0.01]",
                                                f"{methods[0]}[beta_scale=None]")
    assert any("have another method config" in p for p in problems), problems
