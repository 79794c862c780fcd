"""Process pools for simulation work: spawn context, quiet Ctrl-C in workers, in-process for 1."""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle: it stops the pool and keeps what is finished, while
    # workers printing their own KeyboardInterrupt tracebacks would only bury that message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def imap_unordered(fn: Callable[[Any], Any], items: Iterable[Any],
                   workers: int | None = None) -> Iterator[Any]:
    """fn over items in `workers` processes (results as they finish); in this process for 1.

    "spawn", not fork: the parent may have torch (and its thread pools) loaded already.
    """
    items = list(items)
    workers = min(workers or default_workers(), len(items))
    if workers <= 1:
        yield from map(fn, items)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=ignore_sigint) as pool:
        yield from pool.imap_unordered(fn, items, chunksize=1)
