"""The one shared training loop: every method, every device.

Each step samples `batch_per_task` windows from every task, runs all tasks in one forward pass
(task i with its effective weights theta * forward_mask_i when the method has masks), and applies
theta <- theta - lr * AdamW(mean_i g_i * S_i) (SoCo-DT Eq. 7). The per-task gradients g_i are the
gradients of the stacked (N, out, in) effective-weight leaves, so they come from the same backward
pass; every `mask_interval` steps the method's strategy updates its masks from them.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mtrl_bench.config import RunConfig, TrainConfig, config_diff
from mtrl_bench.data import OfflineData
from mtrl_bench.masking import MaskLayout, MaskStrategy, UpdateContext, mask_diagnostics
from mtrl_bench.model import PromptDT, per_task_loss
from mtrl_bench.plugins import registry
from mtrl_bench.runs import RunDir, write_json


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the run is marked failed and its last checkpoint kept."""


class ConfigMismatch(ValueError):
    """A checkpoint was made with a different config than the one asked to resume it."""


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
    """bf16 autocast only where it pays: on GPUs with bf16, and CPUs with bf16 instructions.

    On this project's AVX2-only CPU bf16 autocast made a training step ~5x slower (BENCHMARKS.md).
    """
    if name not in ("auto", "bf16", "none"):
        raise ValueError(f"train.amp must be auto, bf16 or none, got {name!r}")
    if name == "none":
        return None
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if _cpu_has_bf16() else None


LR_SCHEDULES = ("constant", "cosine")


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


@dataclass
class Components:
    """Everything the loop mutates; checkpointed together."""

    model: PromptDT
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    strategy: MaskStrategy | None
    layout: MaskLayout
    rng: np.random.Generator  # segment sampler
    mask_rng: torch.Generator  # the strategy's own randomness


def build(cfg: RunConfig, data: OfflineData, device: torch.device) -> Components:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = PromptDT(cfg.model, state_dim=data.states[0].shape[-1],
                     act_dim=data.actions[0].shape[-1]).to(device)
    params = model.maskable_parameters()
    layout = MaskLayout(tuple(params), tuple(tuple(p.shape) for p in params.values()))
    mask_rng = torch.Generator().manual_seed(cfg.seed + 1)
    spec = registry().method(cfg.method).spec
    strategy = None
    if spec.strategy is not None:  # the "masks" capability
        strategy = spec.strategy(spec.config_cls(**cfg.method_config), layout, data.num_tasks,
                                 mask_rng)
        strategy.masks = strategy.masks.to(device)
    t = cfg.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(t))
    return Components(model, optimizer, scheduler, strategy, layout,
                      np.random.default_rng(cfg.seed), mask_rng)


def effective_weights(c: Components, requires_grad: bool) -> dict[str, torch.Tensor] | None:
    """(N, out, in) theta * forward_mask_i per maskable parameter, or None without masks."""
    if c.strategy is None:
        return None
    fwd = c.layout.views(c.strategy.forward_mask())
    out = {}
    for name, p in c.model.maskable_parameters().items():
        w = p.detach().unsqueeze(0) * fwd[name]
        out[name] = w.requires_grad_() if requires_grad else w
    return out


def train_step(c: Components, data: OfflineData, cfg: RunConfig, step: int,
               device: torch.device, amp: torch.dtype | None) -> dict:
    """One optimisation step on all tasks; returns the record to log."""
    model, t = c.model, cfg.train
    model.train()
    seg, prompt = (s.to(device) for s in data.sample(c.rng, t.batch_per_task))
    weights = effective_weights(c, requires_grad=True)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        pred = model(seg, prompt, weights)
    losses = per_task_loss(pred, seg.actions, seg.mask)  # (N,)
    loss = losses.mean()
    if not torch.isfinite(loss):
        raise NonFiniteLoss(f"non-finite loss {loss.item()} at step {step + 1}")
    c.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if weights is not None:
        # leaf grads are dL/dW_i = g_i / N, so sum_i (g_i / N) * S_i = mean_i g_i * S_i (Eq. 7)
        scale = c.layout.views(c.strategy.grad_scale())
        for name, p in model.maskable_parameters().items():
            p.grad = (weights[name].grad * scale[name]).sum(0)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
    c.optimizer.step()
    c.scheduler.step()
    record = {"step": step + 1, "kind": "train", "loss": loss.item(),
              "task_loss": losses.tolist(), "grad_norm": grad_norm.item(),
              "lr": c.scheduler.get_last_lr()[0]}
    if weights is not None and (step + 1) % t.mask_interval == 0:
        n = data.num_tasks
        grads = c.layout.flatten({k: w.grad for k, w in weights.items()}).float() * n
        params = c.layout.flatten({k: p.detach() for k, p in
                                   model.maskable_parameters().items()}, batch_dims=0)
        ctx = UpdateContext(grads, losses.detach().float(), params, step, t.steps,
                            t.mask_interval, c.mask_rng)
        diag = c.strategy.update(ctx)
        record["mask"] = {**diag, **mask_diagnostics(c.strategy.masks, grads)}
    return record


def _state(c: Components, step: int, cfg: RunConfig) -> dict:
    return {
        "step": step, "config": cfg.to_dict(), "model": c.model.state_dict(),
        "optimizer": c.optimizer.state_dict(), "scheduler": c.scheduler.state_dict(),
        "strategy": c.strategy.state_dict() if c.strategy else None,
        "rng": c.rng.bit_generator.state, "mask_rng": c.mask_rng.get_state(),
        "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore(c: Components, state: dict) -> int:
    c.model.load_state_dict(state["model"])
    c.optimizer.load_state_dict(state["optimizer"])
    c.scheduler.load_state_dict(state["scheduler"])
    if c.strategy is not None:
        c.strategy.load_state_dict(state["strategy"])
    c.rng.bit_generator.state = state["rng"]
    c.mask_rng.set_state(state["mask_rng"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"]


def evaluate_and_log(c: Components, data: OfflineData, cfg: RunConfig, run: RunDir, step: int,
                     device: torch.device, amp: torch.dtype | None, progress: bool) -> dict:
    from mtrl_bench.evaluation import evaluate  # downstream of training; imported when used
    from mtrl_bench_envs.suites import get_suite

    eval_cfg = cfg.eval
    if step < cfg.train.steps and eval_cfg.curve_episodes_per_task:
        eval_cfg = dataclasses.replace(eval_cfg, episodes_per_task=eval_cfg.curve_episodes_per_task)
    result = evaluate(c.model, data, get_suite(cfg.suite), eval_cfg,
                      weights=effective_weights(c, False), device=device, amp_dtype=amp,
                      progress=progress)
    run.log({"step": step, "kind": "eval", "success": result["success"],
             "return": result["return"], "episodes_per_task": eval_cfg.episodes_per_task,
             "task_success": [result["tasks"][t]["success"] for t in data.tasks]})
    return result


def train(cfg: RunConfig, run: RunDir, datasets: Sequence, *, resume: bool = False,
          progress: bool = True, stop_after: int | None = None) -> dict | None:
    """Train (or resume) one run to completion and evaluate it; returns the final evaluation.

    stop_after: leave the loop after that many steps, as an interruption would (for tests).
    """
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.train.amp, device)
    torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
    data = OfflineData(datasets, cfg.data, cfg.model)
    c = build(cfg, data, device)
    start = 0
    state = run.load_checkpoint() if resume else None
    if state is not None:
        diff = config_diff(state["config"], cfg.to_dict())
        if diff:
            raise ConfigMismatch(f"checkpoint in {run.path} was made with a different config: "
                                 + "; ".join(diff))
        start = restore(c, state)
        run.truncate_metrics(start)
    elif not resume or not run.config_path.exists():
        run.create(cfg, registry().distributions(), str(device))
    run.set_status("running", step=start)

    t0 = time.time()
    bar = tqdm(range(start, cfg.train.steps), desc=f"train {cfg.method}", disable=not progress,
               initial=start, total=cfg.train.steps, dynamic_ncols=True)
    for step in bar:
        try:
            record = train_step(c, data, cfg, step, device, amp)
        except NonFiniteLoss as exc:
            run.set_status("failed", step=step + 1, error=str(exc))
            raise
        if (step + 1) % cfg.train.log_interval == 0 or "mask" in record:
            run.log(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        done = step + 1 == cfg.train.steps
        if cfg.train.eval_interval and (step + 1) % cfg.train.eval_interval == 0 and not done:
            evaluate_and_log(c, data, cfg, run, step + 1, device, amp, progress)
        if (step + 1) % cfg.train.checkpoint_interval == 0 or done:  # after logging: resumable
            run.save_checkpoint(_state(c, step + 1, cfg))
        if stop_after is not None and step + 1 - start >= stop_after and not done:
            run.set_status("interrupted", step=step + 1)
            return None
    bar.close()
    train_seconds = time.time() - t0
    result = evaluate_and_log(c, data, cfg, run, cfg.train.steps, device, amp, progress)
    result["train_seconds"] = train_seconds
    write_json(run.eval_path, result)
    run.mark_complete()
    return result

