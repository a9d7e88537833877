"""Evaluation throughput and checkpoint runs: evaluate_many across processes gives the serial numbers, evaluate_run
evaluates a run's checkpoint modules and writes its learning curve, `mdhub eval-run` reports it (issue 15, items 4-5).

The modules are built here (untrained, tiny) and stored with cards like training's; episodes are capped at a few
steps of the hopper so the whole file stays within seconds."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cards import DiffusionSpec, Interface, ModuleCard, Origin
from hub.cli import app
from hub.errors import MdhubError, NotFoundError
from hub.evaluation import BLOCK, evaluate, evaluate_many, evaluate_run, run_checkpoints
from hub.paths import run_dir
from hub.registry import registry
from hub.store import Store
from tests.conftest import critic_card, small_critic

ENV = "HopperBulletEnv-v0"
OBS, ACT = 15, 3
STEPS = 6  # episode cap: a few physics steps per episode


def diffusion_module(store: Store, module_id: str, seed: int, guidance=None, steps: int | None = None,
                     checkpoint_of: str | None = None):
    """A tiny untrained DQL-MLP diffusion module for the hopper, stored (with its guidance of record, if any)."""
    torch.manual_seed(seed)
    net = registry().get("dql_mlp", kind="diffusion").make({"obs_dim": OBS, "act_dim": ACT, "hidden": 8})
    card = ModuleCard(
        id=module_id, kind="diffusion", architecture="dql_mlp", config=net.cfg.model_dump(mode="json"),
        interface=Interface(obs_dim=OBS, act_dim=ACT, env_id=ENV),
        origin=Origin(algorithm="DQL", recipe="guidance-first", seed=0, steps=steps, checkpoint_of=checkpoint_of,
                      trained_with_guidance=guidance.card.ref() if guidance is not None else None),
        diffusion=DiffusionSpec(T=5, train_guidance=["none", "q_loss"], sample_guidance=["none", "resample"]))
    return store.save(net, card)


@pytest.fixture
def run(hub_home):
    """A run 'dq' of three checkpoints (steps 10, 20, 30) and its final module (step 40), under a stored guidance."""
    store = Store()
    g = store.save(small_critic(0, OBS, ACT), critic_card(small_critic(0, OBS, ACT), "gq"))
    for i, step in enumerate((10, 20, 30)):
        diffusion_module(store, f"dq-step{step}", seed=i, guidance=g, steps=step, checkpoint_of="dq")
    diffusion_module(store, "dq", seed=9, guidance=g, steps=40)
    diffusion_module(store, "other", seed=5, guidance=g, steps=10)  # not part of the run
    return store


def test_parallel_equals_serial_and_blocks_split_across_workers(run):
    refs = ["dq-step10", "dq-step20", "dq"]
    episodes = BLOCK + 2  # two blocks per policy: the blocks of one policy land on different workers
    serial = evaluate_many(refs, episodes=episodes, seed=3, workers=1, store=run, write=False, max_steps=STEPS)
    parallel = evaluate_many(refs, episodes=episodes, seed=3, workers=2, store=run, write=False, max_steps=STEPS)
    for s, p in zip(serial, parallel, strict=True):
        assert s["id"] == p["id"]
        for key in ("return_mean", "return_std", "normalized_score", "env_steps", "episodes"):
            assert s[key] == p[key], (s["id"], key)
        assert s["mode"] == p["mode"] == "resample" and s["sampling"] == p["sampling"]
    assert [r["id"] for r in serial] == refs and all(r["guidance"] == "gq" for r in serial)
    assert serial[0]["return_mean"] != serial[1]["return_mean"]  # different modules, different numbers
    # evaluate() of one policy in this process is the same function of (policy, episodes, seed)
    one = evaluate("dq-step20", episodes=episodes, seed=3, store=run, write=False, max_steps=STEPS)
    assert one["return_mean"] == serial[1]["return_mean"] and one["env_steps"] == serial[1]["env_steps"]
    # the seed changes the numbers
    other = evaluate("dq-step20", episodes=2, seed=4, store=run, write=False, max_steps=STEPS)
    assert other["return_mean"] != evaluate("dq-step20", episodes=2, seed=3, store=run, write=False,
                                            max_steps=STEPS)["return_mean"]


def test_reused_env_copies_play_the_episodes_fresh_ones_do():
    from modules.envs import close_pooled_envs, rollout

    w = np.random.default_rng(0).normal(size=(OBS, ACT)).astype(np.float32)

    def policy(obs):
        return np.tanh(obs @ w)

    fresh = rollout(policy, "hopper", 3, seed=5, max_steps=STEPS * 3)
    kept = [rollout(policy, "hopper", n, seed=5, max_steps=STEPS * 3, n_envs=2, keep_envs=True) for n in (3, 3, 2)]
    close_pooled_envs()
    np.testing.assert_array_equal(kept[0], fresh)
    np.testing.assert_array_equal(kept[1], fresh)  # the same copies, again
    np.testing.assert_array_equal(kept[2], fresh[:2])


def test_evaluate_many_refuses_bad_input_in_one_line(run):
    with pytest.raises(NotFoundError, match="no module 'nope'"):
        evaluate_many(["dq", "nope"], episodes=1, store=run)
    with pytest.raises(MdhubError, match="'gq' is a guidance module"):
        evaluate_many(["gq"], episodes=1, store=run)
    with pytest.raises(MdhubError, match="episodes must be at least 1"):
        evaluate_many(["dq"], episodes=0, store=run)


def test_evaluate_run_writes_the_curve_and_the_cards(run):
    assert [(s, c.id) for s, c in run_checkpoints("dq", run)] == [
        (10, "dq-step10"), (20, "dq-step20"), (30, "dq-step30"), (40, "dq")]
    r = evaluate_run("dq", episodes=2, seed=1, workers=2, store=run, max_steps=STEPS)
    assert [p["step"] for p in r["points"]] == [10, 20, 30, 40]
    assert [p["final"] for p in r["points"]] == [False, False, False, True]
    folder = run_dir("dq")
    assert r["run_dir"] == str(folder) and r["env_id"] == ENV and r["device"] == "cpu"
    with open(folder / "eval_curve.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(row["step"]) for row in rows] == [10, 20, 30, 40]
    assert float(rows[1]["return_mean"]) == r["points"][1]["return_mean"]
    assert rows[0]["episodes"] == "2" and rows[0]["seed"] == "1"
    doc = json.loads((folder / "eval_curve.json").read_text())
    assert doc["id"] == "dq" and len(doc["points"]) == 4 and doc["points"][2]["id"] == "dq-step30"
    assert {"normalized_score", "normalized_score_std", "return_std"} <= set(doc["points"][0])
    assert (folder / "eval_curve.png").stat().st_size > 1000
    # each evaluation is on its module's card, labelled like `mdhub eval`'s
    for p in r["points"]:
        rec = run.card(p["id"]).evaluations[-1]
        assert (rec.episodes, rec.seed, rec.max_steps, rec.guidance) == (2, 1, STEPS, "gq")
        assert rec.return_mean == p["return_mean"]
    assert run.card("other").evaluations == []
    # the serial numbers of one checkpoint
    one = evaluate("dq-step30", episodes=2, seed=1, store=run, write=False, max_steps=STEPS)
    assert one["return_mean"] == r["points"][2]["return_mean"]


def test_evaluate_run_without_checkpoints_or_module(run):
    with pytest.raises(MdhubError, match=r"run 'other' has no checkpoint modules.*--save-every N"):
        evaluate_run("other", episodes=1, store=run)
    with pytest.raises(NotFoundError, match="no module 'missing'"):
        evaluate_run("missing", episodes=1, store=run)
    with pytest.raises(MdhubError, match=r"'dq-step20' is a checkpoint \(step 20\) of run 'dq': .*eval-run dq"):
        evaluate_run("dq-step20", episodes=1, store=run)
    with pytest.raises(MdhubError, match=r"'gq' is a guidance module.*trained with it \(dq, other\)"):
        evaluate_run("gq", episodes=1, store=run)


def test_a_run_whose_final_module_is_not_stored_is_its_checkpoints(run):
    run.remove("dq")
    r = evaluate_run("dq", episodes=1, workers=1, store=run, max_steps=STEPS, write=False)
    assert [p["id"] for p in r["points"]] == ["dq-step10", "dq-step20", "dq-step30"]
    assert all(not p["written"] for p in r["points"])


def test_cli_eval_run(run):
    runner = CliRunner()
    res = runner.invoke(app, ["eval-run", "dq", "--episodes", "1", "--seed", "2", "--workers", "1", "--max-steps",
                              str(STEPS), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [p["step"] for p in doc["points"]] == [10, 20, 30, 40] and doc["seed"] == 2
    assert doc["files"]["png"].endswith("eval_curve.png")
    res = runner.invoke(app, ["eval-run", "dq", "-n", "1", "--workers", "1", "--max-steps", str(STEPS)])
    assert res.exit_code == 0, res.output
    assert "dq-step20" in res.stdout and "eval_curve.png" in res.stdout and "normalised score" in res.stdout
    for args, line in ((["eval-run", "missing"], "error: no module 'missing'"),
                       (["eval-run", "other"], "error: run 'other' has no checkpoint modules"),
                       (["eval-run", "dq", "--device", "cuda:7"], "error: device 'cuda:7'"),
                       (["eval-run", "dq", "--device", "tpu"], "error: unknown device 'tpu'")):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (args, res.output)
        assert res.stderr.startswith(line) and res.stderr.count("\n") == 1, res.stderr
    assert np.isfinite(doc["points"][0]["return_mean"])
