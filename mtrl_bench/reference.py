"""The data's own floor: behaviour cloning with a small MLP, on the same data and evaluation.

A number for a masking method means little without knowing how far the data alone take a simple
policy. Every experiment therefore reports two reference rows beside its methods, trained on the
same dataset slice and evaluated by the same `evaluate` with the same episodes:

- ``bc-all``: every episode of the task's buffer slice;
- ``bc-top20``: each task's top 20% episodes by return (filtered BC, the "%BC" baseline of the
  offline RL literature).

The policy is an MLP on the normalised state and a task one-hot (no history, no return), trained
with Adam on (state, action) pairs sampled uniformly from the kept episodes. It is a reference,
not a method: it has no masks and does not go through the transformer trainer.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtrl_bench.baselines import REFERENCES_DIR, VARIANTS, BCConfig, reference_protocol
from mtrl_bench.config import RunConfig
from mtrl_bench.data import OfflineData
from mtrl_bench.evaluation import EnvPool, evaluate
from mtrl_bench.grid import GridRun
from mtrl_bench.model import Segments


class BCPolicy(nn.Module):
    """MLP(state ⊕ task one-hot) -> tanh action; an evaluation `Policy` (no prompt: the task
    one-hot conditions it)."""

    def __init__(self, state_dim: int, act_dim: int, num_tasks: int, cfg: BCConfig) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        dims = [state_dim + num_tasks] + [cfg.hidden] * cfg.layers
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(dims[-1], act_dim), nn.Tanh())

    def forward(self, states: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(task, self.num_tasks).to(states.dtype)
        return self.net(torch.cat([states, onehot], dim=-1))

    def encode_prompt(self, prompt: Segments, tasks: torch.Tensor) -> None:
        return None

    def act(self, seg: Segments, cache: None, tasks: torch.Tensor) -> torch.Tensor:
        states = seg.states[:, :, -1].float()  # (G, B, S): the current state only
        return self(states, tasks[:, None].expand(states.shape[:2]))


def kept_episodes(data: OfflineData, i: int, top_fraction: float) -> np.ndarray:
    """Task i's episodes by return, best first, cut to `top_fraction` of them (at least one)."""
    returns = data.rtg[i][:, 0]  # the return-to-go at step 0 is the episode's return
    keep = max(1, math.ceil(top_fraction * len(returns)))
    return np.argsort(returns, kind="stable")[::-1][:keep]


def train_bc(data: OfflineData, cfg: BCConfig, seed: int) -> BCPolicy:
    """Fit a BCPolicy to the kept episodes of every task; deterministic for a seed."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = data.num_tasks
    kept = [kept_episodes(data, i, cfg.top_fraction) for i in range(n)]
    states = [torch.from_numpy(s[k].reshape(-1, s.shape[-1])) for s, k in zip(data.states, kept)]
    actions = [torch.from_numpy(a[k].reshape(-1, a.shape[-1])) for a, k in zip(data.actions, kept)]
    policy = BCPolicy(states[0].shape[-1], actions[0].shape[-1], n, cfg)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    per_task = max(1, cfg.batch // n)
    task = torch.arange(n).repeat_interleave(per_task)
    for _ in range(cfg.steps):
        idx = [torch.from_numpy(rng.integers(len(s), size=per_task)) for s in states]
        s = torch.cat([states[i][j] for i, j in enumerate(idx)])
        a = torch.cat([actions[i][j] for i, j in enumerate(idx)])
        loss = (policy(s, task) - a).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return policy.eval()


def bc_reference(cfg: RunConfig, datasets: list, variant: str, progress: bool = False,
                 pool: EnvPool | None = None) -> dict:
    """Train the BC variant on the run config's data slice with its seed and evaluate it with
    its evaluation protocol (on `pool`'s envs if given); returns `evaluate`'s result plus the BC
    settings and timings."""
    from mtrl_bench_envs.suites import get_suite

    if variant not in VARIANTS:
        from mtrl_bench_envs.common import unknown_name_message

        raise ValueError(unknown_name_message("reference", variant, tuple(VARIANTS)))
    bc = VARIANTS[variant]
    data = OfflineData(datasets, cfg.data, cfg.model)
    tic = time.perf_counter()
    policy = train_bc(data, bc, cfg.seed)
    train_seconds = time.perf_counter() - tic
    result = evaluate(policy, data, get_suite(cfg.suite), cfg.eval,
                      progress=progress, pool=pool)
    return {**result, "reference": variant, "bc": asdict(bc), "train_seconds": train_seconds}


# --------------------------------------------------------------------------- in experiments

def ensure_references(runs: Sequence[GridRun], experiment_dir: Path,
                      data_dir: Path | None = None, progress: bool = True,
                      threads: int = 0) -> list[Path]:
    """Both BC references for every (suite, quality, seed) of a grid, trained on the same data
    and evaluated like its runs; a file that already holds them for that protocol is kept.

    The runs of one (suite, quality, seed) normally share data and evaluation settings; a grid
    whose sweep points change them gets the first point's references. `threads`: torch threads
    for the training and processes for the evaluation envs (0: torch's default); on a busy
    machine the grid's per-run count keeps them from waiting on each other.
    """
    from mtrl_bench.api import load_datasets
    from mtrl_bench.runs import read_json, write_json

    if threads:
        torch.set_num_threads(threads)
    folder = Path(experiment_dir) / REFERENCES_DIR
    wanted: dict[tuple, GridRun] = {}
    for r in runs:
        wanted.setdefault((r.suite, r.quality, r.seed), r)
    # one pool: the references' evaluations reuse its envs, stepped in as many processes as
    # there are threads (as a run's evaluations are)
    paths, pool = [], EnvPool(torch.get_num_threads())
    bars = progress and sys.stderr.isatty()  # a log gets the plain line per reference only
    try:
        for (suite, quality, seed), run in wanted.items():
            datasets = None  # loaded once per (suite, quality, seed), only if a file is missing
            for variant in VARIANTS:
                protocol = reference_protocol(run.config.to_dict(), variant)
                path = folder / f"{variant}__{suite}__{quality}__s{seed}.json"
                paths.append(path)
                if path.exists() and read_json(path).get("protocol") == protocol:
                    continue
                datasets = datasets or load_datasets(run.config, data_dir, progress)
                if progress:
                    print(f"reference {variant}: {suite} {quality} seed {seed}")
                write_json(path, {"reference": variant, "suite_label": run.suite_label,
                                  "protocol": protocol, "config": run.config.to_dict(),
                                  "result": bc_reference(run.config, datasets, variant,
                                                         bars, pool)})
    finally:
        pool.close()
    return paths
