"""`mdhub data` through typer's CliRunner, with an isolated MDHUB_HOME."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hub import datasets as store
from hub.cli.data import data_app
from modules.data.errors import DatasetError

runner = CliRunner()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("MDHUB_HOME", str(h))
    return h


def _ok(args):
    res = runner.invoke(data_app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def _fails(args):
    res = runner.invoke(data_app, args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    return res


def test_help_texts():
    res = _ok(["--help"])
    assert "make" in res.output and "list" in res.output and "info" in res.output
    res = _ok(["make", "--help"])
    assert "--transitions" in res.output and "--seed" in res.output and "--force" in res.output


def test_make_list_info_toy(home):
    res = _ok(["make", "toy-8gaussians", "--transitions", "500", "--seed", "2"])
    path = home / "datasets" / "toy-8gaussians.npz"
    assert path.is_file() and str(path) in res.output
    assert "500 transitions" in res.output
    res = _ok(["list"])
    assert "toy-8gaussians" in res.output and "500" in res.output
    res = _ok(["info", "toy-8gaussians", "--verify"])
    assert "returns:" in res.output and "verified" in res.output
    info = json.loads(_ok(["info", "toy-8gaussians", "--json"]).output)
    assert info["size"] == 500 and info["seed"] == 2 and info["request"] == {"transitions": 500, "seed": 2}
    res = _ok(["make", "toy-8gaussians"])  # kept without --force
    assert "already in the store" in res.output
    ds = store.get_dataset("toy-8gaussians", seed=2)
    assert len(ds) == 500
    with pytest.raises(DatasetError, match="seed 2, requested seed 0"):
        store.get_dataset("toy-8gaussians", seed=0)


def test_make_tiny_pybullet_with_normalised_score(home):
    res = _ok(["make", "hopper-bullet-tiny", "-n", "1000", "-q"])
    assert "normalised score:" in res.output and "HopperBulletEnv-v0" in res.output
    recs = store.list_datasets()
    assert [r["id"] for r in recs] == ["hopper-bullet-tiny"] and recs[0]["returns"]["count"] == 1
    assert recs[0]["normalized_scores"]["mean"] > 100


def test_user_errors_are_one_line_exit_1(home):
    res = _fails(["make", "humanoid-bullet-medium"])
    assert "error: unknown env 'humanoid'" in res.output
    res = _fails(["make", "hopper-bullet-superb"])
    assert "unknown quality 'superb'" in res.output
    res = _fails(["info", "hopper-bullet-expert"])
    assert "error: dataset 'hopper-bullet-expert' is not in the store" in res.output
    res = _fails(["info", "../etc"])
    assert "bad dataset id" in res.output


def test_corrupted_file_in_store(home):
    _ok(["make", "toy-spiral", "-n", "300"])
    path = home / "datasets" / "toy-spiral.npz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    res = _fails(["info", "toy-spiral"])
    assert f"error: {path}: not a readable dataset file" in res.output
    res = _ok(["list"])
    assert "unreadable" in res.output
    with pytest.raises(DatasetError, match="toy-spiral.npz"):
        store.get_dataset("toy-spiral")
    # a store get with make_if_missing makes an absent dataset
    ds = store.get_dataset("toy-8gaussians", transitions=100, make_if_missing=True)
    assert len(ds) == 100 and np.isfinite(ds.rewards).all()
