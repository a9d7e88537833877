"""Reward relabelling: `mdhub data relabel SRC --reward NAME --id NEW`, `hub.datasets.relabel`, the registered
rewards, the record of the source in the new dataset and in the cards of modules trained on it, and bad input."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

import hub
from cards import DatasetRef, Interface, card_from_json, card_to_json, card_to_readme
from hub import datasets as store
from hub.cli.data import data_app
from hub.training import dataset_interface
from modules.data.dataset import OfflineDataset
from modules.data.errors import DatasetError
from modules.data.locomotion import LAYOUTS, alive, forward_speed
from modules.data.make import make_dataset
from modules.data.rewards import REWARDS, RewardError, parse_reward, reward_names
from tests.conftest import critic_card, small_critic

runner = CliRunner()
SRC = "hopper-bullet-tiny"


@pytest.fixture(scope="module")
def tiny() -> OfflineDataset:
    """The pybullet hopper expert, 2000 rows = 2 finished episodes (about a second)."""
    return make_dataset(SRC, transitions=2000, seed=0, progress=False, workers=1)


@pytest.fixture()
def stored(tiny) -> OfflineDataset:
    tiny.save(store.dataset_path(SRC))
    return tiny


def _ok(args: list[str]):
    res = runner.invoke(data_app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def _folder_state(home) -> dict[str, bytes]:
    folder = home / "datasets"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def test_every_reward_relabels_and_records_its_source(stored, hub_home):
    src_sha = stored.sha256
    lay = LAYOUTS["hopper"]
    v = 0.5 * (forward_speed(stored.observations) + forward_speed(stored.next_observations))
    got = {}
    for reward, new_id in [("forward", "hop-fwd"), ("backward", "hop-bwd"), ("target-speed:1.5", "hop-ts"),
                           ("energy", "hop-energy")]:
        path = store.relabel(SRC, reward, new_id)
        assert path == store.dataset_path(new_id)
        ds = OfflineDataset.load(path)
        for key in ("observations", "actions", "next_observations", "terminals", "timeouts"):
            np.testing.assert_array_equal(getattr(ds, key), getattr(stored, key))
        rel = ds.metadata["relabelled"]
        assert rel["source"] == {"id": SRC, "sha256": src_sha} and rel["reward"] == reward
        assert ds.metadata["dataset_id"] == new_id and ds.metadata["normalized_scores"] is None
        assert ds.metadata["sampling"] == "deterministic"
        assert ds.metadata["travel_m"] == pytest.approx(stored.metadata["travel_m"])
        got[reward] = ds.rewards.astype(np.float64)
    np.testing.assert_allclose(got["energy"], -np.square(stored.actions.astype(np.float64)).sum(1), rtol=1e-6)
    np.testing.assert_allclose(got["target-speed:1.5"], -np.abs(v - 1.5), rtol=1e-5, atol=1e-5)
    # forward and backward share alive and the costs, and differ by twice the progress term
    np.testing.assert_allclose(got["forward"] - got["backward"], 2 * lay.progress_scale * v, rtol=1e-4, atol=1e-4)
    assert np.all(got["forward"] - lay.progress_scale * v <= alive(lay, stored.next_observations) + 1e-5)
    summary = store.dataset_summary("hop-ts")
    assert summary["reward"] == "target-speed:1.5" and summary["source"] == {"id": SRC, "sha256": src_sha}
    assert summary["score_mean"] is None and summary["return_mean"] < 0


def test_forward_is_the_tasks_own_reward_up_to_the_documented_approximation(stored):
    """alive and the costs are exact; progress uses the torso's speed for the mean of the body's parts: episode
    returns agree within 1% (step by step they differ more: see docs/data.md)."""
    store.relabel(SRC, "forward", "hop-fwd")
    ds = store.get_dataset("hop-fwd")
    np.testing.assert_allclose(ds.episode_returns(), stored.episode_returns(), rtol=0.01)
    assert np.corrcoef(ds.rewards, stored.rewards)[0, 1] > 0.3


def test_cli_relabel_and_info(stored, hub_home):
    res = _ok(["relabel", SRC, "--reward", "target-speed:2", "--id", "hop-ts2"])
    assert "made hop-ts2" in res.output and "target-speed:2" in res.output
    info = json.loads(_ok(["info", "hop-ts2", "--json"]).output)
    assert info["reward"] == "target-speed:2" and info["source"]["id"] == SRC and info["episodes"] == 2
    assert "relabelled: reward target-speed:2 on hopper-bullet-tiny" in _ok(["info", "hop-ts2"]).output


def test_help_lists_every_registered_reward():
    res = runner.invoke(data_app, ["relabel", "--help"], env={"COLUMNS": "300"})
    assert res.exit_code == 0
    text = re.sub(r"[\s│]+", " ", res.output)
    for r in REWARDS.values():
        assert r.usage in text, r.usage
    assert reward_names() == "forward, backward, target-speed:V, energy"


@pytest.mark.parametrize("text, canonical", [("forward", "forward"), ("ENERGY", "energy"),
                                             ("target-speed:1.50", "target-speed:1.5"),
                                             ("target-speed:-2", "target-speed:-2"),
                                             ("target-speed:0", "target-speed:0")])
def test_parse_reward(text, canonical):
    assert parse_reward(text).name == canonical


@pytest.mark.parametrize("text, message", [
    ("fly", "unknown reward 'fly'; known rewards: forward, backward, target-speed:V, energy"),
    ("target-speed:fast", "parameter V must be a number"),
    ("target-speed", "needs a parameter"),
    ("target-speed:", "needs a parameter"),
    ("target-speed:nan", "must be finite"),
    ("target-speed:1e9", "must be finite and within"),
    ("forward:2", "takes no parameter"),
])
def test_parse_reward_refuses(text, message):
    with pytest.raises(RewardError, match=re.escape(message)):
        parse_reward(text)


@pytest.mark.parametrize("args, message", [
    ([SRC, "--reward", "fly", "--id", "x1"], "unknown reward 'fly'; known rewards: forward, backward, "
                                              "target-speed:V, energy"),
    ([SRC, "--reward", "target-speed:fast", "--id", "x1"], "parameter V must be a number (m/s), got 'fast'"),
    (["toy-spiral", "--reward", "forward", "--id", "x1"], "reward 'forward' does not apply to dataset 'toy-spiral'"),
    (["no-such-data", "--reward", "energy", "--id", "x1"], "source dataset 'no-such-data' is not in the store"),
    ([SRC, "--reward", "energy", "--id", "Bad/Id"], "bad dataset id 'Bad/Id'"),
    ([SRC, "--reward", "energy", "--id", "../x"], "bad dataset id '../x'"),
    ([SRC, "--reward", "energy", "--id", "hopper-bullet-medium"], "is a dataset id that `mdhub data make` builds"),
    ([SRC, "--reward", "energy", "--id", SRC], "is a dataset id that `mdhub data make` builds"),
    ([SRC, "--reward", "energy", "--id", "toy-spiral-copy"], None),  # the control: this one works
])
def test_bad_input_is_one_line_and_writes_nothing(stored, hub_home, args, message):
    _ok(["make", "toy-spiral", "-n", "30"])
    before = _folder_state(hub_home)
    res = runner.invoke(data_app, ["relabel", *args])
    if message is None:
        assert res.exit_code == 0, res.output
        assert set(_folder_state(hub_home)) == set(before) | {"toy-spiral-copy.npz"}
        return
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert message in lines[0], lines[0]
    assert _folder_state(hub_home) == before  # nothing written, no temp file left


def test_never_overwrites_without_force_and_never_data_modules_name(stored, hub_home):
    store.relabel(SRC, "energy", "hop-new")
    first = store.dataset_path("hop-new").read_bytes()
    with pytest.raises(DatasetError, match="already in the store.*relabelling never overwrites"):
        store.relabel(SRC, "backward", "hop-new")
    assert store.dataset_path("hop-new").read_bytes() == first
    store.relabel(SRC, "backward", "hop-new", force=True)  # nothing names it: replaced
    replaced = OfflineDataset.load(store.dataset_path("hop-new"))
    assert replaced.metadata["relabelled"]["reward"] == "backward"
    # a stored module trained on it: --force is refused, naming the module
    net = small_critic(obs_dim=15, act_dim=3)
    iface = Interface(obs_dim=15, act_dim=3, env_id="HopperBulletEnv-v0",
                      dataset=DatasetRef(id="hop-new", sha256=replaced.sha256))
    hub.save(net, critic_card(net, "critic-on-relabelled", interface=iface))
    before = store.dataset_path("hop-new").read_bytes()
    res = runner.invoke(data_app, ["relabel", SRC, "--reward", "energy", "--id", "hop-new", "--force"])
    assert res.exit_code == 1 and "critic-on-relabelled" in res.output and "refusing to replace" in res.output
    assert store.dataset_path("hop-new").read_bytes() == before


def test_cards_of_modules_trained_on_relabelled_data_say_so(stored, hub_home):
    store.relabel(SRC, "target-speed:1.5", "hop-ts")
    ds = store.get_dataset("hop-ts")
    iface = dataset_interface(ds)
    ref = iface.dataset
    assert ref is not None and ref.id == "hop-ts" and ref.sha256 == ds.sha256
    assert ref.reward == "target-speed:1.5" and ref.source_id == SRC and ref.source_sha256 == stored.sha256
    net = small_critic(obs_dim=15, act_dim=3)
    card = critic_card(net, "critic-ts", interface=iface)
    text = card_to_json(card)
    assert '"reward": "target-speed:1.5"' in text and card_from_json(text) == card
    readme = card_to_readme(card)
    assert "relabelled with the reward `target-speed:1.5` from `hopper-bullet-tiny`" in readme
    # a module on the data's own rewards: the card has none of the new fields, as before they existed
    plain = dataset_interface(stored).dataset
    assert plain is not None and plain.reward is None and plain.source_id is None
    plain_json = card_to_json(critic_card(net, "critic-own", interface=dataset_interface(stored)))
    assert "reward\"" not in plain_json and "source_id" not in plain_json and "source_sha256" not in plain_json
    assert "relabelled" not in card_to_readme(critic_card(net, "critic-own", interface=dataset_interface(stored)))
    # an old card's dataset reference (no new keys) still loads
    old = json.loads(plain_json)
    assert card_from_json(json.dumps(old)).interface.dataset == plain


def test_a_module_trained_on_relabelled_data_names_the_reward_and_source(stored, hub_home):
    """Training reads the dataset's metadata: the stored card and its README name the reward and the source."""
    store.relabel(SRC, "backward", "hop-back")
    m = hub.train_guidance("iql", "hop-back", steps=3, seed=0, progress=False)[0]
    loaded = hub.load(m.id)
    ref = loaded.card.interface.dataset
    assert ref is not None and ref.id == "hop-back" and ref.reward == "backward"
    assert ref.source_id == SRC and ref.source_sha256 == stored.sha256
    readme = card_to_readme(loaded.card)
    assert "relabelled with the reward `backward` from `hopper-bullet-tiny`" in readme


def _dataset_check(report) -> tuple[str, str]:
    found = [c for c in report.checks if c.name == "dataset"]
    assert len(found) == 1, report.checks
    return found[0].status, found[0].detail


def test_a_guidance_on_relabelled_data_steers_the_sources_diffusion_model_as_retargeting(stored, hub_home):
    """The compatibility layer knows a relabelling keeps the states and actions: a guidance trained on a relabelled
    copy of the diffusion model's own data is reward retargeting (ok), not off-distribution data (warn)."""
    from hub.compat import check

    store.relabel(SRC, "backward", "hop-back")
    guidance = hub.train_guidance("iql", "hop-back", steps=2, seed=0, progress=False)[0].card
    diffusion = hub.train_diffusion("idql", SRC, steps=2, seed=0, progress=False)[0].card
    status, detail = _dataset_check(check(guidance, diffusion, "resample"))
    assert status == "ok" and "reward retargeting" in detail and "backward" in detail and SRC in detail
    # two relabellings of the same source, other rewards: retargeting too
    iface = diffusion.interface.model_copy(update={"dataset": DatasetRef(
        id="hop-energy", sha256="a" * 64, reward="energy", source_id=SRC, source_sha256=stored.sha256)})
    status, detail = _dataset_check(check(guidance, diffusion.model_copy(update={"interface": iface}), "resample"))
    assert status == "ok" and "energy" in detail and "backward" in detail
    # a relabelling of other content under the same source id: a warning naming both sha256
    iface = diffusion.interface.model_copy(update={"dataset": DatasetRef(
        id=SRC, sha256="b" * 64)})
    status, detail = _dataset_check(check(guidance, diffusion.model_copy(update={"interface": iface}), "resample"))
    assert status == "warn" and "different data" in detail and "bbbbbbbbbbbb" in detail
    # an unrelated dataset of the same env: still the off-distribution warning
    iface = diffusion.interface.model_copy(update={"dataset": DatasetRef(id="hopper-bullet-medium", sha256="c" * 64)})
    status, detail = _dataset_check(check(guidance, diffusion.model_copy(update={"interface": iface}), "resample"))
    assert status == "warn" and "off-distribution" in detail
