"""Trainer throughput: a masked step (fixed random ERK masks) against an unmasked step.

Both run side by side in one process on the same batches (interleaved repeats, so machine noise
hits both alike); reported as samples/s and the masked/unmasked cost ratio, for N = 5 and 50 tasks
with a profile's model (default cpu). "rebuilt" is the masked step with its forward mask and
gradient scale built every step instead of once per mask update (as before 2026-12-03). Steps of
two versions of the code are compared by running this script from both trees alternately.
Also: achieved FLOP/s (counted by torch's FlopCounterMode) as a fraction of this machine's
measured fp32 GEMM peak, and the bf16-autocast/fp32 cost ratio.

    python benchmarks/bench_trainer.py [--tasks 5 50] [--repeats 5] [--steps 5] [--threads N]
                                       [--profile cpu|paper] [--set model.context_len=20 ...]
"""
from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mtrl_bench.config import build_config, parse_overrides
from mtrl_bench.data import OfflineData
from mtrl_bench.masking import MaskStrategy, random_erk_masks
from mtrl_bench.trainer import Trainer, keep_freed_memory


def fake_datasets(n: int, episodes: int = 8) -> list:
    """Random arrays shaped like Meta-World data: step cost does not depend on the values."""
    rng = np.random.default_rng(0)
    return [SimpleNamespace(
        task=f"task{i}", observations=rng.normal(size=(episodes, 500, 39)).astype(np.float32),
        actions=rng.uniform(-1, 1, (episodes, 500, 4)).astype(np.float32),
        rewards=rng.uniform(0, 10, (episodes, 500)).astype(np.float32),
        successes=np.zeros((episodes, 500), bool)) for i in range(n)]


def gemm_peak(size: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size**3 * reps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[5, 50])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--steps", type=int, default=5, help="steps per timing round")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    ap.add_argument("--profile", default="cpu", help="the model and batch of this profile")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a config field, as `mtrl-bench train --set` (a candidate)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it is (runs before 2026-12-03)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.default_malloc:
        keep_freed_memory()  # as a run does (Run._setup)
    dev = torch.device("cpu")
    peak = gemm_peak()
    print(f"threads={torch.get_num_threads()}  fp32 GEMM peak {peak / 1e9:.1f} GFLOP/s")
    print("| tasks | unmasked samples/s | masked samples/s | masked/unmasked cost | "
          "rebuilt/unmasked cost | GFLOP/s (unmasked) | of peak | bf16/fp32 cost |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.tasks:
        cfg = build_config("prompt-dt", "mt5", "near-optimal", 0, args.profile,
                           overrides=parse_overrides(args.set))
        cfg.train.mask_interval = 10**9  # fixed masks: the step alone, never an update
        data = OfflineData(fake_datasets(n), cfg.data, cfg.model)
        plain = Trainer(cfg, data, dev)
        masked, rebuilt = Trainer(cfg, data, dev), Trainer(cfg, data, dev)
        for t in (masked, rebuilt):
            t.strategy = MaskStrategy(random_erk_masks(t.layout, n, 0.2,
                                                       torch.Generator().manual_seed(0)))
        variants = {"plain": plain, "masked": masked, "rebuilt": rebuilt,
                    "bf16": Trainer(cfg, data, dev, torch.bfloat16)}
        times = {k: [] for k in variants}
        for trainer in variants.values():
            trainer.step()  # warm-up
        for _ in range(args.repeats):
            for k, trainer in variants.items():
                t = time.perf_counter()
                for _ in range(args.steps):
                    if k == "rebuilt":
                        trainer._mask_views = None  # the old step: views built every step
                    trainer.step()
                times[k].append((time.perf_counter() - t) / args.steps)
        with FlopCounterMode(display=False) as counter:
            plain.step()
        sec = {k: float(np.median(v)) for k, v in times.items()}
        samples = n * cfg.train.batch_per_task
        flops = counter.get_total_flops() / sec["plain"]
        print(f"| {n} | {samples / sec['plain']:.0f} | {samples / sec['masked']:.0f} | "
              f"{sec['masked'] / sec['plain']:.2f}x | {sec['rebuilt'] / sec['plain']:.2f}x | "
              f"{flops / 1e9:.1f} | {flops / peak:.0%} | "
              f"{sec['bf16'] / sec['plain']:.2f}x |")


if __name__ == "__main__":
    main()
