"""How results are shown: names, scales and the order of rows, for reports and plots alike.

The statistics (`mtrl_bench.stats`) compute and do not order; a page orders its rows here, so
tables and CSVs read the same way whatever order the runs finished in. Suites come in the order
and with the labels of their one definition (`mtrl_bench_envs.suites.SUITES`), methods in the
paper's display order (`mtrl_bench.paper`), unknown names after the known ones, alphabetically.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pandas as pd

QUALITY_ORDER = ("near-optimal", "sub-optimal")
QUALITY_LABELS = {"near-optimal": "near-opt.", "sub-optimal": "sub-opt."}
METRIC_ORDER = ("success", "return")


def suite_order() -> tuple[str, ...]:
    from mtrl_bench_envs.suites import SUITES

    return tuple(SUITES)


def suite_label(suite: str) -> str:
    """"MT5" for mt5; a name without a definition (random5-3) as it is."""
    from mtrl_bench_envs.suites import SUITES

    return (SUITES[suite].label or suite) if suite in SUITES else suite


def quality_label(quality: str) -> str:
    return QUALITY_LABELS.get(quality, quality)


def cell_name(suite: str, quality: str) -> str:
    return f"{suite_label(suite)} {quality}"


def method_order() -> tuple[str, ...]:
    from mtrl_bench.paper import paper

    return paper().display_order


def order_key(column: str) -> Callable[[pd.Series], pd.Series]:
    """A `sort_values(key=...)` function putting known names first, in the canonical order; a
    sweep label `method[field=value]` follows its method."""
    known = {"method": method_order, "suite": suite_order, "quality": lambda: QUALITY_ORDER,
             "metric": lambda: METRIC_ORDER}.get(column, tuple)()
    rank = {name: i for i, name in enumerate(known)}

    def one(v: object) -> tuple[int, str]:
        base = str(v).split("[", 1)[0] if column == "method" else v
        return rank.get(v, rank.get(base, len(rank))), str(v)

    def key(values: pd.Series) -> pd.Series:
        return values.map(one)

    return key


def sorted_names(values: Iterable[str], column: str) -> list[str]:
    """The distinct values of a column, in its canonical order (`order_key`)."""
    unique = pd.Series(sorted(set(values)), dtype=object)
    return unique.sort_values(key=order_key(column)).tolist()


def sort_frame(df: pd.DataFrame, by: Iterable[str]) -> pd.DataFrame:
    """`df`'s rows in the canonical order of the columns `by`."""
    by = list(by)
    keyed = pd.DataFrame({c: order_key(c)(df[c]) for c in by}, index=df.index)
    return df.loc[keyed.sort_values(by).index].reset_index(drop=True)


# What `masking.mask_diagnostics` logs (under "mask") for every masked method, with plot labels.
MASK_DIAGNOSTICS = {
    "density": "density (fraction with M = 1)",
    "mean_mask": "mean mask value",
    "soft_fraction": "fraction soft (0 < M < 1)",
    "top_fisher_masked": "top-30%-Fisher entries masked",
    "grad_cosine": "gradient cosine with other tasks (mean)",
    "masked": "entries masked by this update",
    "restored": "entries restored by this update",
}


def metric_scale(metric: str) -> tuple[float, int, str]:
    """(factor, decimals, unit) for displaying a metric: success in %, like the paper."""
    if metric == "success":
        return 100.0, 2, "%"
    if metric == "return":
        return 1.0, 1, ""
    return 1.0, 3, ""


def axis_label(metric: str) -> str:
    return f"{metric} (%)" if metric_scale(metric)[2] == "%" else metric


def num(x: float, decimals: int) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{decimals}f}"


def format_p(p: float) -> str:
    return "—" if pd.isna(p) else f"{p:.3g}"


__all__ = ["MASK_DIAGNOSTICS", "METRIC_ORDER", "QUALITY_LABELS", "QUALITY_ORDER", "axis_label",
           "cell_name", "format_p", "method_order", "metric_scale", "num", "order_key",
           "quality_label", "sort_frame", "sorted_names", "suite_label", "suite_order"]
