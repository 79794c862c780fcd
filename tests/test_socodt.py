"""SoCo-DT (TAMU) and its ablations: one hand-computed update, defaults, registration."""
from __future__ import annotations

import warnings

import pytest
import torch

from mtrl_bench.masking import MaskLayout, StrategyContext, UpdateContext
from mtrl_bench.plugins import Registry
from mtrl_bench_methods import scores, socodt

# Hand-made two-task example, n = 8. q1 = 0.25, q3 = 0.75 give integer k = 2 and k = 6;
# step 4 of T = 10 is t = 5 = T/2, so beta_t = beta_min, set to 1. alpha = 20, lambda = 0.1.
G = [[1.0, 1, 1, 1, 3, -2, -1, 40],   # task 0, loss 1
     [1.0, 1, 1, 1, -1, 0, 5, -38]]   # task 1, loss 4
LOSSES = [1.0, 4.0]
M = [[1.0, 1, 1, 1, 0.5, 1, 1, 0],    # entry 4 soft, entry 7 masked
     [1.0, 1, 1, 1, 1, 1, 0, 1]]      # entry 6 masked
# gbar = [1, 1, 1, 1, 1, -1, 2, 1]
# Task 0: agreement [1, 1, 1, 1, 3, 2, -2, 40]; F = ((g/1) * m)^2 = [1, 1, 1, 1, 2.25, 4, 1, 0]
#   F_hat = F/4 = [.25, .25, .25, .25, .5625, 1, .25, 0]
#   conflict score = agree + 0.1 F = [1.1 x4, 3.225, 2.4, -1.9, 40]
#     sorted: -1.9, 1.1 x4, 2.4, 3.225, 40 -> Q(.25) = X_(2) = 1.1, Q(.75) = X_(6) = 2.4
#     threshold = 1.1 - 1 * 1.3 = -0.2 -> C_0 = {6}
#   gate (20|gbar| - |g|) / (20|gbar|) = [.95 x4, .85, .9, (.975), 0 (20 - 40 < 0)]
#   harmony = [.95 x4, 2.55, 1.8, -2, 0]; sorted -2, 0, .95 x4, 1.8, 2.55
#     Q = X_(2) = 0, X_(6) = 0.95; threshold = 0.95 + 0.95 = 1.9 -> R_0 = {4}
#   new mask: M[6] <- F_hat[6] = 0.25, M[4] <- 1
# Task 1: agreement [1, 1, 1, 1, -1, 0, 10, -38]; F = ((g/4) * m)^2 = [1/16 x5, 0, 0, 90.25]
#   F_hat = [1/1444 x5, 0, 0, 1]
#   conflict score = [1.00625 x4, -0.99375, 0, 10, -28.975]
#     sorted: -28.975, -0.99375, 0, 1.00625 x4, 10 -> X_(2) = -0.99375, X_(6) = 1.00625
#     threshold = -0.99375 - 2 = -2.99375 -> C_1 = {7}, and M[7] <- F_hat[7] = 1 (its max)
#   harmony = [.95 x4, -1, 0, 10 * (40 - 5) / 40 = 8.75, -38]
#     X_(2) = -1, X_(6) = 0.95; threshold = 0.95 + 1.95 = 2.9 -> R_1 = {6}, M[6] <- 1
EXPECTED = [[1.0, 1, 1, 1, 1, 1, 0.25, 0], [1.0] * 8]
HAND = dict(q1=0.25, q3=0.75, beta_min=1.0)


def ctx(grads=G, losses=LOSSES, step=4, total=10, interval=1):
    grads = torch.as_tensor(grads, dtype=torch.float32)
    return UpdateContext(grads=grads, losses=torch.tensor(losses),
                         params=torch.zeros(grads.shape[1]), step=step, total_steps=total,
                         interval=interval, generator=torch.Generator())


def run(cfg_cls=socodt.SoCoDTConfig, **overrides):
    strat = socodt.SoCoDTStrategy(cfg_cls(**{**HAND, **overrides}), torch.tensor(M))
    return strat, strat.update(ctx())


def test_intermediate_scores_by_hand():
    g, gbar = torch.tensor(G), torch.tensor(G).mean(0)
    agree = scores.agreement(g, gbar)
    fish = scores.fisher(g, torch.tensor(LOSSES), torch.tensor(M))
    conflict_score = agree + 0.1 * fish
    assert conflict_score.tolist() == [pytest.approx([1.1] * 4 + [3.225, 2.4, -1.9, 40]),
                                       pytest.approx([1.00625] * 4 + [-0.99375, 0, 10, -28.975])]
    conflict, thr = scores.iqr_select(conflict_score, 0.25, 0.75, 1.0, upper=False)
    assert thr.tolist() == pytest.approx([-0.2, -2.99375])
    assert conflict.nonzero().tolist() == [[0, 6], [1, 7]]
    harmony = scores.harmony_score(agree, scores.harmony_gate(g, gbar, 20.0))
    recover, thr = scores.iqr_select(harmony, 0.25, 0.75, 1.0, upper=True)
    assert thr.tolist() == pytest.approx([1.9, 2.9])
    assert recover.nonzero().tolist() == [[0, 4], [1, 6]]


def test_one_tamu_update_by_hand():
    strat = socodt.SoCoDTStrategy(socodt.SoCoDTConfig(**HAND), torch.tensor(M))
    held = strat.masks  # the trainer may hold this tensor: the update must edit it in place
    out = strat.update(ctx())
    assert held is strat.masks and strat.masks.tolist() == EXPECTED
    assert out["beta"] == 1.0
    assert out["conflict_size"] == out["recover_size"] == [1.0, 1.0]  # per task
    assert out["conflict_threshold"] == pytest.approx([-0.2, -2.99375])
    assert out["recover_threshold"] == pytest.approx([1.9, 2.9])
    assert "conflict_ratio" not in out  # 1 − density: the trainer logs density


def test_no_soft_zeroes_the_conflict_set():
    strat, _ = run(socodt.NoSoftConfig)  # C_0 = {6}, C_1 = {7} get 0 instead of F_hat
    assert strat.masks.tolist() == [[1.0, 1, 1, 1, 1, 1, 0, 0], [1.0, 1, 1, 1, 1, 1, 1, 0]]


def test_no_magnitude_recovers_the_dominated_entry():
    # Plain agreement for task 0: [1 x4, 3, 2, -2, 40]; X_(2) = 1, X_(6) = 2, threshold 3:
    # entry 7 (40, its own gradient 40 against gbar 1) is recovered, entry 4 (3, not > 3) is not.
    strat, out = run(socodt.NoMagnitudeConfig)
    assert strat.masks.tolist() == [[1.0, 1, 1, 1, 0.5, 1, 0.25, 1], [1.0] * 8]
    assert out["recover_threshold"][0] == pytest.approx(3.0)


def test_fixed_sparsity_takes_k_t_extremes():
    # k = round(8 * 1/8) = 1 at T/2: the lowest conflict score (task 0: entry 6, task 1: entry 7)
    # and the highest harmony score (entry 4, entry 6): here the same sets as the IQR rule.
    strat, out = run(socodt.FixedSparsityConfig, eta_max=1 / 8, match_total_movement=False)
    assert strat.masks.tolist() == EXPECTED
    assert out["k_t"] == 1.0 and "conflict_threshold" not in out and "beta" not in out
    # On Gaussian gradients the literal IQR rule selects no conflicts; the fixed count always k_t.
    grads = torch.randn(3, 4000, generator=torch.Generator().manual_seed(0))
    sizes = {}
    for cls in (socodt.SoCoDTConfig, socodt.FixedSparsityConfig):
        strat = socodt.SoCoDTStrategy(cls(eta_max=0.01, match_total_movement=False),
                                      torch.ones(3, 4000))
        out = strat.update(ctx(grads, [1.0] * 3, step=499, total=1000))
        sizes[cls] = sum(out["conflict_size"]) / 3
    assert sizes == {socodt.SoCoDTConfig: 0.0, socodt.FixedSparsityConfig: 40.0}


@pytest.mark.parametrize("step,beta", [(-1, 20.0), (249, 12.5), (499, 5.0), (749, 17.5),
                                       (999, 30.0)])
def test_beta_schedule_and_scale_in_strategy(step, beta):
    # t = step + 1 (Algorithm 1 counts from 1): t = 0, T/4, T/2, 3T/4, T
    for scale in (1.0, 0.01):
        strat = socodt.SoCoDTStrategy(socodt.SoCoDTConfig(beta_scale=scale), torch.tensor(M))
        assert strat.update(ctx(step=step, total=1000))["beta"] == pytest.approx(beta * scale)


def test_defaults_equal_paper_values():
    paper = {  # SoCo-DT Fig. 5 caption, plus our documented choices
        "sparsity": 0.2, "alpha": 20.0, "beta_left_max": 20.0, "beta_min": 5.0,
        "beta_right_max": 30.0, "q1": 0.05, "q3": 0.95,
        "lam": 0.1,  # not in the paper: docs/design.md
        "beta_scale": 1.0,  # literal reading: docs/design.md
        "soft": True, "adaptive": True, "magnitude": True,
    }
    cfg = socodt.SoCoDTConfig()
    assert {k: getattr(cfg, k) for k in paper} == paper
    assert not socodt.NoSoftConfig().soft and not socodt.FixedSparsityConfig().adaptive
    assert not socodt.NoMagnitudeConfig().magnitude


def test_all_methods_registered_through_entry_points():
    registry = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # other plugins (the lead's) may still be in progress
        registry.load_entry_points()
    names = {"harmodt-r", "harmodt-m", "harmodt-f", "socodt", "socodt-no-soft",
             "socodt-fixed-sparsity", "socodt-no-magnitude"}
    assert names <= set(registry.methods)
    layout = MaskLayout(("w",), ((20, 30),))
    for name in names:
        spec = registry.method(name).spec
        assert spec.capabilities == frozenset({"masks"}) and spec.description and spec.citation
        ctx = StrategyContext(spec.config_cls(), layout, 4, torch.Generator().manual_seed(0),
                              torch.device("cpu"))
        strat = spec.strategy(ctx)
        assert strat.masks.shape == (4, 600) and strat.masks.dtype == torch.float32
        assert strat.masks.mean().item() == pytest.approx(0.8, abs=0.05)


def test_pool_quantiles_match_numpy_within_each_rows_pool():
    """Type-4 quantiles over a per-row subset equal numpy's on that subset; an empty pool
    gives NaN, a full pool the plain quantiles."""
    np = pytest.importorskip("numpy")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 37, generator=gen, dtype=torch.float64)
    pool = torch.rand(4, 37, generator=gen) < 0.5
    pool[3] = False
    qs = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    got = scores.pool_quantiles(x, pool, qs)
    for b in range(3):
        want = np.quantile(x[b][pool[b]].numpy(), qs, method="interpolated_inverted_cdf")
        assert got[b].tolist() == pytest.approx(want.tolist(), abs=1e-12)
    assert torch.isnan(got[3]).all()
    full = torch.ones_like(pool)
    assert torch.equal(scores.pool_quantiles(x, full, qs), scores.quantiles(x, qs))


def test_signed_pools_update_by_hand():
    """The signed-pools reading on the hand example (quartiles, λ = 0 so the conflict score is
    the agreement). Pools, from the old mask:
    task 0: conflict = active with agreement < 0 = {6: −2}; recover = masked with agreement > 0
      = {4: harmony 2.55, 7: harmony 0 (gate closed)}; sorted [0, 2.55]: k = 0.5 -> rank 1 = 0,
      k = 1.5 -> 0.5·0 + 0.5·2.55 = 1.275, so Q(.25) = 0, Q(.75) = 1.275, IQR 1.275;
    task 1: conflict = {4: −1, 7: −38}: Q(.25) = −38, Q(.75) = −19.5, IQR 18.5;
      recover = {6: 8.75} (one entry: every quantile 8.75, IQR 0).
    β_t = 1: recover threshold task 0: 1.275 + 1.275 = 2.55, not exceeded; task 1's fences sit at
    or beyond their only extremes: nothing moves. β_t = 0: task 0 restores entry 4 (2.55 >
    1.275); no conflict entry lies strictly below its pool's Q(.25)."""
    strat = socodt.SoCoDTStrategy(
        socodt.SignedPoolsConfig(q1=0.25, q3=0.75, beta_min=1.0, beta_scale=1.0), torch.tensor(M))
    out = strat.update(ctx())
    assert strat.masks.tolist() == M
    assert out["conflict_size"] == [0.0, 0.0] and out["recover_size"] == [0.0, 0.0]
    assert out["recover_threshold"] == pytest.approx([2.55, 8.75])
    assert out["conflict_threshold"] == pytest.approx([-2.0, -38.0 - 18.5])
    strat = socodt.SoCoDTStrategy(socodt.SignedPoolsConfig(q1=0.25, q3=0.75, beta_min=0.0),
                                  torch.tensor(M))
    strat.update(ctx())
    assert strat.masks.tolist() == [[1.0, 1, 1, 1, 1, 1, 1, 0], M[1]]


def test_signed_pools_never_move_an_entry_out_of_its_pool():
    """On random gradients: conflicts only among active entries with g_i ⊙ ḡ < 0, recoveries
    only among masked ones with g_i ⊙ ḡ > 0; the reading's defaults are β as % and λ = 0."""
    gen = torch.Generator().manual_seed(1)
    grads = torch.randn(3, 5000, generator=gen)
    masks = (torch.rand(3, 5000, generator=gen) < 0.8).float()
    before = masks.clone()
    cfg = socodt.SignedPoolsConfig()
    assert (cfg.beta_scale, cfg.lam, cfg.signed_pools) == (0.01, 0.0, True)
    assert not socodt.SoCoDTConfig.signed_pools
    strat = socodt.SoCoDTStrategy(cfg, masks)
    out = strat.update(ctx(grads, [1.0] * 3, step=499, total=1000))
    agree = grads * grads.mean(0)
    softened = (before == 1) & (strat.masks < 1)
    restored = (before < 1) & (strat.masks == 1)
    assert softened.any() and restored.any()
    assert (agree[softened] < 0).all() and (agree[restored] > 0).all()
    assert [float(x) for x in softened.sum(1)] == out["conflict_size"]
