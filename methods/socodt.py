"""SoCo-DT: importance-aware soft masks updated by TAMU (task-aware, adaptive sparsity).

"Soft Conflict-Resolution Decision Transformer for Offline Multi-Task Reinforcement Learning",
AAAI 2026, https://arxiv.org/abs/2511.13133, §4 (Eqs. 5-19, Algorithm 1).
Initialisation and mask scope follow HarmoDT (https://github.com/charleshsc/HarmoDT @1c4244f).
Our reading of every ambiguity: docs/design.md, "SoCo-DT" and "SoCo-DT's readings". Ablations
(paper Table 4) are the flags soft (S), adaptive (A) and magnitude (M); each ablation is a named
method. The readings of TAMU's fences are named methods or configurations of `socodt`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from mtrl_bench.masking import MaskStrategy, UpdateContext, erk_initialised
from mtrl_bench.plugins import MethodSpec, hookimpl
from mtrl_bench_methods import scores

CITATION = "SoCo-DT, AAAI 2026, arXiv 2511.13133"


@dataclass(frozen=True)
class SoCoDTConfig:
    """SoCo-DT hyperparameters; defaults from the paper's Fig. 5 unless marked otherwise."""

    sparsity: float = 0.2  # initial sparsity (Fig. 5), random ERK masks as in HarmoDT
    alpha: float = 20.0  # Eq. 9 tolerance α (Fig. 5)
    beta_left_max: float = 20.0  # Eq. 16 (Fig. 5)
    beta_min: float = 5.0  # Eq. 16 (Fig. 5)
    beta_right_max: float = 30.0  # Eq. 16 (Fig. 5)
    q1: float = 0.05  # Eq. 12 lower quantile (Fig. 5)
    q3: float = 0.95  # Eq. 12 upper quantile (Fig. 5)
    lam: float = 0.1  # Eq. 8 λ: not in the paper; ours (HarmoDT's γ = 10 the other way round)
    beta_scale: float = 1.0  # ours: 1.0 = β literal; 0.01 = β read as a percentage (docs/design.md)
    soft: bool = True  # S: conflicting entries get F̂ (off: 0)
    adaptive: bool = True  # A: IQR thresholds (off: HarmoDT-style k_t counts below)
    magnitude: bool = True  # M: recovery ranks by the gated harmony score (off: g_i ⊙ ḡ)
    eta_max: float = 100 / scores.PAPER_MASKABLE  # without A only: HarmoDT's --eta_max 100 of 4.7M
    eta_min: float = 0.0  # without A only: HarmoDT's --eta_min 0
    reference_updates: int = 2000  # without A only: HarmoDT's 1e6 iterations / 500
    match_total_movement: bool = True  # without A only: see HarmoDTConfig

    # The signed-pools reading (docs/design.md): conflicts only among active entries whose gradient
    # opposes the mean, recoveries only among masked entries that agree. A class constant, not a
    # field: it is fixed by the method's name, and the literal config's run identity is unchanged.
    signed_pools: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not (0 <= self.q1 < self.q3 <= 1 and self.alpha > 0 and 0 <= self.sparsity < 1):
            raise ValueError("need 0 <= q1 < q3 <= 1, alpha > 0 and 0 <= sparsity < 1")


@dataclass(frozen=True)
class SignedPoolsConfig(SoCoDTConfig):
    """The signed-pools reading of TAMU (docs/design.md, "SoCo-DT's readings"): β as a
    percentage; C_i drawn from the active entries with g_i ⊙ ḡ < 0 ("newly identified
    conflicting"), R_i from the masked entries with g_i ⊙ ḡ > 0 ("restore"), each with the
    quantiles and IQR of its own pool. λ = 0: with the paper's F = (g/L)² the λF term (λ = 0.1)
    dwarfs g_i ⊙ ḡ and starves the conflict side (measured, docs/design.md); importance enters
    through the soft values F̂ instead."""

    beta_scale: float = 0.01
    lam: float = 0.0
    signed_pools: ClassVar[bool] = True


@dataclass(frozen=True)
class NoSoftConfig(SoCoDTConfig):
    soft: bool = False  # Table 4 "A+M"


@dataclass(frozen=True)
class FixedSparsityConfig(SoCoDTConfig):
    adaptive: bool = False  # Table 4 "S+M"


@dataclass(frozen=True)
class NoMagnitudeConfig(SoCoDTConfig):
    magnitude: bool = False  # Table 4 "S+A"


class SoCoDTStrategy(MaskStrategy):
    """TAMU, per task i (docs/design.md, "SoCo-DT", steps 1-7; step 8 is the base class's views):

    F_i = ((g_i/L_i) ⊙ M_i)² (Eq. 5), F̂_i its min-max normalisation (Eq. 6); conflict score
    g_i ⊙ ḡ + λF_i (Eq. 8); harmony score gated by ReLU((α|ḡ| − |g_i|)/(α|ḡ|)) (Eqs. 9-10);
    C_i = scores below Q(q1) − β_t·IQR, R_i = harmony above Q_H(q3) + β_t·IQR_H, type-4 quantiles
    (Eqs. 11-14); M[C_i] ← F̂_i, then M[R_i] ← 1 (Eqs. 17-19). β_t is Eq. 16 times ``beta_scale``
    with t = ctx.step + 1 (Algorithm 1 counts steps from 1). Note: the paper's text says
    β_left_max > β_right_max, contradicting its own Fig. 5 defaults (20 < 30); we follow the
    formula and the defaults. Sets range over all entries, so C_i may re-soften a soft entry.
    Diagnostics: set sizes, thresholds and β_t. The share of a task's entries with M < 1 after
    the update (logged as ``conflict_ratio`` by runs before 2026-12-03) is 1 − the trainer's
    ``density``.
    """

    def __init__(self, config: SoCoDTConfig, masks: torch.Tensor) -> None:
        super().__init__(masks)
        self.config = config

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        cfg = self.config
        num_tasks, n = self.masks.shape
        t = ctx.step + 1
        beta = cfg.beta_scale * scores.beta_schedule(
            cfg.beta_left_max, cfg.beta_min, cfg.beta_right_max, t, ctx.total_steps)
        ratio = scores.update_ratio(ctx.total_steps, ctx.interval, cfg.reference_updates,
                                    cfg.match_total_movement)
        k = scores.move_count(n, cfg.eta_max, cfg.eta_min, t, ctx.total_steps, ratio)
        masks = self.masks  # on the gradients' device: the trainer places them
        mean_grad = ctx.grads.mean(dim=0)
        stats: list[torch.Tensor] = []
        for rows in scores.task_chunks(num_tasks, n):
            g, m = ctx.grads[rows], masks[rows]  # m is a view: edited in place below
            agree = scores.agreement(g, mean_grad)
            fish = scores.fisher(g, ctx.losses[rows].to(g), m)
            conflict_score = torch.add(agree, fish, alpha=cfg.lam)
            harmony = agree
            if cfg.magnitude:
                harmony = scores.harmony_score(agree, scores.harmony_gate(g, mean_grad, cfg.alpha))
            pool_c = pool_r = None
            if cfg.signed_pools:  # from the old mask, before this update edits it
                active = m == 1
                pool_c, pool_r = active & (agree < 0), ~active & (agree > 0)
            if cfg.adaptive:
                conflict, thr_c = scores.iqr_select(conflict_score, cfg.q1, cfg.q3, beta, False,
                                                    pool_c)
                recover, thr_r = scores.iqr_select(harmony, cfg.q1, cfg.q3, beta, True, pool_r)
            else:
                conflict = scores.topk_select(conflict_score, k, largest=False, eligible=pool_c)
                recover = scores.topk_select(harmony, k, largest=True, eligible=pool_r)
                thr_c = thr_r = torch.full((g.shape[0],), torch.nan, device=g.device)
            if cfg.soft:
                m[conflict] = scores.minmax_at(fish, conflict)
            else:
                m.masked_fill_(conflict, 0)
            m.masked_fill_(recover, 1)
            sizes = [conflict.sum(1), recover.sum(1), thr_c, thr_r]
            stats.append(torch.stack([x.double() for x in sizes], dim=1))
        c_size, r_size, thr_c, thr_r = torch.cat(stats).T.cpu()
        out: dict[str, float | list[float]] = {
            "conflict_size": c_size.tolist(), "recover_size": r_size.tolist()}
        if cfg.adaptive:
            out |= {"beta": beta, "conflict_threshold": thr_c.tolist(),
                    "recover_threshold": thr_r.tolist()}
        else:
            out["k_t"] = float(k)
        return out


# Plot labels of what `update` returns (a key without a label is plotted under its name).
DIAGNOSTICS = {
    "conflict_size": "conflict set size |C_i|",
    "recover_size": "recover set size |R_i|",
    "conflict_ratio": "conflict ratio (share with M < 1)",
    "beta": "β_t (Eq. 16 × beta_scale)",
    "conflict_threshold": "conflict threshold Q(q1) − β·IQR",
    "recover_threshold": "recover threshold Q_H(q3) + β·IQR_H",
    "k_t": "k_t (entries moved per update)",
}


@hookimpl
def mtrl_bench_methods() -> list[MethodSpec]:
    def spec(name: str, cls: type, what: str) -> MethodSpec:
        return MethodSpec(name, cls, erk_initialised(SoCoDTStrategy), what, CITATION,
                          diagnostics=DIAGNOSTICS)

    return [
        spec("socodt", SoCoDTConfig, "SoCo-DT: Fisher soft masks with TAMU (IQR) updates"),
        spec("socodt-signed", SignedPoolsConfig,
             "SoCo-DT, signed-pools reading: β as %, conflicts among opposing active entries, "
             "recoveries among agreeing masked ones"),
        spec("socodt-no-soft", NoSoftConfig, "SoCo-DT ablation A+M: conflicting entries get 0"),
        spec("socodt-fixed-sparsity", FixedSparsityConfig,
             "SoCo-DT ablation S+M: HarmoDT-style k_t counts instead of IQR thresholds"),
        spec("socodt-no-magnitude", NoMagnitudeConfig,
             "SoCo-DT ablation S+A: recovery ranks by plain g_i ⊙ ḡ"),
    ]
