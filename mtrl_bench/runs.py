"""Run directories: resolved config, manifest, metrics log, evaluations, checkpoint, status.

Every file is written atomically (temp file + rename), so an interrupted run never leaves a
half-written result; the metrics log is append-only and cut back to the checkpoint on resume.
"""
from __future__ import annotations

import hashlib
import json
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


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


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
    def create(self, cfg: RunConfig, plugins: dict[str, str]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, cfg.to_dict())
        write_json(self.manifest_path, {
            "versions": package_versions(MANIFEST_PACKAGES), "plugins": plugins,
            "git": _git_revision(), "python": platform.python_version(),
            "platform": platform.platform(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "executions": [],
        })

    def record_execution(self, execution: Execution, **resolved: Any) -> None:
        """Append how this stretch of the run executes (settings, the device and autocast dtype
        they resolved to) to the manifest: execution is recorded, never part of the name."""
        manifest = read_json(self.manifest_path) if self.manifest_path.exists() else {}
        entry = {**asdict(execution), **resolved, "host": platform.node(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        manifest["executions"] = [*manifest.get("executions", []), entry]
        write_json(self.manifest_path, manifest)

    def config(self) -> RunConfig:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.json)")
        return RunConfig.from_dict(read_json(self.config_path))

    def set_status(self, state: str, **info: Any) -> None:
        write_json(self.status_path, {"state": state, "time": time.time(), **info})

    def status(self) -> dict[str, Any]:
        return read_json(self.status_path) if self.status_path.exists() else {"state": "new"}

    @property
    def complete(self) -> bool:
        return self.done_path.exists()

    def mark_complete(self) -> None:
        atomic_write(self.done_path, "")
        self.set_status("complete")

    # -- metrics -------------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def truncate_metrics(self, step: int) -> None:
        """Drop records after `step` (written after the last checkpoint of a killed run)."""
        kept = [r for r in self.metrics() if r["step"] <= step]
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    # -- checkpoint ----------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoint_path, lambda f: torch.save(state, f))

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
