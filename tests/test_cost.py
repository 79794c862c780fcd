"""Cost said before a grid starts: priced by finished runs of the same shape."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtrl_bench import grid
from mtrl_bench.api import Run
from mtrl_bench.cost import estimate


def config(method: str, seed: int = 0, suite: str = "mt5", steps: int = 20) -> dict:
    return Run.prepare(method, suite, "near-optimal", seed, "smoke", {"train.steps": steps},
                       runs_root=Path("/nonexistent")).config.to_dict()


def finished(root: Path, name: str, cfg: dict, train: float, final: float,
             done: bool = True) -> None:
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "eval.json").write_text(json.dumps({"train_seconds": train, "seconds": final}))
    if done:
        (run / "DONE").write_text("")


def test_runs_cost_the_median_of_finished_runs_of_their_shape(tmp_path):
    for seed, (train, final) in enumerate([(100, 20), (200, 40), (130, 10), (999, 999)]):
        # seed and quality do not change the work; an unfinished run does not count
        finished(tmp_path, f"a{seed}", config("socodt", seed), train, final, done=seed < 3)
    finished(tmp_path, "b", config("prompt-dt", 7), 60, 12)
    todo = [config("socodt", 5), config("socodt", 6, suite="random5-3"),  # 5 tasks too
            config("harmodt-f", 5),  # never measured: priced by the other methods' runs
            config("socodt", 5, steps=40)]  # another shape: unknown
    est = estimate(todo, [tmp_path])
    # medians: socodt 140 s (120, 240, 140); all methods of the shape 130 s (+ prompt-dt's 72)
    assert (est.runs, est.measured, est.stand_in) == (4, 2, 1)
    assert est.seconds == pytest.approx(140 + 140 + 130)
    text = est.describe(workers=2)
    assert text.startswith("4 runs to train, ~6m50s of one core, ~3m25s on 2 workers")
    assert "1 priced by another method's runs" in text and "1 never measured" in text


def test_a_damaged_run_is_skipped_and_nothing_measured_says_so(tmp_path):
    finished(tmp_path, "x", config("socodt"), 100, 20)
    (tmp_path / "runs" / "x" / "eval.json").write_text("{not json")
    finished(tmp_path, "y", {"suite": "nonsense"}, 100, 20)
    est = estimate([config("socodt", 1)], [tmp_path, tmp_path / "missing"])
    assert (est.measured, est.stand_in) == (0, 0)
    assert est.describe(2) == ("1 run to train; cost unknown (no finished run of this "
                               "protocol to measure it by)")


def test_an_absurd_grid_is_refused_with_its_size_and_cost(tmp_path, monkeypatch):
    from mtrl_bench import cost

    finished(tmp_path, "a", config("prompt-dt", steps=6000), 50, 10)
    monkeypatch.setattr(cost, "PACKAGE_RESULTS", tmp_path)
    exp = grid.parse_experiment(
        'methods = ["prompt-dt"]\nsuites = ["mt5"]\nqualities = ["near-optimal"]\n'
        f'profile = "smoke"\nseeds = {list(range(12_000))}\n[overrides]\ntrain.steps = 6000\n',
        "big.toml", "big")
    with pytest.raises(ValueError, match=r"12,000 runs .* \(~200h00m of one core at the measured "
                                         r"cost per run; likely a typo\); pass --max-runs 12000"):
        grid.expand(exp, tmp_path / "runs")


def test_a_runs_time_splits_into_setup_training_curve_and_final_evaluation(tmp_path,
                                                                           smoke_data):
    from mtrl_bench.cost import split

    run = Run.prepare("prompt-dt", "mt5", "near-optimal", 0, "smoke", {"train.eval_interval": 10},
                      execution={"data_dir": str(smoke_data), "progress": False},
                      out=tmp_path / "run")
    result = run.train()
    parts = split(tmp_path / "run")
    assert set(parts) == {"setup", "training", "curve evaluations", "final evaluation"}
    assert all(v is not None and v >= 0 for v in parts.values())
    curve = [r["seconds"] for r in run.dir.metrics() if r["kind"] == "eval" and r["step"] == 10]
    assert parts["curve evaluations"] == pytest.approx(curve[0], abs=0.01)
    assert parts["training"] + parts["curve evaluations"] == pytest.approx(
        result["train_seconds"], abs=0.2)
    assert parts["final evaluation"] == pytest.approx(result["seconds"], abs=0.01)  # stored rounded
