"""HarmoDT: per-task hard binary masks updated by gradient agreement (variants -R, -M, -F).

Hu et al., "HarmoDT: Harmony Multi-Task Decision Transformer for Offline Reinforcement Learning",
ICML 2024, https://arxiv.org/abs/2405.18080; code https://github.com/charleshsc/HarmoDT @1c4244f
(`main.py` L221-248, `prompt_dt/fl_utils.py` L8-52). Our reading: docs/design.md, "HarmoDT".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mtrl_bench.masking import MaskStrategy, UpdateContext, erk_initialised
from mtrl_bench.plugins import MethodSpec, hookimpl
from mtrl_bench_methods import scores

CITATION = ("Hu et al., HarmoDT, ICML 2024, arXiv 2405.18080; "
            "code github.com/charleshsc/HarmoDT @1c4244f")


@dataclass(frozen=True)
class HarmoDTConfig:
    """HarmoDT-F hyperparameters (defaults: the released code's `main.py` arguments)."""

    sparsity: float = 0.2  # --sparsity 0.2, random ERK init (main.py L176-185)
    gamma: float = 10.0  # --gamma 10: weight of the agreement term in the prune score
    importance: str = "fisher"  # --select fisher (-F: I = g²) | "magnitude" (-M: I = |θ|)
    eta_max: float = 100 / scores.PAPER_MASKABLE  # --eta_max 100 entries/update, as a fraction of n
    eta_min: float = 0.0  # --eta_min 0
    reference_updates: int = 2000  # paper run: 1e6 iterations / --mask_interval 500
    match_total_movement: bool = True  # scale η by reference_updates / our updates (T // interval)
    released_code_bugs: bool = False  # reproduce the release: g_0 aliased to ḡ, masked grads

    def __post_init__(self) -> None:
        if self.importance not in ("fisher", "magnitude"):
            raise ValueError(f"importance must be 'fisher' or 'magnitude', not {self.importance!r}")
        if not 0 <= self.sparsity < 1 or self.eta_max < 0 or self.eta_min < 0:
            raise ValueError("need 0 <= sparsity < 1 and eta_max, eta_min >= 0")


@dataclass(frozen=True)
class HarmoDTMConfig(HarmoDTConfig):
    importance: str = "magnitude"  # HarmoDT-M: --select magnitude


@dataclass(frozen=True)
class HarmoDTRConfig(HarmoDTConfig):
    """HarmoDT-R. Neither paper defines it and the release has no branch for it; our reading is
    the closest faithful one: per-task random ERK masks at sparsity 0.2 that are never updated."""

    eta_max: float = 0.0  # HarmoDT-R, our reading: random ERK masks that never move


class HarmoDTStrategy(MaskStrategy):
    """Per task i, with k_t from `scores.move_count` (0 → η_max at T/2 → 0, t = ctx.step, the
    released code's 0-based iteration):

    - recover the k_t inactive entries with the largest agreement g_i ⊙ ḡ;
    - prune the k_t active entries with the smallest γ·(g_i ⊙ ḡ) + I_i, I_i = g_i² (-F) or |θ| (-M).

    Both sets come from the old mask, so density is constant (a task with fewer than k_t active or
    inactive entries moves that many instead). Scores use the unmasked effective-weight gradients
    (docs/design.md, "HarmoDT"). With ``released_code_bugs`` the gradients are masked first
    (every inactive entry then ties at agreement 0) and task 0 is scored with g_0 := ḡ, as in
    the release.
    """

    def __init__(self, config: HarmoDTConfig, masks: torch.Tensor) -> None:
        super().__init__(masks)
        self.config = config

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        cfg = self.config
        n = self.masks.shape[1]
        ratio = scores.update_ratio(ctx.total_steps, ctx.interval, cfg.reference_updates,
                                    cfg.match_total_movement)
        k = scores.move_count(n, cfg.eta_max, cfg.eta_min, ctx.step, ctx.total_steps, ratio)
        if k == 0:
            return {"k_t": 0.0, "recovered": 0.0, "pruned": 0.0}
        masks = self.masks  # on the gradients' device: the trainer places them
        grads = ctx.grads * masks if cfg.released_code_bugs else ctx.grads
        mean_grad = grads.mean(dim=0)
        active = masks == 1
        n_active = active.sum(1)
        moves = torch.minimum(n_active, n - n_active).clamp_max(k)
        for rows in scores.task_chunks(*masks.shape):
            g = grads[rows]
            if cfg.released_code_bugs and rows.start == 0:
                g = torch.cat([mean_grad.unsqueeze(0), g[1:]])
            agree = scores.agreement(g, mean_grad)
            imp = g.square() if cfg.importance == "fisher" else ctx.params.abs().expand_as(g)
            prune_score = torch.add(imp, agree, alpha=cfg.gamma)
            recover = scores.topk_select(agree, moves[rows], True, ~active[rows])
            prune = scores.topk_select(prune_score, moves[rows], False, active[rows])
            masks[rows].masked_fill_(recover, 1).masked_fill_(prune, 0)  # a view: in place
        moved = float(moves.sum())
        mean_moved = moved / masks.shape[0]
        return {"k_t": float(k), "recovered": mean_moved, "pruned": mean_moved}


@hookimpl
def mtrl_bench_methods() -> list[MethodSpec]:
    def spec(name: str, cls: type, what: str) -> MethodSpec:
        return MethodSpec(name, cls, erk_initialised(HarmoDTStrategy), what, CITATION,
                          diagnostics={"k_t": "k_t (entries moved per update)",
                                       "recovered": "entries recovered per task",
                                       "pruned": "entries pruned per task"})

    return [
        spec("harmodt-f", HarmoDTConfig, "HarmoDT-F: hard masks moved by agreement, Fisher prune"),
        spec("harmodt-m", HarmoDTMConfig, "HarmoDT-M: hard masks moved by agreement, |θ| prune"),
        spec("harmodt-r", HarmoDTRConfig,
             "HarmoDT-R (our reading): fixed random ERK masks at sparsity 0.2, never updated"),
    ]
