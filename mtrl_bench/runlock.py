"""An exclusive claim on one run directory, so two harness processes never run the same run.

The lock is a file created with O_CREAT|O_EXCL holding pid, host, process start time and a random
token; a lock whose pid is dead on this host (or was reused by another process) is stale and is
broken under a second O_EXCL "breaker" file, so two harnesses can never both take one run.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any


def _process_start(pid: int) -> str | None:
    """Kernel start time of a process (Linux), to tell a live holder from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat, counted after "(comm)"


def _pid_alive(pid: int) -> bool:
    """A running process: a zombie (exited, not yet reaped by its parent, as under a PID 1 that
    never reaps) answers os.kill(pid, 0) but holds nothing."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): trust kill(0)
    return state not in ("Z", "X")  # zombie, dead


class RunLock:
    """An exclusive claim on one run directory, safe across processes and hosts.

    Taking it is ``os.open(LOCK, O_CREAT | O_EXCL)``, atomic on local filesystems and NFS v3+.
    """

    NAME = "LOCK"
    EMPTY_GRACE = 60.0  # seconds an unreadable (just created, not yet written) lock is trusted

    def __init__(self, run_path: Path) -> None:
        self.path = Path(run_path) / self.NAME
        self.breaker = Path(run_path) / (self.NAME + ".break")
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "start": _process_start(os.getpid()), "time": time.time(),
                     "token": uuid.uuid4().hex}
        self.acquired = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def holder(self) -> dict[str, Any] | None:
        """The current holder's info, or None when unlocked (or the file is unreadable)."""
        return self._read(self.path)

    def _stale(self, path: Path, info: dict[str, Any] | None) -> bool:
        if info is None:  # created but not yet written, or its writer died in between
            try:
                return time.time() - path.stat().st_mtime > self.EMPTY_GRACE
            except OSError:
                return False
        if info.get("host") != socket.gethostname():
            return False  # cannot see another host's processes: never break its lock
        pid = int(info.get("pid", -1))
        if not _pid_alive(pid):
            return True
        start = _process_start(pid)
        return start is not None and info.get("start") is not None and start != info["start"]

    def is_held(self) -> bool:
        """Held by a live process (stale locks count as free)."""
        return self.path.exists() and not self._stale(self.path, self.holder())

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                seen = self.holder()
                if not self._stale(self.path, seen):
                    return False
                self._break(seen)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.info, f)
                f.flush()
                os.fsync(f.fileno())
            self.acquired = True
            return True
        return False

    def _break(self, seen: dict[str, Any] | None) -> None:
        """Remove a stale lock, but only the one judged stale: the breaker file serialises the
        check-and-unlink, so a fresh lock taken meanwhile by another harness is never removed."""
        try:
            fd = os.open(self.breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if self._stale(self.breaker, self._read(self.breaker)):
                self.breaker.unlink(missing_ok=True)  # its owner died mid-break
            return
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.info, f)
            now = self.holder()
            if now == seen and self._stale(self.path, now):
                self.path.unlink(missing_ok=True)
        finally:
            self.breaker.unlink(missing_ok=True)

    def release(self) -> None:
        if self.acquired and (self.holder() or {}).get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)
        self.acquired = False
