"""Meta-World v3 suites, offline dataset generation and dataset loaders for mtrl-bench.

This folder installs as the package `mtrl_bench_envs` (and `methods/` as `mtrl_bench_methods`):
bare `envs` and `methods` are names other packages use as top-level modules."""
from __future__ import annotations

from mtrl_bench_envs.dataset import (
    QUALITIES,
    DatasetError,
    TaskDataset,
    dataset_dir,
    default_data_root,
    ensure_dataset,
    load_dataset,
    load_mtdiff,
)
from mtrl_bench_envs.experts import load_experts
from mtrl_bench_envs.suites import SUITES, Suite, get_suite, make_env

__all__ = ["QUALITIES", "SUITES", "DatasetError", "Suite", "TaskDataset", "dataset_dir",
           "default_data_root", "ensure_dataset", "get_suite", "load_dataset", "load_experts",
           "load_mtdiff", "make_env"]
