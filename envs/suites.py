"""Meta-World v3 task suites (HarmoDT's fixed task order) and a correctly seeded env factory."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mtrl_bench_envs.common import unknown_name_message

# HarmoDT's fixed MT50 order (config/MetaWorld/task.json), renamed to -v3. MT5 and MT30 are its
# prefixes, not random draws, so tables line up with the paper's task sets.
MT50_ORDER: tuple[str, ...] = tuple(f"{name}-v3" for name in (
    "basketball bin-picking button-press-topdown button-press button-press-wall "
    "coffee-button coffee-pull coffee-push dial-turn disassemble door-close door-lock door-open "
    "door-unlock hand-insert drawer-close drawer-open faucet-open faucet-close handle-press-side "
    "handle-press handle-pull-side handle-pull lever-pull peg-insert-side pick-place-wall "
    "pick-out-of-hole reach push-back push "
    "pick-place plate-slide plate-slide-side plate-slide-back plate-slide-back-side soccer "
    "push-wall shelf-place sweep-into sweep window-open window-close assembly "
    "button-press-topdown-wall hammer peg-unplug-side reach-wall stick-push stick-pull box-close"
).split())

NUM_GOALS = 50  # Meta-World's training goals per task
EPISODE_LENGTH = 500  # Meta-World v3 max_path_length; episodes always run to truncation
OBS_DIM, ACT_DIM = 39, 4
GOAL_SEED = 1  # seed of the benchmark's goal list (metaworld.MT1(task, seed=...))


@dataclass(frozen=True)
class Suite:
    """A named, ordered task list.

    random_goals: every episode (data and evaluation) draws its goal from the 50 training goals
    instead of cycling through them in order (paper Table 2, "MT50-rand").
    A suite is defined once, here: `SUITES`' order is the order of tables and plots, `label` is
    how they name it (mtrl_bench.display).
    """

    name: str
    tasks: tuple[str, ...]
    random_goals: bool = False
    description: str = ""
    family: str = ""  # the paper's suite it stands in for (random5-3 -> random5); "" = itself
    label: str = ""  # as tables name it ("MT5"); "" = the name

    @property
    def table_name(self) -> str:
        return self.family or self.name

    def goal_for_episode(self, episode: int, rng: np.random.Generator) -> int:
        if self.random_goals:
            return int(rng.integers(NUM_GOALS))
        return episode % NUM_GOALS


def _random_combination(k: int, seed: int) -> tuple[str, ...]:
    picks = np.random.default_rng(seed).choice(len(MT50_ORDER), size=k, replace=False)
    return tuple(MT50_ORDER[i] for i in sorted(picks))


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("mt5", MT50_ORDER[:5], description="first 5 tasks of HarmoDT's MT50 order",
              label="MT5"),
        Suite("mt30", MT50_ORDER[:30], description="first 30 tasks of HarmoDT's MT50 order",
              label="MT30"),
        Suite("mt50", MT50_ORDER, description="all 50 Meta-World v3 tasks", label="MT50"),
        Suite("mt50-rand", MT50_ORDER, random_goals=True, label="MT50-rand",
              description="MT50 with a random training goal every episode (paper Table 2)"),
        Suite("random5", _random_combination(5, seed=0), label="random 5",
              description="5 tasks drawn from MT50 with seed 0 (paper Table 3)"),
        Suite("random30", _random_combination(30, seed=0), label="random 30",
              description="30 tasks drawn from MT50 with seed 0 (paper Table 3)"),
    )
}


def get_suite(name: str) -> Suite:
    """Look up a suite; `randomK-S` draws K tasks from MT50 with seed S (e.g. random5-3)."""
    if name in SUITES:
        return SUITES[name]
    prefix, _, seed = name.partition("-")
    # ASCII digits in canonical form only: "random5-٣" or "random5-03" would be new names
    # (new run identities) for the tasks of random5-3
    if prefix in ("random5", "random30") and seed.isascii() and seed.isdigit() \
            and seed == str(int(seed)):
        k = int(prefix.removeprefix("random"))
        return Suite(name, _random_combination(k, int(seed)),
                     description=f"{k} tasks drawn from MT50 with seed {seed}", family=prefix)
    raise ValueError(unknown_name_message("suite", name, list(SUITES)))


def check_task(task: str) -> str:
    if task not in MT50_ORDER:
        raise ValueError(unknown_name_message("task", task, MT50_ORDER))
    return task


@functools.cache
def _benchmark(task: str):
    import metaworld

    return metaworld.MT1(task, seed=GOAL_SEED)  # ~0.8 s: builds the 50 goals, cache per process


def make_env(task: str, goal: int, seed: int):
    """A Meta-World v3 env for `task` fixed to training goal `goal`, seeded at construction.

    `env.reset(seed=...)` does not seed Meta-World; the seed goes through `env.seed` and the goal
    through `set_task`, which also freezes the goal vector so every reset is reproducible.
    """
    env = _benchmark(check_task(task)).train_classes[task]()
    set_goal(env, task, goal, seed)
    return env


def set_goal(env, task: str, goal: int, seed: int) -> None:
    """Point an existing env of `task` at training goal `goal` and reseed it.

    Reusing one env per task saves the ~0.2 s model construction per episode; an env reused this
    way replays exactly what a fresh `make_env(task, goal, seed)` would.
    """
    env.set_task(_benchmark(task).train_tasks[goal % NUM_GOALS])
    env.seed(seed)
