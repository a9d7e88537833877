"""The bullet-D4RL suite: medium and expert sampled from the policy (the deterministic variants as ``-det``),
medium-replay, medium-expert halves, the travel measurement and the resumable travel-selected SAC run.
Real simulator, tiny sizes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from modules.data import collect as collect_mod
from modules.data import make as make_mod
from modules.data.behaviour import (
    EXPERT_NOISE_STD,
    GaussianNoisePolicy,
    SACPolicy,
    load_expert,
    shipped_sac_path,
)
from modules.data.dataset import OfflineDataset, build_metadata
from modules.data.errors import DatasetError
from modules.data.make import QUALITIES, availability, make_dataset, parse_dataset_id
from modules.data.measure import measure_policy, rollout_travel
from modules.envs import rollout
from tests.cli_checks import data_fails

needs_sac = pytest.mark.skipif(not shipped_sac_path("hopper").is_file(), reason="no shipped hopper SAC actor")


def _residual(ds: OfflineDataset, mean_fn) -> np.ndarray:
    """Each row's action minus the policy's deterministic action in that row's state: (N, act_dim)."""
    return ds.actions - mean_fn(ds.observations)


@needs_sac
def test_sampled_medium_differs_from_deterministic_and_says_so():
    s = make_dataset("hopper-bullet-medium", transitions=300, seed=0, progress=False)
    d = make_dataset("hopper-bullet-medium-det", transitions=300, seed=0, progress=False)
    assert s.sha256 != d.sha256
    assert s.metadata["sampling"] == "stochastic" and d.metadata["sampling"] == "deterministic"
    assert s.metadata["action_noise"]["kind"] == "tanh-gaussian" and d.metadata["action_noise"] is None
    assert "stochastic" in s.metadata["policy"] and "deterministic" in d.metadata["policy"]
    assert s.metadata["generator"]["policy_file"] == d.metadata["generator"]["policy_file"]
    # IQL needs several actions per state: the sampled actions scatter around the policy's mean, the det ones do not
    pol = SACPolicy.load(shipped_sac_path("hopper"), deterministic=True, env="hopper")
    rs, rd = _residual(s, pol), _residual(d, pol)
    assert np.abs(rd).max() < 1e-5
    assert rs.std(axis=0).min() > 0.01 and (np.abs(rs) > 1e-4).mean() > 0.9
    # same seed, same data
    assert make_dataset("hopper-bullet-medium", transitions=300, seed=0, progress=False).sha256 == s.sha256


def test_sampled_expert_adds_documented_gaussian_noise():
    s = make_dataset("hopper-bullet-expert", transitions=400, seed=1, progress=False)
    d = make_dataset("hopper-bullet-expert-det", transitions=400, seed=1, progress=False)
    assert s.sha256 != d.sha256 and s.metadata["sampling"] == "stochastic" and d.metadata["sampling"] == "deterministic"
    noise = s.metadata["action_noise"]
    assert noise["kind"] == "gaussian" and noise["std"] == EXPERT_NOISE_STD and noise["clip"] == [-1.0, 1.0]
    exp = load_expert("hopper")
    assert np.abs(_residual(d, exp)).max() < 1e-5
    r = _residual(s, exp)
    inside = np.abs(exp.mean(s.observations)[:, :3]) < 0.7  # where clipping cannot bite, the noise is N(0, std^2)
    assert np.abs(r).max() <= 2.0 + 1e-6 and np.all(np.abs(s.actions) <= 1.0)
    assert r[inside].std() == pytest.approx(EXPERT_NOISE_STD, rel=0.25)
    # the noisy policy itself: seeded, clipped
    p1, p2 = GaussianNoisePolicy(exp, 0.1, seed=3), GaussianNoisePolicy(exp, 0.1, seed=3)
    o = s.observations[:5]
    np.testing.assert_array_equal(p1(o), p2(o))
    assert np.all(np.abs(p1(o)) <= 1.0)


def test_sampled_data_same_with_one_or_two_workers(monkeypatch):
    monkeypatch.setattr(collect_mod, "MIN_PARALLEL", 200)
    a = make_dataset("hopper-bullet-expert", transitions=600, seed=2, progress=False, workers=1)
    b = make_dataset("hopper-bullet-expert", transitions=600, seed=2, progress=False, workers=2)
    assert a.metadata["generator"]["shards"] == 2 and a.sha256 == b.sha256


@needs_sac
@pytest.mark.parametrize("suffix", ["", "-det"])
def test_medium_expert_is_half_medium_half_expert(suffix):
    me = make_dataset(f"hopper-bullet-medium-expert{suffix}", transitions=200, seed=4, progress=False)
    med = make_dataset(f"hopper-bullet-medium{suffix}", transitions=200, seed=4, progress=False)
    exp = make_dataset(f"hopper-bullet-expert{suffix}", transitions=200, seed=4, progress=False)
    assert len(me) == 400
    np.testing.assert_array_equal(me.observations[:200], med.observations)
    np.testing.assert_array_equal(me.actions[200:], exp.actions)
    assert me.metadata["parts"]["medium"]["sha256"] == med.sha256
    assert me.metadata["parts"]["expert"]["sha256"] == exp.sha256
    assert me.metadata["parts"]["expert"]["travel_m"] is not None
    assert me.metadata["sampling"] == ("deterministic" if suffix else "stochastic")
    assert me.timeouts[199]


@needs_sac
def test_medium_replay_is_the_buffer_up_to_the_medium_point(tmp_path, monkeypatch):
    buf = OfflineDataset.load(make_mod.shipped_replay_path("hopper"))
    mr = make_dataset("hopper-bullet-medium-replay", progress=False)
    assert len(mr) == len(buf) and mr.metadata["generator"]["source"] == "hopper_sac_replay.npz"
    np.testing.assert_array_equal(mr.actions, buf.actions)
    mixed = make_dataset("hopper-bullet-mixed", transitions=500, seed=0, progress=False)
    np.testing.assert_array_equal(mixed.observations, buf.observations[:500])
    assert make_dataset("hopper-bullet-medium-replay", transitions=500, progress=False).sha256 == mixed.sha256
    # a buffer that records its medium point is cut there
    arrays = {k: v[:800] for k, v in buf.arrays().items()}
    meta = build_metadata(arrays, env="hopper", policy="sac-replay(seed=0)", seed=0, extra={"medium_step": 600})
    path = OfflineDataset(**arrays, metadata=meta).save(tmp_path / "hopper_sac_replay.npz")
    monkeypatch.setattr(make_mod, "shipped_replay_path", lambda env: path)
    cut = make_dataset("hopper-bullet-medium-replay", progress=False)
    assert len(cut) == 600 and cut.metadata["generator"]["medium_step"] == 600


def test_qualities_and_availability():
    assert {"medium-replay", "medium-det", "expert-det", "medium-expert-det"} <= set(QUALITIES)
    assert parse_dataset_id("ant-bullet-expert-det").quality == "expert-det"
    av = availability("walker2d")
    assert av["random"] and not av["expert-det"] and not av["medium-replay"]
    with pytest.raises(DatasetError, match="no expert policy for 'walker2d'"):
        make_dataset("walker2d-bullet-expert", transitions=10, progress=False)


@pytest.mark.parametrize("ident, needle", [
    ("hopper-bullet-medium-deterministic", "unknown quality 'medium-deterministic'"),
    ("hopper-bullet-random-det", "unknown quality 'random-det'"),
    ("humanoid-bullet-medium-det", "unknown env 'humanoid'"),
    ("walker2d-bullet-medium-expert", "no shipped SAC policy for 'walker2d'"),
    ("walker2d-bullet-medium-replay", "no replay buffer"),
])
def test_bad_names_are_one_line(ident, needle):
    data_fails(["make", ident, "-n", "10", "-q"], needle)


def test_rollout_travel_matches_rollout_returns():
    exp = load_expert("hopper")
    r = rollout_travel(exp, "hopper", 2, seed=7)
    np.testing.assert_allclose(r["returns"], rollout(exp, "hopper", 2, seed=7))
    assert np.all(r["travel_m"] > 30) and np.all(r["lengths"] == 1000)
    m = measure_policy(exp, "hopper", episodes=2, seed=7)
    assert m["travel_m"]["mean"] == pytest.approx(r["travel_m"].mean(), abs=0.01)
    assert m["score"]["mean"] > 150 and m["episodes"] == 2


def test_travel_run_resumes_where_it_stopped(tmp_path):
    """Interrupted after 300 steps and resumed to 500 gives the same actor as one run to 500."""
    from safetensors.numpy import load_file

    from modules.data.sac_travel import TravelRunConfig, run, status

    def cfg(max_steps):
        return TravelRunConfig(env="hopper", seed=0, max_steps=max_steps, start_steps=100, eval_every=250,
                               eval_episodes=2, reference_travel=30.0, checkpoint_every_s=0.0)

    logs: list[str] = []
    run(cfg(300), tmp_path / "a", log=logs.append)
    s = run(cfg(500), tmp_path / "a", log=logs.append)
    assert any("resumed_from" in x for x in logs) and s["steps"] == 500
    run(cfg(500), tmp_path / "b", log=lambda _: None)
    latest = json.loads((tmp_path / "a" / "state" / "latest.json").read_text())
    assert latest == json.loads((tmp_path / "b" / "state" / "latest.json").read_text())
    ta = load_file(str(tmp_path / "a" / "state" / latest["dir"] / "nets.safetensors"))
    tb = load_file(str(tmp_path / "b" / "state" / latest["dir"] / "nets.safetensors"))
    assert ta.keys() == tb.keys()
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    recs = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [250, 500] and "travel_mean" in recs[0]
    expert = json.loads((tmp_path / "a" / "expert.json").read_text())
    assert set(expert["measured"]) == {"deterministic", "sampled"}
    assert {"return", "score", "travel_m"} <= set(expert["measured"]["deterministic"])
    st = status(tmp_path / "a")
    assert st["step"] == latest["step"] and st["expert"]["travel_m"] and st["summary"]["steps"] == 500


def test_band_pick_is_the_first_in_band():
    from modules.data.sac_travel import _band_pick

    hist = [{"step": 1, "travel_mean": 1.0}, {"step": 2, "travel_mean": 5.0}, {"step": 3, "travel_mean": 9.0}]
    assert _band_pick(hist, 10.0, 0.25, 0.6)["step"] == 2
    assert _band_pick(hist, 100.0, 0.25, 0.6) is None


def test_medium_must_hold_on_held_out_episodes(tmp_path, monkeypatch):
    """An actor in the band on the selection episodes but not on held-out ones is rejected, and the run goes on."""
    from modules.data import sac_travel

    def fake(actor, env):
        m = {"travel_m": {"mean": 999.0}, "return": {}, "score": {}}
        return {"deterministic": m, "sampled": m}

    monkeypatch.setattr(sac_travel, "_measured", fake)
    cfg = sac_travel.TravelRunConfig(env="hopper", seed=0, max_steps=500, start_steps=100, eval_every=250,
                                     eval_episodes=2, reference_travel=0.01, band_lo=-100.0, band_hi=100.0,
                                     checkpoint_every_s=0.0)
    logs: list[str] = []
    s = sac_travel.run(cfg, tmp_path, log=logs.append)
    assert s["medium_step"] is None and s["steps"] == 500 and s["stop"] == "max steps"
    assert not (tmp_path / "medium.json").exists() and (tmp_path / "expert.json").exists()
    assert sum('"rejected": "medium"' in x for x in logs) == 2
