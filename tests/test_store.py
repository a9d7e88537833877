"""The store: byte-exact round trips, atomic saves, strict loading, every bad input, concurrent writers."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

import hub
from hub import IntegrityError, NotFoundError, RegistryError, Store, StoreError
from hub.store import CARD, README, WEIGHTS
from tests.conftest import critic_card, small_critic


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_load_save_gives_identical_bytes(tmp_path):
    net = small_critic()
    first = hub.save(net, critic_card(net), path=tmp_path / "a")
    loaded = hub.load(tmp_path / "a")
    hub.save(loaded.net, loaded.card, path=tmp_path / "b")
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    assert set(folder_bytes(tmp_path / "a")) == {WEIGHTS, CARD, README}
    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    assert torch.equal(net.q(obs, act), loaded.net.q(obs, act))
    assert first.card.origin.versions["torch"]


def test_store_by_id_and_by_path():
    net = small_critic()
    stored = hub.save(net, critic_card(net, "by-id"))
    assert hub.load("by-id").card == stored.card
    assert hub.load(str(stored.path)).card == stored.card
    assert [e.id for e in hub.list_modules()] == ["by-id"]
    assert hub.list_modules(kind="diffusion") == []


def test_overwrite_replaces_and_cleans_the_old_folder():
    net = small_critic(0)
    first = hub.save(net, critic_card(net, "x"))
    net2 = small_critic(1)
    with pytest.raises(StoreError, match="already stored as a guidance with different weights.*--force"):
        hub.save(net2, critic_card(net2, "x"))
    assert hub.load("x").card.file(WEIGHTS).sha256 == first.card.file(WEIGHTS).sha256
    second = hub.save(net2, critic_card(net2, "x"), overwrite=True)
    assert not first.path.exists() and second.path.exists()
    assert hub.load("x").card.file(WEIGHTS).sha256 == second.card.file(WEIGHTS).sha256
    again = hub.save(net2, critic_card(net2, "x", ))  # the same weights again: only the card is replaced
    assert again.card.file(WEIGHTS).sha256 == second.card.file(WEIGHTS).sha256 and not second.path.exists()


def stored_folder(module_id: str = "m") -> Path:
    net = small_critic()
    return hub.save(net, critic_card(net, module_id)).path


def test_truncated_weights_are_refused():
    folder = stored_folder()
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match=r"model.safetensors: \d+ bytes, the card says \d+"):
        hub.load("m")


def test_tampered_weights_fail_the_checksum():
    folder = stored_folder()
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        hub.load("m")


def rewrite_card(folder: Path, mutate) -> None:
    data = json.loads((folder / CARD).read_text())
    mutate(data)
    (folder / CARD).write_text(json.dumps(data))


def reweigh(folder: Path, state: dict) -> None:
    """Replace the weights with `state` and fix the card's checksum (a consistent but wrong module)."""
    from safetensors.torch import save

    blob = save(state)
    (folder / WEIGHTS).write_bytes(blob)
    import hashlib

    rewrite_card(folder, lambda d: d["files"][0].update(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob)))


def test_missing_extra_misshaped_and_mistyped_tensors_are_refused():
    folder = stored_folder()
    state = small_critic().state_dict()
    cases = {
        "missing tensors": {k: v for k, v in state.items() if k != "obs_norm.mean"},
        "unexpected tensors": {**state, "sneaky": torch.zeros(1)},
        "expected shape": {**state, "obs_norm.mean": torch.zeros(5)},
        "expected dtype": {**state, "obs_norm.mean": torch.zeros(3, dtype=torch.float64)},
    }
    for message, bad in cases.items():
        reweigh(folder, {k: v.contiguous() for k, v in bad.items()})
        with pytest.raises(IntegrityError, match=message):
            hub.load("m")


def test_card_problems_name_the_file_and_field():
    folder = stored_folder()
    original = (folder / CARD).read_text()
    rewrite_card(folder, lambda d: d.pop("interface"))
    with pytest.raises(StoreError, match=r"card.json: invalid card: missing field 'interface'"):
        hub.load("m")
    (folder / CARD).write_text(original)
    rewrite_card(folder, lambda d: d.update(architecture="transformer9000"))
    with pytest.raises(RegistryError, match="unknown guidance architecture 'transformer9000'; known: .*iql"):
        hub.load("m")
    (folder / CARD).write_text(original)
    rewrite_card(folder, lambda d: d["config"].update(hidden="wide"))
    with pytest.raises(RegistryError, match=r"field 'config.hidden'"):
        hub.load("m")
    (folder / CARD).write_text("{")
    with pytest.raises(StoreError, match="not valid JSON"):
        hub.load("m")


def test_missing_paths_and_ids():
    with pytest.raises(NotFoundError, match="no such module folder"):
        hub.load("/nonexistent/module")
    stored_folder("alpha-critic")
    with pytest.raises(NotFoundError, match="did you mean alpha-critic"):  # by edit distance (a typo)
        hub.load("alpha-critc")


def test_a_failed_save_leaves_store_and_index_as_they_were(hub_home):
    folder = stored_folder("keep")
    before = folder_bytes(folder)
    index_before = (hub_home / "index.json").read_bytes()
    net = small_critic(5)
    with pytest.raises(RegistryError):
        hub.save(net, critic_card(net, "keep", architecture="nope"))
    assert folder_bytes(folder) == before
    assert (hub_home / "index.json").read_bytes() == index_before
    assert not [p for p in (hub_home / "modules").iterdir() if p.name.startswith(".tmp")]


def test_a_crash_mid_write_keeps_the_old_module(tmp_path, monkeypatch):
    net = small_critic(0)
    hub.save(net, critic_card(net), path=tmp_path / "m")
    before = folder_bytes(tmp_path / "m")
    import hub.module_folder as store_mod

    real = store_mod.fsync_write

    def crash_on_readme(path, data):
        if path.name == README:
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(store_mod, "fsync_write", crash_on_readme)
    net2 = small_critic(1)
    with pytest.raises(OSError):
        hub.save(net2, critic_card(net2), path=tmp_path / "m")
    assert folder_bytes(tmp_path / "m") == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_corrupted_index_is_reported_and_rebuilt(hub_home):
    stored_folder("one")
    stored_folder("two")
    (hub_home / "index.json").write_text("{garbage")
    with pytest.raises(StoreError, match="index is corrupted.*mdhub reindex"):
        hub.load("one")
    assert Store().reindex() == 2
    assert hub.load("two").id == "two"


def _save_many(args):
    home, worker = args
    os.environ["MDHUB_HOME"] = home
    torch.set_num_threads(1)
    for i in range(4):
        net = small_critic(worker * 10 + i)
        hub.save(net, critic_card(net, f"w{worker}-{i}"))
        net = small_critic(100 + i)
        hub.save(net, critic_card(net, "shared"), overwrite=True)
    return worker


def test_concurrent_saves_do_not_corrupt_the_index(hub_home):
    with mp.get_context("spawn").Pool(3) as pool:
        assert sorted(pool.map(_save_many, [(str(hub_home), w) for w in range(3)])) == [0, 1, 2]
    ids = [e.id for e in Store().entries()]
    assert ids == sorted([f"w{w}-{i}" for w in range(3) for i in range(4)] + ["shared"])
    for module_id in ids:
        hub.load(module_id)
    folders = [p for p in (hub_home / "modules").iterdir() if not p.name.startswith(".")]
    assert len(folders) == len(ids)  # replaced folders were cleaned up


def test_policy_cards_have_no_weights(tmp_path):
    from cards import Interface, ModuleCard, ModuleRef, Origin, PolicySpec

    card = ModuleCard(id="p", kind="policy", architecture="combined", interface=Interface(obs_dim=3, act_dim=2),
                      origin=Origin(algorithm="DQL", recipe="combined"),
                      policy=PolicySpec(diffusion=ModuleRef(id="d")))
    stored = hub.save(None, card, path=tmp_path / "p")
    assert sorted(folder_bytes(stored.path)) == sorted([CARD, README])
    with pytest.raises(StoreError, match="references its parts"):
        hub.save(small_critic(), card, path=tmp_path / "q")
