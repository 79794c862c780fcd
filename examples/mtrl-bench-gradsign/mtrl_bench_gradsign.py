"""Gradient-sign masks: a complete third-party mtrl-bench method in one module.

Every update, task i drops (M = 0) the entries whose gradient sign disagrees with the mean
gradient's and brings back the rest, keeping at most `max_sparsity` of its entries off.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mtrl_bench import MaskStrategy, MethodSpec, StrategyContext, UpdateContext, hookimpl


@dataclass(frozen=True)
class GradSignConfig:
    max_sparsity: float = 0.2  # largest fraction of a task's entries masked at once


class GradSign(MaskStrategy):
    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(torch.ones(ctx.num_tasks, ctx.layout.numel))  # the trainer places it
        self.config = ctx.config

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        agreement = ctx.grads * ctx.grads.mean(0, keepdim=True)  # (N, n) g_i * g_bar
        k = int(self.config.max_sparsity * agreement.shape[1])
        worst = agreement.topk(k, dim=1, largest=False)
        drop = torch.zeros_like(agreement, dtype=torch.bool)
        drop.scatter_(1, worst.indices, worst.values < 0)  # only entries that truly disagree
        self.masks.copy_((~drop).float())
        return {"masked_fraction": drop.float().mean(1).tolist()}  # one value per task


@hookimpl
def mtrl_bench_methods() -> list[MethodSpec]:
    return [MethodSpec(
        name="gradsign",
        config_cls=GradSignConfig,
        strategy=GradSign,  # called with a StrategyContext
        description="example plugin: mask entries whose gradient sign opposes the mean",
        diagnostics={"masked_fraction": "share of entries masked (sign disagrees)"},
    )]
