"""`mdhub data info`: per-episode return, normalised score and forward travel, the collection policy and its
sampling mode; forward travel read from the observations checked against the simulator."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hub import datasets as store
from hub.cli.data import data_app
from modules.data.behaviour import load_expert
from modules.data.dataset import OfflineDataset
from modules.data.locomotion import DT, LAYOUTS, alive, episode_travel, layout_for, sampling_of, step_travel
from modules.data.make import make_dataset
from modules.envs import ENVS, env_spec, make_env

runner = CliRunner()


def _ok(args: list[str]):
    res = runner.invoke(data_app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


@pytest.fixture(scope="module")
def tiny() -> OfflineDataset:
    """hopper-bullet-tiny: the pybullet expert, 2000 rows = 2 finished 1000-step episodes (about a second)."""
    return make_dataset("hopper-bullet-tiny", transitions=2000, seed=0, progress=False, workers=1)


def _store(ds: OfflineDataset, dataset_id: str | None = None) -> str:
    did = dataset_id or str(ds.metadata["dataset_id"])
    ds.save(store.dataset_path(did))
    return did


def test_layouts_match_the_envs():
    for name, spec in ENVS.items():
        assert LAYOUTS[name].obs_dim == spec.obs_dim
        assert layout_for(name, spec.obs_dim) is LAYOUTS[name]
        assert layout_for(spec.gym_id, spec.obs_dim) is LAYOUTS[name]
        assert layout_for(name, spec.obs_dim + 1) is None
    assert layout_for("toy-spiral", 1) is None and layout_for(None, 15) is None


@pytest.mark.parametrize("env", ["hopper", "ant"])
def test_travel_from_observations_matches_the_simulator(env):
    """A 200-step expert rollout: the travel integrated from obs[3] (0.3 vx in the yaw frame, projected on the
    heading to the target) over DT = 0.0165 s steps is within 1% of the torso's x displacement in the simulator;
    the alive term read from the observations is the simulator's."""
    spec = env_spec(env)
    e = make_env(env, seed=3)
    pi = load_expert(spec)
    try:
        o, _ = e.reset(seed=3)
        robot = e.unwrapped.robot
        assert e.unwrapped.scene.dt == pytest.approx(DT)
        x0 = robot.robot_body.pose().xyz()[0]
        obs, nxt, alive_sim = [], [], []
        for _ in range(200):
            o2, _, term, trunc, _ = e.step(pi(o[None])[0])
            obs.append(o)
            nxt.append(o2)
            alive_sim.append(e.unwrapped.rewards[0])
            o = o2
            assert not (term or trunc)
        x1 = robot.robot_body.pose().xyz()[0]
    finally:
        e.close()
    obs_a, nxt_a = np.array(obs), np.array(nxt)
    true_dx = x1 - x0
    est = float(episode_travel(obs_a, nxt_a, [(0, len(obs_a))])[0])
    assert true_dx > 3.0  # the expert moves: a relative check means something
    assert est == pytest.approx(true_dx, rel=0.01), (est, true_dx)
    assert step_travel(obs_a, nxt_a).sum() == pytest.approx(est)
    np.testing.assert_array_equal(alive(LAYOUTS[env], nxt_a), np.array(alive_sim))


def test_make_records_travel_and_sampling(tiny):
    meta = tiny.metadata
    assert meta["sampling"] == "deterministic"
    t = meta["travel_m"]
    assert t["count"] == 2 and t["mean"] > 20  # the hopper expert covers about 38 m per 1000 steps
    assert t["min"] <= t["mean"] <= t["max"] and t["std"] >= 0
    rnd = make_dataset("hopper-bullet-random", transitions=300, seed=0, progress=False, workers=1)
    assert rnd.metadata["sampling"] == "uniform"
    assert rnd.metadata["travel_m"]["count"] == rnd.metadata["returns"]["count"] > 5
    assert abs(rnd.metadata["travel_m"]["mean"]) < 0.5  # random actions fall over on the spot
    toy = make_dataset("toy-spiral", transitions=50, progress=False)
    assert toy.metadata["travel_m"] is None and toy.metadata["sampling"] == "stochastic"


def test_info_json_has_the_stable_keys(tiny):
    did = _store(tiny)
    info = json.loads(_ok(["info", did, "--json"]).output)
    for key in store.SUMMARY_KEYS:
        assert key in info, key
    assert info["episodes"] == 2
    rets = tiny.episode_returns()
    assert info["return_mean"] == pytest.approx(rets.mean()) and info["return_std"] == pytest.approx(rets.std())
    assert info["return_min"] == pytest.approx(rets.min()) and info["return_max"] == pytest.approx(rets.max())
    assert info["score_mean"] == pytest.approx(tiny.metadata["normalized_scores"]["mean"])
    travel = episode_travel(tiny.observations, tiny.next_observations, tiny.episode_bounds())
    assert info["travel_mean_m"] == pytest.approx(travel.mean()) and info["travel_std_m"] == pytest.approx(travel.std())
    assert info["travel_min_m"] == pytest.approx(travel.min()) and info["travel_max_m"] == pytest.approx(travel.max())
    assert info["policy"].startswith("pybullet-expert") and info["sampling"] == "deterministic"
    assert info["reward"] is None and info["source"] is None
    assert info["size"] == 2000 and info["sha256"] == tiny.sha256  # the metadata record is still there
    text = _ok(["info", did]).output
    assert "sampling:  deterministic" in text
    assert f"forward travel {travel.mean():.2f} +- {travel.std():.2f} m" in text
    assert "normalised score" in text and "episodes:  2 finished" in text


def test_old_dataset_without_statistics_is_computed_from_its_arrays(tiny):
    """A file made before `travel_m` and `sampling` existed: info computes travel from the arrays and reads the
    sampling mode from the policy name; the file is not changed."""
    old = OfflineDataset(**tiny.arrays(), metadata={k: v for k, v in tiny.metadata.items()
                                                     if k not in ("travel_m", "sampling")})
    did = _store(old, "hopper-bullet-tiny")
    before = store.dataset_path(did).read_bytes()
    info = store.dataset_summary(did)
    assert info["travel_mean_m"] == pytest.approx(tiny.metadata["travel_m"]["mean"])
    assert info["travel_max_m"] == pytest.approx(tiny.metadata["travel_m"]["max"])
    assert info["sampling"] == "deterministic" and info["episodes"] == 2
    assert store.dataset_path(did).read_bytes() == before


def test_toy_info_has_no_travel_or_score():
    _ok(["make", "toy-8gaussians", "-n", "40"])
    info = json.loads(_ok(["info", "toy-8gaussians", "--json"]).output)
    assert info["episodes"] == 40 and info["travel_mean_m"] is None and info["score_mean"] is None
    assert "forward travel -" in _ok(["info", "toy-8gaussians"]).output


@pytest.mark.parametrize("policy, sampling", [
    ("uniform-random", "uniform"), ("sac(hopper_sac_medium.safetensors, deterministic)", "deterministic"),
    ("sac-checkpoints(stochastic)", "stochastic"), ("sac-replay-buffer", "stochastic"),
    ("pybullet-expert-mlp(enjoy_TF_*_2017may)", "deterministic"), ("toy-spiral-behaviour", "stochastic"),
    ("something else", "unknown"),
])
def test_sampling_of_old_metadata(policy, sampling):
    assert sampling_of({"policy": policy}) == sampling
    assert sampling_of({"policy": policy, "sampling": "stochastic"}) == "stochastic"
