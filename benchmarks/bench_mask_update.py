"""Wall time of one mask update (HarmoDT-F, SoCo-DT and its fixed-sparsity ablation).

Random per-task gradients on the maskable set of two model profiles:
  cpu   embed 128, 3 layers: 3 × (384·128 + 128·128 + 512·128 + 128·512) =   589,824 entries
  paper embed 256, 6 layers: 6 × (768·256 + 256·256 + 1024·256 + 256·1024) = 4,718,592 entries
for N = 5 and N = 50 tasks, at mid-training (k_t and β_t at their T/2 values). Prints ms per
update and the same amortised over the profile's update interval (to set beside a training step).

    .venv/bin/python benchmarks/bench_mask_update.py                  # all cases (~minutes)
    .venv/bin/python benchmarks/bench_mask_update.py --profiles cpu --tasks 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from mtrl_bench.masking import MaskLayout, UpdateContext
from mtrl_bench.plugins import MethodSpec, Registry

PROFILES = {  # name: (embed dim, layers, total steps, mask interval) as in mtrl_bench/profiles
    "cpu": (128, 3, 3000, 50),
    "paper": (256, 6, 100_000, 500),
}
METHODS = ("harmodt-f", "socodt", "socodt-fixed-sparsity")


def layout_for(embed: int, layers: int) -> MaskLayout:
    shapes = [(3 * embed, embed), (embed, embed), (4 * embed, embed), (embed, 4 * embed)]
    names = [f"h{i}.{p}" for i in range(layers) for p in ("c_attn", "c_proj", "c_fc", "mlp_proj")]
    return MaskLayout(tuple(names), tuple(s for _ in range(layers) for s in shapes))


def time_update(m: MethodSpec, layout: MaskLayout, tasks: int, total: int, interval: int,
                repeats: int) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(tasks, layout.numel, generator=gen) * 1e-3
    ctx = UpdateContext(grads=grads, losses=torch.rand(tasks, generator=gen) + 0.1,
                        params=torch.randn(layout.numel, generator=gen) * 0.02,
                        step=total // 2 - 1, total_steps=total, interval=interval, generator=gen)
    times = []
    for _ in range(repeats):
        strat = m.strategy(m.config_cls(), layout, tasks, torch.Generator().manual_seed(1))
        start = time.perf_counter()
        strat.update(ctx)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--tasks", nargs="+", type=int, default=[5, 50])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: keep default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = Registry()
    registry.load_entry_points()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load}")
    print(f"{'profile':8} {'n':>9} {'N':>4} {'method':24} {'ms/update':>10} {'ms/step amort.':>15}")
    for profile in args.profiles:
        embed, layers, total, interval = PROFILES[profile]
        layout = layout_for(embed, layers)
        for tasks in args.tasks:
            big = tasks * layout.numel > 50_000_000
            for method in args.methods:
                times = time_update(registry.method(method).spec, layout, tasks, total, interval,
                                    1 if big else args.repeats)
                ms = statistics.median(times) * 1e3
                print(f"{profile:8} {layout.numel:>9,} {tasks:>4} {method:24} {ms:>10.1f} "
                      f"{ms / interval:>15.2f}", flush=True)


if __name__ == "__main__":
    main()
