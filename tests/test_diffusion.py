"""Formulas of the diffusion core, each against a hand computation: schedule, Tweedie, reverse steps, losses."""
from __future__ import annotations

import pytest
import torch

from modules.diffusion.dql_mlp import DQLDiffusion, DQLMLPConfig
from modules.diffusion.ln_resnet import IDQLDiffusion, LNResNetConfig
from modules.diffusion.schedule import Schedule, vp_betas
from modules.guidance.iql import CriticConfig, IQLCritic
from modules.sampling import chain_from_noise, chain_noise_shapes, reverse_chain, score_candidates, select
from modules.train.updates import DiffusionUpdate, expectile_loss


def test_vp_schedule_for_T5_matches_the_reference():
    betas = vp_betas(5)
    assert torch.allclose(betas, torch.tensor([0.196, 0.459, 0.636, 0.755, 0.835], dtype=torch.float64), atol=1e-3)
    abar = torch.cumprod(1 - betas, 0)
    assert abs(float(abar[-1]) - 0.0064) < 2e-4
    t = torch.arange(1, 6, dtype=torch.float64)
    assert torch.allclose(betas, 1 - torch.exp(-0.1 / 5 - 0.5 * 9.9 * (2 * t - 1) / 25))


def test_expectile_loss_by_hand():
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])
    tau = 0.7
    by_hand = (0.7 * 4 + 0.3 * 1 + 0.7 * 0.25 + 0.3 * 9) / 4
    assert expectile_loss(diff, tau).item() == pytest.approx(by_hand)


def models(T: int, obs_dim: int = 3, act_dim: int = 2):
    torch.manual_seed(0)
    return [
        DQLDiffusion(DQLMLPConfig(obs_dim=obs_dim, act_dim=act_dim, hidden=16, T=T)),
        IDQLDiffusion(LNResNetConfig(obs_dim=obs_dim, act_dim=act_dim, hidden=16, T=T, reverse="simplified")),
        IDQLDiffusion(LNResNetConfig(obs_dim=obs_dim, act_dim=act_dim, hidden=16, T=T, reverse="posterior")),
    ]


def test_tweedie_inverts_forward_noising():
    for model in models(5):
        x0, eps = torch.rand(8, 2) * 2 - 1, torch.randn(8, 2)
        for i in range(5):
            xt = model.q_sample(x0, torch.full((8,), i), eps)
            assert torch.allclose(model.x0_hat(xt, eps, i), x0, atol=1e-5)


def test_posterior_step_by_hand():
    model = models(5)[0]
    s = Schedule("vp", 5)
    x, eps = torch.randn(4, 2), torch.randn(4, 2)
    i = 3
    x0 = ((1 / s.abar[i]).sqrt() * x - (1 / s.abar[i] - 1).sqrt() * eps).clamp(-1, 1)
    mean = s.betas[i] * s.abar_prev[i].sqrt() / (1 - s.abar[i]) * x0 + (1 - s.abar_prev[i]) * s.alphas[i].sqrt() / (
        1 - s.abar[i]) * x
    assert torch.allclose(model.reverse_step(x, eps, i, None), mean.float(), atol=1e-5)
    z = torch.randn(4, 2)
    var = s.betas[i] * (1 - s.abar_prev[i]) / (1 - s.abar[i])
    assert torch.allclose(model.reverse_step(x, eps, i, z), (mean + var.sqrt() * z).float(), atol=1e-5)
    assert torch.allclose(model.reverse_step(x, eps, 0, z), model.reverse_step(x, eps, 0, None))  # no noise at t=1


def test_simplified_step_by_hand_and_clipping():
    model = models(5)[1]
    s = Schedule("vp", 5)
    x, eps, z = torch.randn(4, 2) * 0.3, torch.randn(4, 2) * 0.1, torch.randn(4, 2)
    i = 2
    hand = (x - s.betas[i] / (1 - s.abar[i]).sqrt() * eps) / s.alphas[i].sqrt() + s.betas[i].sqrt() * z
    assert torch.allclose(model.reverse_step(x, eps, i, z), hand.float().clamp(-1, 1), atol=1e-5)
    big = model.reverse_step(torch.full((4, 2), 50.0), torch.full((4, 2), -50.0), i, z)
    assert big.abs().max() <= 1.0


@pytest.mark.parametrize("T", [1, 3, 5, 12])
def test_any_backbone_any_T_samples_in_bounds(T):
    obs = torch.randn(6, 3)
    for model in models(T):
        x = reverse_chain(model, obs, n=4)
        assert x.shape == (6, 4, 2)
        assert x.abs().max() <= 1.0 + 1e-6


def test_temperature_zero_removes_only_the_injected_noise():
    model = models(5)[0]
    obs = torch.randn(3, 3)
    torch.manual_seed(1)
    a = reverse_chain(model, obs, temperature=0.0)
    torch.manual_seed(1)
    b = reverse_chain(model, obs, temperature=0.0)
    torch.manual_seed(1)
    c = reverse_chain(model, obs, temperature=1.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_q_loss_is_normalised_by_mean_abs_q_and_scale_free():
    model = models(5)[0]
    critic = IQLCritic(CriticConfig(obs_dim=3, act_dim=2, hidden=8))
    obs = torch.randn(16, 3)
    upd = DiffusionUpdate(model, guidance=critic, eta=1.0)
    xs, ns = chain_noise_shapes(model, 16)
    for flip, (i, j) in ((0.2, (1, 0)), (0.8, (0, 1))):
        d = {"x_T": torch.randn(*xs), "noise": torch.randn(*ns), "flip": torch.tensor(flip)}
        loss = upd.loss_module.q_loss(obs, d)
        a_hat = chain_from_noise(model, obs, d["x_T"], d["noise"])  # the drawn chain, by hand
        qs = critic.q_all(obs, a_hat)
        assert loss.item() == pytest.approx((-qs[i].mean() / qs[j].abs().mean()).item(), rel=1e-5)
        with torch.no_grad():  # Q x 10 (e.g. rewards scaled 10x): the normalised loss does not change
            critic.q_net.out.weight.mul_(10), critic.q_net.out.bias.mul_(10)
        assert upd.loss_module.q_loss(obs, d).item() == pytest.approx(loss.item(), rel=1e-4)


def test_q_loss_gradient_flows_through_the_chain_only_into_the_actor():
    model = models(5)[0]
    critic = IQLCritic(CriticConfig(obs_dim=3, act_dim=2, hidden=8)).requires_grad_(False)
    upd = DiffusionUpdate(model, guidance=critic, eta=1.0)
    upd.q_loss(torch.randn(8, 3)).backward()
    assert all(p.grad is not None for p in model.net.parameters())
    assert all(p.grad is None for p in critic.parameters())


def test_candidate_scorer_and_selection_rules():
    obs = torch.zeros(2, 1)
    cands = torch.tensor([[[0.1], [0.9], [0.5]], [[-0.5], [0.2], [0.3]]])
    scores = score_candidates(lambda o, x: x[:, 0], obs, cands)
    assert torch.allclose(scores, torch.tensor([[0.1, 0.9, 0.5], [-0.5, 0.2, 0.3]]))
    assert select(cands, scores, "argmax").squeeze(-1).tolist() == pytest.approx([0.9, 0.3])
    assert select(cands, scores, "first").squeeze(-1).tolist() == pytest.approx([0.1, -0.5])
    gen = torch.Generator().manual_seed(0)
    picks = torch.stack([select(cands, scores * 100, "softmax", generator=gen) for _ in range(20)])
    assert torch.allclose(picks[:, 0, 0], torch.tensor(0.9))  # sharp softmax = argmax
    adv = torch.tensor([[-1.0, 1.0, -1.0], [1.0, -1.0, -1.0]])
    picks = torch.stack([select(cands, adv, "expectile", expectile=0.99, generator=gen) for _ in range(200)])
    assert (picks[:, 0, 0] == 0.9).float().mean() > 0.9


def test_fast_mish_matches_torch():
    from modules.nets import Mish

    x = torch.linspace(-30, 30, 2001, dtype=torch.float64).requires_grad_(True)
    y = Mish()(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    y_ref = torch.nn.functional.mish(x)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x)
    assert torch.allclose(y, y_ref, atol=1e-9) and torch.allclose(g, g_ref, atol=1e-9)
    x32 = torch.linspace(-40, 40, 4001)
    with torch.no_grad():
        assert torch.allclose(Mish()(x32), torch.nn.functional.mish(x32), atol=2e-6)


def test_shared_time_features_equal_per_row_ones():
    model = models(5)[0]
    obs, x = torch.randn(7, 3), torch.randn(7, 2)
    t_shared = torch.tensor(3).expand(7)
    t_rows = torch.full((7,), 3)
    assert torch.allclose(model.denoiser(x, t_shared, obs, None), model.denoiser(x, t_rows, obs, None), atol=1e-6)


def test_compiled_selection_equals_eager_from_the_same_draws():
    from modules.policy import GuidedPolicy

    model = models(5)[0].eval()
    critic = IQLCritic(CriticConfig(obs_dim=3, act_dim=2, hidden=8)).eval()
    obs = torch.randn(4, 3)
    for rule in ("argmax", "softmax"):
        eager = GuidedPolicy(model, n_candidates=6, scorer=lambda o, a: critic.q(o, a), rule=rule)
        compiled = GuidedPolicy(model, n_candidates=6, scorer=lambda o, a: critic.q(o, a), rule=rule).compile()
        with eager.seeded(3):
            a = eager.act_tensor(obs)
        with compiled.seeded(3):
            b = compiled.act_tensor(obs)
        assert a.shape == (4, 2) and torch.allclose(a, b, atol=1e-5)


def test_inverse_cdf_selection_follows_the_probabilities():
    cands = torch.arange(3.0).view(1, 3, 1).expand(4000, 3, 1)
    scores = torch.log(torch.tensor([0.2, 0.5, 0.3])).expand(4000, 3)
    picked = select(cands, scores, "softmax", uniform=torch.rand(4000, generator=torch.Generator().manual_seed(0)))
    freq = torch.bincount(picked[:, 0].long(), minlength=3).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.2, 0.5, 0.3]), atol=0.03)
