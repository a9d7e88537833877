"""Datasets: format round trip, content hash, corrupted files, toys, behaviour policies, tiny pybullet sets,
importers. Real simulator, small sizes."""
from __future__ import annotations

import json
import os
import types
import zipfile

import numpy as np
import pytest

from modules.data import collect as collect_mod
from modules.data.behaviour import (
    EXPERT_ENVS,
    RandomPolicy,
    SACPolicy,
    expert_file,
    load_expert,
    parse_expert_weights,
    shipped_sac_path,
)
from modules.data.dataset import ARRAY_KEYS, OfflineDataset, content_sha256, episode_returns
from modules.data.errors import DatasetError, MissingDependencyError
from modules.data.importers import from_d4rl_arrays, from_d4rl_hdf5, from_episodes, from_minari
from modules.data.make import make_dataset, parse_dataset_id
from modules.data.toy import EIGHT_GAUSSIAN_CENTERS, make_toy_dataset, toy_reward
from modules.envs import env_spec, rollout


def _arrays(n: int = 12, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    term = np.zeros(n, bool)
    tout = np.zeros(n, bool)
    term[4], tout[9] = True, True  # episodes [0,5) terminal, [5,10) time limit, [10,12) unfinished
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "terminals": term,
        "timeouts": tout,
    }


# ------------------------------------------------------------------------------------------ format
def test_episode_returns_from_arrays():
    a = _arrays()
    np.testing.assert_allclose(episode_returns(a["rewards"], a["terminals"], a["timeouts"]),
                               [0 + 1 + 2 + 3 + 4, 5 + 6 + 7 + 8 + 9])
    ds = OfflineDataset.from_arrays(a, env="hopper", policy="test", seed=0)
    assert ds.metadata["returns"]["count"] == 2 and ds.metadata["returns"]["max"] == 35.0
    assert ds.metadata["normalized_scores"]["mean"] == pytest.approx(
        (100 * (np.array([10.0, 35.0]) - env_spec("hopper").r_min) / (env_spec("hopper").r_max
                                                                     - env_spec("hopper").r_min)).mean())
    assert ds.episode_bounds() == [(0, 5), (5, 10)]


def test_save_load_round_trip_and_content_hash(tmp_path):
    ds = OfflineDataset.from_arrays(_arrays(), env="hopper", policy="test", seed=3, dataset_id="x")
    p1 = ds.save(tmp_path / "a.npz")
    p2 = ds.save(tmp_path / "b.npz", compress=False)
    back = OfflineDataset.load(p1)
    for k in ARRAY_KEYS:
        np.testing.assert_array_equal(getattr(back, k), getattr(ds, k))
        assert getattr(back, k).dtype == getattr(ds, k).dtype
    assert back.metadata == OfflineDataset.load(p2).metadata
    assert back.metadata["sha256"] == content_sha256(back.arrays()) == ds.sha256
    assert back.metadata["seed"] == 3 and back.metadata["size"] == 12
    # readable without this project: plain numpy, no pickle
    with np.load(p1, allow_pickle=False) as z:
        assert set(z.files) == set(ARRAY_KEYS) | {"metadata"}
        assert json.loads(str(z["metadata"]))["sha256"] == ds.sha256
    assert oct(os.stat(p1).st_mode & 0o077) != "0o0"  # not a private 0600 temp file
    # a different content gives a different hash
    other = _arrays()
    other["rewards"][0] += 1
    assert content_sha256(other) != ds.sha256


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_corrupted_and_foreign_files_give_clear_errors(tmp_path):
    ds = OfflineDataset.from_arrays(_arrays(), env="hopper", policy="test", seed=0)
    good = ds.save(tmp_path / "good.npz")
    raw = good.read_bytes()

    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="trunc.npz.*not a readable dataset file"):
        OfflineDataset.load(trunc)

    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    with pytest.raises(DatasetError, match="junk.npz"):
        OfflineDataset.load(junk)

    a = ds.arrays()
    meta = np.array(json.dumps(ds.metadata))
    wrong_keys = tmp_path / "keys.npz"
    _write_npz(wrong_keys, obs=a["observations"], metadata=meta)
    with pytest.raises(DatasetError, match=r"keys.npz: missing key\(s\) \['observations'"):
        OfflineDataset.load(wrong_keys)

    wrong_dtype = tmp_path / "dtype.npz"
    _write_npz(wrong_dtype, **{**a, "rewards": a["rewards"].astype(np.float64)}, metadata=meta)
    with pytest.raises(DatasetError, match="dtype.npz: key 'rewards' has dtype float64, expected float32"):
        OfflineDataset.load(wrong_dtype)

    wrong_shape = tmp_path / "shape.npz"
    _write_npz(wrong_shape, **{**a, "actions": a["actions"][:5]}, metadata=meta)
    with pytest.raises(DatasetError, match="shape.npz: key 'actions' has 5 rows, expected 12"):
        OfflineDataset.load(wrong_shape)

    tampered = tmp_path / "tampered.npz"
    _write_npz(tampered, **{**a, "rewards": a["rewards"] + 1}, metadata=meta)
    with pytest.raises(DatasetError, match="tampered.npz: content sha256 .* does not match"):
        OfflineDataset.load(tampered)

    with pytest.raises(DatasetError, match="no such dataset file"):
        OfflineDataset.load(tmp_path / "absent.npz")


def test_failed_save_leaves_nothing_half_written(tmp_path, monkeypatch):
    ds = OfflineDataset.from_arrays(_arrays(), env="hopper", policy="test", seed=0)
    path = ds.save(tmp_path / "d.npz")
    before = path.read_bytes()

    def boom(f, **kw):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        OfflineDataset.from_arrays(_arrays(seed=1), env="hopper", policy="t", seed=1).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_validation_on_construction():
    a = _arrays()
    with pytest.raises(DatasetError, match="next_observations"):
        OfflineDataset.from_arrays({**a, "next_observations": a["next_observations"][:, :2]}, "hopper", "t", 0)
    with pytest.raises(DatasetError, match="NaN"):
        bad = a["rewards"].copy()
        bad[0] = np.nan
        OfflineDataset.from_arrays({**a, "rewards": bad}, "hopper", "t", 0)


# ------------------------------------------------------------------------------------------ toys
def test_toy_datasets_fast_deterministic_with_known_reward():
    d1 = make_toy_dataset("8gaussians", n=4000, seed=0)
    d2 = make_toy_dataset("8gaussians", n=4000, seed=0)
    assert d1.sha256 == d2.sha256 and d1.sha256 != make_toy_dataset("8gaussians", n=4000, seed=1).sha256
    assert d1.actions.shape == (4000, 2) and d1.observations.shape == (4000, 1)
    assert np.abs(d1.actions).max() <= 1.0 and d1.terminals.all()
    r = toy_reward("8gaussians", EIGHT_GAUSSIAN_CENTERS)
    assert np.argmax(r) == 7 and np.argmin(r) == 0 and r[7] > 0.95 and r[0] < 0.05
    np.testing.assert_allclose(d1.rewards, toy_reward("8gaussians", d1.actions))
    sp = make_dataset("toy-spiral", transitions=2000, seed=0, progress=False)
    assert len(sp) == 2000 and sp.metadata["dataset_id"] == "toy-spiral"
    assert toy_reward("spiral", np.array([[0.9, 0.0]]))[0] > toy_reward("spiral", np.array([[0.1, 0.0]]))[0]


# ------------------------------------------------------------------------------------------ policies
def test_expert_weights_parsed_from_text_not_imported(tmp_path):
    w = parse_expert_weights(expert_file("hopper"))
    assert w["weights_dense1_w"].shape == (15, 128) and w["weights_final_w"].shape == (64, 3)
    bad = tmp_path / "enjoy_fake.py"
    bad.write_text("import gym\nweights_dense1_w = np.array([[1.0]])\n")
    with pytest.raises(DatasetError, match="not found"):
        parse_expert_weights(bad)
    with pytest.raises(DatasetError, match="walker2d"):
        load_expert("walker2d")
    assert set(EXPERT_ENVS) == {"hopper", "halfcheetah", "ant"}


def test_hopper_expert_beats_random_over_short_horizon():
    expert = rollout(load_expert("hopper"), "hopper", n_episodes=2, seed=0, max_steps=150)
    rand = rollout(RandomPolicy(3, seed=0), "hopper", n_episodes=2, seed=0, max_steps=150)
    assert expert.min() > 150 and rand.max() < 60, (expert, rand)


# ------------------------------------------------------------------------------------------ pybullet sets
def test_tiny_pybullet_dataset_in_seconds():
    ds = make_dataset("hopper-bullet-tiny", transitions=1200, seed=0, progress=False)
    assert len(ds) == 1200 and ds.observations.shape == (1200, 15) and ds.actions.shape == (1200, 3)
    assert ds.observations.dtype == np.float32 and ds.terminals.dtype == bool
    # aligned transitions: inside an episode next_observations[i] == observations[i + 1]
    (s, e), *_ = ds.episode_bounds()
    np.testing.assert_array_equal(ds.next_observations[s:e - 1], ds.observations[s + 1:e])
    m = ds.metadata
    assert m["env"] == "hopper" and m["gym_id"] == "HopperBulletEnv-v0" and m["seed"] == 0
    assert m["returns"]["count"] == 1 and m["returns"]["mean"] > 2000  # the expert's full episode
    assert m["normalized_scores"]["mean"] > 100
    assert ds.timeouts[999] and not ds.terminals[999] and not ds.timeouts[-1]  # tail unfinished
    assert make_dataset("hopper-bullet-tiny", transitions=1200, seed=0, progress=False).sha256 == ds.sha256


def test_random_dataset_same_with_one_or_two_workers(monkeypatch):
    monkeypatch.setattr(collect_mod, "MIN_PARALLEL", 200)  # two shards for a small request
    a = make_dataset("hopper-bullet-random", transitions=600, seed=5, progress=False, workers=1)
    b = make_dataset("hopper-bullet-random", transitions=600, seed=5, progress=False, workers=2)
    assert a.metadata["generator"]["shards"] == 2 and b.metadata["generator"]["workers"] == 2
    assert a.sha256 == b.sha256 == b.metadata["sha256"]
    assert 5 < a.metadata["returns"]["mean"] < 60  # uniform random hopper falls quickly (~20)
    assert a.sha256 != make_dataset("hopper-bullet-random", transitions=600, seed=6, progress=False).sha256


@pytest.mark.skipif(not shipped_sac_path("hopper").is_file(), reason="no shipped hopper SAC actor")
def test_medium_uses_shipped_sac_actor():
    pol = SACPolicy.load(shipped_sac_path("hopper"), env="hopper")
    assert pol.info.get("env") == "hopper"
    ds = make_dataset("hopper-bullet-medium", transitions=300, seed=0, progress=False)
    assert ds.metadata["generator"]["policy_kind"] == "sac" and len(ds) == 300
    assert np.abs(ds.actions).max() < 1.0


@pytest.mark.skipif(not shipped_sac_path("hopper").is_file(), reason="no shipped hopper SAC actor")
def test_medium_expert_is_medium_then_expert_and_mixed_is_the_replay_buffer():
    me = make_dataset("hopper-bullet-medium-expert", transitions=200, seed=0, progress=False)
    med = make_dataset("hopper-bullet-medium", transitions=200, seed=0, progress=False)
    exp = make_dataset("hopper-bullet-expert", transitions=200, seed=0, progress=False)
    assert len(me) == 400 and me.metadata["parts"]["medium"]["sha256"] == med.sha256
    np.testing.assert_array_equal(me.observations, np.concatenate([med.observations, exp.observations]))
    assert me.timeouts[199]  # the unfinished medium part is closed so no episode runs into the expert part
    mixed = make_dataset("hopper-bullet-mixed", transitions=500, seed=0, progress=False)
    assert len(mixed) == 500 and mixed.metadata["generator"]["source"] == "hopper_sac_replay.npz"


def test_bad_ids_give_clear_errors():
    with pytest.raises(DatasetError, match="unknown env 'humanoid'.*hopper, halfcheetah, walker2d, ant"):
        make_dataset("humanoid-bullet-medium", progress=False)
    with pytest.raises(DatasetError, match="unknown quality 'great'.*random, medium, mixed, expert"):
        parse_dataset_id("hopper-bullet-great")
    with pytest.raises(DatasetError, match="expected '<env>-bullet-<quality>'"):
        parse_dataset_id("hopper-medium-v2")
    with pytest.raises(DatasetError, match="walker2d"):
        make_dataset("walker2d-bullet-expert", transitions=10, progress=False)
    with pytest.raises(DatasetError, match="unknown toy"):
        parse_dataset_id("toy-moons")


# ------------------------------------------------------------------------------------------ importers
def test_d4rl_arrays_import_rebuilds_next_observations():
    n = 8
    obs = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    arrays = {"observations": obs, "actions": np.zeros((n, 1)), "rewards": np.ones((n, 1)),
              "terminals": np.zeros(n), "timeouts": np.array([0, 0, 1, 0, 0, 0, 0, 0])}
    ds = from_d4rl_arrays(arrays, env="toy-import", source="mem")
    # row 2 (time-limit end, successor unknown) and the last row are dropped; row 1 now ends episode 1
    assert len(ds) == 6
    np.testing.assert_array_equal(ds.next_observations[0], obs[1])
    assert ds.timeouts.tolist() == [False, True, False, False, False, False]
    with pytest.raises(DatasetError, match="mem: key 'rewards' has shape"):
        from_d4rl_arrays({**arrays, "rewards": np.ones(n - 1)}, env="x", source="mem")
    with pytest.raises(DatasetError, match=r"mem: missing key\(s\) \['terminals'\]"):
        from_d4rl_arrays({k: v for k, v in arrays.items() if k != "terminals"}, env="x", source="mem")


def test_optional_importers_say_what_to_install(tmp_path):
    try:
        import h5py  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install h5py"):
            from_d4rl_hdf5(tmp_path / "x.hdf5", env="hopper")
    try:
        import minari  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install minari"):
            from_minari("mujoco/hopper/expert-v0")


def test_episode_import_minari_layout():
    ep = types.SimpleNamespace(observations=np.zeros((4, 3)), actions=np.ones((3, 2)), rewards=np.ones(3),
                               terminations=np.array([0, 0, 1]), truncations=np.zeros(3))
    ep2 = types.SimpleNamespace(observations=np.ones((3, 3)), actions=np.ones((2, 2)), rewards=np.ones(2),
                                terminations=np.zeros(2), truncations=np.zeros(2))
    ds = from_episodes([ep, ep2], env="hopper-like", source="eps")
    assert len(ds) == 5 and ds.terminals.tolist() == [0, 0, 1, 0, 0] and ds.timeouts.tolist() == [0, 0, 0, 0, 1]
    np.testing.assert_allclose(ds.episode_returns(), [3.0, 2.0])
    bad = types.SimpleNamespace(**{**vars(ep), "observations": np.zeros((3, 3))})
    with pytest.raises(DatasetError, match="eps: episode 0 has observations"):
        from_episodes([bad], env="x", source="eps")


def test_npz_is_a_zip_of_npy_members(tmp_path):
    p = OfflineDataset.from_arrays(_arrays(), "hopper", "t", 0).save(tmp_path / "z.npz")
    with zipfile.ZipFile(p) as z:
        assert sorted(z.namelist()) == sorted(f"{k}.npy" for k in (*ARRAY_KEYS, "metadata"))
