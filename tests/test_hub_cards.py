"""Model cards the Hub understands: front matter in the shape of huggingface_hub's ModelCardData, evaluations as
model-index results that accumulate labelled, and a loopback Hub that validates YAML like the real Hub."""
from __future__ import annotations

import json
import urllib.request

import pytest
import yaml
from huggingface_hub import ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

import hub
from cards import DatasetRef, EvalRecord, card_from_readme, card_to_json, card_to_readme, merge_evaluations
from cards.card import MAX_EVALUATIONS
from cards.readme import front_matter
from hub.store import Store
from tests.conftest import critic_card, small_critic
from tests.hub_yaml import validate_metadata, validate_readme
from tests.test_sharing import hub_server  # noqa: F401  (the loopback Hub fixture)


def record(episodes: int = 10, seed: int = 0, score: float = 50.0, date: str = "2026-01-01T00:00:00+00:00",
           **over) -> EvalRecord:
    data = dict(env_id="HopperBulletEnv-v0", episodes=episodes, seed=seed, mode="resample",
                settings={"n_candidates": 50, "rule": "argmax"}, guidance="g", return_mean=1000.0 + score,
                return_std=12.5, normalized_score=score, normalized_score_std=1.5, date=date)
    data.update(over)
    return EvalRecord(**data)


def evaluated_card(*records: EvalRecord, **over):
    net = small_critic()
    return critic_card(net, "hub-card", evaluations=list(records), **over)


def test_front_matter_is_what_model_card_data_writes():
    card = evaluated_card(record(10), record(3, seed=1, date="2026-02-01T00:00:00+00:00"))
    meta = front_matter(card)
    hub_keys = {k: v for k, v in meta.items() if k != "mdhub"}
    data = ModelCardData(**hub_keys)  # parses model-index into EvalResults
    assert data.to_dict() == hub_keys  # and writes back exactly our keys and values
    assert data.library_name == "mdhub" and data.pipeline_tag == "reinforcement-learning"
    for tag in ("reinforcement-learning", "offline-reinforcement-learning", "diffusion-policy", "HopperBulletEnv-v0"):
        assert tag in data.tags
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "hub-card"
    rewards = [r for r in results if r.metric_type == "mean_reward"]
    assert {r.metric_value for r in rewards} == {"1050.00 +/- 12.50"}  # "m +/- s", like huggingface_sb3
    assert all(r.task_type == "reinforcement-learning" and r.dataset_type == "HopperBulletEnv-v0" for r in results)
    assert sorted(r.metric_args["episodes"] for r in rewards) == [3, 10]
    assert {r.metric_args["rule"] for r in rewards} == {"argmax"} and {r.metric_args["mode"] for r in rewards} \
        == {"resample"}
    assert sorted(r.metric_value for r in results if r.metric_type == "normalized_score") == [50.0, 50.0]
    assert validate_metadata(meta) == []


def test_readme_with_evaluations_round_trips_and_has_no_yaml_aliases():
    card = evaluated_card(record(10), record(5, seed=3))
    text = card_to_readme(card)
    assert "&id" not in text and "*id" not in text  # shared dicts would become anchors, which pulls refuse
    assert card_from_readme(text) == card
    assert "## Evaluation" in text and "## Training metrics" not in text


def test_datasets_only_when_the_data_live_on_the_hub():
    card = evaluated_card()
    assert card.interface.dataset is None and "datasets" not in front_matter(card)
    local = card.model_copy(update={"interface": card.interface.model_copy(
        update={"dataset": DatasetRef(id="hopper-bullet-medium")})})
    assert "datasets" not in front_matter(local)  # a local id names nothing on the Hub
    assert front_matter(local, hub_datasets=["alice/hopper-medium"])["datasets"] == ["alice/hopper-medium"]


def test_a_push_names_the_hub_dataset_the_data_live_in(hub_server, monkeypatch):  # noqa: F811
    import hub.datasets

    known = {"toy-on-hub": "alice/toy-data"}
    monkeypatch.setattr(hub.datasets, "hub_dataset_id", known.get, raising=False)
    monkeypatch.setattr(hub.datasets, "dataset_info", lambda i: {"sha256": "a" * 64})
    net = small_critic()
    for module_id, data, sha, expect in (("on-hub", "toy-on-hub", None, ["alice/toy-data"]),
                                         ("same-data", "toy-on-hub", "a" * 64, ["alice/toy-data"]),
                                         ("remade-since", "toy-on-hub", "b" * 64, None),  # other data now
                                         ("local-only", "toy-local", None, None)):
        card = critic_card(net, module_id)
        card.interface.dataset = DatasetRef(id=data, sha256=sha)
        hub.save(net, card)
        result = hub.push(module_id, f"alice/{module_id}")
        commit = hub_server.repos[f"alice/{module_id}"].commits[result.commit]
        meta = yaml.safe_load(commit.files["README.md"].decode().split("---\n")[1])
        assert meta.get("datasets") == expect, module_id
        assert validate_metadata(meta) == []


def test_old_cards_without_evaluations_keep_their_bytes():
    card = critic_card(small_critic(), "old")
    assert card.evaluations == [] and '"evaluations"' not in card_to_json(card)
    assert "evaluations" not in front_matter(card)["mdhub"]


def test_evaluations_accumulate_labelled():
    ten = record(10, score=60.0)
    three = record(3, score=10.0)
    merged = merge_evaluations([ten], [three])
    assert merged == [ten, three]  # fewer episodes: added beside, never replacing
    rerun = record(10, score=61.0, date="2026-03-01T00:00:00+00:00")
    assert merge_evaluations(merged, [rerun]) == [three, rerun]  # the same experiment again: replaced
    many = [record(1, seed=s) for s in range(MAX_EVALUATIONS)]
    kept = merge_evaluations([ten, *many], [])
    assert len(kept) == MAX_EVALUATIONS and ten in kept  # the least-founded go first


def test_update_card_accumulates_evaluations_in_the_store():
    net = small_critic()
    hub.save(net, critic_card(net, "acc"))
    store = Store()
    store.update_card("acc", evaluations=[record(10)])
    store.update_card("acc", evaluations=[record(2, seed=5)])
    card = store.card("acc")
    assert [r.episodes for r in card.evaluations] == [10, 2]
    assert card.metrics == {}  # evaluations stay apart from training metrics


@pytest.mark.parametrize("meta, fragment", [
    ({"license": "my-own"}, "license"),
    ({"pipeline_tag": "offline-rl"}, "pipeline_tag"),
    ({"tags": "rl"}, "tags"),
    ({"tags": ["ok", 3]}, "tags"),
    ({"datasets": [{"id": "x"}]}, "datasets"),
    ({"library_name": ["mdhub"]}, "library_name"),
    ({"model-index": {"name": "x"}}, "model-index"),
    ({"model-index": [{"name": "x", "results": [{"task": {}, "dataset": {"name": "e", "type": "e"},
                                                  "metrics": [{"type": "r", "value": 1}]}]}]}, "task.type"),
    ({"model-index": [{"name": "x", "results": [{"task": {"type": "t"}, "dataset": {"name": "e"},
                                                  "metrics": [{"type": "r", "value": 1}]}]}]}, "dataset"),
    ({"model-index": [{"name": "x", "results": [{"task": {"type": "t"}, "dataset": {"name": "e", "type": "e"},
                                                  "metrics": [{"type": "r"}]}]}]}, "value"),
])
def test_the_loopback_hub_refuses_what_the_hub_refuses(hub_server, meta, fragment):  # noqa: F811
    content = "---\n" + yaml.safe_dump(meta) + "---\n\n# x\n"
    assert any(fragment in e for e in validate_readme({"content": content, "repoType": "model"}))
    req = urllib.request.Request(f"{hub_server.url}/api/validate-yaml", method="POST",
                                 data=json.dumps({"content": content, "repoType": "model"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400 and fragment in err.value.read().decode()


def test_an_evaluated_card_is_pushed_through_the_hubs_validation(hub_server):  # noqa: F811
    net = small_critic()
    hub.save(net, critic_card(net, "evaluated", evaluations=[record(10), record(4, seed=2)]))
    result = hub.push("evaluated", "alice/evaluated")
    assert ("POST", "/api/validate-yaml") in [(m, p.split("?")[0]) for m, p in hub_server.requests]
    pulled = hub.pull(f"alice/evaluated@{result.commit}", local_id="evaluated-copy")
    assert [r.episodes for r in pulled.card.evaluations] == [10, 4]


def test_a_card_the_hub_would_refuse_is_refused_at_push(hub_server):  # noqa: F811
    net = small_critic()
    hub.save(net, critic_card(net, "bad-license", license="my-own-licence"))
    from hub.errors import MdhubError

    with pytest.raises(MdhubError, match="license"):  # a user-facing error: one line from the CLI, exit 1
        hub.push("bad-license", "alice/bad")
