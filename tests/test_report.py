"""Reports on synthetic results tables, and the transcribed paper numbers."""
from __future__ import annotations

import pandas as pd
import pytest

from mtrl_bench import report
from mtrl_bench.paper import load_numbers, numbers_dir, paper

PAPER_DIR = numbers_dir()
FILES = ["report.md", "report.tex", "report.html", "comparison.csv", "aggregate.csv",
         "paper_tables.csv"]

# Per-seed offsets: mean 0, so each cell's mean is exactly its base value.
OFFSETS = (-0.01, 0.0, 0.01)


def synthetic(bases: dict[tuple[str, str, str], float], metric: str = "success",
              tasks: int = 3, offsets: tuple[float, ...] = OFFSETS) -> pd.DataFrame:
    """Rows for {(method, suite, quality): mean}; task t adds (t - mid) * 0.02, summing to 0."""
    mid = (tasks - 1) / 2
    rows = [dict(method=m, suite=s, quality=q, seed=i, task=f"task{t}", metric=metric,
                 value=base + off + (t - mid) * 0.02, protocol="v3-scripted")
            for (m, s, q), base in bases.items() for i, off in enumerate(offsets)
            for t in range(tasks)]
    return pd.DataFrame(rows)


FULL = {
    ("prompt-dt", "mt5", "near-optimal"): 0.50, ("prompt-dt", "mt5", "sub-optimal"): 0.40,
    ("harmodt-f", "mt5", "near-optimal"): 0.60, ("harmodt-f", "mt5", "sub-optimal"): 0.75,
    ("socodt", "mt5", "near-optimal"): 0.70, ("socodt", "mt5", "sub-optimal"): 0.55,
}


def table_rows(markdown: str, caption: str) -> dict[str, list[str]]:
    """The rows of the Markdown table under `**caption**`, as {label: cells}."""
    lines = markdown.splitlines()
    start = lines.index(f"**{caption}**") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = report.write_report(synthetic(FULL), out, paper_dir=PAPER_DIR, reps=200)
    return out, paths


def test_writes_every_file(full_report):
    out, paths = full_report
    assert [p.name for p in paths] == FILES
    assert all((out / name).stat().st_size > 0 for name in FILES)
    comparison = pd.read_csv(out / "comparison.csv")
    assert {"p_welch", "p_perm", "p_holm", "p_perm_holm", "g", "note"} <= set(comparison.columns)
    assert len(comparison) == 6  # 3 methods × 2 cells
    tex = (out / "report.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{75.00 $\pm$ 1.00}" in tex


def test_best_per_column_in_bold(full_report):
    md = (full_report[0] / "report.md").read_text()
    rows = table_rows(md, "MT5, success, protocol v3-scripted")
    assert rows["socodt"]["near-opt."] == "**70.00 ± 1.00**"
    assert rows["harmodt-f"]["sub-opt."].startswith("**75.00 ± 1.00**")
    assert not rows["socodt"]["sub-opt."].startswith("**")
    assert not rows["harmodt-f"]["near-opt."].startswith("**")


def test_paper_numbers_beside_ours(full_report):
    out, _ = full_report
    md = (out / "report.md").read_text()
    rows = table_rows(md, "Table 1, protocol v3-scripted")
    soco = rows["socodt"]
    assert soco["MT5 sub-optimal ours"] == "55.00 ± 1.00"
    assert soco["MT5 sub-optimal paper"] == "**80.00 ± 2.32**"  # best of the rows shown
    assert rows["prompt-dt"]["MT5 near-optimal paper"] == "**100.0 ± 0.0**"  # as printed
    assert "MT50 near-optimal ours" not in soco  # columns without our data are not shown
    # Table 4 on MT5 has only socodt of its methods here: one method does not make the table
    assert "No results for this table" in md.split("### Table 4")[1].split("\n## ")[0]
    long = pd.read_csv(out / "paper_tables.csv")
    hit = long[(long["method"] == "socodt") & (long["quality"] == "sub-optimal")].iloc[0]
    assert (hit["ours_mean"], hit["paper_mean"]) == (pytest.approx(55.0), pytest.approx(80.0))


def test_paper_cells_shown_when_ours_ran_elsewhere(tmp_path):
    # Table 4 on MT5 (the CPU budget); the paper's is on MT30 only: its numbers stay in view
    ablation = {(m, "mt5", "near-optimal"): base for m, base in
                [("socodt-no-soft", 0.6), ("socodt", 0.7)]}
    df = pd.concat([synthetic(ablation), synthetic(ablation, metric="return")])
    report.write_report(df, tmp_path, paper_dir=PAPER_DIR, reps=50)
    md = (tmp_path / "report.md").read_text()
    rows = table_rows(md, "Table 4, protocol v3-scripted")
    no_soft = rows["socodt-no-soft (A+M)"]
    assert no_soft["MT5 near-optimal, success ours"] == "60.00 ± 1.00"
    assert no_soft["MT5 near-optimal, success paper"] == "n/a"
    assert no_soft["MT30 near-optimal, success ours"] == "—"
    assert no_soft["MT30 near-optimal, success paper"] == "72.00"  # as printed, no std
    assert "MT5 sub-optimal, success ours" not in no_soft  # neither side has it


def test_marks_explained_and_refused_with_three_seeds(full_report):
    md = (full_report[0] / "report.md").read_text()
    assert "\\* / \\*\\*: differs from socodt by Welch's t-test" in md
    assert "cannot go below p = 0.1" in md
    rows = table_rows(md, "MT5, success, protocol v3-scripted")
    assert not rows["prompt-dt"]["near-opt."].endswith("\\*")  # 20 points apart, still unmarked


def test_marks_given_with_enough_seeds(tmp_path):
    offsets = (-0.02, -0.01, 0.0, 0.01, 0.02)
    df = synthetic({k: v for k, v in FULL.items() if k[2] == "near-optimal"}, offsets=offsets)
    report.write_report(df, tmp_path, paper_dir=PAPER_DIR, reps=100)
    rows = table_rows((tmp_path / "report.md").read_text(), "MT5, success, protocol v3-scripted")
    assert rows["prompt-dt"]["near-opt."] == "50.00 ± 1.58\\*\\*"
    assert rows["socodt"]["near-opt."] == "**70.00 ± 1.58**"


def test_partial_table_says_what_is_missing(tmp_path):
    partial = {k: v for k, v in FULL.items() if k != ("harmodt-f", "mt5", "sub-optimal")}
    df = synthetic(partial)
    df = df[~((df["method"] == "prompt-dt") & (df["seed"] == 2) & (df["task"] == "task2"))]
    df.loc[df.index[0], "value"] = float("nan")
    report.write_report(df, tmp_path, paper_dir=PAPER_DIR, reps=100)
    md = (tmp_path / "report.md").read_text()
    assert "harmodt-f: no runs in MT5 sub-optimal" in md
    assert "1 row(s) without a numeric value were left out" in md
    assert "prompt-dt MT5 near-optimal seed 2: 2 of 3 tasks" in md
    assert "Missing here: mtbc (all cells); mtdt (all cells); prompt-dt: MT30 near-optimal" in md
    assert "harmodt-r (all cells)" in md
    assert "No results for this table: it needs runs of" in md  # Tables 2 to 4
    rows = table_rows(md, "Table 1, protocol v3-scripted")
    assert rows["harmodt-f"]["MT5 sub-optimal ours"] == "—"


def test_a_cell_without_the_reference_is_said_untested(tmp_path):
    # Table 1's MT30 column while SoCo-DT's MT30 runs are still to come
    cells = {**FULL, ("prompt-dt", "mt30", "near-optimal"): 0.6}
    report.write_report(synthetic(cells), tmp_path, paper_dir=PAPER_DIR, reps=50)
    md = (tmp_path / "report.md").read_text()
    assert "1 of 5 have no run of socodt in their cell: not tested." in md
    assert "p = nan" not in md and "cannot go below p = 0.1" in md  # 3 vs 3 elsewhere


def test_each_drawn_combination_is_a_column_beside_the_papers(tmp_path):
    bases = {(m, f"random5-{c}", "near-optimal"): 0.5 + 0.1 * c + (0.05 if m == "socodt" else 0)
             for m in ("harmodt-f", "socodt") for c in (0, 2)}
    report.write_report(synthetic(bases), tmp_path, paper_dir=PAPER_DIR, reps=100)
    md = (tmp_path / "report.md").read_text()
    rows = table_rows(md, "Table 3, protocol v3-scripted")
    soco = rows["socodt"]
    assert soco["random5-0 near-optimal ours"] == "**55.00 ± 1.00**"  # best of its column
    assert rows["harmodt-f"]["random5-2 near-optimal ours"] == "70.00 ± 1.00"
    assert soco["random5-0 near-optimal paper"] == soco["random5-2 near-optimal paper"]
    assert soco["random5-2 near-optimal paper"] == "**96.20 ± 4.42**"
    assert "Missing here:" in md and "random 30" in md.split("Table 3")[-1]


def test_report_without_reference_or_paper_numbers(tmp_path):
    df = synthetic({("prompt-dt", "mt30", "sub-optimal"): 0.4}).assign(metric="return")
    report.write_report(df, tmp_path, paper_dir=tmp_path / "nowhere", reps=50)
    md = (tmp_path / "report.md").read_text()
    assert "no socodt runs, so no tests against it" in md
    assert "The paper's numbers were not found" in md
    assert "No 'success' values in this table; the headline metric is 'return'" in md


def test_nothing_to_report_raises(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        report.write_report(synthetic(FULL).iloc[:0], tmp_path)
    with pytest.raises(ValueError, match="lacks column"):
        report.write_report(synthetic(FULL).drop(columns="seed"), tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


# ---------------------------------------------------------------- transcribed paper numbers

def test_paper_tables_cover_the_layouts():
    numbers = load_numbers(PAPER_DIR)
    assert sorted(numbers["table"].unique()) == [1, 2, 3, 4]
    assert len(numbers[numbers["table"] == 1]) == 7 * 6
    for layout in paper().layouts:
        rows = numbers[(numbers["table"] == layout.number) & (numbers["method"] != "")]
        # MTBC is a row of our Table 1 with no number of the paper's (it is only in Table 2)
        assert set(layout.methods) - set(rows["method"]) == ({"mtbc"} if layout.number == 1
                                                             else set())
        # every suite of the paper's is a column; Table 4 adds ours (on MT5, the CPU budget)
        assert set(rows["suite"]) <= set(layout.suites)
        assert set(layout.suites) - set(rows["suite"]) == ({"mt5"} if layout.number == 4
                                                           else set())
        assert set(rows["metric"]) == set(layout.metrics)
    success = numbers[numbers["metric"] == "success"]["mean"].dropna()
    assert success.between(0, 100).all()


def test_paper_numbers_match_the_improvements_stated_in_the_text():
    # §5.2: SoCo-DT's gain over the best baseline, Table 1.
    t1 = load_numbers(PAPER_DIR).query("table == 1")
    stated = {("mt5", "sub-optimal"): 4.96, ("mt30", "near-optimal"): 5.78,
              ("mt30", "sub-optimal"): 7.27, ("mt50", "near-optimal"): 7.08,
              ("mt50", "sub-optimal"): 9.69}
    for (suite, quality), gain in stated.items():
        cell = t1[(t1["suite"] == suite) & (t1["quality"] == quality)]
        ours = cell.loc[cell["method"] == "socodt", "mean"].item()
        best_other = cell.loc[cell["method"] != "socodt", "mean"].max()
        assert ours - best_other == pytest.approx(gain, abs=1e-9), (suite, quality)


@pytest.mark.slow
def test_a_regular_install_carries_the_paper(tmp_path):
    """`pip install .` (a regular, non-editable install): the paper's numbers come with it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(root)],
                   check=True, capture_output=True, timeout=600)
    code = ("import mtrl_bench.paper as p; n = p.load_numbers(); "
            f"assert p.__file__.startswith({str(target)!r}), p.__file__; "
            "print(len(n), sorted(int(t) for t in n['table'].unique()), p.paper().reference)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] != "0" and "[1, 2, 3, 4]" in out.stdout


def test_the_exact_floor_is_given_per_seed_count(tmp_path):
    df = synthetic(FULL)
    df = df[~((df["method"] == "prompt-dt") & (df["seed"] == 2))]  # 2 vs 3 seeds: floor 0.2
    report.write_report(df, tmp_path, paper_dir=PAPER_DIR, reps=50)
    assert "cannot go below p = 0.1-0.2 (by their seeds)" in (tmp_path / "report.md").read_text()


def test_inert_masks_and_precision_are_said_beside_success(tmp_path):
    """A masked method whose masks barely moved in every seed gets † beside its success and a
    row in the mask-activity table; a table mixing bf16 and fp32 runs says so."""
    df = synthetic(FULL)
    df["run"] = df["method"] + df["quality"] + df["seed"].astype(str)
    df["numerics"] = ["bfloat16" if m == "prompt-dt" else "fp32" for m in df["method"]]
    rows = []
    for method, inert in (("socodt", True), ("harmodt-f", False)):
        for seed in range(3):
            rows.append(dict(method=method, suite="mt5", quality="near-optimal",
                             protocol="v3-scripted", seed=seed, run=f"{method}{seed}", updates=200,
                             density_initial=0.8, density_final=0.805 if inert else 0.7,
                             conflict_share=0.0, recover_share=0.0002,
                             conflict_nonempty=0.0, moved_share=float("nan"), inert=inert,
                             inert_basis="density"))
    activity = pd.DataFrame(rows)
    report.write_report(df, tmp_path, paper_dir=PAPER_DIR, reps=50, activity=activity)
    md = (tmp_path / "report.md").read_text()
    table = table_rows(md, "MT5, success, protocol v3-scripted")
    assert table["socodt"]["near-opt."].endswith("†")
    assert not table["socodt"]["sub-opt."].endswith("†")  # no activity logged there
    assert not table["harmodt-f"]["near-opt."].endswith("†")
    assert "Precision: mixed" in md and "prompt-dt near-opt. bfloat16" in md
    act = table_rows(md, "Mask activity: MT5, protocol v3-scripted")
    assert act["socodt"]["density initial → final"] == "0.800 → 0.805"
    assert act["harmodt-f"]["density initial → final"] == "0.800 → 0.700"
    assert "barely moved" not in md.split("**Mask activity: MT5")[1].split("harmodt-f")[1]
