"""Live curves where researchers look: a run's metrics also as TensorBoard event files.

With the `tensorboard` extra installed (``pip install -e ".[tensorboard]"``) and
`execution.tensorboard` on (the default; the smoke profile turns it off), a run writes RUN_DIR/tb/,
so ``tensorboard --logdir runs/`` shows every run's loss, learning rate, gradient norm, success
and return along training, and its masks' activity (each per-task diagnostic averaged over the
tasks), while a grid runs. The metrics log (metrics.jsonl) stays the record: the event files are
a view of it, never read back by the suite and never committed. A resumed run drops the events
past its checkpoint, as the metrics log does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

FOLDER = "tb"


def _mean(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return sum(value) / len(value)
    return None  # a matrix or text: not a curve


class BoardLog:
    """Writes a run's metric records as scalars; does nothing when TensorBoard is missing."""

    def __init__(self, run_dir: Path, start_step: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the extra is not installed: the metrics log alone
            self.writer = None
            return
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER),
                                    purge_step=start_step or None)

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(record["step"])
        scalars: dict[str, float | None] = {}
        if record.get("kind") == "eval":
            scalars = {"eval/success": _mean(record.get("success")),
                       "eval/return": _mean(record.get("return"))}
        elif record.get("kind") == "train":
            scalars = {f"train/{k}": _mean(record.get(k)) for k in ("loss", "grad_norm", "lr")}
            for source in ("mask", "strategy"):
                for key, value in (record.get(source) or {}).items():
                    scalars[f"{source}/{key}"] = _mean(value)
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


__all__ = ["FOLDER", "BoardLog"]
