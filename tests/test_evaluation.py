"""Batched evaluation: result shape, determinism, context windows, per-task weights, success."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from metaworld.policies import ENV_POLICY_MAP

from mtrl_bench.config import DataConfig, EvalConfig, ModelConfig
from mtrl_bench.data import OfflineData
from mtrl_bench.evaluation import EnvPool, History, batch_index, evaluate
from mtrl_bench.model import PromptDT
from mtrl_bench.testing import ScriptedExpert
from mtrl_bench_envs.suites import EPISODE_LENGTH, Suite, make_env

# coffee-button's expert succeeds in ~30 steps, reach's in 45-65: with early stop, whole task rows
# and single episodes leave the batch at different times.
TASKS = ("coffee-button-v3", "reach-v3")
SUITE = Suite("test", TASKS)
pytestmark = pytest.mark.filterwarnings("ignore:Constant.*too high")  # metaworld's expert policies
TINY = ModelConfig(embed_dim=32, n_layer=1, n_head=2, context_len=5, prompt_len=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two oversubscribe a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _scripted_dataset(task: str, episodes: int = 2, steps: int = 30) -> SimpleNamespace:
    """Short noisy scripted-policy episodes, shaped like a TaskDataset."""
    rng, policy = np.random.default_rng(0), ENV_POLICY_MAP[task]()
    fields = {k: [] for k in ("observations", "actions", "rewards", "successes")}
    for ep in range(episodes):
        env = make_env(task, ep, ep)
        obs, _ = env.reset()
        for f in fields.values():
            f.append([])
        for _ in range(steps):
            act = np.clip(policy.get_action(obs) + rng.normal(0, 0.3, 4), -1, 1)
            fields["observations"][-1].append(obs)
            obs, reward, _, _, info = env.step(act)
            fields["actions"][-1].append(act)
            fields["rewards"][-1].append(reward)
            fields["successes"][-1].append(info["success"] > 0)
    dtypes = {"observations": np.float32, "actions": np.float32, "rewards": np.float32,
              "successes": bool}
    return SimpleNamespace(task=task, **{k: np.array(v, dtypes[k]) for k, v in fields.items()})


def _fixed_dataset(horizon: int) -> SimpleNamespace:
    """One task, one episode of zeros: for where windows fall, not what they hold."""
    return SimpleNamespace(task=TASKS[0], observations=np.zeros((1, horizon, 39), np.float32),
                           actions=np.zeros((1, horizon, 4), np.float32),
                           rewards=np.ones((1, horizon), np.float32),
                           successes=np.zeros((1, horizon), bool))


@pytest.fixture(scope="module")
def data() -> OfflineData:
    return OfflineData([_scripted_dataset(t) for t in TASKS], DataConfig(), TINY)


@pytest.fixture(scope="module")
def model(data: OfflineData) -> PromptDT:
    torch.manual_seed(0)
    return PromptDT(TINY, data.states[0].shape[-1], data.actions[0].shape[-1])


def _run(model, data, **kw) -> dict:
    cfg = EvalConfig(episodes_per_task=kw.pop("episodes", 1), early_stop=kw.pop("early_stop"))
    return evaluate(model, data, SUITE, cfg, progress=False, **kw)


def _outcome(result: dict) -> dict:
    """The result without its timings."""
    return {k: v for k, v in result.items() if k not in ("seconds", "build_seconds")}


@pytest.fixture(scope="module")
def shared(model, data) -> dict:
    return _run(model, data, early_stop=False)


def test_result_structure_and_determinism(shared, model, data):
    assert set(shared["tasks"]) == set(TASKS)
    for res in shared["tasks"].values():
        assert res["episodes"] == 1 and len(res["successes"]) == len(res["returns"]) == 1
        assert 0.0 <= res["success"] <= 1.0 and set(res["successes"]) <= {0, 1}
        assert res["return"] == pytest.approx(np.mean(res["returns"]))
    assert shared["env_steps"] == len(TASKS) * EPISODE_LENGTH  # no early stop: full episodes
    assert shared["success"] == pytest.approx(np.mean([r["success"]
                                                       for r in shared["tasks"].values()]))
    assert shared["seconds"] > shared["build_seconds"] > 0
    assert _outcome(_run(model, data, early_stop=False)) == _outcome(shared)


def test_window_matches_a_hand_built_window(data):
    """History.window left-pads like OfflineData._windows and zeroes the current action."""
    K, ep, horizon = data.K, 1, 12
    states, actions, rtg = data.states[0][ep], data.actions[0][ep], data.rtg[0][ep]
    hist = History((1, 2), horizon, K, states.shape[-1], actions.shape[-1])
    for t in range(horizon):
        hist.states[0, 1, hist.slot(t)], hist.rtg[0, 1, hist.slot(t)] = states[t], rtg[t]
        win = hist.window(t, np.array([0]), np.array([[1]]))
        pad, steps = max(0, K - 1 - t), np.arange(max(0, t - K + 1), t + 1)
        want_states = np.zeros((K, states.shape[-1]), np.float32)
        want_states[pad:] = states[steps]
        want_actions = np.zeros((K, actions.shape[-1]), np.float32)
        want_actions[pad:-1] = actions[steps[:-1]]  # a_t is not known yet
        want_rtg = np.zeros(K, np.float32)
        want_rtg[pad:] = rtg[steps]
        np.testing.assert_array_equal(win.states[0, 0], want_states)
        np.testing.assert_array_equal(win.actions[0, 0], want_actions)
        np.testing.assert_array_equal(win.rtg[0, 0, :, 0], want_rtg)
        np.testing.assert_array_equal(win.timesteps[0, 0], np.r_[np.zeros(pad), steps])
        np.testing.assert_array_equal(win.mask[0, 0], np.arange(K) >= pad)
        # the training window over the same steps ("end" windows pad the first steps alike)
        train = data._windows(0, np.array([ep]), np.array([steps[0]]), np.array([len(steps)]), K)
        got = (win.states, win.rtg, win.timesteps, win.mask)
        for field, want in zip(got, train[:1] + train[2:]):  # train[1]: actions, incl. a_t
            np.testing.assert_array_equal(field[0], want)
        hist.actions[0, 1, hist.slot(t)] = actions[t]


@pytest.mark.parametrize(("windows", "expected"), [("start", 1), ("end", 5)])
def test_training_windows_reach_the_first_steps_as_configured(windows, expected):
    """How often step 0 is in a sampled window: 1/T of windows ("start"), K/T ("end")."""
    data = OfflineData([_fixed_dataset(horizon=50)], DataConfig(windows=windows), TINY)
    seg, _ = data.sample(np.random.default_rng(0), 20_000)
    has_first = ((seg.timesteps == 0) & seg.mask).any(-1).float().mean().item()
    assert has_first == pytest.approx(expected / 50, rel=0.15)
    valid = seg.timesteps[seg.mask.all(-1)]  # unpadded windows are K consecutive steps
    assert (valid.diff(dim=-1) == 1).all()


def test_unknown_window_placement_is_refused():
    with pytest.raises(ValueError, match="data.windows must be one of start, end"):
        OfflineData([_fixed_dataset(horizon=50)], DataConfig(windows="middle"), TINY)


def test_batch_index_covers_each_active_env_once():
    active = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], bool)
    rows, cols = batch_index(active)
    assert rows.tolist() == [0, 2] and cols.shape == (2, 3)
    assert cols[0].tolist() == [0, 2, 3] and cols[1].tolist() == [1, 1, 1]  # padded by repeats
    full_rows, full_cols = batch_index(np.ones((2, 3), bool))
    assert full_rows.tolist() == [0, 1] and full_cols.tolist() == [[0, 1, 2]] * 2


def test_per_task_weights_reach_their_own_task(shared, model, data):
    """Task 0 gets the shared weights (same rollout), task 1 a random mask (different rollout)."""
    torch.manual_seed(1)
    weights = {}
    for name, w in model.maskable_parameters().items():
        masked = w.detach() * (torch.rand_like(w) < 0.5)
        weights[name] = torch.stack([w.detach(), masked])
    result = _run(model, data, early_stop=False, weights=weights)
    own, ref = result["tasks"][TASKS[0]], shared["tasks"][TASKS[0]]
    # baddbmm (per-task) and linear (shared) round differently in the last bits
    assert own["successes"] == ref["successes"]
    assert own["returns"] == pytest.approx(ref["returns"], rel=1e-5)
    assert result["tasks"][TASKS[1]]["returns"] != shared["tasks"][TASKS[1]]["returns"]
    with pytest.raises(ValueError, match="leading task axis"):
        _run(model, data, early_stop=False, weights={k: w[:1] for k, w in weights.items()})


@pytest.fixture(scope="module")
def expert_run(data) -> tuple[ScriptedExpert, dict]:
    expert = ScriptedExpert(data)
    return expert, _run(expert, data, episodes=3, early_stop=True)


def test_scripted_expert_succeeds_and_stops_early(expert_run):
    _, result = expert_run
    assert result["success"] == 1.0
    assert all(r["successes"] == [1, 1, 1] for r in result["tasks"].values())
    assert 0 < result["env_steps"] < len(TASKS) * 3 * 100  # every episode ended at its success


@pytest.mark.parametrize("kw", [{"shrink": False}, {"max_envs": 2}], ids=["static", "waves"])
def test_static_batch_and_waves_give_the_same_results(expert_run, data, kw):
    expert, result = expert_run
    again = _run(expert, data, episodes=3, early_stop=True, **kw)
    assert _outcome(again) == _outcome(result)


def test_a_shared_pool_reuses_envs_with_the_same_results(expert_run, data):
    """Waves of one env per task, and a second evaluation on the same pool: every env after
    the first two is an old one pointed at a new goal, and nothing changes."""
    expert, result = expert_run
    pool = EnvPool()
    try:
        for _ in range(2):
            again = _run(expert, data, episodes=3, early_stop=True,
                         max_envs=len(TASKS), pool=pool)
            assert _outcome(again) == _outcome(result)
        assert pool.trim(100) == len(TASKS)  # no env built beyond the first wave
        assert again["build_seconds"] == 0.0
    finally:
        pool.close()



def test_env_workers_give_the_results_of_one_process(shared, model, data, expert_run):
    """Envs stepped in worker processes: the same observations, rewards and successes, for a
    model's full episodes and for an expert's early-stopping waves (3 shares of 2 envs: whole
    tasks and single episodes leave different shares), and a second evaluation reuses the
    workers' envs."""
    expert, stopped = expert_run
    with EnvPool(workers=2) as pool:
        assert _outcome(_run(model, data, early_stop=False, pool=pool)) == _outcome(shared)
    with EnvPool(workers=3) as pool:
        for _ in range(2):
            again = _run(expert, data, episodes=3, early_stop=True, max_envs=6, pool=pool)
            assert _outcome(again) == _outcome(stopped)
        assert again["build_seconds"] == 0.0
        assert pool.trim(100) == 6


def test_an_env_workers_error_names_the_worker_and_the_problem():
    with EnvPool(workers=2) as pool:
        with pytest.raises(RuntimeError, match=r"env worker process \d+: .*no-such-task-v3"):
            pool.open([(TASKS[0], 0, 0), ("no-such-task-v3", 0, 0)])
        pool.release()
        with pytest.raises(ValueError, match="no-such-task-v3"):  # in this process's share
            pool.open([("no-such-task-v3", 0, 0), (TASKS[0], 0, 0)])
        pool.release()
        assert pool.open([(TASKS[0], 0, 0), (TASKS[1], 0, 0)]).shape == (2, 39)  # still usable


def test_a_dead_env_worker_is_reported_not_waited_for():
    with EnvPool(workers=2) as pool:
        pool.open([(TASKS[0], 0, 0), (TASKS[1], 0, 0)])
        _, worker = pool._remote[0]
        worker.kill()
        worker.join()
        with pytest.raises(RuntimeError, match=r"env worker process \d+ died"):
            pool.step(np.arange(2), np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_env_workers_must_be_a_positive_integer(workers):
    with pytest.raises(ValueError, match="env workers must be an integer >= 1"):
        EnvPool(workers)
