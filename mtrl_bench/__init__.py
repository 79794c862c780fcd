"""mtrl-bench: offline multi-task RL with parameter masks, benchmarked on Meta-World v3."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtrl_bench.masking import MaskStrategy, StrategyContext, UpdateContext
    from mtrl_bench.plugins import MethodSpec, hookimpl

__version__ = "0.1.0"
__all__ = ["MaskStrategy", "MethodSpec", "StrategyContext", "UpdateContext", "hookimpl",
           "__version__"]

# Imported on first use, so commands that never touch torch (`--help`, `data ...`) start fast.
_HOMES = {"MaskStrategy": "masking", "StrategyContext": "masking", "UpdateContext": "masking",
          "MethodSpec": "plugins",
          "hookimpl": "plugins"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'mtrl_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mtrl_bench.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
