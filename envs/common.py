"""Helpers every layer shares: atomic file writes, unknown-name messages, package versions.

This package sits at the bottom of the import graph (the core and the method plugins import it,
it imports neither), so these live here once.
"""
from __future__ import annotations

import contextlib
import difflib
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import IO


def atomic_write(path: Path, data: bytes | str | Callable[[IO[bytes]], None]) -> None:
    """Write bytes, text or whatever ``data(f)`` writes, via a temp file in the same folder and
    os.replace: readers never see half a file, and an error leaves the old file (or none) and no
    temp file behind. Ctrl-C or SIGTERM during the write takes effect once it is done (an
    interrupt inside torch.save surfaces as a RuntimeError, which would read as a failed run).
    Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write = data if callable(data) else (
        lambda f: f.write(data.encode() if isinstance(data, str) else data))
    try:
        with _signals_deferred():
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back until the block ends, then delivered to the handlers they
    would have met. Python runs signal handlers in the main thread only, so only it defers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _: caught.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*", re.ASCII)


def check_plain_name(kind: str, name: str) -> str:
    """`name` if it can safely become a folder name (ASCII letters, digits, '.', '_', '+', '-',
    first a letter or digit: no separator, no '..', one spelling per name); ValueError naming
    it otherwise. Methods and experiments name the folders their runs and reports go to."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} is not a plain name (ASCII letters, digits, "
                         "'.', '_', '+', '-', starting with a letter or digit): it names folders")
    return name


def unknown_name_message(kind: str, name: str, valid: Iterable[str]) -> str:
    """One-line error for an unknown name, with a close-match suggestion when there is one."""
    valid = list(valid)
    return f"unknown {kind} '{name}'.{did_you_mean(name, valid)} Valid: {', '.join(valid)}"


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """" Did you mean 'x'?" for the closest of `valid` to `name`, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


VERSIONED_PACKAGES = ("metaworld", "mujoco", "gymnasium", "numpy", "mtrl-bench")
SIMULATION_PACKAGES = ("metaworld", "mujoco")  # a change here changes the data itself


def dataset_versions() -> dict[str, str]:
    """Versions of the packages a dataset card (and the experts' table) records."""
    return package_versions(VERSIONED_PACKAGES)


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution ("not installed" when absent)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
