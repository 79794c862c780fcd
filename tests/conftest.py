"""Shared fixtures: one real smoke-sized Meta-World dataset for the whole session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """Root of a generated MT5 dataset at the smoke profile's size (4 episodes per task)."""
    from mtrl_bench.config import load_profile
    from mtrl_bench_envs.dataset import ensure_dataset

    root = tmp_path_factory.mktemp("datasets")
    episodes = load_profile("smoke")["data"]["episodes"]
    ensure_dataset("mt5", episodes, 0, root=root, progress=False)
    return root
