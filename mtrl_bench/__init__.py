"""mtrl-bench: offline multi-task RL with parameter masks, benchmarked on Meta-World v3."""
from __future__ import annotations

from mtrl_bench.masking import MaskStrategy, UpdateContext
from mtrl_bench.plugins import MethodSpec, hookimpl

__version__ = "0.1.0"
__all__ = ["MaskStrategy", "MethodSpec", "UpdateContext", "hookimpl", "__version__"]
