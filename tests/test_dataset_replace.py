"""Datasets follow the store rule: data that stored modules were trained on is never replaced silently. Without
--force an existing file is kept (and the modules trained on it are named); with --force a remake that changes the
content names the modules now pointing at a dataset sha256 no longer in the store. Writes are atomic."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from cards import DatasetRef, Interface
from hub import datasets as store
from hub.cli.data import data_app
from hub.store import Store
from modules.data.dataset import OfflineDataset
from tests.conftest import critic_card, small_critic

DATA = "toy-8gaussians"
runner = CliRunner()


def cli(*args: str):
    res = runner.invoke(data_app, list(args))
    assert res.exit_code == 0, (res.output, res.exception)
    return res.output


def store_modules_trained_on(sha: str, ids: list[str]) -> None:
    for i, mid in enumerate(ids):
        net = small_critic(i)
        iface = Interface(obs_dim=3, act_dim=2, env_id="HopperBulletEnv-v0", dataset=DatasetRef(id=DATA, sha256=sha))
        Store().save(net, critic_card(net, mid, interface=iface))


@pytest.fixture()
def made():
    out = store.make_in_store(DATA, transitions=200, seed=0, progress=False)
    assert out.action == "made" and out.path.is_file()
    return out


def test_kept_without_force_and_the_modules_trained_on_it_are_named(made):
    ids = [f"g{i}" for i in range(7)]
    store_modules_trained_on(made.new_sha256, ids)
    store_modules_trained_on("0" * 64, ["other"])  # trained on some other data
    assert store.modules_naming(made.new_sha256) == ids
    out = store.make_in_store(DATA, transitions=200, seed=1, progress=False)  # no --force: nothing is made
    assert out.action == "kept" and out.trained_on == ids
    assert store.OfflineDataset.load(made.path).sha256 == made.new_sha256
    text = cli("make", DATA, "-n", "200", "--seed", "1")
    assert f"{DATA} is already in the store, kept (use --force to remake)" in text
    assert "7 stored module(s) were trained on it: g0, g1, g2, g3, g4 and 2 more" in text


def test_force_with_the_same_content_orphans_nothing(made):
    store_modules_trained_on(made.new_sha256, ["g0"])
    out = store.make_in_store(DATA, transitions=200, seed=0, force=True, progress=False)
    assert out.action == "unchanged" and out.orphaned == [] and out.orphan_message() is None
    text = cli("make", DATA, "-n", "200", "--force", "-q")
    assert "remade (same content, sha256 unchanged)" in text and "warning" not in text


def test_force_with_new_content_names_the_orphaned_modules(made):
    store_modules_trained_on(made.new_sha256, ["g0", "g1"])
    text = cli("make", DATA, "-n", "200", "--seed", "1", "--force", "-q")
    assert "remade (new content, the previous file was replaced)" in text
    assert f"warning: {made.path}: replaced data (sha256 {made.new_sha256[:12]}...)" in text
    assert "they now name a dataset sha256 no longer in the store: g0, g1" in text
    assert store.OfflineDataset.load(made.path).metadata["seed"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # seed 0 again: the data they were trained on is back, nothing to say
        back = store.make_in_store(DATA, transitions=200, seed=0, force=True, progress=False)
    assert back.action == "replaced" and back.new_sha256 == made.new_sha256 and back.orphaned == []
    with pytest.warns(UserWarning, match="no longer in the store: g0, g1"):  # the Python API says it too
        store.make_and_store(DATA, transitions=200, seed=2, force=True, progress=False)


def test_data_still_in_the_store_under_another_id_orphans_nothing(made):
    store_modules_trained_on(made.new_sha256, ["g0"])
    shutil.copy(made.path, made.path.with_name("toy-8gaussians-copy.npz"))
    out = store.make_in_store(DATA, transitions=200, seed=1, force=True, progress=False)
    assert out.action == "replaced" and out.trained_on == ["g0"] and out.orphaned == []


def test_a_crashed_save_keeps_the_old_file_and_leaves_no_temp(made, monkeypatch):
    before = made.path.read_bytes()
    ds = OfflineDataset.load(made.path)

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(OSError, match="disk full"):
        ds.save(made.path)
    assert made.path.read_bytes() == before
    assert sorted(p.name for p in made.path.parent.iterdir()) == [made.path.name]
