"""Cards: validation, canonical JSON, model-card round trip, format versions, hostile input."""
from __future__ import annotations

import json

import pytest

from cards import (
    CardError,
    DatasetRef,
    DiffusionSpec,
    GuidanceSpec,
    Interface,
    ModuleCard,
    ModuleRef,
    Origin,
    PolicySpec,
    RewardTransform,
    ValueStats,
    card_from_dict,
    card_from_json,
    card_from_readme,
    card_json_schema,
    card_to_json,
    card_to_readme,
)


def full_card() -> ModuleCard:
    return ModuleCard(
        id="iql-hopper.s0", kind="guidance", architecture="iql", config={"obs_dim": 15, "act_dim": 3, "hidden": 256},
        interface=Interface(obs_dim=15, act_dim=3, obs_normalised=True, env_id="HopperBulletEnv-v0",
                            dataset=DatasetRef(id="hopper-bullet-medium", sha256="a" * 64)),
        origin=Origin(algorithm="IQL", recipe="policy-free", seed=3, steps=1000, versions={"torch": "2.13.0"}),
        guidance=GuidanceSpec(provides=["q", "v"], expectile=0.7, discount=0.99,
                              reward_transform=RewardTransform(kind="return-range", scale=0.8123456789),
                              value_stats=ValueStats(mean=12.5, std=3.25, min=-1.0, max=30.125)),
        metrics={"normalized_score": 55.123456789, "wall_time_s": 12.0, "note": "ok"},
        tags=["hopper"], description="A test card.\n\nWith two paragraphs: and a colon.",
    )


def test_readme_round_trip_is_equal_and_has_hub_metadata():
    card = full_card()
    text = card_to_readme(card)
    assert text.startswith("---\n")
    front = text.split("---\n")[1]
    assert "library_name: mdhub" in front and "license: mit" in front
    assert "pipeline_tag: reinforcement-learning" in front
    assert "datasets:" not in front  # a local dataset id names nothing on the Hub (tests/test_hub_cards.py)
    for tag in ("iql", "guidance", "reinforcement-learning", "offline-reinforcement-learning", "diffusion-policy"):
        assert f"- {tag}" in front
    assert card_from_readme(text) == card
    assert card_to_readme(card_from_readme(text)) == text


def test_json_is_canonical_and_round_trips():
    card = full_card()
    text = card_to_json(card)
    assert card_from_json(text) == card
    assert card_to_json(card_from_json(text)) == text
    assert list(json.loads(text)) == sorted(json.loads(text))


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.pop("interface"), "missing field 'interface'"),
        (lambda d: d.update(colour="blue"), "unknown field 'colour'"),
        (lambda d: d["interface"].update(obs_dim="fifteen"), "field 'interface.obs_dim'"),
        (lambda d: d.update(kind="critic"), "field 'kind'"),
        (lambda d: d.update(id="../../etc/passwd"), "field 'id'"),
        (lambda d: d.update(description="x" * 30_000), "field 'description'"),
        (lambda d: d["interface"].update(action_low=1.0, action_high=-1.0), "action_low"),
        (lambda d: d.update(guidance=None), "needs its 'guidance' section"),
        (lambda d: d["metrics"].update(score=float("nan")), "field 'metrics.score"),
    ],
)
def test_bad_cards_name_the_field(mutate, expected):
    data = full_card().model_dump(mode="json")
    mutate(data)
    with pytest.raises(CardError) as e:
        card_from_dict(data, "x/card.json")
    assert expected in str(e.value)
    assert str(e.value).startswith("x/card.json")


def test_format_versions_are_refused_with_the_supported_one():
    data = full_card().model_dump(mode="json")
    with pytest.raises(CardError, match="newer than this mdhub supports .*format 1"):
        card_from_dict({**data, "format_version": 7})
    with pytest.raises(CardError, match="format_version 0 is not supported; this mdhub reads format 1"):
        card_from_dict({**data, "format_version": 0})
    data.pop("format_version")
    with pytest.raises(CardError, match="missing field 'format_version'"):
        card_from_dict(data)


def test_invalid_json_names_the_file():
    with pytest.raises(CardError, match=r"m/card.json: not valid JSON"):
        card_from_json("{not json", "m/card.json")


def test_hostile_readmes_are_refused():
    good = card_to_readme(full_card())
    with pytest.raises(CardError, match="no YAML front matter"):
        card_from_readme("# hello")
    with pytest.raises(CardError, match="aliases|anchors"):
        card_from_readme("---\na: &x [1, 2]\nb: *x\nlibrary_name: mdhub\n---\n")
    with pytest.raises(CardError, match="byte limit"):
        card_from_readme(good + "x" * 1_100_000)
    with pytest.raises(CardError, match="library_name"):
        card_from_readme(good.replace("library_name: mdhub", "library_name: transformers"))
    with pytest.raises(CardError, match="field 'id'"):
        card_from_readme(good.replace("id: iql-hopper.s0", "id: ../../evil"))
    with pytest.raises(CardError, match="unknown field 'build'"):
        card_from_readme(good.replace("  architecture: iql\n", "  architecture: iql\n  build: os:system\n"))


def test_policy_and_diffusion_cards_validate():
    d = ModuleCard(id="d", kind="diffusion", architecture="dql_mlp", interface=Interface(obs_dim=2, act_dim=2),
                   origin=Origin(algorithm="DQL"), diffusion=DiffusionSpec(T=5, train_guidance=["q_loss"]))
    p = ModuleCard(id="p", kind="policy", architecture="combined", interface=Interface(obs_dim=2, act_dim=2),
                   origin=Origin(algorithm="DQL", recipe="combined"),
                   policy=PolicySpec(diffusion=ModuleRef(id="d", sha256="b" * 64), mode="resample"))
    for c in (d, p):
        assert card_from_readme(card_to_readme(c)) == c


def test_json_schema_describes_the_card():
    schema = card_json_schema()
    assert schema["title"] == "ModuleCard"
    assert {"id", "kind", "architecture", "interface", "origin"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
