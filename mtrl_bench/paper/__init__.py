"""The SoCo-DT paper as package data: transcribed Tables 1-4 (CSV, README.md says how), the
reference method, the display order of methods and the layouts of the tables (paper.toml).

Installed with the package, so a non-editable install reports the paper's numbers too. This is
the one place in `mtrl_bench` that names methods; the rest of the core reads them from here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import tomllib

if TYPE_CHECKING:
    import pandas as pd

PAPER_COLUMNS = ("table", "paper_method", "method", "suite", "quality", "metric", "mean", "std")


@dataclass(frozen=True)
class Layout:
    """One of the paper's tables: which of our methods, suites and metrics fill it."""

    number: int
    title: str
    methods: tuple[str, ...]
    suites: tuple[str, ...]
    metrics: tuple[str, ...] = ("success",)
    paper_labels: bool = False  # show the paper's row label beside our method name


@dataclass(frozen=True)
class Paper:
    reference: str
    default_method: str
    display_order: tuple[str, ...]
    layouts: tuple[Layout, ...]


@functools.cache
def paper() -> Paper:
    data = tomllib.loads(resources.files(__name__).joinpath("paper.toml").read_text())
    layouts = tuple(Layout(t["number"], t["title"], tuple(t["methods"]), tuple(t["suites"]),
                           tuple(t.get("metrics", ("success",))), t.get("paper_labels", False))
                    for t in data["table"])
    return Paper(data["reference"], data["default_method"], tuple(data["display_order"]),
                 layouts)


def numbers_dir() -> Path:
    """Where the transcribed CSV files are installed."""
    return Path(str(resources.files(__name__)))


def load_numbers(directory: str | Path | None = None) -> pd.DataFrame:
    """The paper's transcribed numbers (every ``table*.csv`` of `directory`, by default the
    installed ones); an empty frame if the directory does not exist."""
    import pandas as pd

    directory = Path(directory) if directory is not None else numbers_dir()
    empty = pd.DataFrame(columns=list(PAPER_COLUMNS))
    if not directory.is_dir():
        return empty
    frames = []
    for path in sorted(directory.glob("table*.csv")):
        # Read as text so numbers are shown exactly as printed ("100.0", not "100.00").
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        lacking = [c for c in PAPER_COLUMNS if c not in frame.columns]
        if lacking:
            raise ValueError(f"{path}: missing column(s) {', '.join(lacking)}")
        frames.append(frame)
    if not frames:
        return empty
    out = pd.concat(frames, ignore_index=True)
    out["table"] = pd.to_numeric(out["table"])
    for col in ("mean", "std"):
        out[f"{col}_text"] = out[col].str.strip()
        out[col] = pd.to_numeric(out[col].replace("", None))
    return out


__all__ = ["Layout", "Paper", "load_numbers", "numbers_dir", "paper"]
