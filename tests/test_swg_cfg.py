"""SWG (self-weighted guidance, SWG-R) and CFG (classifier-free reward guidance): formulas against hand computations,
toy learning, labels from a frozen guidance, store round trips, combine modes `self` / `cfg`, and the CLI."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import hub
from cards import GuidanceSpec, Interface, ModuleCard, Origin
from hub.cli import app
from hub.errors import CompatibilityError, MdhubError
from modules.data.toy import make_toy_dataset, toy_reward
from modules.diffusion.cfg_resnet import CFGDiffusion, CFGResNetConfig
from modules.diffusion.model import DiffusionConfig, DiffusionModel
from modules.diffusion.swg_resnet import SWGDiffusion, SWGResNetConfig
from modules.guidance.iql import CriticConfig, IQLCritic
from modules.labels import (
    ACTION_CLIP,
    cfg_labels,
    cfg_targets,
    critic_values,
    exp_adv_weights,
    linex_weights,
    swg_targets,
    swg_weights,
)
from modules.sampling import CFGGuide, SelfWeightGuide, reverse_chain
from modules.train.loop import run
from modules.train.recipes import get_recipe

runner = CliRunner()
TINY = dict(hidden=32, blocks=2, expand=2, time_dim=16, time_hidden=32, dropout=0.0)


# --- formulas against hand computations ------------------------------------------------------------------------------
class Stub(DiffusionModel):
    """A denoiser with a known closed form: eps = c * z, plus d * z_a0 on the weight, plus k * cond on actions."""

    c, d, k = 0.5, 0.3, 0.7

    def denoiser(self, x, t, obs, cond):
        eps = self.c * x.clone()
        eps[:, -1] = eps[:, -1] + self.d * x[:, 0]
        if cond is not None:
            eps[:, :-1] = eps[:, :-1] + self.k * cond[:, -1:]
        return eps


def _stub(cond_dim: int = 0) -> Stub:
    return Stub(DiffusionConfig(obs_dim=1, act_dim=2, x_dim=3, T=5, cond_dim=cond_dim))


def test_tweedie_weight_estimate_by_hand():
    g = SelfWeightGuide(rho=1.0)
    z = torch.tensor([[0.1, -0.2, 0.5], [0.0, 0.0, -0.9], [0.0, 0.0, 3.0]])
    eps = torch.tensor([[9.0, 9.0, 0.2], [0.0, 0.0, 0.1], [0.0, 0.0, -1.0]])
    w = g.weight_estimate(z, eps, sqrt_1m_abar=0.6, sqrt_abar=0.8)
    # (z_w - sqrt(1 - abar) eps_w) / sqrt(abar), clipped to [1e-4, 1]; action dims play no part
    assert w.tolist() == pytest.approx([(0.5 - 0.6 * 0.2) / 0.8, 1e-4, 1.0])
    # the same as the model's own Tweedie estimate x0_hat on the weight dimension
    m = _stub()
    i = 2
    s = m.sched
    x = torch.tensor([[0.3, -0.1, 0.4]])
    e = m.denoiser(x, None, None, None)
    w_i = g.weight_estimate(x, e, s.f_sqrt_1m_abar[i], s.f_sqrt_abar[i])
    assert float(w_i) == pytest.approx(float(m.x0_hat(x, e, i)[0, -1]), rel=1e-5)


def test_guided_noise_formula_by_hand():
    m, rho, i = _stub(), 2.5, 1
    s = m.sched
    s1m, sa = s.f_sqrt_1m_abar[i], s.f_sqrt_abar[i]
    x = torch.tensor([[0.2, -0.4, 0.9], [0.5, 0.1, 0.6]])
    t = torch.full((2,), i)
    got = SelfWeightGuide(rho).eps(m, x, t, i, None, None, None)
    eps = m.denoiser(x, t, None, None)
    # w0 = (z_w - s1m (c z_w + d z_a0)) / sa  =>  grad log w0 = [-s1m d, 0, 1 - s1m c] / (z_w - s1m (c z_w + d z_a0))
    num = x[:, 2] - s1m * (Stub.c * x[:, 2] + Stub.d * x[:, 0])
    assert torch.all(num / sa > 1e-4) and torch.all(num / sa < 1.0)  # unclipped here
    grad = torch.stack([-s1m * Stub.d / num, torch.zeros(2), (1 - s1m * Stub.c) / num], dim=1)
    torch.testing.assert_close(got, eps - rho * s1m * grad)
    # a clipped weight estimate has no gradient: eps is left as it is (and never NaN)
    x_clip = torch.tensor([[0.2, -0.4, -3.0]])
    got = SelfWeightGuide(rho).eps(m, x_clip, t[:1], i, None, None, None)
    torch.testing.assert_close(got, m.denoiser(x_clip, t[:1], None, None))
    # rho = 0: no guidance
    torch.testing.assert_close(SelfWeightGuide(0.0).eps(m, x, t, i, None, None, None), eps)


def test_cfg_noise_formula_by_hand():
    m = _stub(cond_dim=2)
    x = torch.tensor([[0.2, -0.4, 0.9]])
    t = torch.zeros(1, dtype=torch.long)
    cond = torch.tensor([[0.0, 1.0]])
    for w in (0.0, 1.0, 1.5):
        got = CFGGuide(w).eps(m, x, t, 0, None, torch.zeros(1, 1), cond)
        eps_u, eps_c = Stub.c * x.clone(), Stub.c * x.clone()
        eps_u[:, -1] += Stub.d * x[:, 0]
        eps_c[:, -1] += Stub.d * x[:, 0]
        eps_c[:, :-1] += Stub.k * 1.0
        torch.testing.assert_close(got, eps_u + w * (eps_c - eps_u))


# --- labels --------------------------------------------------------------------------------------------------------
def test_weight_functions_and_targets():
    adv = torch.tensor([-2.0, -0.1, 0.0, 0.3, 5.0])
    assert swg_weights(adv).tolist() == pytest.approx([0.3, 0.3, 0.3, 0.7, 0.7])  # tau if A > 0 else 1 - tau
    assert swg_weights(adv, tau=0.9).tolist() == pytest.approx([0.1, 0.1, 0.1, 0.9, 0.9])
    for w in (exp_adv_weights(adv, beta=1.0, scale=1.0), linex_weights(adv, beta=1.0, scale=1.0)):
        assert float(w.max()) == pytest.approx(1.0) and float(w.min()) >= 1e-4
        assert torch.all(w[1:] >= w[:-1])  # monotone in A
    e = exp_adv_weights(adv, beta=1.0, scale=1.0, max_weight=1e9)
    assert float(e[3] / e[2]) == pytest.approx(math.exp(0.3), rel=1e-5)
    assert float(linex_weights(adv, 1.0, 1.0)[3] / linex_weights(adv, 1.0, 1.0)[2]) == pytest.approx(1.3, rel=1e-5)

    q, v = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 2.5])
    assert cfg_labels(q, v, "sign").tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]  # o = 1 iff Q - V >= 0
    assert cfg_labels(q, v, "sign-scalar").tolist() == [[-1.0], [1.0], [1.0]]
    val = cfg_labels(q, None, "value")
    assert val[:, 1].tolist() == [1.0, 1.0, 1.0] and val[:, 0].tolist() == pytest.approx([-1.0, 0.0, 1.0])

    w = torch.tensor([0.1, 0.2, 0.3, 0.4])
    b = {"act": torch.tensor([[1.0, -1.0], [0.5, 0.0]]), "idx": torch.tensor([3, 1])}
    x0, cond, weights = swg_targets(w)(b)
    assert cond is None and weights is None
    torch.testing.assert_close(x0, torch.tensor([[ACTION_CLIP, -ACTION_CLIP, 0.4], [0.5, 0.0, 0.2]]))
    lab = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    big = {"act": torch.zeros(4000, 2), "idx": torch.arange(4000) % 4}
    _, cond, _ = cfg_targets(lab, p_uncond=0.25, generator=torch.Generator().manual_seed(0))(big)
    dropped = (cond.abs().sum(1) == 0).float().mean()
    assert 0.22 < float(dropped) < 0.28
    kept = cond.abs().sum(1) > 0
    torch.testing.assert_close(cond[kept], lab[big["idx"][kept]])


def test_configs():
    cfg = SWGResNetConfig(obs_dim=3, act_dim=2)
    assert cfg.x_dim == 3 and cfg.T == 15 and cfg.reverse == "posterior"
    with pytest.raises(ValueError, match="act_dim \\+ 1"):
        SWGResNetConfig(obs_dim=3, act_dim=2, x_dim=2)
    head = SWGDiffusion(SWGResNetConfig(obs_dim=3, act_dim=2, weight_head=True, **TINY))
    assert head.weight_out is not None and head.out.out_features == 2
    assert head.eps(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(4, 3)).shape == (4, 3)
    assert CFGResNetConfig(obs_dim=3, act_dim=2, label="sign-scalar").cond_dim == 1
    with pytest.raises(ValueError, match="cond_dim 2"):
        CFGResNetConfig(obs_dim=3, act_dim=2, label="value", cond_dim=1)


# --- toy learning --------------------------------------------------------------------------------------------------
def _toy(n=3000):
    ds = make_toy_dataset("8gaussians", n=n, seed=0)
    return ds, torch.as_tensor(ds.rewards)


def _train(recipe_name, ds, model, targets, steps=400):
    recipe = get_recipe(recipe_name).with_overrides(steps=steps, batch_size=256, reward_transform="identity",
                                                    ema_start=steps + 1, lr=1e-3)
    return run(recipe, ds, model=model, targets=targets, progress=False).model.eval()


def test_swg_toy_reward_rises_with_rho():
    ds, r = _toy()
    w = torch.exp(4.0 * (r - r.max()))  # a known energy-based weight in (0, 1]
    torch.manual_seed(0)
    model = _train("swg", ds, SWGDiffusion(SWGResNetConfig(obs_dim=1, act_dim=2, T=10, **TINY)), swg_targets(w))
    obs = torch.zeros(1000, 1)
    rewards = []
    for rho in (0.0, 2.0, 10.0):
        gen = torch.Generator().manual_seed(1)
        z = reverse_chain(model, obs, guide=SelfWeightGuide(rho) if rho else None, generator=gen)[:, 0]
        assert z[:, :2].abs().max() <= 1.0 and z[:, 2].min() >= 1e-4 and z[:, 2].max() <= 1.0
        rewards.append(float(toy_reward("8gaussians", z[:, :2].numpy()).mean()))
    assert rewards[0] < rewards[1] < rewards[2], rewards
    assert rewards[2] > rewards[0] + 0.15, rewards


def test_cfg_toy_guidance_beats_unconditional():
    ds, r = _toy()
    labels = cfg_labels(r, torch.full_like(r, float(r.median())), "sign")  # V: a constant baseline
    torch.manual_seed(0)
    model = _train("cfg", ds, CFGDiffusion(CFGResNetConfig(obs_dim=1, act_dim=2, **TINY)), cfg_targets(labels, 0.2))
    obs = torch.zeros(1000, 1)
    good = model.good_cond().expand(1000, -1)
    rewards = {}
    for w in (0.0, 1.0, 2.0):
        gen = torch.Generator().manual_seed(1)
        a = reverse_chain(model, obs, guide=CFGGuide(w), cond=good, generator=gen)[:, 0]
        rewards[w] = float(toy_reward("8gaussians", a.numpy()).mean())
    assert rewards[1.0] > rewards[0.0] + 0.15 and rewards[2.0] > rewards[0.0] + 0.15, rewards


# --- the hub: training from a stored guidance, cards, store, combine, evaluation defaults, CLI ------------------------
@pytest.fixture()
def toy_guidance():
    ds = make_toy_dataset("8gaussians", n=600, seed=0)
    g = hub.train_guidance("iql", ds, steps=60, budget=hub.Budget(hidden=16), progress=False)[0]
    return ds, g


def _train_labels(algo, ds, guidance, **kw):
    return hub.train_diffusion(algo, ds, guidance=guidance, steps=30, progress=False,
                               budget=hub.Budget(hidden=16, batch_size=64, checkpoint_every=0),
                               recipe_overrides={"backbone_config": {"blocks": 1, "expand": 2}}, **kw)[0]


def test_swg_cfg_modules_store_and_combine(toy_guidance):
    ds, g = toy_guidance
    obs = np.zeros((3, 1), np.float32)
    s = _train_labels("swg", ds, g.id)
    c = _train_labels("cfg", ds, g.id)
    for m, algo in ((s, "SWG"), (c, "CFG")):
        card = hub.show(m.id)
        assert card.origin.algorithm == algo and card.origin.recipe == "labels"
        assert card.origin.trained_with_guidance.id == g.id
        assert card.origin.trained_with_guidance.sha256 == g.card.ref().sha256
        loaded = hub.load(m.id)
        for k, v in m.net.state_dict().items():
            torch.testing.assert_close(loaded.net.state_dict()[k], v)
    assert hub.show(s.id).diffusion.x_dim == 3 and hub.show(s.id).config["weight_tau"] == 0.7
    assert hub.show(c.id).diffusion.condition == "label" and hub.show(c.id).config["label"] == "sign"

    p = hub.combine(None, s.id, mode="self", rho=3.0, n_candidates=4)  # SWG-R by predicted weight
    assert p.act(obs).shape == (3, 2) and p.act(obs[0]).shape == (2,)
    assert isinstance(p.runtime.guide, SelfWeightGuide) and p.runtime.guide.rho == 3.0 and p.runtime.scorer is not None
    p = hub.combine(g.id, s.id, mode="self", rho=3.0, n_candidates=4, module_id="swg-r-by-q", save=True)
    assert p.card.policy.infer_guidance.id == g.id  # SWG-R by the critic's Q
    assert hub.load_policy("swg-r-by-q").act(obs).shape == (3, 2)
    assert hub.combine(g.id, s.id, mode="resample", n_candidates=4, module_id="swg-rs").act(obs).shape == (3, 2)
    p = hub.combine(None, c.id, mode="cfg", w=1.5, module_id="cfg-pol", save=True)
    assert isinstance(p.runtime.guide, CFGGuide) and p.runtime.cond_fn(torch.zeros(2, 1)).tolist() == [[0, 1]] * 2
    assert hub.load_policy("cfg-pol").act(obs).shape == (3, 2)
    assert hub.combine(None, c.id, mode="none").act(obs).shape == (3, 2)
    with pytest.raises(CompatibilityError, match="does not accept 'cfg'"):
        hub.combine(None, s.id, mode="cfg")
    with pytest.raises(CompatibilityError, match="does not accept 'self'"):
        hub.combine(None, c.id, mode="self")

    from hub.evaluation import runtime_for

    rt = runtime_for(hub.load(s.id), hub.Store())[1]
    assert isinstance(rt.guide, SelfWeightGuide) and rt.n_candidates > 1
    rt = runtime_for(hub.load(c.id), hub.Store())[1]
    assert isinstance(rt.guide, CFGGuide) and rt.cond_fn is not None
    with pytest.raises(MdhubError, match="give --guidance"):
        hub.train_diffusion("swg", ds, steps=5, progress=False)
    with pytest.raises(MdhubError, match="train it with --algo swg"):  # a labels backbone under a BC recipe
        hub.train_diffusion("idql", ds, steps=5, progress=False, backbone="swg_resnet")


def test_q_only_guidance_gets_a_fitted_v(toy_guidance):
    ds, _ = toy_guidance
    torch.manual_seed(0)
    net = IQLCritic(CriticConfig(obs_dim=1, act_dim=2, hidden=16, with_v=False))
    card = ModuleCard(id="q-only", kind="guidance", architecture="iql", config=net.cfg.model_dump(mode="json"),
                      interface=Interface(obs_dim=1, act_dim=2, env_id="toy-8gaussians"),
                      origin=Origin(algorithm="DQL", recipe="joint", seed=0, steps=1),
                      guidance=GuidanceSpec(provides=["q"]))
    q_only = hub.save(net, card)
    m = _train_labels("cfg", ds, "q-only")
    ref = hub.show(m.id).origin.trained_with_guidance
    fitted = hub.show("q-only-fitted-v")
    assert ref.id == "q-only-fitted-v" and ref.sha256 == fitted.ref().sha256
    assert fitted.guidance.v_fitted and fitted.origin.trained_with_guidance.sha256 == q_only.card.ref().sha256
    q, v = critic_values(hub.load("q-only-fitted-v").net, ds.observations, ds.actions)
    assert q.shape == v.shape == (len(ds),)


def test_cli_train_swg_and_cfg():
    from hub.datasets import make_and_store

    make_and_store("toy-spiral", transitions=400, progress=False)
    res = runner.invoke(app, ["train", "diffusion", "--help"])
    assert res.exit_code == 0 and "swg" in res.output and "cfg" in res.output
    res = runner.invoke(app, ["train", "guidance", "--algo", "iql", "--dataset", "toy-spiral", "--steps", "30",
                              "--hidden", "16"])
    assert res.exit_code == 0, res.output
    for algo in ("swg", "cfg"):
        res = runner.invoke(app, ["train", "diffusion", "--algo", algo, "--dataset", "toy-spiral", "--guidance",
                                  "iql-critic-toy-spiral-s0", "--steps", "20", "--hidden", "16", "--batch-size", "32"])
        assert res.exit_code == 0, res.output
        card = hub.show(f"{algo}-actor-toy-spiral-s0")
        assert card.origin.algorithm == algo.upper()
        assert card.origin.trained_with_guidance.id == "iql-critic-toy-spiral-s0"
    res = runner.invoke(app, ["train", "diffusion", "--algo", "swg", "--dataset", "toy-spiral"])
    assert res.exit_code == 1 and "--guidance" in res.output and "Traceback" not in res.output
