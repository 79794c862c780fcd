"""Where a masked step's extra time goes: torch.profiler self time per operator, masked minus
unmasked, per step (fixed random ERK masks, as bench_trainer.py; one thread).

    python benchmarks/profile_masked_step.py [--tasks 50] [--steps 20] [--top 8]
"""
from __future__ import annotations

import argparse

import torch
from bench_trainer import fake_datasets
from torch.profiler import ProfilerActivity, profile

from mtrl_bench.config import build_config
from mtrl_bench.data import OfflineData
from mtrl_bench.masking import MaskStrategy, random_erk_masks
from mtrl_bench.trainer import Trainer, keep_freed_memory


def self_ms(trainer: Trainer, steps: int) -> dict[str, float]:
    for _ in range(3):  # warm-up
        trainer.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.step()
    return {e.key: e.self_cpu_time_total / steps / 1000 for e in prof.key_averages()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    cfg = build_config("prompt-dt", "mt5", "near-optimal", 0, "cpu")
    cfg.train.mask_interval = 10**9  # the step alone, never an update
    data = OfflineData(fake_datasets(args.tasks), cfg.data, cfg.model)
    plain, masked = (Trainer(cfg, data, torch.device("cpu")) for _ in range(2))
    masked.strategy = MaskStrategy(random_erk_masks(masked.layout, args.tasks, 0.2,
                                                    torch.Generator().manual_seed(0)))
    a, b = self_ms(plain, args.steps), self_ms(masked, args.steps)
    print(f"N = {args.tasks}: unmasked {sum(a.values()):.1f} ms/step, masked "
          f"{sum(b.values()):.1f} ms/step (profiled)")
    extra = sorted(set(a) | set(b), key=lambda k: a.get(k, 0) - b.get(k, 0))
    for key in extra[:args.top] + extra[-3:]:  # the largest increases, then decreases
        print(f"  {key:40s} {a.get(key, 0):6.2f} -> {b.get(key, 0):6.2f} ms "
              f"({b.get(key, 0) - a.get(key, 0):+.2f})")


if __name__ == "__main__":
    main()
