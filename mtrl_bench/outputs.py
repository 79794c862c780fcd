"""Where a command may write: a folder that is new or empty, or one this project made for the
same kind of output. Anything else holds someone's files, which are never overwritten.

A folder's kind is read from the files only mtrl-bench writes there, so folders made before this
rule (all of results/) are recognised as they are.
"""
from __future__ import annotations

import json
from pathlib import Path

# the files that mark a folder as mtrl-bench's own, per kind of output
MARKS = {"run": ("config.json",), "experiment": ("grid.json",),
         "report": ("report.md", "results.csv")}
# kinds whose folder may also take another kind's output (a report into an experiment folder)
ALSO = {"report": ("experiment",)}


def kind_of(folder: Path) -> str | None:
    """The kind of output `folder` holds (None: not ours, or empty)."""
    for kind, marks in MARKS.items():
        if all((folder / m).is_file() for m in marks):
            return kind
    if [p.name for p in folder.iterdir()] == ["runs"] and (folder / "runs").is_dir():
        return "experiment"  # runs trained with `train --runs DIR/runs`, no grid run there yet
    return None


def claim(folder: str | Path, kind: str, experiment: str | None = None) -> Path:
    """`folder` if `kind` output may go there: missing, empty, or ours and of that kind (an
    experiment folder only for the same experiment). ValueError naming the folder otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: is a file, not a folder; give a new or empty folder")
    if not folder.exists() or not any(folder.iterdir()):
        return folder
    found = kind_of(folder)
    if found is None or (found != kind and found not in ALSO.get(kind, ())):
        held = sorted(p.name for p in folder.iterdir())
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        what = f"a {found} folder" if found else "files mtrl-bench did not write"
        raise ValueError(f"{folder}: holds {what} ({shown}); {kind} output goes only into a new "
                         f"or empty folder or a {kind} folder of its own: give another")
    if kind == "experiment" and experiment is not None and (folder / "grid.json").exists():
        try:
            other = json.loads((folder / "grid.json").read_text())
        except (ValueError, UnicodeDecodeError):
            other = None
        other = other.get("experiment") if isinstance(other, dict) else None
        if other != experiment:
            raise ValueError(f"{folder}: holds experiment {other!r}, not {experiment!r}; give "
                             "another --out (one experiment per folder)")
    return folder
