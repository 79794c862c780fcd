"""Shared fixtures: one real smoke-sized Meta-World dataset and one finished smoke run, made
once for the whole session (copy the run before changing it)."""
from __future__ import annotations

import pytest

# a grid of two smoke runs (Prompt-DT, MT5 sub-optimal, seeds 0 and 1), for executor tests
TWO_SEEDS = """
    methods = ["prompt-dt"]
    suites = ["mt5"]
    qualities = ["sub-optimal"]
    seeds = [0, 1]
    profile = "smoke"
"""


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """Root of a generated MT5 dataset at the smoke profile's size (4 episodes per task)."""
    from mtrl_bench.config import load_profile
    from mtrl_bench_envs.dataset import ensure_dataset

    root = tmp_path_factory.mktemp("datasets")
    episodes = load_profile("smoke")["data"]["episodes"]
    ensure_dataset("mt5", episodes, 0, root=root, progress=False)
    return root


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, smoke_data):
    """An experiment-like folder `exp/` holding one real, finished smoke run at `exp/runs/run`
    (4 steps, with its checkpoint)."""
    from mtrl_bench.cli import main

    root = tmp_path_factory.mktemp("finished")
    code = main(["train", "--profile", "smoke", "--quiet", "--steps", "4", "--data-dir",
                 str(smoke_data), "--out", str(root / "exp" / "runs" / "run")])
    assert code in (0, None)
    return root / "exp"
