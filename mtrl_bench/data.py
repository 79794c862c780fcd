"""Offline trajectories -> normalised (R, s, a) segments and prompts, sampled from every task."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtrl_bench.config import CHOICES, DataConfig, ModelConfig
from mtrl_bench.model import Segments

WINDOWS = CHOICES["data.windows"]  # where training windows are placed: DataConfig.windows


class OfflineData:
    """Per-task episodes held as arrays; one `sample` draws `batch` windows from every task.

    States are normalised per task with that task's dataset mean/std (reference code); returns-to-
    go are undiscounted suffix sums divided by `rtg_scale`. Episodes all have the same length.
    """

    def __init__(self, datasets: Sequence, data_cfg: DataConfig, model_cfg: ModelConfig) -> None:
        self.tasks = [d.task for d in datasets]
        self.K, self.P = model_cfg.context_len, model_cfg.prompt_len
        self.scale = data_cfg.rtg_scale
        if data_cfg.windows not in WINDOWS:
            raise ValueError(f"data.windows must be one of {', '.join(WINDOWS)}; "
                             f"got {data_cfg.windows!r}")
        self.windows = data_cfg.windows
        self.states, self.actions, self.rtg = [], [], []
        self.state_mean, self.state_std, self.best_return, self.prompt_pool = [], [], [], []
        for d in datasets:
            obs = d.observations.astype(np.float32)
            mean, std = obs.mean((0, 1)), obs.std((0, 1)) + 1e-6
            self.state_mean.append(mean)
            self.state_std.append(std)
            self.states.append((obs - mean) / std)
            self.actions.append(d.actions.astype(np.float32))
            rtg = np.flip(np.cumsum(np.flip(d.rewards, 1), 1), 1) / self.scale
            self.rtg.append(rtg.astype(np.float32))
            returns = d.rewards.sum(1)
            self.best_return.append(float(returns.max()))
            self.prompt_pool.append(np.argsort(returns)[::-1][: data_cfg.prompt_pool].copy())
        self.horizon = self.states[0].shape[1]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def _windows(self, i: int, episodes: np.ndarray, first: np.ndarray, valid_len: np.ndarray,
                 length: int) -> tuple[np.ndarray, ...]:
        """Windows of task i holding steps [first, first+valid_len), left-padded to `length`."""
        pos = np.arange(length)
        mask = pos[None, :] >= (length - valid_len)[:, None]  # (B, L) padding sits on the left
        steps = np.where(mask, first[:, None] + pos[None, :] - (length - valid_len)[:, None], 0)
        ep = episodes[:, None]
        m = mask[..., None]
        return (self.states[i][ep, steps] * m, self.actions[i][ep, steps] * m,
                (self.rtg[i][ep, steps] * mask)[..., None], steps * mask, mask)

    def _segments(self, i: int, episodes: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, ...]:
        """K-step training windows of the given episodes of task i, placed per `self.windows`."""
        K, size = self.K, len(episodes)
        if self.windows == "start":  # reference: start ~ U[0, T), runs past the end padded
            first = rng.integers(self.horizon, size=size)
            return self._windows(i, episodes, first, np.minimum(K, self.horizon - first), K)
        last = rng.integers(self.horizon, size=size)  # "end": the windows evaluation builds
        return self._windows(i, episodes, np.maximum(last - K + 1, 0), np.minimum(K, last + 1), K)

    def _prompt(self, i: int, episodes: np.ndarray) -> tuple[np.ndarray, ...]:
        """The last P steps of the given episodes of task i (Prompt-DT's trajectory prompt)."""
        n = len(episodes)
        return self._windows(i, episodes, np.full(n, self.horizon - self.P), np.full(n, self.P),
                             self.P)

    @staticmethod
    def _stack(parts: list[tuple[np.ndarray, ...]]) -> Segments:
        fields = [np.stack(f) for f in zip(*parts)]  # each (G, B, T, ...)
        s, a, r, t, m = (torch.from_numpy(np.ascontiguousarray(f)) for f in fields)
        return Segments(s.float(), a.float(), r.float(), t.long(), m.bool())

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[Segments, Segments]:
        """(segments, prompts) with leading dims (num_tasks, batch)."""
        segs, prompts = [], []
        for i in range(self.num_tasks):
            n_ep = self.states[i].shape[0]
            segs.append(self._segments(i, rng.integers(n_ep, size=batch), rng))
            prompts.append(self._prompt(i, rng.choice(self.prompt_pool[i], size=batch)))
        return self._stack(segs), self._stack(prompts)

    def eval_prompts(self, episodes_per_task: int) -> Segments:
        """The best-return episode's prompt of every task, repeated: (num_tasks, episodes, P)."""
        return self._stack([self._prompt(i, np.full(episodes_per_task, self.prompt_pool[i][0]))
                            for i in range(self.num_tasks)])

    def normalize(self, i: int, obs: np.ndarray) -> np.ndarray:
        return (obs - self.state_mean[i]) / self.state_std[i]
