"""The BC reference: which episodes it keeps, determinism, evaluation through `evaluate`."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mtrl_bench.api import Run, load_datasets
from mtrl_bench.data import OfflineData
from mtrl_bench.reference import VARIANTS, bc_reference, kept_episodes, train_bc

pytestmark = pytest.mark.filterwarnings("ignore:Constant.*too high")


@pytest.fixture(scope="module")
def smoke(smoke_data):
    cfg = Run.prepare("prompt-dt", "mt5", "near-optimal", 0, "smoke").config
    datasets = load_datasets(cfg, smoke_data, progress=False)
    return cfg, datasets, OfflineData(datasets, cfg.data, cfg.model)


def test_kept_episodes_are_the_best_returns(smoke):
    _, datasets, data = smoke
    returns = datasets[0].rewards.sum(1)
    assert sorted(kept_episodes(data, 0, 1.0)) == list(range(len(returns)))
    best = kept_episodes(data, 0, 0.2)  # 20% of 4 episodes rounds up to one
    assert list(best) == [int(np.argmax(returns))]
    half = kept_episodes(data, 0, 0.5)
    assert set(half) == set(np.argsort(returns)[-2:])


def test_training_is_deterministic_and_fits(smoke):
    _, _, data = smoke
    cfg = dataclasses.replace(VARIANTS["bc-top20"], steps=200)
    a, b = train_bc(data, cfg, seed=3), train_bc(data, cfg, seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    kept = kept_episodes(data, 1, cfg.top_fraction)
    s = torch.from_numpy(data.states[1][kept].reshape(-1, data.states[1].shape[-1]))
    target = torch.from_numpy(data.actions[1][kept].reshape(-1, 4))
    untrained = dataclasses.replace(cfg, steps=0)
    with torch.no_grad():
        task = torch.ones(len(s), dtype=torch.long)
        err = (a(s, task) - target).square().mean()
        err0 = (train_bc(data, untrained, seed=3)(s, task) - target).square().mean()
    assert err < 0.5 * err0


def test_reference_is_evaluated_like_a_run(smoke, monkeypatch):
    cfg, datasets, _ = smoke
    monkeypatch.setitem(VARIANTS, "bc-top20", dataclasses.replace(VARIANTS["bc-top20"], steps=50))
    result = bc_reference(cfg, datasets, "bc-top20")
    assert set(result["tasks"]) == {d.task for d in datasets}
    assert result["reference"] == "bc-top20" and result["bc"]["top_fraction"] == 0.2
    assert 0.0 <= result["success"] <= 1.0 and result["env_steps"] > 0
    with pytest.raises(ValueError, match="bc-top20"):
        bc_reference(cfg, datasets, "bc-top2")
