"""Suites, their task orders, name errors, and the seeded env factory."""
from __future__ import annotations

import dataclasses
from importlib import resources

import numpy as np
import pytest

from mtrl_bench_envs.cli import DEFAULT_EPISODES
from mtrl_bench_envs.recipe import (
    PERCEIVED_POSITIONS,
    RECIPE,
    V1,
    V2,
    get_recipe,
    make_policy,
    plan_episode,
    rollout,
)
from mtrl_bench_envs.suites import MT50_ORDER, NUM_GOALS, SUITES, get_suite, make_env, set_goal


def test_mt5_and_mt30_are_prefixes_of_harmodt_order():
    assert len(MT50_ORDER) == len(set(MT50_ORDER)) == 50
    assert SUITES["mt5"].tasks == (
        "basketball-v3", "bin-picking-v3", "button-press-topdown-v3", "button-press-v3",
        "button-press-wall-v3")
    assert SUITES["mt30"].tasks == MT50_ORDER[:30]
    assert SUITES["mt30"].tasks[-1] == "push-v3" and MT50_ORDER[-1] == "box-close-v3"
    assert SUITES["mt50"].tasks == SUITES["mt50-rand"].tasks == MT50_ORDER


def test_scripted_policy_exists_for_every_task():
    from metaworld.policies import ENV_POLICY_MAP

    assert set(MT50_ORDER) == set(ENV_POLICY_MAP)


def test_goal_cycling_and_random_goals():
    rng = np.random.default_rng(0)
    fixed = [SUITES["mt50"].goal_for_episode(e, rng) for e in range(120)]
    assert fixed[:3] == [0, 1, 2] and fixed[50] == 0 and fixed[119] == 19
    drawn = [SUITES["mt50-rand"].goal_for_episode(e, rng) for e in range(200)]
    assert all(0 <= g < NUM_GOALS for g in drawn) and drawn[:50] != list(range(50))
    assert len(set(drawn)) > 30


def test_random_suites_are_seeded_draws_from_mt50():
    a, b, c = get_suite("random5"), get_suite("random5-0"), get_suite("random5-3")
    assert a.tasks == b.tasks and a.tasks != c.tasks
    assert set(c.tasks) <= set(MT50_ORDER) and len(get_suite("random30-7").tasks) == 30
    assert list(c.tasks) == sorted(c.tasks, key=MT50_ORDER.index)


@pytest.mark.parametrize("name, suggestion", [("mt05", "mt5"), ("mt50rand", "mt50-rand"),
                                              ("random6", "random5")])
def test_unknown_suite_suggests_a_close_name(name, suggestion):
    with pytest.raises(ValueError) as err:
        get_suite(name)
    msg = str(err.value)
    assert f"unknown suite '{name}'" in msg and f"Did you mean '{suggestion}'?" in msg
    assert "\n" not in msg and "mt30" in msg


def test_reused_env_replays_a_fresh_env():
    """Generation reuses one env per task; it must behave exactly like make_env."""
    task, suite = "button-press-v3", SUITES["mt5"]
    plan = plan_episode(suite, task, seed=0, episode=3, episodes=8)
    policy = make_policy(task)
    fresh = rollout(make_env(task, plan.goal, plan.env_seed), policy, plan, max_steps=60)
    env = make_env(task, 17, 5)
    rollout(env, policy, max_steps=60)  # leave state behind on another goal
    set_goal(env, task, plan.goal, plan.env_seed)
    reused = rollout(env, policy, plan, max_steps=60)
    np.testing.assert_array_equal(fresh.observations, reused.observations)
    np.testing.assert_array_equal(fresh.rewards, reused.rewards)
    assert not np.array_equal(fresh.observations, rollout(env, policy, max_steps=60).observations)


def test_episode_plan_depends_only_on_seed_task_episode():
    suite = SUITES["mt50-rand"]
    a = plan_episode(suite, "reach-v3", 0, 5, 100)
    b = plan_episode(suite, "reach-v3", 0, 5, 100)
    c = plan_episode(suite, "reach-v3", 1, 5, 100)
    np.testing.assert_array_equal(a.noise, b.noise)
    assert (a.goal, a.env_seed) == (b.goal, b.env_seed)
    assert not np.array_equal(a.noise, c.noise)


def test_v1_schedule_runs_from_random_to_expert():
    at0, at1 = V1.at(0.0), V1.at(1.0)
    assert at0["random_prob"] == 1.0 and at1["random_prob"] == 0.0
    assert at0["noise_std"] > at1["noise_std"] > 0 and at0["offset_std"] == at1["offset_std"] == 0
    probs = [V1.at(u)["random_prob"] for u in np.linspace(0, 1, 21)]
    assert probs == sorted(probs, reverse=True)
    first = plan_episode(SUITES["mt5"], "basketball-v3", 0, 0, 100, V1)
    last = plan_episode(SUITES["mt5"], "basketball-v3", 0, 99, 100, V1)
    assert first.random_mask.all() and not last.random_mask.any()
    assert first.offset is None and last.offset is None
    # v1's card reads as it did before recipes had offsets (existing datasets stay valid)
    assert set(V1.to_dict()) == {"name", "random_prob", "noise_std"}


def test_v2_is_a_warm_up_then_a_policy_whose_skill_rises():
    suite = SUITES["mt5"]
    plans = [plan_episode(suite, "button-press-v3", 0, e, 100, V2) for e in range(100)]
    random_share = [p.random_mask.mean() for p in plans]
    # 1% uniform warm-up (SAC's random steps before learning: 0.1-1% of a 1M-step buffer),
    # then no uniform actions at all
    assert random_share[0] == 1.0 and not any(random_share[1:])
    # the perceived positions are shifted by one offset per episode, shrinking to none by the
    # middle of the buffer; nothing else in the observation moves
    shifted = [p for p in plans[1:] if p.offset is not None]
    assert shifted and all(p.offset[PERCEIVED_POSITIONS].any() for p in shifted)
    assert all(not np.delete(p.offset, PERCEIVED_POSITIONS).any() for p in shifted)
    assert all(plans[e].offset is None for e in range(50, 100))
    assert np.allclose(shifted[0].offset[4:7], shifted[0].offset[36:39])
    assert V2.at(0.0101)["offset_std"] == 0.08 and V2.at(0.5)["offset_std"] == 0.0
    # i.i.d. exploration noise whose spread falls from 1.0 to 0.1
    spread = [p.noise.std() for p in plans[1:]]
    assert spread[0] > 0.9 and spread[-1] == pytest.approx(0.1, abs=0.01)
    assert spread[0] > spread[30] > spread[50] > spread[-1]
    assert get_recipe("scripted-replay-v2") is V2 is RECIPE


def test_offset_makes_the_expert_miss(tmp_path):
    """The same episode with and without the perception offset: the offset moves the hand
    elsewhere (a coherent, state-dependent error), not by i.i.d. jitter."""
    task, suite = "button-press-v3", SUITES["mt5"]
    plan = plan_episode(suite, task, 0, 5, 100, V2)
    assert plan.offset is not None
    clean = dataclasses.replace(plan, offset=None)
    policy = make_policy(task)
    a = rollout(make_env(task, plan.goal, plan.env_seed), policy, plan, max_steps=80)
    b = rollout(make_env(task, plan.goal, plan.env_seed), policy, clean, max_steps=80)
    assert np.abs(a.observations[-1, :3] - b.observations[-1, :3]).max() > 0.005


def test_unknown_recipe_suggests():
    with pytest.raises(ValueError, match="scripted-replay-v2"):
        get_recipe("scripted-replay-v3")


def test_default_episodes_match_the_cpu_profile():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    text = resources.files("mtrl_bench").joinpath("profiles/cpu.toml").read_text()
    assert tomllib.loads(text)["data"]["episodes"] == DEFAULT_EPISODES
