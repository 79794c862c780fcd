"""HarmoDT strategies: constant density, the k_t schedule, hand-checked prune/recover choices."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mtrl_bench.masking import MaskLayout, StrategyContext, UpdateContext, erk_initialised
from mtrl_bench_methods import harmodt, scores


def ctx(grads, step, total=1000, interval=1, params=None):
    grads = torch.as_tensor(grads, dtype=torch.float32)
    n = grads.shape[1]
    return UpdateContext(grads=grads, losses=torch.ones(grads.shape[0]),
                         params=torch.zeros(n) if params is None else torch.as_tensor(params),
                         step=step, total_steps=total, interval=interval,
                         generator=torch.Generator())


def make(cfg_cls=harmodt.HarmoDTConfig, num_tasks=3, **overrides):
    layout = MaskLayout(("a", "b"), ((40, 50), (50, 40)))  # n = 4000
    cfg = cfg_cls(**overrides)
    factory = erk_initialised(harmodt.HarmoDTStrategy)
    return factory(StrategyContext(cfg, layout, num_tasks, torch.Generator().manual_seed(0),
                                   torch.device("cpu")))


def test_defaults_are_the_released_code_values():
    cfg = harmodt.HarmoDTConfig()
    paper = {"sparsity": 0.2, "gamma": 10.0, "importance": "fisher", "eta_min": 0.0,
             "reference_updates": 2000, "released_code_bugs": False}
    assert {k: getattr(cfg, k) for k in paper} == paper
    assert cfg.eta_max * 4_718_592 == pytest.approx(100)  # --eta_max 100 of the paper's 4.7M
    assert harmodt.HarmoDTMConfig().importance == "magnitude"
    assert harmodt.HarmoDTRConfig().eta_max == 0.0


def test_initial_masks_are_binary_with_sparsity_0_2():
    strat = make()
    assert strat.masks.shape == (3, 4000)
    assert set(strat.masks.unique().tolist()) == {0.0, 1.0}
    assert strat.masks.mean().item() == pytest.approx(0.8, abs=0.02)


@pytest.mark.parametrize("step,k", [(0, 0), (250, 20), (500, 40), (750, 20)])
def test_density_constant_and_count_follows_schedule(step, k):
    # eta_max = 1% of n = 4000 at T/2, no rescaling: k_t = 0, 20, 40, 20 at t = 0, T/4, T/2, 3T/4
    strat = make(eta_max=0.01, match_total_movement=False)
    before = strat.masks.clone()
    grads = torch.randn(3, 4000, generator=torch.Generator().manual_seed(1))
    out = strat.update(ctx(grads, step))
    assert out["k_t"] == k and out["recovered"] == k and out["pruned"] == k
    assert torch.equal(strat.masks.sum(1), before.sum(1))
    assert ((before == 0) & (strat.masks == 1)).sum(1).tolist() == [k] * 3
    assert ((before == 1) & (strat.masks == 0)).sum(1).tolist() == [k] * 3


def test_total_movement_matches_paper_share():
    # cpu profile: T = 3000, interval 50 (60 updates) on the 589,824-entry model. The paper moves
    # about 99,000 of 4,718,592 entries per task per direction over its 2000 updates (2.10%).
    cfg = harmodt.HarmoDTConfig()
    n, ratio = 589_824, scores.update_ratio(3000, 50, cfg.reference_updates, True)
    total = sum(scores.move_count(n, cfg.eta_max, 0.0, t, 3000, ratio) for t in range(49, 3000, 50))
    assert total / n == pytest.approx(99_000 / 4_718_592, rel=0.02)


GRADS = [[1.0, 2.0, -1.0, 3.0, 0.5, -2.0],   # task 0
         [1.0, 0.0, 1.0, 1.0, 0.5, 4.0]]     # task 1
MASKS = [[1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
         [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]]
# gbar = [1, 1, 0, 2, 0.5, 1]; task 0 agreement = [1, 2, 0, 6, 0.25, -2]
# recover (inactive 4, 5): largest agreement 0.25 -> entry 4
# prune, -F: 10*agree + g^2 over active 0..3 = [11, 24, 1, 69]      -> entry 2
# prune, -M with |theta| = [0, 5, 30, 0, ...]: [10, 25, 30, 60]      -> entry 0
# task 1 agreement = [1, 0, 0, 2, 0.25, 4]; recover: only entry 3 is inactive
# prune, -F over active 0,1,2,4,5: [11, 0, 1, 2.75, 56] -> entry 1; -M: [10, 5, 30, 2.5+0, 40] -> 4
PARAMS = [0.0, 5.0, 30.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("cfg_cls,expected", [
    (harmodt.HarmoDTConfig, [[1, 1, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1]]),
    (harmodt.HarmoDTMConfig, [[0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 1]]),
])
def test_prune_and_recover_by_hand(cfg_cls, expected):
    cfg = cfg_cls(eta_max=1 / 6, match_total_movement=False)  # k = 1 at T/2
    strat = harmodt.HarmoDTStrategy(cfg, torch.tensor(MASKS))
    strat.update(ctx(GRADS, step=500, params=PARAMS))
    assert strat.masks.tolist() == expected


def test_released_code_bugs_flag():
    # Released code: grads masked first, then task 0 scored with g_0 := gbar.
    # masked g0 = [1, 2, -1, 3, 0, 0], g1 = [1, 0, 1, 0, 0.5, 4]; gbar = [1, 1, 0, 1.5, 0.25, 2]
    # task 0 recovers by gbar^2 over inactive {4, 5}: 0.0625 vs 4 -> entry 5 (fixed code: 4)
    cfg = harmodt.HarmoDTConfig(eta_max=1 / 6, match_total_movement=False, released_code_bugs=True)
    strat = harmodt.HarmoDTStrategy(cfg, torch.tensor(MASKS))
    strat.update(ctx(GRADS, step=500))
    assert strat.masks[0, 5] == 1 and strat.masks[0, 4] == 0
    assert strat.masks.sum(1).tolist() == [4.0, 5.0]


def test_harmodt_r_never_moves():
    strat = make(harmodt.HarmoDTRConfig)
    before = strat.masks.clone()
    for step in (0, 499, 999):
        assert strat.update(ctx(torch.randn(3, 4000), step))["k_t"] == 0
    assert torch.equal(strat.masks, before)


def test_chunked_update_equals_single_chunk(monkeypatch):
    grads = torch.randn(3, 4000, generator=torch.Generator().manual_seed(2))
    results = []
    for budget in (1 << 24, 4000):  # one chunk, then one task per chunk
        monkeypatch.setattr(scores, "CHUNK_ELEMENTS", budget)
        strat = make(eta_max=0.01, match_total_movement=False)
        strat.update(ctx(grads, 500))
        results.append(strat.masks)
    assert torch.equal(*results)


def test_config_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        harmodt.HarmoDTConfig().gamma = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        harmodt.HarmoDTConfig(importance="random")
