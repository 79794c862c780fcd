"""Meta-World v3 suites, offline dataset generation and dataset loaders for mtrl-bench."""
from __future__ import annotations

from mtrl_bench_envs.suites import SUITES, Suite, get_suite, make_env

__all__ = ["SUITES", "Suite", "get_suite", "make_env"]
