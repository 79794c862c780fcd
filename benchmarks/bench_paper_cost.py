"""What a profile's runs cost on a GPU, from what can be counted here: matmul FLOPs and tensor
operations per training step (unmasked and masked) and per evaluation action, per run, and the
GPU-hours they imply under stated assumptions; plus the CPU time of simulating the evaluation
episodes and generating the datasets (measured here), and the total of each of the paper's tables.

Counted on the real model and trainer (random data shaped like Meta-World; the counts do not
depend on the values or the device): FLOPs by torch's FlopCounterMode (matmuls and attention),
operations by a dispatch-mode counter (each aten call is about one GPU kernel). No GPU is
available here, so time needs two assumptions, both arguments: a sustained rate `--tflops`
(default 40 TFLOP/s, 13% of an A100's 312 TFLOP/s bf16 peak) and a per-operation cost
`--op-us` (default 10 µs: launch plus a small kernel). A step costs the larger of the two bounds.
Simulation is measured: one core stepping real Meta-World envs of `--sim-tasks` tasks with random
actions (evaluation steps its envs while the GPU waits, so a run's GPU is held for training plus
simulation). With `--eval-workers W` env processes per run (`execution.eval_workers`), the
simulation's wall time is taken as (1/W + `--eval-overhead`) of one process's, the overhead being
what `benchmarks/bench_eval_workers.py` measured at W = 2 (pipes and imbalance) held constant.

The tables: each layout of mtrl_bench/paper/paper.toml on the suites the paper reports, at
`--seeds` runs per cell (the paper's 3; Table 3's three runs are its three task combinations),
and Fig. 5 as the distinct points of experiments/fig5.toml on MT30 (the paper's suite).

    python benchmarks/bench_paper_cost.py [--profile paper] [--tasks 5 30 50] [--tflops 40]
                                          [--seeds 3] [--gpus 8] [--eval-workers 8]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from mtrl_bench.config import build_config
from mtrl_bench.data import OfflineData
from mtrl_bench.grid import expand, load_experiment, with_overrides
from mtrl_bench.masking import MaskStrategy, random_erk_masks
from mtrl_bench.paper import load_numbers, paper
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


def sim_rate(tasks: list[str], steps: int) -> float:
    """Env steps per second of one core stepping Meta-World (random actions, no model)."""
    from mtrl_bench_envs.suites import make_env

    rng, seconds = np.random.default_rng(0), 0.0
    for task in tasks:
        env = make_env(task, goal=0, seed=0)
        env.reset()
        actions = rng.uniform(-1, 1, (steps, 4))
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        seconds += time.perf_counter() - t0
        env.close()
    return len(tasks) * steps / seconds


def table_runs(profile: str, seeds: int) -> list[tuple[str, list[tuple[int, bool, str]]]]:
    """(table, [(tasks, masked, suite) per run]) for the paper's tables at `profile`."""
    from mtrl_bench.plugins import registry
    from mtrl_bench_envs.suites import get_suite

    numbers, reg = load_numbers(), registry()
    masked = {m: "masks" in loaded.spec.capabilities for m, loaded in reg.methods.items()}
    out = []
    for layout in paper().layouts:
        reported = set(numbers.loc[numbers["table"] == layout.number, "suite"])
        runs = [(len(get_suite(s).tasks), masked[m], s) for m in layout.methods
                for s in layout.suites if s in reported for _ in range(2 * seeds)]
        out.append((f"Table {layout.number}", runs))
    fig5 = expand(with_overrides(load_experiment("fig5"), profile, suites=["mt30"]),
                  Path("/nonexistent"))  # the paper's suite (our grid sweeps MT5)
    points = {(r.suite, r.quality, r.label) for r in fig5}
    out.append(("Fig. 5", [(len(get_suite(s).tasks), True, s) for s, _, _ in sorted(points)
                           for _ in range(seeds)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--tasks", type=int, nargs="+", default=[5, 30, 50])
    ap.add_argument("--tflops", type=float, default=40.0, help="assumed sustained TFLOP/s")
    ap.add_argument("--op-us", type=float, default=10.0,
                    help="assumed microseconds per tensor operation (launch-bound floor)")
    ap.add_argument("--seeds", type=int, default=3, help="runs per table cell (the paper's 3)")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs of the cluster for wall time")
    ap.add_argument("--sim-tasks", type=int, default=10,
                    help="MT50 tasks (spread over the 50) whose envs are stepped to measure "
                    "simulation")
    ap.add_argument("--sim-steps", type=int, default=500, help="env steps per measured task")
    ap.add_argument("--eval-workers", type=int, default=1,
                    help="env processes per run for the last column (a GPU host's cores per GPU)")
    ap.add_argument("--eval-overhead", type=float, default=0.07,
                    help="a step call's excess over 1/W of one process's, measured at W = 2")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rate, per_op = args.tflops * 1e12, args.op_us * 1e-6

    def hours(flops: float, ops: float) -> float:
        return max(flops / rate, ops * per_op) / 3600

    from mtrl_bench_envs.suites import MT50_ORDER

    every = max(1, len(MT50_ORDER) // args.sim_tasks)
    sim = sim_rate(list(MT50_ORDER[::every][:args.sim_tasks]), args.sim_steps)
    cfg = build_config("prompt-dt", "mt5", "near-optimal", 0, args.profile)
    evals = cfg.train.steps // cfg.train.eval_interval if cfg.train.eval_interval else 1
    curve = cfg.eval.curve_episodes_per_task or cfg.eval.episodes_per_task
    episodes = cfg.eval.episodes_per_task + (evals - 1) * curve  # per task and run

    rows, per_run = [], {}
    for n in sorted({*args.tasks, 5, 30, 50}):
        c = costs(args.profile, n)
        ev = hours(c["eval"], c["eval_ops"])
        sim_h = n * episodes * EPISODE / sim / 3600  # an upper bound with early stopping
        plain, masked = hours(c["train"], c["train_ops"]) + ev, hours(
            c["masked_train"], c["masked_train_ops"]) + ev
        per_run[n] = {False: (plain, sim_h), True: (masked, sim_h)}
        if n in args.tasks:
            rows.append([n, f"{c['params'] / 1e6:.2f}M", f"{c['maskable'] / 1e6:.2f}M",
                         f"{c['step'] / 1e9:.1f}", f"{c['step_ops']} / {c['masked_ops']}",
                         f"{c['act'] / 1e6:.0f}", f"{c['train'] / 1e15:.1f}",
                         f"{c['eval'] / 1e15:.2f}", f"{plain:.2f}", f"{masked:.2f}",
                         f"{sim_h:.2f}"])
    print(f"profile {args.profile}, {c['steps']} steps, {evals} evaluations, {episodes} "
          f"episodes per task in all; GPU time = max(FLOPs / {args.tflops:g} TFLOP/s, "
          f"operations x {args.op_us:g} us), assumptions (no GPU measured); simulation measured: "
          f"{sim:.0f} env steps/s on one core")
    print(tabulate(rows, headers=["tasks", "params", "maskable", "GFLOP/step",
                                  "ops/step plain / masked", "MFLOP/action", "PFLOP train",
                                  "PFLOP eval", "GPU-h plain run", "GPU-h masked run",
                                  "CPU-h simulation per run"],
                   tablefmt="github", disable_numparse=True))

    data_cfg = cfg.data
    w = args.eval_workers
    sim_wall = 1.0 if w == 1 else 1 / w + args.eval_overhead  # of one process's simulation
    rows, total = [], np.zeros(5)
    for name, runs in table_runs(args.profile, args.seeds):
        gpu = sum(per_run[n][m][0] for n, m, _ in runs)
        simh = sum(per_run[n][m][1] for n, m, _ in runs)
        suites = sorted({s for _, _, s in runs})
        held = gpu + simh  # the GPU waits while the run's process simulates
        held_w = gpu + simh * sim_wall  # ... or while its env processes do
        total += [len(runs), gpu, simh, held, held_w]
        rows.append([name, len(runs), ", ".join(suites), f"{gpu:.0f}", f"{simh:.0f}",
                     f"{held:.0f}", f"{held_w:.0f}", f"{held_w / args.gpus:.1f}"])
    rows.append(["all", int(total[0]), "", f"{total[1]:.0f}", f"{total[2]:.0f}",
                 f"{total[3]:.0f}", f"{total[4]:.0f}", f"{total[4] / args.gpus:.1f}"])
    gen = 2 * 50 * data_cfg.episodes * EPISODE / sim / 3600  # MT50 fixed goals + MT50-rand
    print(f"\nthe paper's tables, {args.seeds} runs per cell and quality:")
    print(tabulate(rows, headers=["table", "runs", "suites", "GPU-h (compute)",
                                  "CPU-h simulation", "GPU-h held (compute + simulation)",
                                  f"GPU-h held, {w} env processes",
                                  f"wall h on {args.gpus} GPUs, {w} env processes"],
                   tablefmt="github", disable_numparse=True))
    print(f"datasets, once: MT50 with fixed goals and MT50-rand, {data_cfg.episodes} episodes "
          f"per task: {gen:.1f} CPU-h of simulation (parallel over cores: `mtrl-bench data "
          "generate --workers N`)")


if __name__ == "__main__":
    main()
