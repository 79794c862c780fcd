"""What a profile's runs cost on a GPU, from what can be counted here: matmul FLOPs and tensor
operations per training step (unmasked and masked) and per evaluation action, per run, and the
GPU-hours they imply under stated assumptions.

Counted on the real model and trainer (random data shaped like Meta-World; the counts do not
depend on the values or the device): FLOPs by torch's FlopCounterMode (matmuls and attention),
operations by a dispatch-mode counter (each aten call is about one GPU kernel). No GPU is
available here, so time needs two assumptions, both arguments: a sustained rate `--tflops`
(default 40 TFLOP/s, 13% of an A100's 312 TFLOP/s bf16 peak) and a per-operation cost
`--op-us` (default 10 µs: launch plus a small kernel). A step costs the larger of the two bounds.
Evaluation counts the model only: simulating Meta-World adds CPU time (BENCHMARKS.md).

    python benchmarks/bench_paper_cost.py [--profile paper] [--tasks 5 30 50] [--tflops 40]
"""
from __future__ import annotations

import argparse

import torch
from tabulate import tabulate
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from mtrl_bench.config import build_config
from mtrl_bench.data import OfflineData
from mtrl_bench.masking import MaskStrategy, random_erk_masks
from mtrl_bench.testing import random_datasets
from mtrl_bench.trainer import Trainer

EPISODE = 500  # env steps per evaluation episode (Meta-World)


class OpCounter(TorchDispatchMode):
    """Counts aten operations (about one GPU kernel each)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def counted(fn) -> tuple[float, int]:
    """(matmul FLOPs, aten operations) of one call of fn."""
    with FlopCounterMode(display=False) as counter:
        fn()
    with OpCounter() as ops:
        fn()
    return float(counter.get_total_flops()), ops.ops


def costs(profile: str, n: int) -> dict[str, float]:
    cfg = build_config("prompt-dt", "mt5", "near-optimal", 0, profile)
    cfg.train.mask_interval = 10**9  # the step alone; an update is a few elementwise passes
    data = OfflineData(random_datasets(n, episodes=2, horizon=EPISODE), cfg.data, cfg.model)
    plain, masked = Trainer(cfg, data, torch.device("cpu")), Trainer(cfg, data,
                                                                      torch.device("cpu"))
    masked.strategy = MaskStrategy(random_erk_masks(masked.layout, n, 0.2,
                                                    torch.Generator().manual_seed(0)))
    (step, step_ops), (masked_step, masked_ops) = counted(plain.step), counted(masked.step)
    model = plain.model.eval()
    seg, prompt = data.sample(plain.rng, 1)  # one window per task: one action each
    with torch.no_grad():
        cache = model.encode_prompt(prompt)
        act, act_ops = counted(lambda: model.act(seg, cache, None))  # every task, one env step
    evals = cfg.train.steps // cfg.train.eval_interval if cfg.train.eval_interval else 1
    curve = cfg.eval.curve_episodes_per_task or cfg.eval.episodes_per_task
    # Episodes run as waves of `episodes_per_task` per task in parallel (evaluation.py), so an
    # evaluation is EPISODE batched calls per wave: FLOPs scale with episodes, calls do not.
    waves = 1 + (evals - 1) * curve / cfg.eval.episodes_per_task
    eval_calls = waves * EPISODE
    eval_flops = act / n * EPISODE * (cfg.eval.episodes_per_task + (evals - 1) * curve) * n
    return {"params": sum(p.numel() for p in model.parameters()),
            "maskable": plain.layout.numel, "step": step, "masked_step": masked_step,
            "step_ops": step_ops, "masked_ops": masked_ops, "act": act / n,
            "train": step * cfg.train.steps, "masked_train": masked_step * cfg.train.steps,
            "train_ops": step_ops * cfg.train.steps, "masked_train_ops": masked_ops
            * cfg.train.steps, "eval": eval_flops, "eval_ops": eval_calls * act_ops,
            "steps": cfg.train.steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--tasks", type=int, nargs="+", default=[5, 30, 50])
    ap.add_argument("--tflops", type=float, default=40.0, help="assumed sustained TFLOP/s")
    ap.add_argument("--op-us", type=float, default=10.0,
                    help="assumed microseconds per tensor operation (launch-bound floor)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rate, per_op = args.tflops * 1e12, args.op_us * 1e-6

    def hours(flops: float, ops: float) -> float:
        return max(flops / rate, ops * per_op) / 3600

    rows = []
    for n in args.tasks:
        c = costs(args.profile, n)
        ev = hours(c["eval"], c["eval_ops"])
        rows.append([n, f"{c['params'] / 1e6:.2f}M", f"{c['maskable'] / 1e6:.2f}M",
                     f"{c['step'] / 1e9:.1f}", f"{c['step_ops']} / {c['masked_ops']}",
                     f"{c['act'] / 1e6:.0f}", f"{c['train'] / 1e15:.1f}",
                     f"{c['eval'] / 1e15:.2f}",
                     f"{hours(c['train'], c['train_ops']) + ev:.2f}",
                     f"{hours(c['masked_train'], c['masked_train_ops']) + ev:.2f}"])
    print(f"profile {args.profile}, {c['steps']} steps; GPU time = max(FLOPs / {args.tflops:g} "
          f"TFLOP/s, operations x {args.op_us:g} us), assumptions (no GPU measured); evaluation: "
          "model only, without simulating Meta-World")
    print(tabulate(rows, headers=["tasks", "params", "maskable", "GFLOP/step",
                                  "ops/step plain / masked", "MFLOP/action", "PFLOP train",
                                  "PFLOP eval", "GPU-h plain run", "GPU-h masked run"],
                   tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
