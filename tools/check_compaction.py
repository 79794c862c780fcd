"""Prove that `mtrl-bench compact` loses nothing a report or a plot reads, on a copy of a results
tree (the tree itself is never written).

    python tools/check_compaction.py results

On a copy: every experiment (a folder with runs/) and every joint report is reported, every
run's curve and mask diagnostics are read; the copy is compacted; all of it again. The report
files must be byte-identical, the curves and diagnostics equal (gradient cosines to 1e-6: older
runs logged N x N matrices, whose per-task means are stored rounded to the log's 6 significant
digits). It also says whether the committed reports are what the code writes today, and the
sizes before and after. Exit status 1 when anything differs.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
from check_reports import REPORT_FILES, jobs, reports  # tools/, beside this script

from mtrl_bench.compact import compact
from mtrl_bench.results import mask_diagnostics, run_curve


def readings(tree: Path, store: Path) -> list[Path]:
    """Every run's curve and mask diagnostics, pickled under `store` (one file per run)."""
    paths = []
    for config in sorted(tree.rglob("config.json")):
        run = config.parent
        path = store / (str(run.relative_to(tree)).replace("/", "__") + ".pkl")
        pd.to_pickle((run_curve(run), mask_diagnostics(run)), path)
        paths.append(path)
    return paths


def same_reading(before: Path, after: Path) -> str | None:
    """None when two readings agree, else what differs."""
    (curve0, diag0), (curve1, diag1) = pd.read_pickle(before), pd.read_pickle(after)
    try:
        pd.testing.assert_frame_equal(curve1, curve0)
        cosine = diag0["key"].astype(str).str.startswith("grad_cosine")
        pd.testing.assert_frame_equal(diag1[~cosine], diag0[~cosine])
        pd.testing.assert_frame_equal(diag1[cosine], diag0[cosine], atol=1e-6, rtol=0)
    except AssertionError as exc:
        return str(exc).splitlines()[0]
    return None


def size(tree: Path) -> int:
    return sum(p.lstat().st_size for p in tree.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    failures = []
    with tempfile.TemporaryDirectory(prefix="check-compaction-") as tmp:
        tree = Path(tmp) / args.results.resolve().name
        shutil.copytree(args.results, tree, symlinks=True)
        which = jobs(tree)
        before, after = Path(tmp) / "before", Path(tmp) / "after"
        for d in (before, after):
            d.mkdir()
        texts0, runs0 = reports(tree, before / "reports", which), readings(tree, before)
        bytes0 = size(tree)
        print(compact(tree))
        texts1, runs1 = reports(tree, after / "reports", which), readings(tree, after)
        for name in texts0:
            differ = [f for f in texts0[name] if texts0[name][f] != texts1[name].get(f)]
            failures += [f"{name}/{f}: differs after compacting" for f in differ]
            committed = [f for f in texts0[name] if (args.results / name / f).exists()
                         and (args.results / name / f).read_bytes() != texts0[name][f]]
            print(f"{name}: {len(REPORT_FILES) - len(differ)}/{len(REPORT_FILES)} report files "
                  "identical after compacting; committed report "
                  + (f"differs from today's code in {', '.join(committed)}" if committed
                     else "is what the code writes today"))
        differ = [f"{a.stem}: {problem}" for a, b in zip(runs0, runs1)
                  if (problem := same_reading(a, b))]
        print(f"{len(runs0)} runs: curves and mask diagnostics "
              + (f"differ in {len(differ)}" if differ else "read the same"))
        failures += differ
        print(f"{args.results}: {bytes0 / 1e6:.1f} MB -> {size(tree) / 1e6:.1f} MB (files)")
    for failure in failures:
        print("DIFFERS:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
