"""Shared scoring math (methods/scores.py) against hand-computed values and numpy's type 4."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl_bench_methods import scores


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 20, 40, 101, 1000])
@pytest.mark.parametrize("q", [0.0, 0.001, 0.05, 0.25, 0.3, 0.5, 0.75, 0.95, 0.999, 1.0])
def test_quantile_matches_numpy_interpolated_inverted_cdf(n, q):
    x = torch.randn(3, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    ours = scores.quantiles(x, (q,))[:, 0].numpy()
    ref = np.quantile(x.numpy(), q, axis=1, method="interpolated_inverted_cdf")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_quantile_by_hand():
    x = torch.tensor([[40.0, 10.0, 30.0, 20.0]])  # sorted 10 20 30 40, n = 4
    # q=0.5: k=2 is an integer -> X_(2) = 20 (numpy's default "linear" would give 25)
    # q=0.3: k=1.2 -> 0.8*10 + 0.2*20 = 12;  q=0.95: k=3.8 -> 0.2*30 + 0.8*40 = 38
    # q=0.1: k=0.4 < 1 -> X_(1) = 10
    assert scores.quantiles(x, (0.5, 0.3, 0.95, 0.1)).tolist() == [[20.0, 12.0, 38.0, 10.0]]


def test_iqr_with_integer_k():
    # n = 20, values 1..20 shuffled: k = 0.05*20 = 1 -> Q = 1; k = 0.95*20 = 19 -> Q = 19
    x = torch.tensor([[7.0, 3, 20, 1, 15, 9, 12, 2, 19, 4, 5, 18, 6, 8, 11, 10, 14, 13, 17, 16]])
    assert scores.quantiles(x, (0.05, 0.95)).tolist() == [[1.0, 19.0]]
    # IQR = 18; beta = 0.5: conflict below 1 - 9 = -8 (none), recover above 19 + 9 = 28 (none)
    low, thr_low = scores.iqr_select(x, 0.05, 0.95, 0.5, upper=False)
    high, thr_high = scores.iqr_select(x, 0.05, 0.95, 0.5, upper=True)
    assert thr_low.tolist() == [-8.0] and thr_high.tolist() == [28.0]
    assert not low.any() and not high.any()
    # beta = 0: strictly below Q(q1) = 1 is nothing; strictly above Q(q3) = 19 is just 20
    high0, _ = scores.iqr_select(x, 0.05, 0.95, 0.0, upper=True)
    assert high0.nonzero()[:, 1].tolist() == [2]


def test_quantile_above_torch_quantile_limit():
    n = (1 << 24) + 10  # torch.quantile refuses more than 2^24 entries
    # j -> 7919 j mod n permutes 0..n-1 (7919 is prime and does not divide n) in a scrambled
    # order (a sorted row is topk's slow case). X_(r) = r - 1, so Q(q) = q*n - 1.
    x = (torch.arange(n) * 7919 % n).double().unsqueeze(0)
    got = scores.quantiles(x, (0.05, 0.95))[0].tolist()
    assert got == pytest.approx([0.05 * n - 1, 0.95 * n - 1], abs=1e-6)


def test_beta_schedule_by_hand():
    t_total = 1000  # left half anneals 20 -> 5, right half 5 -> 30 (Fig. 5 defaults)
    expected = {0: 20.0, 250: 12.5, 500: 5.0, 750: 17.5, 1000: 30.0}
    for t, beta in expected.items():
        assert scores.beta_schedule(20.0, 5.0, 30.0, t, t_total) == pytest.approx(beta)


def test_move_count_schedule_and_ratio():
    # n = 4000, eta_max = 1%: 0 at t=0, 20 at T/4, 40 at T/2, 20 at 3T/4, 0 at T
    got = [scores.move_count(4000, 0.01, 0.0, t, 1000, 1.0) for t in (0, 250, 500, 750, 1000)]
    assert got == [0, 20, 40, 20, 0]
    assert scores.update_ratio(3000, 50, 2000, True) == pytest.approx(2000 / 60)
    assert scores.update_ratio(3000, 50, 2000, False) == 1.0


def test_harmony_gate_by_hand():
    g = torch.tensor([100.0, 1.0, 2.0, -1.0, 0.0, 3.0])
    gbar = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.0, 0.0])
    gate = scores.harmony_gate(g, gbar, alpha=20.0)
    # alpha|gbar| = 2: (2-100)/2 < 0 -> 0; (2-1)/2 = 0.5; (2-2)/2 = 0; (2-1)/2 = 0.5; gbar=0 -> 0
    assert gate.tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5, 0.0, 0.0])
    harmony = scores.harmony_score(scores.agreement(g, gbar), gate)
    # agreement 10 (gated to 0: the paper's "100 against 0.1"), 0.1*0.5, 0.2*0, -0.1 kept, 0, 0
    assert harmony.tolist() == pytest.approx([0.0, 0.05, 0.0, -0.1, 0.0, 0.0])
    assert torch.isfinite(gate).all()


def test_harmony_gate_one_dominant_task_of_fifty():
    # The paper's example with real task gradients: one task at 100, 49 tasks at 0.1.
    # gbar = (100 + 4.9) / 50 = 2.098, alpha|gbar| = 41.96
    g = torch.tensor([[100.0]] + [[0.1]] * 49, dtype=torch.float64)
    gate = scores.harmony_gate(g, g.mean(0), alpha=20.0)
    assert gate[0].item() == 0.0  # (41.96 - 100) / 41.96 < 0
    assert gate[1].item() == pytest.approx((41.96 - 0.1) / 41.96)


def test_fisher_and_minmax_by_hand():
    g = torch.tensor([[2.0, -4.0, 1.0, 6.0]])
    m = torch.tensor([[1.0, 0.5, 1.0, 0.0]])
    f = scores.fisher(g, torch.tensor([2.0]), m)  # ((g/2)*m)^2 = [1, 1, 0.25, 0]
    assert f.tolist() == [[1.0, 1.0, 0.25, 0.0]]
    assert scores.minmax(f).tolist() == [[1.0, 1.0, 0.25, 0.0]]
    assert scores.minmax(torch.full((1, 3), 7.0)).tolist() == [[0.0, 0.0, 0.0]]
    select = torch.tensor([[False, True, True, False]])
    assert scores.minmax_at(f, select).tolist() == [1.0, 0.25]  # only the selected entries
    assert scores.minmax_at(torch.full((1, 3), 7.0), select[:, :3]).tolist() == [0.0, 0.0]


def test_topk_select_respects_eligibility_and_row_counts():
    s = torch.tensor([[5.0, 1.0, 4.0, 3.0], [1.0, 2.0, 3.0, 4.0]])
    eligible = torch.tensor([[False, True, True, True], [True, False, False, False]])
    got = scores.topk_select(s, torch.tensor([2, 3]), largest=True, eligible=eligible)
    # row 0: best two of {1, 4, 3} -> entries 2, 3; row 1: only one eligible entry
    assert got.tolist() == [[False, False, True, True], [True, False, False, False]]
    assert not scores.topk_select(s, 0, largest=False).any()


def test_task_chunks_cover_rows():
    assert list(scores.task_chunks(5, 10, budget=25)) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert list(scores.task_chunks(2, 100, budget=10)) == [slice(0, 1), slice(1, 2)]
