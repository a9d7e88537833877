"""Compatibility and recombination: the whole matrix of registry.yaml, adapters, lineage, bad input, CLI, demo."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import hub
from cards import DatasetRef, Interface
from hub.cli import app
from hub.combine import TrainSpec, combine, load_policy
from hub.compat import check
from hub.errors import CompatibilityError, IntegrityError, StoreError
from hub.registry import registry
from hub.store import Store
from hub.training import Budget, train_diffusion, train_guidance
from modules.sampling import score_candidates, select
from modules.scores import q_score

DATA = "toy-8gaussians"
TINY = Budget(hidden=8, batch_size=32, checkpoint_every=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with one tiny module of every registered architecture, trained a few steps on the toy."""
    import os

    home = tmp_path_factory.mktemp("combine-home")
    old = os.environ.get("MDHUB_HOME")
    os.environ["MDHUB_HOME"] = str(home)
    from hub.datasets import make_and_store

    make_and_store(DATA, progress=False)
    torch.set_num_threads(1)
    store = Store(home)
    guidance = {}
    for arch in registry().of_kind("guidance"):
        algo = arch.id if arch.id in ("iql", "idql", "dql") else None
        assert algo is not None, f"the test does not know how to train guidance architecture '{arch.id}'"
        guidance[arch.id] = train_guidance(algo, DATA, steps=4, module_id=f"g-{arch.id}", store=store, budget=TINY,
                                           progress=False)[0]
    diffusion = {}
    for arch in registry().of_kind("diffusion"):
        diffusion[arch.id] = _train_backbone(arch, guidance["iql"], store)
    yield {"home": home, "store": store, "guidance": guidance, "diffusion": diffusion}
    if old is None:
        os.environ.pop("MDHUB_HOME", None)
    else:
        os.environ["MDHUB_HOME"] = old


def _train_backbone(arch, g, store):
    from hub.training import DIFFUSION_ALGOS

    for algo, recipe_name in DIFFUSION_ALGOS.items():
        from modules.train.recipes import get_recipe

        r = get_recipe(recipe_name)
        if r.backbone == arch.id:
            return train_diffusion(algo, DATA, guidance=g if (r.needs_guidance or r.diffusion_update == "labels")
                                   else None, steps=3, module_id=f"d-{arch.id}", store=store, budget=TINY,
                                   progress=False)[0]
    # a backbone no recipe uses by default: train it under DQL's q_loss if it accepts it, else BC
    return train_diffusion("dql" if "q_loss" in arch.train_guidance else "idql", DATA,
                           guidance=g if "q_loss" in arch.train_guidance else None, steps=3,
                           module_id=f"d-{arch.id}", store=store, budget=TINY, progress=False, backbone=arch.id)[0]


@pytest.fixture
def in_world(world, monkeypatch):
    """Point MDHUB_HOME at the shared world (the autouse fixture gives every test a fresh, empty home)."""
    monkeypatch.setenv("MDHUB_HOME", str(world["home"]))
    return world


# The verdicts this test expects, written out here rather than read from registry.yaml, hub.modes or hub.compat,
# so a change to those tables that changes a verdict fails here. Every guidance provides q (iql, idql: q and v;
# dql: q only, and V can be fitted to it where a mode needs it), so what decides is the backbone and the mode.
TRAINING_MODES = {"q_loss", "labels"}  # `none` applies in both phases and is judged for sampling
ACCEPTS = {
    "dql_mlp": {"none", "q_loss", "resample", "gradient"},
    "idql_resnet": {"none", "q_loss", "resample", "gradient"},
    "swg_resnet": {"labels", "self", "resample"},
    "cfg_resnet": {"labels", "cfg", "none"},
}
GUIDANCE = ("iql", "idql", "dql")
MODES = ("none", "q_loss", "labels", "resample", "gradient", "cfg", "self")
TRAIN_MODES = TRAINING_MODES


def expected(g_card, d_arch, mode) -> bool:
    return mode in ACCEPTS[d_arch]


def matrix():
    return [(g, d, m) for g in GUIDANCE for d in ACCEPTS for m in MODES]


def test_the_matrix_covers_every_registered_architecture_and_built_in_mode():
    from hub.modes import BUILTIN

    assert {a.id for a in registry().of_kind("guidance")} == set(GUIDANCE)
    assert {a.id for a in registry().of_kind("diffusion")} == set(ACCEPTS)
    assert {m.name for m in BUILTIN} == set(MODES)


@pytest.mark.parametrize("g_arch,d_arch,mode", matrix())
def test_compatibility_matrix(in_world, g_arch, d_arch, mode):
    world = in_world
    store = world["store"]
    g, d = world["guidance"][g_arch], world["diffusion"][d_arch]
    want = expected(g.card, d_arch, mode)
    if mode in TRAIN_MODES:
        report = check(g.card, d_arch, mode, dataset_card=d.card.interface)
    else:
        report = check(g.card, d.card, mode)
    assert report.compatible == want, report.table()
    if not want:
        assert report.reasons(), "a refusal must give its reason"
        with pytest.raises(CompatibilityError, match=mode if "mode" in report.reasons()[0] else "needs"):
            if mode in TRAIN_MODES:
                combine(g, d_arch, train=TrainSpec(dataset=DATA, steps=2, mode=mode, hidden=8), store=store,
                        progress=False)
            else:
                combine(g, d, mode=mode, store=store, progress=False)
        return
    if mode in TRAIN_MODES:
        sample_mode = registry().get(d_arch, kind="diffusion").sample_guidance[0]
        pol = combine(g, d_arch, mode=sample_mode, train=TrainSpec(dataset=DATA, steps=2, mode=mode, hidden=8,
                                                              module_id=f"t-{g_arch}-{d_arch}-{mode}"),
                      store=store, progress=False)
        assert pol.train_report.compatible
        assert store.card(f"t-{g_arch}-{d_arch}-{mode}").origin.trained_with_guidance is not None
    else:
        settings = {"n_candidates": 4} if mode in ("resample", "self", "cfg") else {}
        pol = combine(g, d, mode=mode, store=store, progress=False, **settings)
        act = pol.act(np.zeros((5, 1), np.float32))
        assert act.shape == (5, 2) and np.abs(act).max() <= 1.0
        assert pol.act(np.zeros(1, np.float32)).shape == (2,)


def test_standardisation_makes_softmax_selection_scale_free(in_world):
    """A guidance whose rewards were scaled 10x (Q x 10, statistics x 10) selects exactly the same candidates."""
    world = in_world
    g = world["guidance"]["iql"]
    big = hub.load(g.path)
    with torch.no_grad():
        big.net.q_net.out.weight.mul_(10), big.net.q_net.out.bias.mul_(10)
    vs = g.card.guidance.value_stats
    obs = torch.zeros(64, 1)
    cands = torch.rand(64, 8, 2) * 2 - 1

    def picks(net, mean, std, seed=0):
        scores = score_candidates(q_score(net, 2, mean, std), obs, cands)
        return select(cands, scores, "softmax", generator=torch.Generator().manual_seed(seed)), scores

    a, sa = picks(g.net, vs.mean, vs.std)
    b, sb = picks(big.net, vs.mean * 10, vs.std * 10)
    assert torch.allclose(sa, sb, atol=1e-4) and torch.equal(a, b)
    _, raw_small = picks(g.net, 0.0, 1.0)
    _, raw_big = picks(big.net, 0.0, 1.0)
    assert not torch.allclose(torch.softmax(raw_small, 1), torch.softmax(raw_big, 1), atol=1e-3)  # unadapted: differ


def test_fit_v_adapter_for_a_q_only_guidance(in_world):
    world = in_world
    store = world["store"]
    g = world["guidance"]["dql"]
    assert g.card.guidance.provides == ["q"]
    pol = combine(g, world["diffusion"]["dql_mlp"], mode="resample", rule="expectile", n_candidates=4, store=store,
                  progress=False)
    assert "fit-v" in pol.card.policy.adapters
    fitted = store.card(pol.card.policy.infer_guidance.id)
    assert fitted.guidance.v_fitted and fitted.guidance.provides == ["q", "v"]
    assert fitted.origin.trained_with_guidance.sha256 == g.card.ref().sha256
    assert pol.act(np.zeros((3, 1), np.float32)).shape == (3, 2)


def _iface(**over) -> Interface:
    base = dict(obs_dim=1, act_dim=2, env_id="toy-8gaussians", dataset=DatasetRef(id=DATA, sha256="a" * 64))
    base.update(over)
    return Interface(**base)


def test_interface_checks_name_both_sides(in_world):
    world = in_world
    g = world["guidance"]["iql"].card
    other_data = _iface(dataset=DatasetRef(id="toy-other", sha256="b" * 64))
    r = check(g, "dql_mlp", "q_loss", dataset_card=other_data)
    assert r.compatible and any("toy-other" in w and DATA in w for w in r.warnings)
    r = check(g, "dql_mlp", "q_loss", dataset_card=_iface(env_id="HopperBulletEnv-v0"))
    assert not r.compatible and "HopperBulletEnv-v0" in " ".join(r.reasons())
    r = check(g, "dql_mlp", "q_loss", dataset_card=_iface(obs_dim=15))
    assert not r.compatible and "obs_dim" in " ".join(r.reasons())
    r = check(g, "dql_mlp", "q_loss", dataset_card=_iface(action_low=-2.0))
    assert not r.compatible and "action bounds" in " ".join(r.reasons())
    r = check(g, "dql_mlp", "teleport")
    assert not r.compatible and "unknown mode 'teleport'" in r.reasons()[0]


def test_double_guidance_and_lineage(in_world):
    world = in_world
    store = world["store"]
    g1, g2 = world["guidance"]["iql"], world["guidance"]["idql"]
    d = world["diffusion"]["dql_mlp"]
    combine(g1, d, mode="resample", infer_guidance=g2, n_candidates=4, module_id="double", store=store, save=True,
            progress=False)
    spec = store.card("double").policy
    assert spec.diffusion.sha256 == d.card.ref().sha256
    assert spec.infer_guidance.id == g2.id and spec.train_guidance.id == d.card.origin.trained_with_guidance.id
    assert (store.folder_of("double") / "model.safetensors").exists() is False  # references, not copies
    again = load_policy("double", store=store)
    obs = np.zeros((4, 1), np.float32)
    assert again.act(obs).shape == (4, 2)
    # a part changes under the same id: detected by sha256
    changed = hub.load(d.path)
    with torch.no_grad():
        next(changed.net.parameters()).add_(1.0)
    with pytest.raises(StoreError, match="stored policies reference it: 'double'.*--force"):
        store.save(changed.net, changed.card)  # replacing a part of a stored policy needs force
    store.save(changed.net, changed.card, overwrite=True)
    with pytest.raises(IntegrityError, match="changed"):
        load_policy("double", store=store)
    store.save(d.net, d.card, overwrite=True)  # restore the original part for the other tests


def test_a_missing_part_is_reported(in_world):
    world = in_world
    store = world["store"]
    g = world["guidance"]["iql"]
    d = train_diffusion("idql", DATA, steps=2, module_id="ephemeral", store=store, budget=TINY, progress=False)[0]
    combine(g, d, mode="resample", n_candidates=2, module_id="orphan", store=store, save=True, progress=False)
    with pytest.raises(StoreError, match="part of the stored policies 'orphan'"):
        store.remove("ephemeral")
    store.remove("ephemeral", force=True)
    with pytest.raises(IntegrityError, match="part 'ephemeral' cannot be loaded"):
        load_policy("orphan", store=store)


runner = CliRunner()


def test_cli_end_to_end_on_tiny_data(world, monkeypatch):
    monkeypatch.setenv("MDHUB_HOME", str(world["home"]))
    before = sorted(e.id for e in Store(world["home"]).entries())
    r = runner.invoke(app, ["check", "g-iql", "d-dql_mlp", "--mode", "resample"])
    assert r.exit_code == 0 and "COMPATIBLE" in r.output and "standardize-q" in r.output
    r = runner.invoke(app, ["check", "g-iql", "d-dql_mlp", "--mode", "cfg"])
    assert r.exit_code == 3 and "INCOMPATIBLE" in r.output  # the verdict's own exit code (errors are 1)
    r = runner.invoke(app, ["combine", "-g", "g-iql", "-d", "d-dql_mlp", "--mode", "teleport"])
    assert r.exit_code == 2 and "teleport" in r.output and "resample" in r.output  # a usage error: the choices
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["combine", "-g", "g-iql", "-d", "nope"])
    assert r.exit_code == 1 and "no module 'nope'" in r.output
    assert sorted(e.id for e in Store(world["home"]).entries()) == before  # nothing written by failures
    r = runner.invoke(app, ["combine", "-g", "g-iql", "-d", "d-dql_mlp", "--infer-guidance", "g-idql", "-N", "4",
                            "--id", "cli-policy"])
    assert r.exit_code == 0, r.output
    assert "stored policy cli-policy" in r.output
    assert json.loads(runner.invoke(app, ["show", "cli-policy", "--json"]).output)["policy"]["infer_guidance"]["id"] \
        == "g-idql"
    r = runner.invoke(app, ["combine", "-g", "g-idql", "-d", "dql_mlp", "--train", "--dataset", DATA, "--steps", "3",
                            "--hidden", "8", "--id", "cli-trained"])
    assert r.exit_code == 0, r.output
    assert Store(world["home"]).card("dql_mlp-under-g-idql").origin.trained_with_guidance.id == "g-idql"
    r = runner.invoke(app, ["eval", "cli-policy", "-n", "1"])
    assert r.exit_code == 1 and "error:" in r.output  # the toy has no simulator: a clear refusal


def test_train_and_eval_in_pybullet_through_the_cli(monkeypatch, hub_home):
    from hub.datasets import make_and_store

    make_and_store("hopper-bullet-tiny", progress=False)
    for args in (["train", "guidance", "--algo", "iql", "--dataset", "hopper-bullet-tiny", "--steps", "5",
                  "--hidden", "8", "--id", "hg"],
                 ["train", "diffusion", "--algo", "dql", "--dataset", "hopper-bullet-tiny", "--guidance", "hg",
                  "--steps", "5", "--hidden", "8", "--id", "hd"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", "hd", "-n", "2"])
    assert r.exit_code == 0 and "normalised score" in r.output, r.output
    card = hub.show("hd")
    (ev,) = card.evaluations  # kept apart from the training metrics, labelled
    assert ev.episodes == 2 and ev.env_id == "HopperBulletEnv-v0" and ev.guidance == "hg"
    assert ev.mode == "resample" and ev.settings["rule"] == "argmax" and np.isfinite(ev.normalized_score)
    assert "normalized_score" not in card.metrics and "eval_episodes" not in card.metrics
    r = runner.invoke(app, ["eval", "hd", "-n", "1", "--json"])  # fewer episodes: added beside, never replacing
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["id"] == "hd" and result["episodes"] == 1 and result["written"] is True
    assert result["sampling"].startswith("resample(") and result["guidance"] == "hg"
    assert sorted(e.episodes for e in hub.show("hd").evaluations) == [1, 2]
    assert card.origin.trained_with_guidance.id == "hg"
    # guides that need gradients (classifier guidance here) must work in a real rollout too
    grad_policy = combine("hg", "hd", mode="gradient", rho=0.5, module_id="hd-gradient", save=True, progress=False)
    result = hub.evaluate(grad_policy, episodes=1, max_steps=20)
    assert np.isfinite(result["normalized_score"])
    r = runner.invoke(app, ["train", "diffusion", "--algo", "dql", "--dataset", "hopper-bullet-tiny"])
    assert r.exit_code == 1 and "--guidance" in r.output


def test_demo_runs_end_to_end_on_a_tiny_budget(hub_home):
    from hub.demo import DemoConfig, run_demo

    cfg = DemoConfig(transitions=600, guidance_steps=5, diffusion_steps=5, hidden=8, episodes=1, max_episode_steps=20,
                     n_candidates=2, prefix="t")
    rows = run_demo(cfg, say=lambda m: None, progress=False)
    assert [r.policy for r in rows] == ["dql-native", "dql-double", "dql-unguided", "idql-native", "idql-double",
                                        "idql-unguided"]
    for r in rows:
        pol = load_policy(f"t-{r.policy}")
        (ev,) = pol.card.evaluations
        assert np.isfinite(ev.normalized_score) and ev.episodes == 1 and ev.max_steps == 20
    assert load_policy("t-dql-double").card.policy.infer_guidance.id == "t-iql-s1"
    from hub.demo import side_by_side

    table = side_by_side(rows)
    assert set(table) == {"dql", "idql"} and all(set(v) == {"native", "double", "unguided"} for v in table.values())
    assert table["idql"]["unguided"] == next(r.normalized_score for r in rows if r.policy == "idql-unguided")
    assert {r.env_id for r in rows} == {load_policy("t-dql-native").card.interface.env_id}


def test_a_run_is_reproducible_from_its_seed_whatever_ran_before(in_world):
    """Same recipe, data and seed -> the same weights, even when other work consumed the global RNG in between
    (regression: initial weights used to follow whatever state the process's RNG was in)."""
    store = in_world["store"]
    first = train_guidance("iql", DATA, steps=4, seed=3, module_id="repro-a", store=store, budget=TINY,
                           progress=False)[0]
    torch.rand(1000)  # any other work in this process
    again = train_guidance("iql", DATA, steps=4, seed=3, module_id="repro-b", store=store, budget=TINY,
                           progress=False)[0]
    other = train_guidance("iql", DATA, steps=4, seed=4, module_id="repro-c", store=store, budget=TINY,
                           progress=False)[0]
    sha = lambda m: m.card.files[0].sha256  # noqa: E731
    assert sha(first) == sha(again) and sha(first) != sha(other)
    d1 = train_diffusion("dql", DATA, guidance=first, steps=3, seed=3, module_id="repro-d1", store=store,
                         budget=TINY, progress=False)[0]
    torch.rand(1000)
    d2 = train_diffusion("dql", DATA, guidance=first, steps=3, seed=3, module_id="repro-d2", store=store,
                         budget=TINY, progress=False)[0]
    assert sha(d1) == sha(d2)
