"""Runs on machines that share no disk with the driver (Ray workers on other nodes).

A worker trains into a run folder of its own (`$MTRL_BENCH_WORKER_RUNS/<run>` when its node sets
that variable, else the driver's path, which on another machine is another disk) and sends the
run's small files back with its summary (`run_files`); the driver writes them where the local
executor would have (`write_run_files`), so its report reads them as if local. Checkpoints stay
with the worker unless the grid has `--storage URI` (a pyarrow filesystem: a local path, s3://,
gs://): then each checkpoint is uploaded with the run's small files as it is written, and a run
whose node died resumes from storage on whichever node Ray retries it.

Files from a worker or from storage are untrusted like any run folder: names must be plain file
names (no folders, no '..', nothing hidden), and checkpoints load with weights_only=True.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mtrl_bench.runs import RunDir

__all__ = ["WORKER_RUNS_ENV", "Storage", "StoredRunDir", "run_files", "write_run_files"]

WORKER_RUNS_ENV = "MTRL_BENCH_WORKER_RUNS"  # a node's own run root (no shared disk)
CHECKPOINT = "checkpoint.pt"
# held by the process training the run (LOCK, progress.json) or only worth their size locally
LOCAL_ONLY = re.compile(r"^(LOCK.*|progress\.json|checkpoint\.pt)$")
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _small_files(path: Path) -> list[Path]:
    """The run folder's files that travel (not its checkpoint, locks, temporary files)."""
    if not path.is_dir():
        return []
    return [f for f in sorted(path.iterdir()) if f.is_file() and not f.is_symlink()
            and PLAIN_NAME.match(f.name) and not LOCAL_ONLY.match(f.name)]


def run_files(path: Path, checkpoint: bool = False) -> dict[str, bytes]:
    """The run folder's files a driver needs (config, manifest, status, metrics, evaluation,
    DONE, error.txt), with the checkpoint if asked; temporary and lock files never."""
    path = Path(path)
    files = {f.name: f.read_bytes() for f in _small_files(path)}
    if checkpoint and (path / CHECKPOINT).is_file():
        files[CHECKPOINT] = (path / CHECKPOINT).read_bytes()
    return files


def write_run_files(path: Path, files: dict[str, bytes]) -> list[str]:
    """Make `path` hold the run's files as the sender's folder does: each written atomically (an
    identical file is left alone, so a worker sharing the driver's disk changes nothing), and
    the small files the sender no longer has removed (a plain metrics log of an earlier attempt
    would hide the finished run's compacted one); a checkpoint here is kept unless sent. Every
    name is checked before anything is written: a name that is not a plain file name raises
    ValueError and changes nothing."""
    from mtrl_bench_envs.common import atomic_write

    bad = [n for n in files if not isinstance(n, str) or not PLAIN_NAME.match(n)
           or (LOCAL_ONLY.match(n) and n != CHECKPOINT) or not isinstance(files[n], bytes)]
    if bad:
        raise ValueError(f"{path}: refusing run files with names that are not plain file names "
                         f"of a run folder: {bad[:3]!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        target = path / name
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            continue
        atomic_write(target, data)
        written.append(name)
    for stale in _small_files(path):
        if stale.name not in files:
            stale.unlink()
    return written


class Storage:
    """A run's files under `<uri>/<run name>/` on a pyarrow filesystem."""

    def __init__(self, uri: str) -> None:
        try:
            from pyarrow import fs
        except ImportError:
            raise RuntimeError('--storage needs pyarrow: pip install "mtrl-bench[ray]"') from None
        # a plain path means this machine's folder: absolute, so a worker (another cwd) finds it
        self.uri = uri if "://" in uri else str(Path(uri).resolve())
        try:
            self.fs, self.base = fs.FileSystem.from_uri(self.uri)
        except Exception as exc:  # pyarrow's ArrowInvalid / OSError: one line naming the URI
            raise ValueError(f"--storage {uri}: not a filesystem pyarrow can open ({exc})") \
                from None

    def put(self, run: str, files: dict[str, bytes]) -> None:
        """Store the run's files; stored small files it no longer has go (as write_run_files),
        the stored checkpoint stays unless a new one is sent."""
        folder = f"{self.base}/{run}"
        self.fs.create_dir(folder, recursive=True)
        for name, data in files.items():  # the checkpoint last: a resume finds its metrics
            if name != CHECKPOINT:
                self._write(f"{folder}/{name}", data)
        if CHECKPOINT in files:
            self._write(f"{folder}/{CHECKPOINT}", files[CHECKPOINT])
        for stale in self._stored(folder):
            if stale.base_name not in files and stale.base_name != CHECKPOINT:
                self.fs.delete_file(stale.path)

    def _write(self, where: str, data: bytes) -> None:
        tmp = where + ".tmp"  # a reader never sees half a file (object stores: whole anyway)
        # compression=None: pyarrow would otherwise (un)compress by the name (metrics.jsonl.gz)
        with self.fs.open_output_stream(tmp, compression=None) as out:
            out.write(data)
        self.fs.move(tmp, where)

    def _stored(self, folder: str) -> list[Any]:
        """The run's stored files (pyarrow FileInfo) with plain names; temporary ones never."""
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(folder, allow_not_found=True))
        return [i for i in infos if i.type == fs.FileType.File and PLAIN_NAME.match(i.base_name)
                and not i.base_name.endswith(".tmp")]

    def get(self, run: str) -> dict[str, bytes]:
        files = {}
        for info in self._stored(f"{self.base}/{run}"):
            with self.fs.open_input_stream(info.path, compression=None) as stream:
                files[info.base_name] = stream.read()
        return files


class StoredRunDir(RunDir):
    """A run folder whose checkpoints also go to storage, with the files a resume needs."""

    def __init__(self, path: Path, storage: Storage) -> None:
        super().__init__(path)
        self.storage = storage

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        super().save_checkpoint(state)
        self.storage.put(self.path.name, run_files(self.path, checkpoint=True))
