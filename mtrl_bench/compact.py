"""Compacting stored runs (`mtrl-bench compact DIR...`): a finished run keeps what a report, a
plot or a resume reads, in as few bytes as that takes.

For every finished run (DONE) in the directories given (experiment directories, folders of runs,
single runs, at any depth):
- its metrics log is gzipped (`metrics.jsonl` -> `metrics.jsonl.gz`, see `mtrl_bench.runs`; runs
  finishing now do this themselves);
- the N x N gradient-cosine matrix that runs logged before 2026-11-28 becomes each task's mean
  cosine with the others, the form logged since, which `results.mask_diagnostics` reads alike
  (rounded to the log's significant digits, like every logged float);
- its per-run PNGs go, which `mtrl-bench plot` draws again on demand: the run's `plots/`
  (training.png, masks.png), and `plots/masks/<run>.png` of reports written before reports
  stopped drawing a figure per run.
Unfinished runs are left as they are (one may be training). Every log is read before any is
written, so a damaged one stops it with nothing changed; running it again changes nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl_bench.results import cosine_means
from mtrl_bench.runs import RunDir, rounded

RUN_PLOTS = ("training.png", "masks.png")  # what `mtrl-bench plot` draws into RUN_DIR/plots


@dataclass
class Compacted:
    """What `compact` did."""

    logs: int = 0  # finished runs whose log was rewritten
    matrices: int = 0  # of them, logs that held gradient-cosine matrices
    finished: int = 0
    unfinished: int = 0
    pngs: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    def __str__(self) -> str:
        mb = f"{self.bytes_before / 1e6:.1f} MB -> {self.bytes_after / 1e6:.1f} MB"
        return (f"compacted {self.logs} of {self.finished} finished run(s) ({self.matrices} with "
                f"gradient-cosine matrices), removed {self.pngs} per-run PNG(s): {mb}"
                + (f"; {self.unfinished} unfinished run(s) left as they are"
                   if self.unfinished else ""))


def compact(*roots: str | Path) -> Compacted:
    """Compact every finished run under `roots` (see the module docstring)."""
    roots = tuple(map(Path, roots))
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"no such directory: {root}")
    done = Compacted(bytes_before=sum(map(_bytes, roots)))
    runs, report_plots = [], []
    for root in roots:
        for path, is_run in _folders(root):
            if not is_run:
                report_plots.append(path)
            elif RunDir(path).complete:
                runs.append(RunDir(path))
            else:
                done.unfinished += 1
    for run in runs:
        run.metrics()  # damaged: a RunFileError naming it, before anything is written
    done.finished = len(runs)
    for run in runs:
        records = run.metrics()
        matrices = [r for r in records if _cosine_matrix(r) is not None]
        for record in matrices:
            record["mask"]["grad_cosine"] = rounded(cosine_means(_cosine_matrix(record))[0])
        if matrices or run.metrics_path.exists():
            run.compact_metrics(records)
            done.logs += 1
            done.matrices += bool(matrices)
        done.pngs += _remove_pngs(run.path / "plots", RUN_PLOTS)
    for plots in report_plots:
        done.pngs += _remove_pngs(plots / "masks")
    done.bytes_after = sum(map(_bytes, roots))
    return done


def _cosine_matrix(record: dict[str, Any]) -> list | None:
    mask = record.get("mask")
    cosine = mask.get("grad_cosine") if isinstance(mask, dict) else None
    return cosine if isinstance(cosine, list) and cosine and isinstance(cosine[0], list) else None


def _folders(root: Path):
    """(path, True) for every run folder under `root` (itself included), (path, False) for every
    other folder named plots; symbolic links are not followed out of the tree."""
    if (root / "config.json").is_file():
        yield root, True
        return
    if root.name == "plots":
        yield root, False
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
            yield from _folders(child)


def _remove_pngs(folder: Path, names: tuple[str, ...] | None = None) -> int:
    """Delete the PNGs in `folder` (only `names` when given), then the folder if it is empty."""
    if not folder.is_dir():
        return 0
    pngs = [p for p in folder.glob("*.png") if names is None or p.name in names]
    for png in pngs:
        png.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
    return len(pngs)


def _bytes(root: Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(root)
               for f in files)


__all__ = ["Compacted", "compact"]
