"""Run directories: resolved config, manifest, metrics log, evaluations, checkpoint, status.

Every file is written atomically (temp file + rename), so an interrupted run never leaves a
half-written result; the metrics log is append-only and cut back to the checkpoint on resume.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mtrl_bench.config import Execution, RunConfig
from mtrl_bench_envs.common import atomic_write, package_versions


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


LOG_DIGITS = 6  # significant digits of logged floats: a diagnostic log, not a checkpoint


def _rounded(value: Any) -> Any:
    """Floats cut to LOG_DIGITS significant digits, in nested lists and dicts (an MT30 run logs a
    30 x 30 cosine matrix per mask update: full repr would double the committed metrics)."""
    if isinstance(value, float):  # whole numbers (counts logged as floats) stay exact
        return value if value.is_integer() else float(f"{value:.{LOG_DIGITS}g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


class RunFileError(ValueError):
    """A run file that cannot be read: names the file and what is wrong with it."""


def read_json(path: Path) -> Any:
    """The JSON in `path`; RunFileError naming the file if it is damaged."""
    try:
        return json.loads(Path(path).read_text())
    except UnicodeDecodeError:
        raise RunFileError(f"{path}: damaged (not text)") from None
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: damaged (not valid JSON: {exc})") from None


CHECKPOINT_KEYS = ("step", "config", "model", "optimizer", "scheduler", "strategy", "rng",
                   "mask_rng", "torch_rng", "python_rng")


def config_hash(cfg: RunConfig) -> str:
    return hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]


def run_name(cfg: RunConfig) -> str:
    return f"{cfg.suite}__{cfg.method}__{cfg.quality}__s{cfg.seed}__{config_hash(cfg)}"


MANIFEST_PACKAGES = ("mtrl-bench", "torch", "metaworld", "mujoco", "gymnasium", "numpy", "pluggy")


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class RunDir:
    """One training run on disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.manifest_path = self.path / "manifest.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.eval_path = self.path / "eval.json"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.status_path = self.path / "status.json"
        self.done_path = self.path / "DONE"

    # -- lifecycle -----------------------------------------------------------------------------
    def create(self, cfg: RunConfig, plugins: dict[str, str], method: dict[str, str]) -> None:
        """config.json and manifest.json (`method`: which code the method comes from)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, cfg.to_dict())
        write_json(self.manifest_path, {
            "versions": package_versions(MANIFEST_PACKAGES), "plugins": plugins, "method": method,
            "git": _git_revision(), "python": platform.python_version(),
            "platform": platform.platform(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "executions": [],
        })

    def record_execution(self, execution: Execution, **resolved: Any) -> None:
        """Append how this stretch of the run executes (settings, the device and autocast dtype
        they resolved to) to the manifest: execution is recorded, never part of the name."""
        manifest = read_json(self.manifest_path) if self.manifest_path.exists() else {}
        # the GPUs this process may see (a scheduler such as Ray sets it; "" = none)
        entry = {**asdict(execution), **resolved, "host": platform.node(),
                 "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        manifest["executions"] = [*manifest.get("executions", []), entry]
        write_json(self.manifest_path, manifest)

    def config(self) -> RunConfig:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.json)")
        raw = read_json(self.config_path)
        try:
            return RunConfig.from_dict(raw)
        except (TypeError, ValueError, AttributeError) as exc:
            raise RunFileError(f"{self.config_path}: not a run config ({exc})") from None

    def set_status(self, state: str, **info: Any) -> None:
        write_json(self.status_path, {"state": state, "time": time.time(), **info})

    def status(self) -> dict[str, Any]:
        if not self.status_path.exists():
            return {"state": "new"}
        status = read_json(self.status_path)
        if not isinstance(status, dict) or "state" not in status:
            raise RunFileError(f"{self.status_path}: damaged (no 'state')")
        return status

    @property
    def complete(self) -> bool:
        return self.done_path.exists()

    def mark_complete(self) -> None:
        atomic_write(self.done_path, "")
        self.set_status("complete")

    # -- metrics -------------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(_rounded(record)) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """The logged records. A torn last line (a kill mid-write) is left out; a damaged line
        before it is an error naming the file and line."""
        if not self.metrics_path.exists():
            return []
        try:
            lines = self.metrics_path.read_text().splitlines()
        except UnicodeDecodeError:
            raise RunFileError(f"{self.metrics_path}: damaged (not text)") from None
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                    raise ValueError("not a record with a step")
            except ValueError as exc:
                if i == len(lines) - 1:
                    break  # torn by an interrupted write; the resume cuts it away
                raise RunFileError(f"{self.metrics_path}: damaged line {i + 1} ({exc})") from None
            records.append(record)
        return records

    def truncate_metrics(self, step: int) -> None:
        """Drop records after `step` (written after the last checkpoint of a killed run, or
        all of them when a run starts again from step 0)."""
        if not self.metrics_path.exists():
            return
        kept = [r for r in self.metrics() if r["step"] <= step]
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def clean_temporary_files(self) -> list[Path]:
        """Remove temp files of interrupted atomic writes (`.<name>.tmp-<pid>`); call only while
        holding the run's lock."""
        stale = list(self.path.glob(".*.tmp-*"))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    # -- checkpoint ----------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoint_path, lambda f: torch.save(state, f))

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint, None if there is none; RunFileError naming the file when it is
        damaged or lacks keys."""
        if not self.checkpoint_path.exists():
            return None
        fix = f"delete it to train {self.path.name} from step 0"
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as exc:  # EOFError, UnpicklingError, RuntimeError (zip), ...
            raise RunFileError(f"{self.checkpoint_path}: damaged checkpoint "
                               f"({type(exc).__name__}: {exc}); {fix}") from None
        lacking = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
        if lacking:
            raise RunFileError(f"{self.checkpoint_path}: not a complete checkpoint (missing "
                               f"{', '.join(lacking)}); {fix}")
        return state
