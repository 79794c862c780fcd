"""The MaskStrategy interface, the flat per-task mask layout, ERK initialisation and diagnostics.

A strategy owns, for N tasks, a mask M of shape (N, n) over the n maskable entries (the weight
matrices of the transformer blocks, flattened in a fixed order). The trainer reads two views:
the forward mask 1[M = 1] (task i runs with theta * that) and the gradient scale S (task i's
gradient g_i w.r.t. its effective weights enters the update as g_i * S_i). Strategies see only flat
tensors, so their math never depends on the model's structure.

The contract, for a plugin author (`mtrl_bench.testing.check_method` checks it):

- a strategy factory takes a `StrategyContext` and returns a `MaskStrategy` whose ``masks`` is a
  float tensor of shape (num_tasks, layout.numel) with values in [0, 1]; the trainer moves it to
  the training device (strategies never move masks) and checks it after construction, restore and
  every update, naming the method when it is wrong;
- ``update(ctx)`` edits ``masks`` in place from ``ctx`` (all on the masks' device, with the
  strategy's own generator) and returns diagnostics: a float (all tasks) or a list of num_tasks
  floats (one per task) per key. They are logged under "strategy", apart from the trainer's own
  mask diagnostics ("mask"), and plotted with the labels of `MethodSpec.diagnostics`;
- state beyond ``masks`` (a running statistic, a counter) goes into ``state_dict()`` and back in
  ``load_state_dict()``: the checkpoint holds exactly that, so a resumed run equals an
  uninterrupted one only if it is complete.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class MaskLayout:
    """Names and shapes of the maskable parameters, in flattening order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a (N, n) tensor into per-parameter (N, *shape) views (no copies)."""
        parts = flat.split(self.sizes, dim=-1)
        return {k: p.view(*flat.shape[:-1], *s) for k, p, s in zip(self.names, parts, self.shapes)}

    def flatten(self, tensors: dict[str, torch.Tensor], batch_dims: int = 1) -> torch.Tensor:
        """Concatenate per-parameter tensors (…, *shape) into one (…, n) tensor."""
        return torch.cat([tensors[k].flatten(start_dim=batch_dims) for k in self.names], dim=-1)


@dataclass
class UpdateContext:
    """Everything a periodic mask update may use; all from the current training step."""

    grads: torch.Tensor  # (N, n) g_i = dL_i / d(theta * forward_mask_i), unmasked, fp32
    losses: torch.Tensor  # (N,) L_i
    params: torch.Tensor  # (n,) current theta
    step: int  # 0-based index of the step just taken
    total_steps: int
    interval: int  # steps between updates
    generator: torch.Generator  # the strategy's own RNG (checkpointed by the trainer)


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy factory gets: ``MethodSpec.strategy(ctx) -> MaskStrategy``."""

    config: Any  # the method's config dataclass, resolved for this run
    layout: MaskLayout
    num_tasks: int
    generator: torch.Generator  # seeded per run; the strategy's randomness (checkpointed)
    device: torch.device  # where the trainer keeps the masks (it moves them there)


class MaskError(ValueError):
    """A strategy's masks have the wrong shape, dtype or values; names the method."""


def check_masks(strategy: MaskStrategy, num_tasks: int, numel: int, method: str,
                when: str) -> None:
    """Raise MaskError unless ``strategy.masks`` is a finite float (num_tasks, numel) tensor
    with values in [0, 1]."""
    masks = getattr(strategy, "masks", None)
    where = f"method '{method}': masks after {when}"
    if not isinstance(masks, torch.Tensor):
        raise MaskError(f"{where} are {type(masks).__name__}, expected a torch.Tensor")
    if tuple(masks.shape) != (num_tasks, numel):
        raise MaskError(f"{where} have shape {tuple(masks.shape)}, expected "
                        f"({num_tasks}, {numel}) (tasks x maskable entries)")
    if not masks.is_floating_point():
        raise MaskError(f"{where} have dtype {masks.dtype}, expected a float dtype")
    if not masks.numel():
        return
    lo, hi = (float(v) for v in torch.aminmax(masks))  # one pass; NaN propagates into both
    if math.isnan(lo) or math.isnan(hi) or math.isinf(lo) or math.isinf(hi):
        bad = int((~torch.isfinite(masks)).sum())
        raise MaskError(f"{where} hold {bad} non-finite values (NaN or inf)")
    if lo < 0 or hi > 1:
        raise MaskError(f"{where} range over [{lo:.3g}, {hi:.3g}], expected values in [0, 1]")


class MaskStrategy:
    """Base class: hard masks (M in {0,1}) that never change. Subclasses override `update`."""

    def __init__(self, masks: torch.Tensor) -> None:
        self.masks = masks  # (N, n) float in [0, 1]

    def forward_mask(self) -> torch.Tensor:
        """(N, n) 1[M = 1]: the entries task i's forward pass keeps."""
        return (self.masks == 1).to(self.masks.dtype)

    def grad_scale(self) -> torch.Tensor:
        """(N, n) S: per-entry scale of task i's gradient in the shared update."""
        return self.masks

    def update(self, ctx: UpdateContext) -> dict[str, float | list[float]]:
        """Change `self.masks` in place; return diagnostics: per key a float or a list of one
        float per task."""
        return {}

    def state_dict(self) -> dict:
        """Everything `update` depends on besides the context; subclasses with more state
        extend this dict (and `load_state_dict`)."""
        return {"masks": self.masks.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.masks = state["masks"].clone()


def erk_densities(layout: MaskLayout, density: float) -> list[float]:
    """Erdős–Rényi-Kernel per-layer densities with overall density `density`.

    Layer l's density is proportional to sum(shape_l) / prod(shape_l); layers that would exceed 1
    become dense and the rest are rescaled (RigL / HarmoDT's ERK_maskinit).
    """
    sizes = layout.sizes
    raw = [sum(s) / math.prod(s) for s in layout.shapes]
    dense: set[int] = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        free = sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
        eps = budget / free
        over = {i for i in range(len(sizes)) if i not in dense and eps * raw[i] > 1}
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense |= over


def random_erk_masks(layout: MaskLayout, num_tasks: int, sparsity: float,
                     generator: torch.Generator) -> torch.Tensor:
    """(N, n) independent random {0,1} masks per task, ERK-allocated, overall density 1-sparsity."""
    dens = erk_densities(layout, 1.0 - sparsity)
    per_layer = [torch.full((num_tasks, n), d) for n, d in zip(layout.sizes, dens)]
    probs = torch.cat(per_layer, dim=1)
    return (torch.rand(probs.shape, generator=generator) < probs).float()


def erk_initialised(strategy_cls: type) -> Callable[[StrategyContext], MaskStrategy]:
    """A MethodSpec strategy factory: `strategy_cls(config, masks)` starting from random ERK masks
    at `config.sparsity` (HarmoDT's initialisation; docs/design.md)."""
    def factory(ctx: StrategyContext) -> MaskStrategy:
        masks = random_erk_masks(ctx.layout, ctx.num_tasks, ctx.config.sparsity, ctx.generator)
        return strategy_cls(ctx.config, masks)
    return factory


def mask_diagnostics(masks: torch.Tensor, grads: torch.Tensor,
                     was_active: torch.Tensor | None = None, top_fraction: float = 0.3
                     ) -> dict[str, list[float]]:
    """Per-task quantities logged for every masked method (paper Fig. 2; docs/design.md).

    ``was_active``: the forward mask 1[M = 1] before the update; with it, how many entries the
    update switched off (``masked``) and on (``restored``), the method-independent measure of
    whether masks move (density alone hides a swap).
    The gradient cosine is each task's mean with the other tasks, not the N x N matrix: the matrix
    was three quarters of an MT30 run's log (2 MB of 2.6) and nothing read more than these means.
    """
    hard = masks == 1
    fisher = grads.float().square()
    k = max(1, int(top_fraction * fisher.shape[1]))
    top = fisher.topk(k, dim=1).indices
    top_masked = (~hard.gather(1, top)).float().mean(1)
    diagnostics = {
        "density": hard.float().mean(1).tolist(),
        "mean_mask": masks.float().mean(1).tolist(),
        "soft_fraction": ((masks > 0) & (masks < 1)).float().mean(1).tolist(),
        "top_fisher_masked": top_masked.tolist(),
    }
    if was_active is not None:
        diagnostics["masked"] = (was_active & ~hard).sum(1).double().tolist()
        diagnostics["restored"] = (~was_active & hard).sum(1).double().tolist()
    n = len(grads)
    if n > 1:  # one task has no other to agree with
        unit = torch.nn.functional.normalize(grads.float(), dim=1)
        cosine = unit @ unit.T
        diagnostics["grad_cosine"] = ((cosine.sum(1) - cosine.diagonal()) / (n - 1)).tolist()
    return diagnostics
