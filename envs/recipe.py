"""The scripted replay recipe: how one buffer episode mixes scripted, noisy and random actions.

MTDiff's datasets are SAC replay buffers that run from random to expert behaviour. We emulate one
with Meta-World's scripted policies. Episode e of a task's E-episode buffer has progress
u = e / (E - 1) and, at every step, takes

- with probability p(u): a uniform random action in [-1, 1]^4;
- otherwise: the scripted action plus Gaussian noise of std sigma(u);

clipped to [-1, 1]. "scripted-replay-v1": p falls linearly 1 -> 0.35 over the first half of the
buffer and -> 0 at u = 0.8; sigma falls linearly 0.5 -> 0.1. The first episodes are random, the
first half holds roughly as many successes as failures (easy tasks learn early, as SAC does), and
the last fifth is the expert with small noise, like a converged SAC policy's exploration.
Chosen over three alternatives on mt5 (BENCHMARKS.md, "Dataset generation").
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from mtrl_bench_envs.suites import ACT_DIM, EPISODE_LENGTH, MT50_ORDER, OBS_DIM, Suite


@dataclass(frozen=True)
class Recipe:
    """A named action-mixing schedule; `name` keys dataset directories, so bump it on any change.

    Each schedule is a list of (u, value) knots, linearly interpolated.
    """

    name: str
    random_prob: tuple[tuple[float, float], ...]  # probability of a uniform random action
    noise_std: tuple[tuple[float, float], ...]  # Gaussian noise std on the scripted action

    def at(self, u: float) -> tuple[float, float]:
        """(random-action probability, noise std) at buffer progress u."""
        return tuple(float(np.interp(u, *zip(*knots, strict=True)))
                     for knots in (self.random_prob, self.noise_std))

    def to_dict(self) -> dict:
        """JSON-native (lists, not tuples), so a card read back compares equal."""
        return json.loads(json.dumps(asdict(self)))


RECIPE = Recipe(
    name="scripted-replay-v1",
    random_prob=((0.0, 1.0), (0.5, 0.35), (0.8, 0.0), (1.0, 0.0)),
    noise_std=((0.0, 0.5), (1.0, 0.1)),
)


def progress(episode: int, episodes: int) -> float:
    return episode / (episodes - 1) if episodes > 1 else 1.0


@dataclass
class EpisodePlan:
    """Everything random about one episode, drawn up front so stepping stays a tight loop."""

    goal: int
    env_seed: int
    random_mask: np.ndarray  # (T,) bool: take the uniform action at this step
    uniform: np.ndarray  # (T, 4)
    noise: np.ndarray  # (T, 4) Gaussian, already scaled by sigma(u)


def plan_episode(suite: Suite, task: str, seed: int, episode: int, episodes: int,
                 recipe: Recipe = RECIPE) -> EpisodePlan:
    """The plan of episode `episode`: a pure function of (seed, task, episode), not of chunking.

    The task's RNG is SeedSequence([seed, MT50 index]); episode e uses its e-th spawned child,
    built directly so that any worker can produce any episode.
    """
    ss = np.random.SeedSequence([seed, MT50_ORDER.index(task)], spawn_key=(episode,))
    rng = np.random.default_rng(ss)
    goal = suite.goal_for_episode(episode, rng)
    env_seed = int(rng.integers(2**31 - 1))
    random_prob, noise_std = recipe.at(progress(episode, episodes))
    shape = (EPISODE_LENGTH, ACT_DIM)
    return EpisodePlan(
        goal=goal,
        env_seed=env_seed,
        random_mask=rng.random(EPISODE_LENGTH) < random_prob,
        uniform=rng.uniform(-1.0, 1.0, shape),
        noise=rng.normal(0.0, 1.0, shape) * noise_std,
    )


@dataclass
class Episode:
    observations: np.ndarray  # (T, 39) float32: the observation each action was taken in
    actions: np.ndarray  # (T, 4) float32, the clipped action the env executed
    rewards: np.ndarray  # (T,) float32
    successes: np.ndarray  # (T,) bool, info["success"]

    @property
    def steps(self) -> int:
        return len(self.rewards)


def make_policy(task: str):
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[task]()


def rollout(env, policy, plan: EpisodePlan | None = None, stop_at_success: bool = False,
            max_steps: int = EPISODE_LENGTH) -> Episode:
    """Run one episode on an env already set to its goal; `plan=None` is the noiseless expert.

    Without `stop_at_success` the episode runs all 500 steps (the env truncates there).
    """
    obs_buf = np.empty((max_steps, OBS_DIM), np.float32)
    act_buf = np.empty((max_steps, ACT_DIM), np.float32)
    rew_buf = np.empty(max_steps, np.float32)
    suc_buf = np.zeros(max_steps, bool)
    obs, _ = env.reset()
    t = 0
    with warnings.catch_warnings():
        # Some scripted policies warn on every call that their gains exceed the action range.
        warnings.simplefilter("ignore", UserWarning)
        while t < max_steps:
            obs_buf[t] = obs
            if plan is not None and plan.random_mask[t]:
                action = plan.uniform[t]  # no policy call: a random step does not need it
            elif plan is not None:
                action = policy.get_action(obs) + plan.noise[t]
            else:
                action = policy.get_action(obs)
            act_buf[t] = np.clip(action, -1.0, 1.0)
            obs, reward, _, truncated, info = env.step(act_buf[t])
            rew_buf[t] = reward
            suc_buf[t] = bool(info["success"])
            t += 1
            if truncated or (stop_at_success and suc_buf[t - 1]):
                break
    return Episode(obs_buf[:t], act_buf[:t], rew_buf[:t], suc_buf[:t])
