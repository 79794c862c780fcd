"""Scripted replay recipes: how one buffer episode departs from Meta-World's scripted expert.

MTDiff's datasets (the paper's) are SAC replay buffers that run from random to expert behaviour.
We emulate one with the scripted policies. Episode e of a task's E-episode buffer has progress
u = e / (E - 1); a recipe gives, as linear knots over u, the schedules that shape that episode:

- `random_prob`: at every step, take a uniform random action in [-1, 1]^4 with this probability;
- `noise_std`: otherwise take the scripted action plus i.i.d. Gaussian noise of this std;
- `offset_std`: the scripted policy perceives every object and goal position shifted by one
  offset (metres) drawn per episode, so it reaches, grasps and pushes consistently off target:
  an error that is temporally coherent and depends on the state, like an imperfect policy's.

Actions are clipped to [-1, 1].

"scripted-replay-v1" flips a coin at every step between a uniform action and the expert with
i.i.d. noise: 39% of all actions are uniform and no episode is noise-free, so a model fits a
mixture that no state explains (Prompt-DT learned little from it; docs/design.md, "Data").

"scripted-replay-v2" has the structure of a SAC replay buffer (MTDiff's, the paper's data: one
SAC run per task, every episode in collection order): a uniform warm-up of 1% of the buffer (SAC's
random steps before learning starts; 0.1-1% of a 1M-step buffer in common implementations), then
a policy whose skill rises along the buffer. Its mean is coherently wrong early on, through the
perception offset (std 8 cm, 4 cm at u = 0.2, 1.5 cm at 0.35, none from the middle of the buffer,
our assumption of a SAC run that has converged by then; no published curve of MTDiff's buffers
was found), and its i.i.d. exploration noise, which SAC
samples independently at every step given the state, falls from 1.0 to 0.3 at u = 0.3, 0.15 at
the middle and 0.1 at the end (a tanh-Gaussian at SAC's target entropy of -1 per action
dimension has std ~0.1). The first half holds the learning phase, the second half near-expert
behaviour. BENCHMARKS.md, "Dataset recipes", shows both recipes along the buffer and what BC
makes of them.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from mtrl_bench_envs.suites import ACT_DIM, EPISODE_LENGTH, MT50_ORDER, OBS_DIM, Suite

Knots = tuple[tuple[float, float], ...]
NONE: Knots = ((0.0, 0.0), (1.0, 0.0))
# Object 1, object 2 and goal positions in Meta-World v3's 39-dim observation; the hand (0:3),
# gripper (3), quaternions and the previous frame (18:36) are left as they are.
PERCEIVED_POSITIONS = np.r_[4:7, 11:14, 36:39]


@dataclass(frozen=True)
class Recipe:
    """A named schedule of departures from the expert; `name` keys dataset directories, so bump
    it on any change. Each schedule is a tuple of (u, value) knots, linearly interpolated."""

    name: str
    random_prob: Knots  # probability of a uniform random action at a step
    noise_std: Knots  # std of the noise added to the scripted action
    offset_std: Knots = NONE  # std (m) of the per-episode offset of perceived positions

    def at(self, u: float) -> dict[str, float]:
        """The schedules' values at buffer progress u."""
        return {k: float(np.interp(u, *zip(*getattr(self, k), strict=True)))
                for k in ("random_prob", "noise_std", "offset_std")}

    def to_dict(self) -> dict:
        """JSON-native (lists, not tuples), so a card read back compares equal. Schedules that
        never depart from the expert are left out: a v1 card reads as it did before they existed."""
        return json.loads(json.dumps({k: v for k, v in asdict(self).items() if v != NONE}))


V1 = Recipe(
    name="scripted-replay-v1",
    random_prob=((0.0, 1.0), (0.5, 0.35), (0.8, 0.0), (1.0, 0.0)),
    noise_std=((0.0, 0.5), (1.0, 0.1)),
)
V2 = Recipe(
    name="scripted-replay-v2",
    random_prob=((0.0, 1.0), (0.01, 1.0), (0.0101, 0.0), (1.0, 0.0)),
    noise_std=((0.0101, 1.0), (0.3, 0.3), (0.5, 0.15), (1.0, 0.1)),
    offset_std=((0.0101, 0.08), (0.2, 0.04), (0.35, 0.015), (0.5, 0.0), (1.0, 0.0)),
)
# Known quirk of V2, kept because its name keys published data: the warm-up ends by linear
# interpolation between u = 0.01 and 0.0101, so an episode that falls in between mixes uniform
# and policy actions (at 200 episodes: episode 2, p = 0.5). A v3 should end it with a step.
RECIPES = {r.name: r for r in (V1, V2)}
RECIPE = V2  # the default


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        from mtrl_bench_envs.common import unknown_name_message

        raise ValueError(unknown_name_message("recipe", name, tuple(RECIPES)))
    return RECIPES[name]


def progress(episode: int, episodes: int) -> float:
    return episode / (episodes - 1) if episodes > 1 else 1.0


@dataclass
class EpisodePlan:
    """Everything random about one episode, drawn up front so stepping stays a tight loop."""

    goal: int
    env_seed: int
    random_mask: np.ndarray  # (T,) bool: take the uniform action at this step
    uniform: np.ndarray  # (T, 4)
    noise: np.ndarray  # (T, 4) Gaussian, already scaled by noise_std(u)
    offset: np.ndarray | None = None  # (39,) added to what the policy sees; None: no offset


def plan_episode(suite: Suite, task: str, seed: int, episode: int, episodes: int,
                 recipe: Recipe = RECIPE) -> EpisodePlan:
    """The plan of episode `episode`: a pure function of (seed, task, episode), not of chunking.

    The task's RNG is SeedSequence([seed, MT50 index]); episode e uses its e-th spawned child,
    built directly so that any worker can produce any episode. Draws that a recipe adds come
    after v1's, so v1's plans are unchanged.
    """
    ss = np.random.SeedSequence([seed, MT50_ORDER.index(task)], spawn_key=(episode,))
    rng = np.random.default_rng(ss)
    goal = suite.goal_for_episode(episode, rng)
    env_seed = int(rng.integers(2**31 - 1))
    at = recipe.at(progress(episode, episodes))
    shape = (EPISODE_LENGTH, ACT_DIM)
    random_mask = rng.random(EPISODE_LENGTH) < at["random_prob"]
    uniform = rng.uniform(-1.0, 1.0, shape)
    noise = rng.normal(0.0, 1.0, shape)
    offset = None
    if at["offset_std"] > 0:
        offset = np.zeros(OBS_DIM)
        offset[PERCEIVED_POSITIONS] = np.tile(rng.normal(0.0, at["offset_std"], 3), 3)
    return EpisodePlan(goal, env_seed, random_mask, uniform, noise * at["noise_std"], offset)


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
                seen = obs if plan.offset is None else obs + plan.offset
                action = policy.get_action(seen) + plan.noise[t]
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
