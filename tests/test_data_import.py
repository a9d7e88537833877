"""`mdhub data import d4rl | minari` with the real libraries: an HDF5 file written with h5py in D4RL's layout (and
d4rl-pybullet's), and a Minari dataset recorded with minari's own DataCollector on a pybullet env; each imported
through the CLI and checked transition by transition against the rollout that made it. Bad input: one line, exit 1,
nothing written."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from hub import datasets as store
from hub.cli.data import data_app
from modules.data.dataset import OfflineDataset
from tests.cli_checks import data_fails, data_ok

h5py = pytest.importorskip("h5py")  # the hdf5 extra; the Makefile's set-up installs it
runner = CliRunner()
LIMIT = 12  # time limit of the recorded episodes: random hopper episodes end by falling (6-17 steps) or by it
STEPS = 300
KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


_ok = data_ok


def _fails(args, *needles):
    res = data_fails(args, *needles)
    folder = store.datasets_dir()
    assert not folder.exists() or not [f for f in folder.iterdir() if f.suffix != ".lock"], "nothing may be written"
    return res


def _env(collector=None):
    import gymnasium as gym
    import pybullet_envs_gymnasium  # noqa: F401

    from modules.envs import quiet_stdout

    with quiet_stdout():
        env = gym.make("HopperBulletEnv-v0", max_episode_steps=LIMIT)
    return collector(env) if collector else env


def rollout(env, steps=STEPS, seed=0, finish=False):
    """Random actions; every transition as recorded by the env: obs, act, rew, next_obs, terminated, truncated.
    Stops after `steps` transitions (with `finish`: at the end of the episode then running)."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in KEYS}
    ep_len, lens = 0, []
    obs, _ = env.reset(seed=seed)
    t = 0
    while t < steps or (finish and ep_len):
        act = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
        nxt, rew, term, trunc, _ = env.step(act)
        ep_len += 1
        for k, v in zip(KEYS, (obs, act, rew, nxt, term, trunc and not term), strict=True):
            rows[k].append(v)
        t += 1
        obs = nxt
        if term or trunc:
            lens.append(ep_len)
            ep_len = 0
            obs, _ = env.reset()
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["observations"] = out["observations"].astype(np.float32)
    out["next_observations"] = out["next_observations"].astype(np.float32)
    out["rewards"] = out["rewards"].astype(np.float32)
    out["terminals"], out["timeouts"] = out["terminals"].astype(bool), out["timeouts"].astype(bool)
    return out, lens


@pytest.fixture(scope="module")
def recorded():
    env = _env()
    try:
        data, lens = rollout(env)
    finally:
        env.close()
    assert data["terminals"].any() and data["timeouts"].any(), "the rollout should have both kinds of ends"
    return data


def assert_same(ds: OfflineDataset, want: dict[str, np.ndarray]) -> None:
    """Transition by transition: every array equal, row for row."""
    assert len(ds) == len(want["observations"])
    for k in KEYS:
        got = getattr(ds, k)
        assert got.dtype == (np.bool_ if k in ("terminals", "timeouts") else np.float32), k
        for i in range(len(ds)):
            np.testing.assert_array_equal(got[i], want[k][i], err_msg=f"{k}[{i}]")


def write_h5(path, arrays, **attrs):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        f.create_group("infos").create_dataset("qpos", data=np.zeros((3, 2)))  # groups are ignored, as in D4RL
    return path


def pybullet_layout(data):
    """What takuseno/d4rl-pybullet's collect.py writes (d3rlpy's episode buffer): rows (s_t, a_t, r_{t-1}), the
    first of an episode with reward 0, then a closing row (s_T, zeros, r_{T-1}, terminal) for every finished
    episode, time-limit ends included; no timeouts, no next_observations."""
    rows = {"observations": [], "actions": [], "rewards": [], "terminals": []}
    prev_rew = 0.0
    for i in range(len(data["observations"])):
        rows["observations"].append(data["observations"][i])
        rows["actions"].append(data["actions"][i])
        rows["rewards"].append(prev_rew)
        rows["terminals"].append(0.0)
        prev_rew = float(data["rewards"][i])
        if data["terminals"][i] or data["timeouts"][i]:
            rows["observations"].append(data["next_observations"][i])
            rows["actions"].append(np.zeros_like(data["actions"][i]))
            rows["rewards"].append(prev_rew)
            rows["terminals"].append(1.0)
            prev_rew = 0.0
    return {k: np.asarray(v, dtype=np.float32 if k != "terminals" else np.float64) for k, v in rows.items()}


# --- D4RL ----------------------------------------------------------------------------------------------------------
def test_d4rl_file_imports_transition_by_transition(tmp_path, recorded):
    arrays = {"observations": recorded["observations"], "actions": recorded["actions"],
              "rewards": recorded["rewards"].astype(np.float64), "next_observations": recorded["next_observations"],
              "terminals": recorded["terminals"], "timeouts": recorded["timeouts"]}
    path = write_h5(tmp_path / "hopper.hdf5", arrays)
    res = _ok(["import", "d4rl", str(path), "--id", "hop-d4rl"])
    assert "imported" in res.output and "hop-d4rl" in res.output
    ds = store.get_dataset("hop-d4rl")
    assert_same(ds, recorded)
    assert ds.metadata["env"] == "hopper"  # told from the dims
    assert ds.metadata["import_layout"] == "d4rl" and ds.metadata["dataset_id"] == "hop-d4rl"
    assert ds.metadata["normalized_scores"] is not None
    # the same file again: unchanged; other content under the id: refused without --force, replaced with it
    assert "same content" in _ok(["import", "d4rl", str(path), "--id", "hop-d4rl"]).output
    other = write_h5(tmp_path / "other.hdf5", {**arrays, "rewards": arrays["rewards"] + 1})
    res = runner.invoke(data_app, ["import", "d4rl", str(other), "--id", "hop-d4rl"])
    assert res.exit_code == 1 and "already in the store" in res.output and "--force" in res.output
    assert store.get_dataset("hop-d4rl").sha256 == ds.sha256
    _ok(["import", "d4rl", str(other), "--id", "hop-d4rl", "--force"])
    np.testing.assert_array_equal(store.get_dataset("hop-d4rl").rewards, recorded["rewards"] + 1)


def test_d4rl_file_without_next_observations_rebuilds_them(tmp_path, recorded):
    """D4RL's qlearning_dataset rule: next_observations[i] = observations[i + 1]; a time-limit row (its successor is
    the next episode's start) and the last row are dropped, the row before a dropped one ends its episode."""
    arrays = {k: recorded[k] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    path = write_h5(tmp_path / "hopper-v0.hdf5", arrays)
    _ok(["import", "d4rl", str(path), "--id", "hop-rebuilt", "--env", "HopperBulletEnv-v0"])
    ds = store.get_dataset("hop-rebuilt")
    keep = ~recorded["timeouts"]
    keep[-1] = False
    want = {k: recorded[k][keep] for k in KEYS}
    want["timeouts"] = want["timeouts"].copy()
    prev = np.flatnonzero(recorded["timeouts"]) - 1
    want["timeouts"][(np.cumsum(keep) - 1)[prev[keep[prev]]]] = True
    nonterminal = ~want["terminals"]  # a terminal row's rebuilt successor is the next episode's first state
    want["next_observations"] = np.where(nonterminal[:, None], want["next_observations"], ds.next_observations)
    assert_same(ds, want)


def test_d4rl_pybullet_layout_is_realigned(tmp_path, recorded):
    rows = pybullet_layout(recorded)
    path = write_h5(tmp_path / "hopper_bullet_mixed.hdf5", rows)
    res = _ok(["import", "d4rl", str(path), "--id", "hop-pyb", "--max-episode-steps", str(LIMIT)])
    ds = store.get_dataset("hop-pyb")
    assert ds.metadata["import_layout"] == "d4rl-pybullet"  # detected
    # an episode of exactly LIMIT steps is a time-limit end (the layout cannot tell one that also fell then)
    lengths = np.diff(np.concatenate([[-1], np.flatnonzero(recorded["terminals"] | recorded["timeouts"])]))
    want = {k: v.copy() for k, v in recorded.items()}
    ends = np.flatnonzero(recorded["terminals"] | recorded["timeouts"])
    want["timeouts"][ends] = lengths == LIMIT
    want["terminals"][ends] = lengths != LIMIT
    tail = ends[-1] + 1 < len(recorded["observations"])  # an unfinished last episode loses its last transition
    want = {k: v[:-1] if tail else v for k, v in want.items()}
    assert_same(ds, want)
    assert "hop-pyb" in res.output
    # the explicit option gives the same; reading it as plain d4rl does not
    _ok(["import", "d4rl", str(path), "--id", "hop-pyb2", "--layout", "d4rl-pybullet",
         "--max-episode-steps", str(LIMIT)])
    assert store.get_dataset("hop-pyb2").sha256 == ds.sha256
    _ok(["import", "d4rl", str(path), "--id", "hop-plain", "--layout", "d4rl"])
    assert store.get_dataset("hop-plain").sha256 != ds.sha256


# --- Minari --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    """A Minari dataset recorded with minari's DataCollector (random actions, ~300 steps, whole episodes) in a tmp
    Minari root, and the transitions as the env gave them."""
    minari = pytest.importorskip("minari")
    import os

    root = tmp_path_factory.mktemp("minari-root")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        env = _env(lambda e: minari.DataCollector(e, data_format="hdf5"))
        data, _ = rollout(env, finish=True)
        with warnings.catch_warnings():  # minari asks for an author, a code permalink, ...: not for a test
            warnings.simplefilter("ignore", UserWarning)
            env.create_dataset(dataset_id="mdhub/hopper-random-v0", algorithm_name="uniform random actions")
        env.close()
        yield root, data
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def test_minari_dataset_imports_transition_by_transition(minari_root, monkeypatch):
    root, data = minari_root
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    res = _ok(["import", "minari", "mdhub/hopper-random-v0"])
    assert "mdhub-hopper-random-v0" in res.output
    ds = store.get_dataset("mdhub-hopper-random-v0")
    assert_same(ds, data)
    assert ds.metadata["env"] == "hopper" and ds.metadata["imported_from"] == "minari:mdhub/hopper-random-v0"
    # by path (the dataset folder), under another id: the same content
    _ok(["import", "minari", str(root / "mdhub" / "hopper-random-v0"), "--id", "hop-minari"])
    assert store.get_dataset("hop-minari").sha256 == ds.sha256


# --- bad input -----------------------------------------------------------------------------------------------------
def _good(recorded):
    return {k: recorded[k] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}


def test_malformed_hdf5_is_one_line(tmp_path, recorded):
    good = _good(recorded)
    n = len(good["observations"])
    missing = write_h5(tmp_path / "missing.hdf5", {k: v for k, v in good.items() if k != "actions"})
    _fails(["import", "d4rl", str(missing), "--id", "x"], "missing key(s) ['actions']")
    ragged = write_h5(tmp_path / "ragged.hdf5", {**good, "rewards": good["rewards"][: n - 5]})
    _fails(["import", "d4rl", str(ragged), "--id", "x"], "'rewards'", f"expected ({n},)")
    obs = good["observations"].copy()
    obs[7, 2] = np.nan
    nan = write_h5(tmp_path / "nan.hdf5", {**good, "observations": obs})
    _fails(["import", "d4rl", str(nan), "--id", "x"], "'observations' contains NaN")
    term = good["terminals"].astype(np.float64)
    term[3] = np.nan
    _fails(["import", "d4rl", str(write_h5(tmp_path / "nanflag.hdf5", {**good, "terminals": term})), "--id", "x"],
           "'terminals' holds values other than 0 and 1")
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    _fails(["import", "d4rl", str(junk), "--id", "x"], "not a readable HDF5 file")
    _fails(["import", "d4rl", str(tmp_path / "absent.hdf5"), "--id", "x"], "no such file")
    path = write_h5(tmp_path / "ok.hdf5", good)
    _fails(["import", "d4rl", str(path), "--id", "x", "--env", "halfcheetah"], "env 'halfcheetah' has obs_dim 26")
    _fails(["import", "d4rl", str(path), "--id", "x", "--layout", "d4rl-mujoco"], "unknown --layout")


@pytest.mark.parametrize("bad_id", ["Hopper Data", "../escape", "a/b", "-x", "x" * 97, ""])
def test_bad_dataset_ids_are_refused(tmp_path, recorded, bad_id):
    path = write_h5(tmp_path / "ok.hdf5", _good(recorded))
    _fails(["import", "d4rl", str(path), "--id", bad_id], "bad dataset id")


def test_malformed_minari_dataset_is_one_line(tmp_path, minari_root, monkeypatch):
    import shutil

    root, _ = minari_root
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    _fails(["import", "minari", "mdhub/no-such-v0"], "cannot be loaded as a local Minari dataset")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(["import", "minari", str(empty)], "not a Minari dataset folder")
    broken = tmp_path / "broken"
    shutil.copytree(root / "mdhub" / "hopper-random-v0", broken)
    data_file = broken / "data" / "main_data.hdf5"
    data_file.write_bytes(data_file.read_bytes()[:2000])  # truncated
    res = _fails(["import", "minari", str(broken), "--id", "broken"])
    assert "minari:" in res.output
    # NaN in an episode's observations (rewritten with h5py inside minari's own file)
    nan = tmp_path / "nan"
    shutil.copytree(root / "mdhub" / "hopper-random-v0", nan)
    with h5py.File(nan / "data" / "main_data.hdf5", "r+") as f:
        first = sorted(f.keys())[0]
        obs = f[first]["observations"][()]
        obs[1, 0] = np.nan
        f[first]["observations"][...] = obs
    _fails(["import", "minari", str(nan), "--id", "nan"], "NaN")
