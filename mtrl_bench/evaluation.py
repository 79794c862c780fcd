"""Batched evaluation: every task x episode of a run rolled out together, one model call per step.

Protocol (docs/design.md, "Evaluation" and "The reference code"): episode e of task i runs on
training goal `suite.goal_for_episode(e, rng)` with env seed `cfg.seed + e`; the model sees the last
K steps, left-padded, states normalised with the task's data statistics, a return-to-go that starts
at `target_return x` the task's best data return and drops by each reward, and the task's
best-return prompt. Success = `info["success"]` at any step; return = the sum of rewards. With
`early_stop`, an episode ends at its first success and finished episodes leave the batch (see
`batch_index`).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mtrl_bench.config import EvalConfig
from mtrl_bench.data import OfflineData
from mtrl_bench.model import PromptDT, Segments, Weights
from mtrl_bench_envs.pool import EnvPool, affordable_envs
from mtrl_bench_envs.suites import EPISODE_LENGTH, Suite

__all__ = ["EnvPool", "History", "Policy", "TransformerPolicy", "batch_index", "env_specs",
           "evaluate"]


class Policy(Protocol):
    """What `evaluate` asks of a policy. Inputs have a leading task-group axis G; `tasks` (G,)
    says which task of `data.tasks` each group is (a batch holds any subset of them, in any
    order, once episodes start ending)."""

    def encode_prompt(self, prompt: Segments, tasks: torch.Tensor) -> Any:
        """Whatever `act` needs of the groups' prompts (None for a policy without one)."""

    def act(self, seg: Segments, cache: Any, tasks: torch.Tensor) -> torch.Tensor:
        """(G, B, A) actions for the last step of each window of `seg`."""


class TransformerPolicy:
    """A PromptDT as a `Policy`: each group runs with its task's effective weights (masked
    methods: `weights` {name: (N, out, in)} in `data.tasks` order), or the shared ones."""

    def __init__(self, model: PromptDT, weights: Weights | None = None) -> None:
        self.model, self.weights = model, weights
        self._tasks: torch.Tensor | None = None
        self._rows_of_tasks: Weights | None = None

    def _rows(self, tasks: torch.Tensor) -> Weights | None:
        """The groups' weights, gathered once per batch (a batch keeps its `tasks` tensor until
        episodes end), not at every step."""
        if self.weights is None:
            return None
        if tasks is not self._tasks:
            self._tasks = tasks
            self._rows_of_tasks = {k: w[tasks] for k, w in self.weights.items()}
        return self._rows_of_tasks

    def encode_prompt(self, prompt: Segments, tasks: torch.Tensor) -> Any:
        return self.model.encode_prompt(prompt, self._rows(tasks))

    def act(self, seg: Segments, cache: Any, tasks: torch.Tensor) -> torch.Tensor:
        # task-id models read the task from `tasks`: once a task's episodes have all ended, the
        # batch's groups are no longer every task in order
        return self.model.act(seg, cache, self._rows(tasks), tasks=tasks)


SUCCESS_EPS = 1e-8  # reference code: an episode succeeded if info["success"] > 1e-8 at any step
MAX_ENVS = 100  # a live Meta-World env holds ~22 MiB; bigger runs go in waves of episodes


class History:
    """(R, s, a) histories of a grid of envs stepping in lockstep, with K-1 zero steps in front.

    The zero prefix makes the context window at step t the plain slice [t, t+K) of the time axis,
    so early windows come out left-padded with zeros, as in `OfflineData._windows`.
    """

    def __init__(self, shape: tuple[int, int], horizon: int, K: int, state_dim: int,
                 act_dim: int) -> None:
        self.K = K
        length = K - 1 + horizon
        self.states = np.zeros((*shape, length, state_dim), np.float32)
        self.actions = np.zeros((*shape, length, act_dim), np.float32)
        self.rtg = np.zeros((*shape, length), np.float32)

    def slot(self, t: int) -> int:
        """Index of step t on the stored time axis."""
        return self.K - 1 + t

    def window(self, t: int, rows: np.ndarray, cols: np.ndarray) -> Segments:
        """Segments (G, B, K) of the K steps ending at step t, for envs (rows[g], cols[g, b])."""
        K, (g, b) = self.K, cols.shape
        idx = (rows[:, None], cols, slice(t, t + K))  # -> (G, B, K, ...)
        pos = np.arange(K)
        mask = pos >= K - 1 - t  # the first K-1-t slots are padding
        steps = np.maximum(t - (K - 1) + pos, 0)  # absolute env steps; 0 on padding
        return Segments(torch.from_numpy(self.states[idx]), torch.from_numpy(self.actions[idx]),
                        torch.from_numpy(self.rtg[idx])[..., None],
                        torch.from_numpy(steps).expand(g, b, K),
                        torch.from_numpy(mask).expand(g, b, K))


def batch_index(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model batch for the active envs of an (N, E) grid: task rows (G,) and columns (G, B).

    Rows are the tasks with an active episode; B is the most active episodes of any such task.
    Shorter rows repeat their first active episode (computed twice, used once). Shrinking the
    batch as episodes finish beats a static (N, E) batch because the model is the main cost.
    """
    rows = np.flatnonzero(active.any(1))
    live = active[rows]
    count = live.sum(1)
    order = np.argsort(~live, axis=1, kind="stable")[:, : count.max()]  # active episodes first
    cols = np.where(np.arange(order.shape[1]) < count[:, None], order, order[:, :1])
    return rows, cols


def _take(seg: Segments, rows: torch.Tensor, cols: torch.Tensor) -> Segments:
    return Segments(*(getattr(seg, f)[rows[:, None], cols] for f in Segments.__annotations__))


def _rollout(policy: Policy, data: OfflineData, pool: EnvPool, specs: Sequence[Sequence],
             prompts: Segments, cfg: EvalConfig, device: torch.device, shrink: bool,
             bar: tqdm) -> tuple[np.ndarray, np.ndarray, int]:
    """Run the (N, e) episodes of `specs` on `pool`'s envs to the end: successes (N, e), returns
    (N, e), env steps. The pool's open batch is env i * e + j for episode j of task i."""
    n, e = len(specs), len(specs[0])
    obs = pool.open([spec for row in specs for spec in row]).reshape(n, e, -1).astype(np.float32)
    hist = History((n, e), EPISODE_LENGTH, data.K, obs.shape[-1], data.actions[0].shape[-1])
    target = cfg.target_return * np.asarray(data.best_return, np.float32) / data.scale
    hist.rtg[:, :, hist.slot(0)] = target[:, None]
    success, returns = np.zeros((n, e), bool), np.zeros((n, e))
    active, actions = np.ones((n, e), bool), np.zeros((n, e, hist.actions.shape[-1]), np.float32)
    env_steps, batch = 0, None
    for t in range(EPISODE_LENGTH):
        for i in range(n):
            hist.states[i, :, hist.slot(t)] = data.normalize(i, obs[i])
        if batch is None:  # the active set changed: rebuild the batch and its prompts
            rows, cols = (batch_index(active) if shrink
                          else (np.arange(n), np.tile(np.arange(e), (n, 1))))
            rows_t, cols_t = torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)
            batch = (rows, cols, policy.encode_prompt(_take(prompts, rows_t, cols_t), rows_t),
                     rows_t)
        rows, cols, cache, tasks = batch
        out = policy.act(hist.window(t, rows, cols).to(device), cache, tasks)  # (G, B, A)
        actions[rows[:, None], cols] = out.float().clamp(-1.0, 1.0).cpu().numpy()
        hist.actions[:, :, hist.slot(t)] = actions
        reward = np.zeros((n, e))
        stepped = int(active.sum())
        # the envs are the cost: the pool steps them, in worker processes when it has some
        o, r, succeeded, ended = pool.step(np.flatnonzero(active), actions[active])
        obs[active], reward[active] = o, r
        success[active] |= succeeded > SUCCESS_EPS
        finished = np.zeros_like(active)
        finished[active] = ended | (cfg.early_stop & success[active])
        if finished.any():
            active &= ~finished
            batch = None
            bar.total -= int(finished.sum()) * (EPISODE_LENGTH - 1 - t)  # steps still to come
        returns += reward
        env_steps += stepped
        bar.update(stepped)
        if not active.any() or t + 1 == EPISODE_LENGTH:  # Meta-World truncates at the horizon
            break
        hist.rtg[:, :, hist.slot(t + 1)] = hist.rtg[:, :, hist.slot(t)] - reward / data.scale
    return success, returns, env_steps


def env_specs(tasks: list[str], suite: Suite, cfg: EvalConfig) -> list[list[tuple[str, int, int]]]:
    """`make_env` arguments (task, goal, seed) of every episode: (N, E) nested lists."""
    rng = np.random.default_rng(cfg.seed)
    return [[(task, suite.goal_for_episode(j, rng), cfg.seed + j)
             for j in range(cfg.episodes_per_task)] for task in tasks]


def evaluate(model: PromptDT | Policy, data: OfflineData, suite: Suite, cfg: EvalConfig, *,
             weights: Weights | None = None, device: torch.device | str = "cpu",
             amp_dtype: torch.dtype | None = None, progress: bool = True,
             max_envs: int = MAX_ENVS, shrink: bool = True, pool: EnvPool | None = None
             ) -> dict:
    """Roll out `cfg.episodes_per_task` episodes of every task of `data`, batching the model.

    model: a PromptDT (run as a `TransformerPolicy` with `weights`), or any `Policy` (the BC
    references, `mtrl_bench.testing.ScriptedExpert`): each prompt is encoded once per batch,
    then one `act` call per env step. weights: a PromptDT's per-task effective weights {name:
    (N, out, in)} in `data.tasks` order (masked methods); None runs the shared weights.
    max_envs caps the envs alive at once (episodes then run in waves that reuse the envs;
    results do not depend on it). pool: the `EnvPool` whose envs (and worker processes) to use,
    kept after the call (default: a pool of this call's own, in this process). shrink=False
    keeps a static (N, E) batch when episodes stop early (for benchmarking; same results).
    Returns per-task success/return lists, their means, the env steps taken and the wall time
    (`build_seconds`: env construction).
    """
    n, e = data.num_tasks, cfg.episodes_per_task
    if e < 1:
        raise ValueError(f"episodes_per_task must be at least 1; got {e}")
    device = torch.device(device)
    if weights is not None:
        if not isinstance(model, PromptDT):
            raise TypeError("weights are a PromptDT's; a Policy gets its task from `act`")
        bad = {k: tuple(w.shape) for k, w in weights.items() if w.shape[0] != n}
        if bad:
            raise ValueError(f"weights must have a leading task axis of {n}; got {bad}")
        weights = {k: w.to(device) for k, w in weights.items()}
    policy = TransformerPolicy(model, weights) if isinstance(model, PromptDT) else model
    specs = env_specs(data.tasks, suite, cfg)
    prompts = data.eval_prompts(e).to(device)
    wave = max(1, min(e, max_envs // n))  # episodes per wave
    amp = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
           else contextlib.nullcontext())
    success, returns = np.zeros((n, e), bool), np.zeros((n, e))
    own_pool = pool is None
    pool = EnvPool() if own_pool else pool
    env_steps, start, built_before = 0, time.perf_counter(), pool.build_seconds
    module = model if isinstance(model, nn.Module) else None  # a Policy need not be one
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    try:
        with (tqdm(total=n * e * EPISODE_LENGTH, desc="eval", unit="step", disable=not progress,
                   dynamic_ncols=True) as bar, torch.inference_mode(), amp):
            for lo in range(0, e, wave):
                cut = slice(lo, min(e, lo + wave))
                bar.set_postfix_str(f"episodes {lo}-{cut.stop - 1}")
                wave_prompts = Segments(*(getattr(prompts, f)[:, cut]
                                          for f in Segments.__annotations__))
                try:
                    s, r, steps = _rollout(policy, data, pool, [row[cut] for row in specs],
                                           wave_prompts, cfg, device, shrink, bar)
                finally:
                    pool.release()
                success[:, cut], returns[:, cut] = s, r
                env_steps += steps
    finally:
        if module is not None:
            module.train(was_training)
        if own_pool:
            pool.close()
        else:  # a shared pool keeps up to max_envs, as far as memory allows
            affordable = affordable_envs()
            pool.trim(max_envs if affordable is None else min(max_envs, affordable))
    tasks = {task: {"success": float(success[i].mean()), "return": float(returns[i].mean()),
                    "episodes": e, "successes": success[i].astype(int).tolist(),
                    "returns": returns[i].tolist()}
             for i, task in enumerate(data.tasks)}
    return {"tasks": tasks, "success": float(success.mean(1).mean()),
            "return": float(returns.mean(1).mean()), "env_steps": env_steps,
            "seconds": time.perf_counter() - start,
            "build_seconds": pool.build_seconds - built_before}
