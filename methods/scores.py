"""Scoring math shared by the HarmoDT and SoCo-DT mask strategies (docs/design.md).

Every function works on a batch of tasks: rows of a (B, n) tensor are tasks, columns are the flat
maskable entries, and results stay on the input's device. Hyperparameters arrive as arguments
from the method configs; the only constants here are those of the formulas themselves (the ½ and
2π of cosine annealing, the 0/1 of masks).

References: SoCo-DT, arXiv 2511.13133 (AAAI 2026), §4 Eqs. 5-19; HarmoDT, arXiv 2405.18080,
code https://github.com/charleshsc/HarmoDT @1c4244f (`fl_utils.py`, `main.py`).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

__all__ = [
    "agreement", "beta_schedule", "cosine_anneal", "fisher", "harmony_gate", "harmony_score",
    "iqr_select", "minmax", "minmax_at", "move_count", "pool_quantiles", "quantiles",
    "task_chunks", "topk_select", "update_ratio",
]

CHUNK_ELEMENTS = 1 << 24  # tasks are scored in chunks of at most this many (task, entry) pairs
PAPER_MASKABLE = 4_718_592  # paper model's maskable weights: 6 × (256·768 + 256² + 2·256·1024)


def cosine_anneal(high: float, low: float, t: float, total: float) -> float:
    """SoCo-DT Eq. 15: ``low + ½(high − low)(1 + cos(2πt/T))``: high at t=0 and T, low at T/2."""
    return low + 0.5 * (high - low) * (1.0 + math.cos(2.0 * math.pi * t / total))


def beta_schedule(left_max: float, minimum: float, right_max: float, t: float,
                  total: float) -> float:
    """SoCo-DT Eq. 16: β_t = g(β_left_max, β_min) for t ≤ T/2, else g(β_right_max, β_min)."""
    return cosine_anneal(left_max if t <= total / 2 else right_max, minimum, t, total)


def move_count(n: int, eta_max: float, eta_min: float, t: float, total: float,
               update_ratio: float) -> int:
    """HarmoDT's k_t = η_max + ½(η_min − η_max)(1 + cos(2πt/T)) entries, η as fractions of n.

    ``update_ratio`` multiplies the count so that a run with fewer updates moves as many entries
    in total as the paper's run. Rounded to nearest (the released code truncates with int()).
    """
    return round(n * update_ratio * cosine_anneal(eta_min, eta_max, t, total))


def update_ratio(total_steps: int, interval: int, reference_updates: int, enabled: bool) -> float:
    """Paper mask updates per update of ours, reference_updates / (T // interval); 1 if disabled.

    With it, a run with fewer updates than the paper's moves as large a share of the masks in
    total (HarmoDT: Σ k_t ≈ 99,000 of 4.7M entries per task over 2000 updates, about 2.1%).
    """
    ours = max(1, total_steps // max(1, interval))
    return reference_updates / ours if enabled else 1.0


def task_chunks(num_tasks: int, n: int, budget: int | None = None) -> Iterator[slice]:
    """Slices of task rows holding at most ``budget`` (default CHUNK_ELEMENTS) (task, entry)
    pairs, at least one row each: bounds the temporaries of an update at large N·n."""
    step = max(1, (budget or CHUNK_ELEMENTS) // max(1, n))
    for start in range(0, num_tasks, step):
        yield slice(start, min(start + step, num_tasks))


def agreement(grads: torch.Tensor, mean_grad: torch.Tensor) -> torch.Tensor:
    """(B, n) g_i ⊙ ḡ: positive where task i pulls the same way as the average."""
    return grads * mean_grad


def fisher(grads: torch.Tensor, losses: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """SoCo-DT Eq. 5: F_i = (∇log L_i ⊙ M_i)² = ((g_i / L_i) ⊙ M_i)², M_i the (soft) mask."""
    inv_loss = losses.clamp_min(torch.finfo(grads.dtype).tiny).reciprocal().unsqueeze(-1)
    return (grads * masks).mul_(inv_loss).square_()


def minmax(x: torch.Tensor) -> torch.Tensor:
    """SoCo-DT Eq. 6: per-row (x − min) / (max − min); a constant row maps to 0."""
    lo = x.amin(dim=-1, keepdim=True)
    span = x.amax(dim=-1, keepdim=True) - lo
    return torch.where(span > 0, (x - lo) / span, torch.zeros_like(x))


def minmax_at(x: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Eq. 6 evaluated only at the (B, n) boolean ``select`` (row-major order, as x[select]):
    the soft values of a conflict set without normalising every entry."""
    lo = x.amin(dim=-1)
    span = x.amax(dim=-1) - lo
    rows, cols = select.nonzero(as_tuple=True)
    span_r = span[rows]
    scaled = (x[rows, cols] - lo[rows]) / span_r.where(span_r > 0, torch.ones_like(span_r))
    return scaled.where(span_r > 0, torch.zeros_like(scaled))


def harmony_gate(grads: torch.Tensor, mean_grad: torch.Tensor, alpha: float) -> torch.Tensor:
    """SoCo-DT Eq. 9: H_i = ReLU((α|ḡ| − |g_i|) / (α|ḡ|)) = ReLU(1 − |g_i| / (α|ḡ|)); where
    ḡ = 0 the gate is 0.

    Our guard: at ḡ = 0 the ratio is undefined, and no magnitude of g_i is within a tolerance of
    α·0, so the gate closes. (Eq. 10 never uses it there anyway: g_i ⊙ ḡ = 0 is not > 0.)
    """
    tol = alpha * mean_grad.abs()
    open_ = tol > 0
    inv_tol = tol.reciprocal().where(open_, torch.zeros_like(tol))
    return grads.abs().mul_(inv_tol).neg_().add_(1).clamp_min_(0).mul_(open_)


def harmony_score(agree: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """SoCo-DT Eq. 10: (g_i ⊙ ḡ)·H_i where g_i ⊙ ḡ > 0, else g_i ⊙ ḡ."""
    return torch.where(agree > 0, agree * gate, agree)


def _order_stats(x: torch.Tensor, ranks: Sequence[int]) -> torch.Tensor:
    """(B, len(ranks)) X_(r) per row for 1-based ranks r, via two partial sorts (topk).

    torch.quantile refuses rows above 2^24 entries; a full sort took ~3× as long here as the two
    5%-tail topk calls the default q1/q3 need, and kthvalue is pathological on presorted rows
    (over 90 s on a sorted 2^24-entry row on this machine, against ~1 s for topk).
    """
    n = x.shape[-1]
    low = [r for r in ranks if 2 * r <= n]
    high = [r for r in ranks if 2 * r > n]
    found: dict[int, torch.Tensor] = {}
    if low:  # the k smallest in any order, then the few ranks wanted from among them
        k = max(low)
        part = x.topk(k, dim=-1, largest=False, sorted=False).values
        top = part.topk(k - min(low) + 1, dim=-1).values  # top[..., j] = X_(k - j)
        found.update({r: top[..., k - r] for r in low})
    if high:  # likewise from the largest
        k, first = n - min(high) + 1, min(high)
        part = x.topk(k, dim=-1, largest=True, sorted=False).values
        bottom = part.topk(max(high) - first + 1, dim=-1, largest=False).values
        found.update({r: bottom[..., r - first] for r in high})  # bottom[..., j] = X_(first + j)
    return torch.stack([found[r] for r in ranks], dim=-1)


def quantiles(x: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """SoCo-DT Eq. 11 per row: k = q·n; X_(k) if k is an integer, else
    (1 − γ)X_(⌊k⌋) + γX_(⌈k⌉) with γ = k − ⌊k⌋ (1-based order statistics, clamped to [1, n]).

    This is Hyndman-Fan type 4, numpy's ``method="interpolated_inverted_cdf"``.
    Returns (B, len(qs)).
    """
    n = x.shape[-1]
    ks = [q * n for q in qs]
    los = [min(max(math.floor(k), 1), n) for k in ks]
    his = [min(max(math.ceil(k), 1), n) for k in ks]
    stats = _order_stats(x, sorted(set(los + his)))
    index = {r: i for i, r in enumerate(sorted(set(los + his)))}
    cols = []
    for k, lo, hi in zip(ks, los, his):
        frac = k - math.floor(k) if lo != hi else 0.0
        cols.append((1.0 - frac) * stats[..., index[lo]] + frac * stats[..., index[hi]])
    return torch.stack(cols, dim=-1)


def pool_quantiles(x: torch.Tensor, pool: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """`quantiles` of each row's entries inside the (B, n) boolean ``pool`` only (n_b of them):
    the same type-4 rule with n_b in place of n; NaN for a row whose pool is empty."""
    count = pool.sum(dim=-1)  # (B,)
    n_b = count.clamp_min(1).to(torch.float64)
    cols = []
    for q in qs:
        k = q * n_b
        lo = k.floor().clamp(1, None).minimum(n_b).long()
        hi = k.ceil().clamp(1, None).minimum(n_b).long()
        frac = torch.where(lo != hi, k - k.floor(), torch.zeros_like(k))
        low_side = q <= 0.5  # ranks from the nearer end: a partial sort of that tail suffices
        filled = x.masked_fill(~pool, torch.inf if low_side else -torch.inf)
        if low_side:  # ranks r -> column r - 1 of the ascending tail
            depth = int(hi.max())
            tail = filled.topk(depth, dim=-1, largest=False, sorted=True).values
            at_lo, at_hi = tail.gather(-1, (lo - 1)[:, None]), tail.gather(-1, (hi - 1)[:, None])
        else:  # ranks r -> column n_b - r of the descending tail
            depth = int((count - lo + 1).clamp_min(1).max())
            tail = filled.topk(depth, dim=-1, largest=True, sorted=True).values
            top = count.clamp_min(1)
            at_lo = tail.gather(-1, (top - lo)[:, None])
            at_hi = tail.gather(-1, (top - hi)[:, None])
        value = (1 - frac[:, None].to(x)) * at_lo[:, :1] + frac[:, None].to(x) * at_hi[:, :1]
        cols.append(value[:, 0].where(count > 0, torch.full_like(value[:, 0], torch.nan)))
    return torch.stack(cols, dim=-1)


def iqr_select(x: torch.Tensor, q1: float, q3: float, beta: float, upper: bool,
               pool: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SoCo-DT Eqs. 12-14 per row, IQR = Q(q3) − Q(q1):
    lower tail ``x < Q(q1) − β·IQR`` (conflict set), upper tail ``x > Q(q3) + β·IQR`` (recover set).

    ``pool`` (B, n) boolean: quantiles over, and selection from, those entries only (a reading
    in which each set has its own candidates); None: every entry, as the paper writes it.
    Returns the (B, n) boolean selection and the (B,) thresholds.
    """
    q = quantiles(x, (q1, q3)) if pool is None else pool_quantiles(x, pool, (q1, q3))
    iqr = q[..., 1] - q[..., 0]
    if upper:
        thr = q[..., 1] + beta * iqr
        chosen = x > thr.unsqueeze(-1)
    else:
        thr = q[..., 0] - beta * iqr
        chosen = x < thr.unsqueeze(-1)
    return (chosen if pool is None else chosen & pool), thr


def topk_select(scores: torch.Tensor, k: int | torch.Tensor, largest: bool,
                eligible: torch.Tensor | None = None) -> torch.Tensor:
    """(B, n) boolean: per row the k highest (``largest``) or lowest scores among ``eligible``.

    ``k`` is an int or a (B,) tensor of per-row counts; a row gets fewer when it has fewer
    eligible entries. Ties are broken by torch.topk's order.
    """
    if eligible is not None:
        scores = scores.masked_fill(~eligible, -torch.inf if largest else torch.inf)
    n = scores.shape[-1]
    k_row = torch.as_tensor(k, device=scores.device).expand(scores.shape[:-1]).clamp_max(n)
    k_max = int(k_row.max()) if k_row.numel() else 0
    out = torch.zeros_like(scores, dtype=torch.bool)
    if k_max == 0:
        return out
    idx = scores.topk(k_max, dim=-1, largest=largest).indices
    keep = torch.arange(k_max, device=scores.device) < k_row.unsqueeze(-1)
    if eligible is not None:
        keep &= eligible.gather(-1, idx)
    return out.scatter_(-1, idx, keep)
