"""Does precision change success? Runs of the same identity trained under two numerics.

A run's name is its identity (config); its numerics (bf16 autocast or fp32) are execution,
recorded in its manifest. Given two experiment directories holding runs of the same names under
different numerics, this pairs them by name (same method, cell and seed: same data, same
initialisation, only the arithmetic differs) and tests, per method and cell, the seed-paired
difference in task-averaged success: paired t-test, Welch's t-test and the exact permutation test,
Holm over the table.

    python tools/compare_precision.py results/table1 results/precision-mt5 [--out FILE.md]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps
from tabulate import tabulate

from mtrl_bench import stats
from mtrl_bench.results import collect


def paired_table(a_dir: Path, b_dir: Path) -> pd.DataFrame:
    """Per method and cell: n pairs, each side's numerics and mean, the mean paired difference
    (b − a) and its p-values (Holm over the rows)."""
    sides = []
    for d in (a_dir, b_dir):
        df, _ = collect(d)
        scores = stats.seed_scores(df).merge(
            df.drop_duplicates(list(stats.RUN))[[*stats.RUN, "run", "numerics"]],
            on=list(stats.RUN))
        sides.append(scores.set_index("run"))
    a, b = sides
    both = a.merge(b[["value", "numerics"]], left_index=True, right_index=True,
                   suffixes=("", "_b"))
    rows = []
    for (method, suite, quality), g in both.groupby(["method", "suite", "quality"], sort=False):
        diff = g["value_b"] - g["value"]
        paired = sps.ttest_rel(g["value_b"], g["value"]).pvalue if len(g) > 1 else math.nan
        rows.append({
            "method": method, "suite": suite, "quality": quality, "pairs": len(g),
            "numerics_a": "+".join(sorted(set(g["numerics"]))),
            "numerics_b": "+".join(sorted(set(g["numerics_b"]))),
            "mean_a": g["value"].mean(), "mean_b": g["value_b"].mean(), "diff": diff.mean(),
            "diff_std": diff.std(ddof=1) if len(g) > 1 else math.nan,
            "p_paired": float(paired), "p_welch": stats.welch(g["value_b"], g["value"]).p,
            "p_perm": stats.permutation_p(g["value_b"], g["value"])[0]})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = stats.holm(out["p_paired"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="experiment directory (the first numerics)")
    ap.add_argument("b", type=Path, help="experiment directory holding runs of the same names")
    ap.add_argument("--out", type=Path, help="also write the table as Markdown to this file")
    args = ap.parse_args()
    table = paired_table(args.a, args.b)
    if table.empty:
        raise SystemExit(f"no run of {args.b} has the name of a finished run of {args.a}")
    shown = table.assign(**{c: (100 * table[c]).round(2) for c in ("mean_a", "mean_b", "diff",
                                                                   "diff_std")})
    text = tabulate(shown, headers="keys", showindex=False, floatfmt=".3g", tablefmt="github")
    note = (f"\nSuccess in %; diff = b − a over seed pairs; p_holm: Holm over the {len(table)} "
            f"paired tests. a = {args.a}, b = {args.b}.\n")
    print(text + note)
    if args.out:
        args.out.write_text(text + "\n" + note)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
