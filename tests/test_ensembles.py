"""Many seeds at once: a member of a K-seed run equals the single run of its seed; members are stored apart; compiled,
bf16 and device options behave."""
from __future__ import annotations

import json

import pytest
import torch

import hub
from hub.errors import MdhubError
from modules.data.toy import make_toy_dataset
from modules.device import DeviceError, resolve_device
from modules.diffusion.dql_mlp import DQLDiffusion, DQLMLPConfig
from modules.guidance.dql import DQLCritic, DQLCriticConfig
from modules.guidance.iql import CriticConfig, IQLCritic
from modules.train.loop import run
from modules.train.recipes import get_recipe

STEPS = 25


@pytest.fixture(scope="module")
def toy():
    ds = make_toy_dataset("8gaussians", n=2000, seed=0)
    ds.metadata["dataset_id"] = "toy-8g"
    return ds


def _critic(seed: int, joint: bool = False):
    torch.manual_seed(seed)
    if joint:
        return DQLCritic(DQLCriticConfig(obs_dim=1, act_dim=2, hidden=16))
    return IQLCritic(CriticConfig(obs_dim=1, act_dim=2, hidden=16))


def _actor(seed: int):
    torch.manual_seed(seed)
    return DQLDiffusion(DQLMLPConfig(obs_dim=1, act_dim=2, hidden=16))


def _recipe(name: str):
    return get_recipe(name).with_overrides(steps=STEPS, reward_transform="identity", batch_size=32, ema_start=5,
                                           ema_every=2)


def _gap(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_iql_member_equals_the_single_run_of_its_seed(toy):
    seeds = [4, 9, 2]
    single = run(_recipe("iql"), toy, critic=_critic(9), seed=9, progress=False)
    many = run(_recipe("iql"), toy, critic=[_critic(s) for s in seeds], seeds=seeds, progress=False)
    assert many.critics is not None and len(many.critics) == 3
    assert _gap(single.critic, many.critics[1]) < 1e-5
    assert _gap(single.critic, many.critics[0]) > 1e-3  # the members are different runs
    assert many.metrics["members"] == 3 and many.metrics["seed_steps_per_s"] > 0


def test_joint_dql_member_equals_the_single_run_of_its_seed(toy):
    seeds = [1, 5]
    single = run(_recipe("dql-joint"), toy, critic=_critic(5, True), model=_actor(5), seed=5, progress=False)
    many = run(_recipe("dql-joint"), toy, critic=[_critic(s, True) for s in seeds], model=[_actor(s) for s in seeds],
               seeds=seeds, progress=False)
    assert many.models is not None and many.critics is not None
    assert _gap(single.model, many.models[1]) < 1e-5
    assert _gap(single.critic, many.critics[1]) < 1e-5
    assert _gap(single.model, many.models[0]) > 1e-3


def test_guidance_first_members_share_one_frozen_guidance(toy):
    guide = _critic(0)
    seeds = [3, 7]
    single = run(_recipe("dql-guidance-first"), toy, model=_actor(7), guidance=guide, seed=7, progress=False)
    many = run(_recipe("dql-guidance-first"), toy, model=[_actor(s) for s in seeds], guidance=guide, seeds=seeds,
               progress=False)
    assert many.models is not None
    assert _gap(single.model, many.models[1]) < 1e-5


def test_a_resumed_ensemble_equals_an_uninterrupted_one(toy, tmp_path):
    seeds = [0, 1]
    full = run(_recipe("iql"), toy, critic=[_critic(s) for s in seeds], seeds=seeds, progress=False)
    half = _recipe("iql").with_overrides(steps=STEPS // 2 + 1)
    run(half, toy, critic=[_critic(s) for s in seeds], seeds=seeds, progress=False, run_dir=tmp_path,
        checkpoint_every=5)
    resumed = run(_recipe("iql"), toy, critic=[_critic(s) for s in seeds], seeds=seeds, progress=False,
                  run_dir=tmp_path, checkpoint_every=5)
    assert full.critics is not None and resumed.critics is not None
    assert max(_gap(a, b) for a, b in zip(full.critics, resumed.critics, strict=True)) < 1e-6


def test_bf16_losses_stay_close_to_fp32(toy):
    a = run(_recipe("iql").with_overrides(steps=40), toy, critic=_critic(0), progress=False, log_every=10)
    b = run(_recipe("iql").with_overrides(steps=40), toy, critic=_critic(0), progress=False, log_every=10,
            precision="bf16")
    for key in ("final_q_loss", "final_v_loss"):
        assert b.metrics[key] == pytest.approx(a.metrics[key], rel=0.1, abs=1e-3)
    assert _gap(a.critic, b.critic) > 0  # it did compute in another precision


def test_compiled_and_eager_steps_agree(toy):
    eager = run(_recipe("iql").with_overrides(steps=6), toy, critic=_critic(0), progress=False)
    compiled = run(_recipe("iql").with_overrides(steps=6), toy, critic=_critic(0), progress=False, compile=True)
    assert _gap(eager.critic, compiled.critic) < 1e-5


def test_hub_stores_each_member_and_checkpoints(toy):
    out = hub.train_guidance("iql", toy, steps=20, seeds=[0, 1], module_id="ens", progress=False, save_every=10,
                             device="cpu")
    assert [m.card.id for m in out] == ["ens-s0", "ens-s1"]
    assert [m.card.origin.seed for m in out] == [0, 1]
    assert out[0].card.origin.device == "cpu" and out[0].card.origin.precision == "fp32"
    ck = hub.load("ens-s1-step10").card
    assert ck.origin.steps == 10 and ck.origin.checkpoint_of == "ens-s1" and ck.origin.seed == 1
    # the member stored by the ensemble equals the single run of its seed, stored through the same API
    single = hub.train_guidance("iql", toy, steps=20, seed=1, module_id="one", progress=False)
    assert _gap(single[0].net, out[1].net) < 1e-5


def test_device_choices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_bad_seeds_are_one_line(toy):
    with pytest.raises(MdhubError, match="distinct"):
        hub.train_guidance("iql", toy, steps=5, seeds=[1, 1], progress=False)
    with pytest.raises(MdhubError, match="at least one"):
        hub.train_guidance("iql", toy, steps=5, seeds=[], progress=False)


def test_cli_seeds_save_every_and_device(toy):
    from typer.testing import CliRunner

    from hub.cli import app
    from hub.datasets import dataset_path

    toy.save(dataset_path("toy-8g"))
    runner = CliRunner()
    r = runner.invoke(app, ["train", "guidance", "--algo", "iql", "--dataset", "toy-8g", "--steps", "10",
                            "--seeds", "0-1", "--save-every", "5", "--hidden", "16", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    ids = [m["id"] for m in json.loads(r.stdout)["modules"]]
    assert ids == ["iql-critic-toy-8g-s0", "iql-critic-toy-8g-s1"]
    assert hub.load("iql-critic-toy-8g-s1-step5").card.origin.checkpoint_of == "iql-critic-toy-8g-s1"
    for argv, line in ((["--device", "cuda:3"], "no CUDA GPU" if not torch.cuda.is_available() else "GPU"),
                       (["--device", "tpu"], "unknown device 'tpu'"),
                       (["--precision", "fp8"], "unknown precision 'fp8'"),
                       (["--seeds", "1", "--seed", "2"], "not both")):
        r = runner.invoke(app, ["train", "guidance", "--algo", "iql", "--dataset", "toy-8g", "--steps", "5", *argv])
        assert r.exit_code == 1 and line in r.output and "Traceback" not in r.output, r.output


def test_joint_checkpoints_name_their_own_run(toy):
    hub.train_guidance("dql", toy, steps=10, module_id="j", progress=False, save_every=5, budget=hub.Budget(hidden=16))
    assert hub.load("j-step5").card.origin.checkpoint_of == "j"
    assert hub.load("j-actor-step5").card.origin.checkpoint_of == "j-actor"


def test_each_seed_under_its_own_frozen_guidance(toy):
    gs = hub.train_guidance("iql", toy, steps=10, seeds=[0, 1], module_id="g", progress=False,
                            budget=hub.Budget(hidden=16))
    both = hub.train_diffusion("dql", toy, guidance=["g-s0", "g-s1"], seeds=[0, 1], module_id="a", steps=10,
                               progress=False, budget=hub.Budget(hidden=16))
    assert [m.card.origin.trained_with_guidance.id for m in both] == ["g-s0", "g-s1"]
    one = hub.train_diffusion("dql", toy, guidance="g-s1", seed=1, module_id="b", steps=10, progress=False,
                              budget=hub.Budget(hidden=16))
    assert _gap(one[0].net, both[1].net) < 1e-5 and _gap(one[0].net, both[0].net) > 1e-4
    assert gs[0].card.id == "g-s0"
    with pytest.raises(MdhubError, match="one guidance per seed"):
        hub.train_diffusion("dql", toy, guidance=["g-s0"], seeds=[0, 1], steps=5, progress=False)


def test_cli_pairs_each_seed_with_its_guidance(toy):
    from typer.testing import CliRunner

    from hub.cli import app
    from hub.datasets import dataset_path

    toy.save(dataset_path("toy-8g"))
    hub.train_guidance("iql", "toy-8g", steps=5, seeds=[3, 4], module_id="g", progress=False,
                       budget=hub.Budget(hidden=16))
    runner = CliRunner()
    r = runner.invoke(app, ["train", "diffusion", "--algo", "dql", "--dataset", "toy-8g", "--guidance", "g-s{seed}",
                            "--seeds", "3,4", "--steps", "5", "--hidden", "16", "--id", "a", "--json"])
    assert r.exit_code == 0, r.output
    assert hub.load("a-s4").card.origin.trained_with_guidance.id == "g-s4"
    r = runner.invoke(app, ["train", "diffusion", "--algo", "dql", "--dataset", "toy-8g", "--guidance", "g-s{seed}",
                            "--steps", "5"])
    assert r.exit_code == 1 and "give --seeds" in r.output
