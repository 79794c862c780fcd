"""The one shared training step: every method, every device.

Each step samples `batch_per_task` windows from every task, runs all tasks in one forward pass
(task i with its effective weights theta * forward_mask_i when the method has masks), and applies
theta <- theta - lr * AdamW(mean_i g_i * S_i) (SoCo-DT Eq. 7). The per-task gradients g_i are the
gradients of the stacked (N, out, in) effective-weight leaves, so they come from the same backward
pass; every `mask_interval` steps the method's strategy updates its masks from them.

`Trainer` only trains: it builds the model, optimiser and strategy, takes steps and saves and
restores its state. Directories, logging, checkpoint files and evaluation belong to the run that
drives it (`mtrl_bench.api.Run`).
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mtrl_bench.config import CHOICES, RunConfig, TrainConfig
from mtrl_bench.data import OfflineData
from mtrl_bench.masking import (
    MaskLayout,
    MaskStrategy,
    StrategyContext,
    UpdateContext,
    check_masks,
    mask_diagnostics,
)
from mtrl_bench.model import PromptDT, Weights, per_task_loss
from mtrl_bench.plugins import MethodSpec, registry


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the run is marked failed and its last checkpoint kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch sees no CUDA device")
    return torch.device(name)


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an `Execution.amp` mode (checked there): "auto" is bf16 only where
    it pays, on GPUs with bf16 and CPUs with bf16 instructions (BENCHMARKS.md)."""
    if name == "none":
        return None
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if _cpu_has_bf16() else None


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed large blocks for reuse (process-wide; no effect on results).

    Every step allocates the same large tensors again (a masked step: N copies of the effective
    weights and their gradients). By default glibc serves blocks above a threshold with fresh
    mmap'd pages and unmaps them on free, so each step page-faults its working set back in; on a
    2-core CPU that made a masked step at N = 30 cost ~1.25-1.5x an unmasked one instead of
    ~1.05-1.2x (BENCHMARKS.md, "Trainer"). Returns whether it applied (False off glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameters
        mmap_ok = libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest: 32 MiB on 64-bit
        return bool(mmap_ok and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


LR_SCHEDULES = CHOICES["train.lr_schedule"]


def lr_factor(t: TrainConfig) -> Callable[[int], float]:
    """The learning-rate multiplier after `s` optimizer steps: linear warm-up, then the schedule."""
    if t.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                         f"got {t.lr_schedule!r}")
    warmup = max(t.warmup_steps, 1)

    def factor(s: int) -> float:
        if s + 1 < warmup:
            return (s + 1) / warmup
        if t.lr_schedule == "constant":
            return 1.0
        frac = min((s + 1 - warmup) / max(t.steps - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * frac))

    return factor


def sum_over_tasks(x: torch.Tensor) -> torch.Tensor:
    """x.sum(0) as a contiguous tensor, summed in x's own memory order: summing a (N, out, in)
    tensor stored transposed as if it were not is ~40x slower, and the result is the same."""
    if x.dim() == 3 and x.stride(-1) != 1 and x.stride(-2) == 1:
        return x.transpose(1, 2).sum(0).t().contiguous()
    return x.sum(0)


class Trainer:
    """The model, optimiser, schedule, mask strategy and random streams of one run.

    `step()` takes one optimisation step on all tasks and returns the record to log;
    `state_dict()`/`load_state_dict()` make an interrupted run resume bit-identically.
    """

    def __init__(self, cfg: RunConfig, data: OfflineData, device: torch.device,
                 amp: torch.dtype | None = None, spec: MethodSpec | None = None) -> None:
        """spec: the method's descriptor (default: the registered `cfg.method`)."""
        self.cfg, self.data, self.device, self.amp = cfg, data, device, amp
        self.step_count = 0
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        spec = spec or registry().method(cfg.method).spec
        self.model = PromptDT(cfg.model, state_dim=data.states[0].shape[-1],
                              act_dim=data.actions[0].shape[-1], conditioning=spec.conditioning,
                              num_tasks=data.num_tasks,
                              returns_to_go=spec.returns_to_go).to(device)
        # fixed for the run (a restore copies values into them): found once, not every step
        self.maskable = self.model.maskable_parameters()
        masked_ids = {id(p) for p in self.maskable.values()}
        self.shared = [p for p in self.model.parameters()
                       if p.requires_grad and id(p) not in masked_ids]
        self.layout = MaskLayout(tuple(self.maskable),
                                 tuple(tuple(p.shape) for p in self.maskable.values()))
        self.rng = np.random.default_rng(cfg.seed)  # segment sampler
        self.mask_rng = torch.Generator().manual_seed(cfg.seed + 1)  # the strategy's randomness
        self.strategy: MaskStrategy | None = None
        self._mask_views: tuple[dict, dict] | None = None  # see `mask_views`
        if spec.strategy is not None:  # the "masks" capability
            ctx = StrategyContext(spec.config_cls(**cfg.method_config), self.layout,
                                  data.num_tasks, self.mask_rng, device)
            self.strategy = spec.strategy(ctx)
            self._place_masks("construction")
        t = cfg.train
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr,
                                           weight_decay=t.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(t))

    def _place_masks(self, when: str) -> None:
        """The trainer owns where masks live: checked, then moved to the training device."""
        check_masks(self.strategy, self.data.num_tasks, self.layout.numel, self.cfg.method, when)
        self.strategy.masks = self.strategy.masks.to(self.device)
        self._mask_views = None

    def mask_views(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-parameter views of the strategy's forward mask and gradient scale. Masks change
        only in an update or a restore, so both are built once after each and reused by every
        step in between (rebuilding the (N, n) forward mask was a fifth of a masked step)."""
        if self._mask_views is None:
            self._mask_views = (self.layout.views(self.strategy.forward_mask()),
                                self.layout.views(self.strategy.grad_scale()))
        return self._mask_views

    def effective_weights(self, requires_grad: bool = False) -> Weights | None:
        """(N, out, in) theta * forward_mask_i per maskable parameter, or None without masks."""
        if self.strategy is None:
            return None
        fwd = self.mask_views()[0]
        out = {}
        for name, p in self.maskable.items():
            w = p.detach().unsqueeze(0) * fwd[name]
            out[name] = w.requires_grad_() if requires_grad else w
        return out

    def step(self) -> dict:
        """One optimisation step on all tasks; returns the record to log."""
        model, t, step = self.model, self.cfg.train, self.step_count
        model.train()
        seg, prompt = (s.to(self.device) for s in self.data.sample(self.rng, t.batch_per_task))
        weights = self.effective_weights(requires_grad=True)
        amp = self.amp
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            pred = model(seg, prompt, weights)
        losses = per_task_loss(pred, seg.actions, seg.mask)  # (N,)
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite loss {loss.item()} at step {step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        if weights is None:
            loss.backward()
            task_grads = None
        else:
            task_grads = self._masked_backward(loss, weights)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        record = {"step": step + 1, "kind": "train", "loss": loss.item(),
                  "task_loss": losses.tolist(), "grad_norm": grad_norm.item(),
                  "lr": self.scheduler.get_last_lr()[0]}
        if task_grads is not None and (step + 1) % t.mask_interval == 0:
            record.update(self._update_masks(task_grads, losses, step))
        self.step_count = step + 1  # complete only now: a failed update fails this step
        return record

    def _masked_backward(self, loss: torch.Tensor, weights: Weights) -> Weights:
        """The gradients of a masked step: the shared parameters get theirs as backward()
        would give them, each maskable one mean_i g_i * S_i (Eq. 7). Returns the (N, out, in)
        gradients w.r.t. the effective weights, g_i / N, for the mask update.

        autograd.grad rather than backward(): the gradient of a task-batched product comes back
        transposed in memory, and backward() would copy each one into its leaf's layout, the
        largest avoidable cost of a masked step (BENCHMARKS.md, "Trainer"). They are used as they
        come; the sums are bit for bit the same."""
        grads = torch.autograd.grad(loss, [*self.shared, *weights.values()], allow_unused=True)
        for p, g in zip(self.shared, grads, strict=False):
            if g is not None:  # as AccumulateGrad stores it: in the parameter's layout
                p.grad = g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)
        task_grads = dict(zip(weights, grads[len(self.shared):], strict=True))
        for name, p in self.maskable.items():
            # g_i / N times S_i, summed over tasks: mean_i g_i * S_i
            p.grad = sum_over_tasks(task_grads[name] * self.grad_scale_like(name, task_grads[name]))
        return task_grads

    def grad_scale_like(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        """The gradient scale of parameter `name`, laid out in memory as `grad` is (so the
        product streams through both alike); built once per mask update, as `mask_views`."""
        scale = self.mask_views()[1][name]
        if scale.stride() != grad.stride():
            scale = self.mask_views()[1][name] = torch.empty_like(grad).copy_(scale)
        return scale

    def _update_masks(self, task_grads: Weights, losses: torch.Tensor, step: int) -> dict:
        """The strategy's update from this step's per-task gradients; the diagnostics of the
        trainer ("mask") and of the method ("strategy") are kept apart, so neither overwrites
        the other's keys."""
        n, t = self.data.num_tasks, self.cfg.train
        grads = self.layout.flatten(task_grads).float() * n
        params = self.layout.flatten({k: p.detach() for k, p in self.maskable.items()},
                                     batch_dims=0)
        ctx = UpdateContext(grads, losses.detach().float(), params, step, t.steps,
                            t.mask_interval, self.mask_rng)
        was_active = self.strategy.masks == 1
        diag = self.strategy.update(ctx) or {}
        self._mask_views = None
        check_masks(self.strategy, n, self.layout.numel, self.cfg.method,
                    f"update at step {step + 1}")
        return {"mask": mask_diagnostics(self.strategy.masks, grads, was_active),
                "strategy": diag}

    def state_dict(self) -> dict:
        return {
            "step": self.step_count, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "strategy": self.strategy.state_dict() if self.strategy else None,
            "rng": self.rng.bit_generator.state, "mask_rng": self.mask_rng.get_state(),
            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def load_state_dict(self, state: dict) -> int:
        """Restore a `state_dict()`; returns the step it was taken at."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.strategy is not None:
            self.strategy.load_state_dict(state["strategy"])
            self._place_masks("restore")
        self.rng.bit_generator.state = state["rng"]
        self.mask_rng.set_state(state["mask_rng"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step_count = state["step"]
        return self.step_count
