"""Do the committed reports say what today's code writes? Every report under a results tree (each
experiment, and the joint reports of `JOINT`) is written again into a temporary folder and its
text files are compared with the committed ones, byte for byte.

    python tools/check_reports.py results            # compare
    python tools/check_reports.py results --write    # after a wanted change: write them anew

Run it before and after a change that must not change behaviour (a refactor); exit status 1 when
a report differs (the first differing line of each file is shown). With --write, every report
(and its figures) is written again in place, as `mtrl-bench report` would. Figures are not compared:
PNG bytes depend on the Matplotlib build.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import sys
import tempfile
from pathlib import Path

from mtrl_bench.cli import main as mtrl_bench

REPORT_FILES = ("results.csv", "mask_activity.csv", "aggregate.csv", "comparison.csv",
                "paper_tables.csv", "report.md", "report.tex")
# reports of several experiments: name -> (the experiments, the reference asked for)
JOINT = {
    "table1-joint": (("table1", "table1-mt30", "readings-mt30", "table1-mt50"), None),
    "mt30-readings/vs-random": (("table1-mt30", "readings-mt30"), "harmodt-r"),
    "mt30-readings/vs-harmodt-f": (("table1-mt30", "readings-mt30"), "harmodt-f"),
    "mt30-readings/vs-prompt-dt": (("table1-mt30", "readings-mt30"), "prompt-dt"),
    "mt50-tests/vs-random": (("table1-mt50",), "harmodt-r"),
    "mt50-tests/vs-harmodt-f": (("table1-mt50",), "harmodt-f"),
    "mt50-tests/vs-prompt-dt": (("table1-mt50",), "prompt-dt"),
    "table2-tests/vs-prompt-dt": (("table2",), "prompt-dt"),
}


def jobs(tree: Path) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """Every report of `tree`: its experiments (folders with runs/ and a report.md) and the
    joint reports whose experiments are there."""
    found = {d.name: ((d.name,), None) for d in sorted(tree.iterdir())
             if (d / "runs").is_dir() and (d / "report.md").exists()}
    found.update({n: j for n, j in JOINT.items() if all((tree / s).is_dir() for s in j[0])})
    return found


def reports(tree: Path, out: Path, which: dict | None = None) -> dict[str, dict[str, bytes]]:
    """Report name -> {file name: bytes}, written under `out`. The experiments are named as
    `tree`'s name / experiment, relative to its parent (a joint report's notes name them), as
    in `mtrl-bench report results/table1 ...`."""
    texts, here = {}, os.getcwd()
    os.chdir(tree.parent)
    try:
        for name, (sources, reference) in (which or jobs(tree)).items():
            args = ["report", *(f"{tree.name}/{s}" for s in sources), "--out", str(out / name)]
            with contextlib.redirect_stdout(io.StringIO()):
                code = mtrl_bench(args + (["--reference", reference] if reference else []))
            if code:
                sys.exit(f"report of {name} failed")
            texts[name] = {f: (out / name / f).read_bytes() for f in REPORT_FILES
                           if (out / name / f).exists()}
    finally:
        os.chdir(here)
    return texts


def first_difference(committed: bytes, today: bytes) -> str:
    a, b = committed.decode().splitlines(), today.decode().splitlines()
    for line in difflib.unified_diff(a, b, lineterm="", n=0):
        if line[:1] in "+-" and line[:3] not in ("+++", "---"):
            return line[:160]
    return "(line endings)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--write", action="store_true", help="write every report anew in place")
    args = parser.parse_args()
    tree = args.results.resolve()
    if args.write:
        reports(tree, tree)
        print(f"wrote {len(jobs(tree))} reports under {args.results}")
        return 0
    differ = 0
    with tempfile.TemporaryDirectory(prefix="check-reports-") as tmp:
        for name, files in reports(tree, Path(tmp)).items():
            bad = [f for f, data in files.items()
                   if not (tree / name / f).exists() or (tree / name / f).read_bytes() != data]
            print(f"{name}: " + ("identical" if not bad else "DIFFERS in " + ", ".join(bad)))
            for f in bad:
                old = (tree / name / f).read_bytes() if (tree / name / f).exists() else b""
                print(f"    {f}: {first_difference(old, files[f])}")
            differ += bool(bad)
    print(f"{differ} report(s) differ" if differ else "every committed report is what the code "
          "writes today")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
