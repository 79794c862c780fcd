"""The MTDiff-format loader on a tiny fixture written here (`<dir>/<task>/<i>.npz`)."""
from __future__ import annotations

import numpy as np
import pytest

from mtrl_bench_envs.dataset import DatasetError, load_mtdiff


def _episode(rng, obs_dim=39):
    obs = rng.normal(size=(501, obs_dim))
    return {
        "observations": obs[:-1],  # float64, as SAC buffers store them
        "actions": rng.uniform(-2.1, 2.1, size=(500, 4)),  # SAC actions are not clipped
        "rewards": rng.uniform(0, 10, size=(500, 1)),
        "next_observations": obs[1:],
        "terminals": np.eye(1, 500, 499).T,
    }


@pytest.fixture
def mtdiff(tmp_path):
    rng = np.random.default_rng(0)
    for folder, count in (("basketball-v2", 4), ("reach-v3", 3)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            np.savez(tmp_path / folder / f"{i}.npz", **_episode(rng))
    return tmp_path


def test_loads_v2_folders_into_the_common_form(mtdiff):
    near, reach = load_mtdiff(mtdiff, ["basketball-v3", "reach-v3"], "near-optimal")
    assert near.task == "basketball-v3" and near.episodes == 4 and reach.episodes == 3
    assert near.observations.shape == (4, 500, 39) and near.observations.dtype == np.float32
    assert near.actions.dtype == np.float32 and near.actions.max() == 1.0
    assert near.actions.min() == -1.0
    assert near.rewards.shape == (4, 500) and not near.successes.any()
    with np.load(mtdiff / "basketball-v2" / "2.npz") as raw:
        np.testing.assert_allclose(near.rewards[2], raw["rewards"][:, 0], rtol=1e-6)
        np.testing.assert_allclose(near.observations[2], raw["observations"], rtol=1e-6)
        inside = np.abs(raw["actions"]) <= 1
        np.testing.assert_allclose(near.actions[2][inside], raw["actions"][inside], rtol=1e-6)


def test_sub_optimal_is_the_first_half(mtdiff):
    near = load_mtdiff(mtdiff, ["basketball-v3"], "near-optimal")[0]
    sub, reach = load_mtdiff(mtdiff, ["basketball-v3", "reach-v3"], "sub-optimal")
    assert sub.episodes == 2 and reach.episodes == 1
    np.testing.assert_array_equal(sub.observations, near.observations[:2])


def test_missing_task_folder_suggests_a_name(mtdiff):
    (mtdiff / "basketball-v2").rename(mtdiff / "basketbal-v2")
    with pytest.raises(DatasetError, match="no folder 'basketball-v3' or 'basketball-v2'.*"
                                           "Did you mean 'basketbal-v2'"):
        load_mtdiff(mtdiff, ["basketball-v3"], "near-optimal")
    with pytest.raises(ValueError, match="unknown task 'basketbal-v3'"):
        load_mtdiff(mtdiff, ["basketbal-v3"], "near-optimal")


def test_numbering_gap_is_named(mtdiff):
    (mtdiff / "basketball-v2" / "1.npz").unlink()
    with pytest.raises(DatasetError, match=r"basketball-v2/1\.npz: missing"):
        load_mtdiff(mtdiff, ["basketball-v3"], "near-optimal")


def test_wrong_shape_corrupt_file_and_missing_key_are_named(mtdiff):
    folder = mtdiff / "basketball-v2"
    np.savez(folder / "1.npz", **_episode(np.random.default_rng(1), obs_dim=12))
    with pytest.raises(DatasetError, match=r"1\.npz: 'observations' has shape \(500, 12\)"):
        load_mtdiff(mtdiff, ["basketball-v3"], "near-optimal")
    (folder / "1.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match=r"1\.npz: unreadable"):
        load_mtdiff(mtdiff, ["basketball-v3"], "sub-optimal")
    episode = _episode(np.random.default_rng(2))
    del episode["actions"]
    np.savez(folder / "1.npz", **episode)
    with pytest.raises(DatasetError, match=r"1\.npz: missing key\(s\) actions"):
        load_mtdiff(mtdiff, ["basketball-v3"], "near-optimal")
    # the last file is outside the sub-optimal half, so that half still loads
    np.savez(folder / "3.npz", **_episode(np.random.default_rng(3), obs_dim=12))
    np.savez(folder / "1.npz", **_episode(np.random.default_rng(4)))
    assert load_mtdiff(mtdiff, ["basketball-v3"], "sub-optimal")[0].episodes == 2
