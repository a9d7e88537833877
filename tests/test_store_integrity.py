"""The store keeps its promises under crashes and concurrency (issue: store integrity). See tests/store_torture.py."""
from __future__ import annotations

import json

import pytest

import hub
from hub import Store, StoreError
from hub.store import JOURNAL, WEIGHTS
from tests.conftest import critic_card, small_critic
from tests.store_torture import concurrency_trial, crash_trial, leftovers


def test_concurrent_card_updates_lose_nothing(tmp_path):
    result = concurrency_trial(tmp_path / "store", updaters=4, updates=30, savers=1)
    assert result == {"writes": 120, "lost": 0, "failed_workers": 0, "leftovers": []}


@pytest.mark.parametrize("seed", range(6))
def test_a_kill_at_a_random_moment_loses_no_acknowledged_write(tmp_path, seed):
    crash_trial(tmp_path / "store", seed=seed, n_ops=30, max_delay_s=0.3)


def test_update_merges_metrics_and_replaces_other_fields():
    net = small_critic()
    hub.save(net, critic_card(net, "m", metrics={"a": 1.0}))
    store = Store()
    store.update_card("m", metrics={"b": 2.0}, description="new words")
    card = store.card("m")
    assert card.metrics == {"a": 1.0, "b": 2.0} and card.description == "new words"
    with pytest.raises(StoreError, match="config cannot change"):
        store.update_card("m", config={})


def _journaled_interruption(store: Store, committed: bool) -> tuple[str, str]:
    """Simulate a writer killed after writing its new folder (and, if `committed`, after switching the index)."""
    old = store.folder_of("m").name
    net = small_critic(7)
    new_card = critic_card(net, "m", description="new")
    from hub.module_folder import finalize_card

    final, data = finalize_card(net, new_card)
    new = "m.ffffffffffffffff"
    store._write_journal({"op": "write", "id": "m", "new": new, "old": old})
    store._write_new_folder(new, final, data)
    (store.modules_dir / f".tmp-{new}x").mkdir()  # a half-written folder of some other crash
    if committed:
        modules = store._read_index()
        modules["m"]["folder"] = new
        modules["m"]["sha256"] = final.file(WEIGHTS).sha256
        store._write_index(modules)
    return old, new


@pytest.mark.parametrize("committed", [False, True])
def test_recovery_finishes_or_rolls_back_a_journaled_change(committed):
    net = small_critic(0)
    hub.save(net, critic_card(net, "m", description="old"))
    store = Store()
    old, new = _journaled_interruption(store, committed)
    card = Store().card("m")  # the next user of the store recovers
    assert card.description == ("new" if committed else "old")
    assert not (store.root / JOURNAL).exists() and leftovers(store.root) == []
    assert (store.modules_dir / (new if committed else old)).is_dir()
    assert not (store.modules_dir / (old if committed else new)).exists()


def test_reindex_never_resurrects_an_unacknowledged_save():
    net = small_critic(0)
    hub.save(net, critic_card(net, "m", description="acknowledged"))
    store = Store()
    # an orphan folder of a newer generation, as a crash before the index switch leaves it (journal lost too)
    _journaled_interruption(store, committed=False)
    (store.root / JOURNAL).unlink()
    assert store.reindex() == 1
    assert store.card("m").description == "acknowledged" and leftovers(store.root) == []


def test_reindex_with_a_lost_index_takes_the_newest_complete_folder():
    net = small_critic(0)
    hub.save(net, critic_card(net, "m", description="v1"))
    net2 = small_critic(1)
    hub.save(net2, critic_card(net2, "m", description="v2"), overwrite=True)
    store = Store()
    # an older complete copy lying around, and a newer one whose weights are gone (a kill during its removal)
    folder = store.folder_of("m")
    import shutil

    shutil.copytree(folder, store.modules_dir / "m.0000000000000001")
    broken = store.modules_dir / "m.7fffffffffffffff"
    shutil.copytree(folder, broken)
    (broken / WEIGHTS).unlink()
    store.index_path.unlink()
    assert store.reindex() == 1
    assert store.card("m").description == "v2" and store.folder_of("m") == folder
    assert leftovers(store.root) == []


def test_default_ids_never_collide_across_kinds(tmp_path):
    from hub.training import default_id

    class DS:
        metadata = {"dataset_id": "toy"}

    ids = {default_id(kind, "dql", DS, 0) for kind in ("guidance", "diffusion", "joint-actor")}
    assert len(ids) == 3


def test_a_tampered_index_cannot_point_outside_the_store(tmp_path):
    net = small_critic(0)
    hub.save(net, critic_card(net, "m"))
    store = Store()
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    data = json.loads(store.index_path.read_text())
    data["modules"]["m"]["folder"] = "../../precious"
    store.index_path.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="not a plain folder name"):
        hub.save(small_critic(1), critic_card(small_critic(1), "m"), overwrite=True)
    with pytest.raises(StoreError, match="not a plain folder name"):
        store.remove("m", force=True)
    assert (outside / "keep.txt").read_text() == "mine"


def test_cli_rm_refuses_while_a_policy_references_the_module():
    from typer.testing import CliRunner

    from hub.cli import app
    from tests.store_torture import BASE, _policy_card, seed_store

    store = Store()
    seed_store(store.root)
    store.save(None, _policy_card("pol", "v1", store.card(BASE).ref()))
    runner = CliRunner()
    res = runner.invoke(app, ["rm", BASE])
    assert res.exit_code == 1 and "part of the stored policies 'pol'" in res.output and "Traceback" not in res.output
    assert store.contains(BASE)
    res = runner.invoke(app, ["rm", BASE, "--force"])
    assert res.exit_code == 0 and "pol" in res.output and not store.contains(BASE)
    res = runner.invoke(app, ["rm", "pol"])
    assert res.exit_code == 0 and store.entries() == []
    res = runner.invoke(app, ["rm", "pol"])
    assert res.exit_code == 1 and "no module 'pol'" in res.output


def test_training_into_an_existing_id_is_refused_before_any_work(monkeypatch):
    from typer.testing import CliRunner

    from hub.cli import app

    runner = CliRunner()
    args = ["train", "guidance", "--algo", "iql", "--dataset", "toy-8gaussians", "--steps", "3", "--hidden", "8",
            "--id", "g"]
    from hub.datasets import make_and_store

    make_and_store("toy-8gaussians", transitions=256, progress=False)
    assert runner.invoke(app, args).exit_code == 0
    first = Store().card("g").file(WEIGHTS).sha256
    import hub.training as training

    real_run = training.run
    monkeypatch.setattr(training, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    res = runner.invoke(app, args + ["--seed", "1"])
    assert res.exit_code == 1 and "'g' is already stored" in res.output and "--force" in res.output
    assert Store().card("g").file(WEIGHTS).sha256 == first
    monkeypatch.setattr(training, "run", real_run)
    res = runner.invoke(app, args + ["--seed", "1", "--force"])
    assert res.exit_code == 0, res.output
    assert Store().card("g").file(WEIGHTS).sha256 != first
