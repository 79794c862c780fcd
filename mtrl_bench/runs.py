"""Run directories: resolved config, manifest, metrics log, evaluations, checkpoint, status.

Every file is written atomically (temp file + rename), so an interrupted run never leaves a
half-written result. The metrics log is plain JSON lines while the run trains (`metrics.jsonl`:
appended record by record, a torn last line left out, cut back to the checkpoint on resume) and
is compacted when the run completes: the same lines gzipped into `metrics.jsonl.gz` (about a
fifth of the size; `zcat` reads it), written atomically before the plain file is removed. So a
kill never tears the compressed file; while the plain file exists it is the log (a resume writes
it before removing the .gz), and a .gz truncated by other means loses only its torn last line,
like a plain one.
"""
from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import pickle
import platform
import subprocess
import time
import warnings
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mtrl_bench.config import Execution, RunConfig
from mtrl_bench_envs.common import atomic_write, package_versions


def write_json(path: Path, obj: Any, compact: bool = False) -> None:
    """`compact`: one line, no indentation (eval.json: an MT30 run's per-episode values would
    be two thirds whitespace)."""
    text = (json.dumps(obj, sort_keys=True, separators=(",", ":")) if compact
            else json.dumps(obj, indent=2, sort_keys=True))
    atomic_write(path, text + "\n")


LOG_DIGITS = 6  # significant digits of logged floats: a diagnostic log, not a checkpoint
DIAGNOSTIC_DIGITS = 4  # of the per-task mask diagnostics, most of an MT30 run's log
DIAGNOSTICS = ("mask", "strategy")  # the record keys that hold them


def rounded(value: Any, digits: int = LOG_DIGITS) -> Any:
    """Floats cut to `digits` significant digits, in nested lists and dicts (an MT30 run logs
    about ten lists of 30 floats per mask update: full repr would double the committed
    metrics)."""
    if isinstance(value, float):  # whole numbers (counts logged as floats) stay exact
        return value if value.is_integer() else float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def log_record(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics record as logged: losses and scores to LOG_DIGITS, mask diagnostics to
    DIAGNOSTIC_DIGITS (set sizes and other counts stay exact)."""
    return {k: rounded(v, DIAGNOSTIC_DIGITS if k in DIAGNOSTICS else LOG_DIGITS)
            for k, v in record.items()}


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _gunzip(data: bytes) -> bytes:
    """The text of every gzip member in `data` (a compacted log is one; `cat` makes more); a
    member cut short gives what it holds, so only its torn last line is lost."""
    out = []
    while data:
        member = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        out.append(member.decompress(data))
        if not member.eof:
            break
        data = member.unused_data
    return b"".join(out)


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


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_plain(path: Path | str | Any) -> Any:
    """A torch file that holds only tensors and plain containers (dicts, lists, tuples, numbers,
    strings). Anything else is refused before it is built: unpickling an arbitrary object can
    run code, and run directories are shared (results/ is made of them). Raises
    pickle.UnpicklingError saying so."""
    import torch  # here: reading a run's results needs no torch

    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols of damaged files
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global: " not in str(exc):  # damaged, not hostile
            why = str(exc).partition("Unpickler error:")[2].strip().split("\n")[0]
            raise ValueError(why or "not a torch file") from None
        found = str(exc).split("Unsupported global: ")[1].split("\n")[0].strip()
        raise pickle.UnpicklingError(
            f"it holds objects other than tensors and plain containers ({found[:120]}), and "
            "loading them could run code") from None


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
        self.metrics_path = self.path / "metrics.jsonl"  # while training
        self.compact_metrics_path = self.path / "metrics.jsonl.gz"  # once complete
        self.eval_path = self.path / "eval.json"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.progress_path = self.path / "progress.json"  # while it trains (mtrl_bench.progress)
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
        # The manifest is provenance, not identity (config.json is, and a resume checks it
        # against the checkpoint): a hand-edited manifest cannot change what trains, so it is
        # appended to as found; one that is not a JSON object is refused, naming it.
        manifest = read_json(self.manifest_path) if self.manifest_path.exists() else {}
        if not isinstance(manifest, dict) or not isinstance(manifest.get("executions", []),
                                                            list):
            raise RunFileError(f"{self.manifest_path}: not a run manifest (a JSON object with "
                               "an 'executions' list); restore it or delete the run to retrain")
        # the GPUs this process may see (a scheduler such as Ray sets it; "" = none)
        entry = {**asdict(execution), **resolved, "host": platform.node(), "cpu": cpu_model(),
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
        self.compact_metrics()
        atomic_write(self.done_path, "")
        self.set_status("complete")

    # -- metrics -------------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if self.compact_metrics_path.exists():  # a compacted log grows again as plain lines
            self._write_plain(self.metrics())
        try:  # O_NOFOLLOW: a symlink planted in a run must not make it write elsewhere
            fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                         0o644)
        except OSError as exc:
            if not self.metrics_path.is_symlink():
                raise
            raise RunFileError(f"{self.metrics_path}: a symlink (to "
                               f"{os.readlink(self.metrics_path)}); a run writes only into its "
                               "own folder: remove the link") from exc
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(log_record(record)) + "\n")

    def _read_log(self) -> tuple[Path, str] | None:
        """(file, text) of the log: the plain file while there is one, else the compacted one."""
        for path in (self.metrics_path, self.compact_metrics_path):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # also when compacted between the check and the read
                continue
            if path == self.compact_metrics_path:
                try:
                    data = _gunzip(data)
                except zlib.error as exc:
                    raise RunFileError(f"{path}: damaged (not gzip: {exc})") from None
            try:
                return path, data.decode()
            except UnicodeDecodeError:
                raise RunFileError(f"{path}: damaged (not text)") from None
        return None

    def metrics(self) -> list[dict[str, Any]]:
        """The logged records. A torn last line (a kill mid-write) is left out; a damaged line
        before it is an error naming the file and line."""
        log = self._read_log()
        if log is None:
            return []
        path, text = log
        lines = text.splitlines()
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
                raise RunFileError(f"{path}: damaged line {i + 1} ({exc})") from None
            records.append(record)
        return records

    def truncate_metrics(self, step: int) -> None:
        """Drop records after `step` (written after the last checkpoint of a killed run, or
        all of them when a run starts again from step 0); the log is plain again."""
        if self.metrics_path.exists() or self.compact_metrics_path.exists():
            self._write_plain([r for r in self.metrics() if r["step"] <= step])

    def compact_metrics(self, records: list[dict[str, Any]] | None = None) -> None:
        """Write `records` (default: the log as it stands) as the compacted log and remove the
        plain one. The bytes depend on the records only (no timestamp), so compacting again
        changes nothing."""
        if records is None:
            if not self.metrics_path.exists():
                return
            records = self.metrics()
        atomic_write(self.compact_metrics_path,
                     gzip.compress(_lines(records).encode(), compresslevel=9, mtime=0))
        self.metrics_path.unlink(missing_ok=True)

    def _write_plain(self, records: list[dict[str, Any]]) -> None:
        atomic_write(self.metrics_path, _lines(records))
        self.compact_metrics_path.unlink(missing_ok=True)

    def clean_temporary_files(self) -> list[Path]:
        """Remove temp files of interrupted atomic writes (`.<name>.tmp-<pid>`); call only while
        holding the run's lock."""
        stale = list(self.path.glob(".*.tmp-*"))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    # -- checkpoint ----------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Written whole or not at all: on failure the previous checkpoint stays."""
        import torch

        try:
            atomic_write(self.checkpoint_path, lambda f: torch.save(state, f))
        except (OSError, RuntimeError) as exc:
            # a full disk reaches torch.save's zip writer as "[enforce fail ...] unexpected pos"
            full = getattr(exc, "errno", None) == errno.ENOSPC or "unexpected pos" in str(exc)
            if not full:
                raise
            raise OSError(errno.ENOSPC, f"{self.checkpoint_path}: no space left on device "
                          "while saving the checkpoint (the previous one is kept); free space "
                          "and resume") from None

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint, None if there is none; RunFileError naming the file when it is
        damaged or lacks keys."""
        if not self.checkpoint_path.exists():
            return None
        fix = f"delete it to train {self.path.name} from step 0"
        try:
            state = load_plain(self.checkpoint_path)
        except pickle.UnpicklingError as exc:
            raise RunFileError(f"{self.checkpoint_path}: refused: {exc}; {fix}") from None
        except Exception as exc:  # EOFError, RuntimeError (zip), ...
            raise RunFileError(f"{self.checkpoint_path}: damaged checkpoint "
                               f"({type(exc).__name__}: {exc}); {fix}") from None
        lacking = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
        if lacking:
            raise RunFileError(f"{self.checkpoint_path}: not a complete checkpoint (missing "
                               f"{', '.join(lacking)}); {fix}")
        return state
