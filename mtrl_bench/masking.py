"""The MaskStrategy interface, the flat per-task mask layout, ERK initialisation and diagnostics.

A strategy owns, for N tasks, a mask M of shape (N, n) over the n maskable entries (the weight
matrices of the transformer blocks, flattened in a fixed order). The trainer reads two views:
the forward mask 1[M = 1] (task i runs with theta * that) and the gradient scale S (task i's
gradient g_i w.r.t. its effective weights enters the update as g_i * S_i). Strategies see only flat
tensors, so their math never depends on the model's structure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        """Change `self.masks` in place; return method-specific diagnostics (scalars)."""
        return {}

    def state_dict(self) -> dict:
        return {"masks": self.masks.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.masks.copy_(state["masks"])


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


def erk_initialised(strategy_cls: type) -> object:
    """A MethodSpec strategy factory: `strategy_cls(config, masks)` starting from random ERK masks
    at `config.sparsity` (HarmoDT's initialisation, shared by SoCo-DT)."""
    def factory(config, layout: MaskLayout, num_tasks: int, generator: torch.Generator):
        return strategy_cls(config, random_erk_masks(layout, num_tasks, config.sparsity, generator))
    return factory


def mask_diagnostics(masks: torch.Tensor, grads: torch.Tensor, top_fraction: float = 0.3
                     ) -> dict[str, list[float] | list[list[float]]]:
    """Per-task quantities logged for every masked method (paper Fig. 2 and DESIGN §4)."""
    hard = masks == 1
    fisher = grads.float().square()
    k = max(1, int(top_fraction * fisher.shape[1]))
    top = fisher.topk(k, dim=1).indices
    top_masked = (~hard.gather(1, top)).float().mean(1)
    unit = torch.nn.functional.normalize(grads.float(), dim=1)
    return {
        "density": hard.float().mean(1).tolist(),
        "mean_mask": masks.float().mean(1).tolist(),
        "soft_fraction": ((masks > 0) & (masks < 1)).float().mean(1).tolist(),
        "top_fisher_masked": top_masked.tolist(),
        "grad_cosine": (unit @ unit.T).tolist(),
    }
