"""`mtrl-bench compare`: a method against reference runs of exactly its protocol."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mtrl_bench import grid
from mtrl_bench.cli import main
from mtrl_bench.compare import compare_experiment, match_references


def mine(method: str, steps: int, root: Path, seeds=(0,)) -> list:
    exp = compare_experiment(method, ["mt5"], ["near-optimal"], seeds, "smoke",
                             {"train.steps": steps})
    return [r for r in grid.expand(exp, root) if r.method == method]


def test_no_reference_of_the_protocol_is_refused_naming_what_differs(finished_run, tmp_path):
    """The committed-like folder holds a finished 4-step Prompt-DT run: a 20-step comparison
    must not be made against it."""
    with pytest.raises(ValueError, match=r"no reference run in .* shares your runs' protocol "
                                         r"\(mt5 near-optimal\); the nearest, .*differs in "
                                         r"train.steps 4 \(yours: 20\)"):
        match_references(mine("harmodt-f", 20, tmp_path), [finished_run])
    with pytest.raises(ValueError, match="no finished reference run of mt5 sub-optimal"):
        exp = compare_experiment("socodt", ["mt5"], ["sub-optimal"], [0], "smoke", {})
        match_references(grid.expand(exp, tmp_path), [finished_run])
    found = match_references(mine("harmodt-f", 4, tmp_path), [finished_run])
    assert found.methods == ["prompt-dt"] and list(found.runs) == ["run"]
    with pytest.raises(ValueError):  # a method is never its own reference
        match_references(mine("prompt-dt", 4, tmp_path), [finished_run])


@pytest.mark.slow
def test_compare_trains_only_your_runs_and_tests_them_against_the_references(tmp_path,
                                                                             smoke_data,
                                                                             capsys):
    refs = tmp_path / "refs"
    (tmp_path / "refs.toml").write_text(textwrap.dedent("""
        methods = ["prompt-dt", "socodt"]
        suites = ["mt5"]
        qualities = ["near-optimal"]
        seeds = [0, 1]
        profile = "smoke"
    """))
    data = ["--data-dir", str(smoke_data), "--quiet"]
    assert main(["run", str(tmp_path / "refs.toml"), "--out", str(refs), *data]) == 0
    out = tmp_path / "mine"
    code = main(["compare", "harmodt-f", "--profile", "smoke", "--quality", "near-optimal",
                 "--seed", "0", "--seed", "1", "--against", str(refs), "--out", str(out),
                 *data])
    text = capsys.readouterr().out
    assert code == 0, text
    trained = sorted(p.name.split("__")[1] for p in (out / "runs").iterdir())
    assert trained == ["harmodt-f", "harmodt-f"]  # nothing of the references retrained
    assert "Δ vs harmodt-f" in text
    for method in ("prompt-dt", "socodt", "bc-all", "bc-top20"):
        assert f"mt5      near-optimal  {method}" in text, text
    assert "mask activity" in text and "socodt" in text.split("mask activity")[1]
    report = (out / "comparison" / "report.md").read_text()
    assert "reference: harmodt-f" in report
    # a second call trains nothing and says the same
    assert main(["compare", "harmodt-f", "--profile", "smoke", "--quality", "near-optimal",
                 "--seed", "0", "--seed", "1", "--against", str(refs), "--out", str(out),
                 *data]) == 0
    assert "runs: 2 skipped" in capsys.readouterr().out
