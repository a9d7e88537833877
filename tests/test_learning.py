"""Small learning tests on the 2D toy with a known reward: each part learns, and guidance moves mass to high reward.
Also: a run interrupted by a crash resumes from its checkpoint to exactly the weights of an uninterrupted run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.data.toy import EIGHT_GAUSSIAN_CENTERS, EIGHT_GAUSSIAN_VALUES, make_toy_dataset, toy_reward
from modules.diffusion.dql_mlp import DQLDiffusion, DQLMLPConfig
from modules.guidance.iql import CriticConfig, IQLCritic
from modules.policy import GuidedPolicy
from modules.sampling import GradientGuide
from modules.scores import q_score
from modules.train.loop import run
from modules.train.recipes import get_recipe

TOY = "8gaussians"


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(TOY, n=4000, seed=0)


@pytest.fixture(scope="module")
def critic(toy):
    torch.manual_seed(0)
    net = IQLCritic(CriticConfig(obs_dim=1, act_dim=2, hidden=32))
    recipe = get_recipe("iql").with_overrides(steps=600, reward_transform="identity", batch_size=128)
    run(recipe, toy, critic=net, progress=False)
    return net


@pytest.fixture(scope="module")
def bc_model(toy):
    torch.manual_seed(0)
    model = DQLDiffusion(DQLMLPConfig(obs_dim=1, act_dim=2, hidden=64))
    recipe = get_recipe("dql-bc").with_overrides(steps=700, reward_transform="identity", ema_start=100, batch_size=128)
    return run(recipe, toy, model=model, progress=False).model


def mean_reward(policy, n=1000) -> float:
    torch.manual_seed(5)
    return float(toy_reward(TOY, policy.act(np.zeros((n, 1), np.float32))).mean())


def test_critic_ranks_good_actions_above_bad_ones(critic):
    obs = torch.zeros(8, 1)
    q = critic.q(obs, torch.as_tensor(EIGHT_GAUSSIAN_CENTERS, dtype=torch.float32)).detach().numpy()
    order = np.argsort(q)
    assert order[-1] in (6, 7) and order[0] in (0, 1)  # the highest- and lowest-valued modes
    assert np.corrcoef(q, EIGHT_GAUSSIAN_VALUES)[0, 1] > 0.9


def test_resampling_by_the_guidance_moves_mass_to_high_reward_modes(toy, critic, bc_model):
    data = float(toy.rewards.mean())
    plain = mean_reward(GuidedPolicy(bc_model))
    resampled = mean_reward(GuidedPolicy(bc_model, n_candidates=16, scorer=q_score(critic, 2)))
    assert abs(plain - data) < 0.1  # BC reproduces the behaviour
    assert resampled > plain + 0.25


def test_gradient_guidance_raises_reward_with_rho(critic, bc_model):
    rewards = [mean_reward(GuidedPolicy(bc_model, guide=GradientGuide(q_score(critic, 2), rho=rho, act_dim=2)))
               for rho in (0.0, 1.0, 4.0)]
    assert rewards[2] > rewards[0] + 0.05 and rewards[1] >= rewards[0] - 0.02


def test_guidance_first_dql_beats_the_data(toy, critic):
    torch.manual_seed(0)
    model = DQLDiffusion(DQLMLPConfig(obs_dim=1, act_dim=2, hidden=64))
    recipe = get_recipe("dql-guidance-first").with_overrides(steps=500, reward_transform="identity", ema_start=100,
                                                             batch_size=128)
    result = run(recipe, toy, model=model, guidance=critic, progress=False)
    assert mean_reward(GuidedPolicy(result.model)) > float(toy.rewards.mean()) + 0.2
    assert all(not p.requires_grad for p in critic.parameters())  # the guidance stayed frozen


def test_guidance_switched_on_late_is_bc_until_then(toy, critic):
    """guidance_start = k: the first k steps are exactly BC (same weights as a BC run), guidance acts after."""
    def train(steps: int, start: int, eta: float):
        torch.manual_seed(0)
        model = DQLDiffusion(DQLMLPConfig(obs_dim=1, act_dim=2, hidden=32))
        recipe = get_recipe("dql-guidance-first").with_overrides(steps=steps, reward_transform="identity", eta=eta,
                                                                 guidance_start=start, batch_size=64, ema_start=1)
        return run(recipe, toy, model=model, guidance=critic, progress=False).model.state_dict()

    bc = train(30, 0, 0.0)
    late = train(30, 30, 1.0)
    assert all(torch.equal(bc[k], late[k]) for k in bc)
    switched, bc_longer = train(40, 30, 1.0), train(40, 0, 0.0)
    assert any(not torch.equal(bc_longer[k], switched[k]) for k in bc)


def test_joint_dql_trains_its_critic_and_actor(toy):
    torch.manual_seed(0)
    critic = IQLCritic(CriticConfig(obs_dim=1, act_dim=2, hidden=32, with_v=False, layers=2))
    before = {k: v.clone() for k, v in critic.state_dict().items()}
    model = DQLDiffusion(DQLMLPConfig(obs_dim=1, act_dim=2, hidden=32))
    recipe = get_recipe("dql-joint").with_overrides(steps=60, reward_transform="identity", batch_size=64)
    result = run(recipe, toy, critic=critic, model=model, progress=False)
    assert any(not torch.equal(before[k], v) for k, v in critic.state_dict().items() if "q_net" in k)
    assert result.metrics["steps_per_s"] > 0 and result.metrics["peak_memory_mb"] > 0


class Crash(RuntimeError):
    pass


def test_a_crashed_run_resumes_to_the_same_weights(toy, tmp_path):
    recipe = get_recipe("iql").with_overrides(steps=60, reward_transform="identity", batch_size=32)

    def fresh():
        torch.manual_seed(0)
        return IQLCritic(CriticConfig(obs_dim=1, act_dim=2, hidden=8))

    whole = run(recipe, toy, critic=fresh(), seed=3, progress=False).critic.state_dict()

    def crash_at_45(critic, model):
        raise Crash("power cut")

    with pytest.raises(Crash):
        run(recipe, toy, critic=fresh(), seed=3, run_dir=tmp_path, checkpoint_every=20, eval_fn=crash_at_45,
            eval_every=45, progress=False)
    resumed = run(recipe, toy, critic=fresh(), seed=3, run_dir=tmp_path, checkpoint_every=20, progress=False)
    for k, v in resumed.critic.state_dict().items():
        assert torch.allclose(v, whole[k], atol=1e-6), k
    other = get_recipe("iql").with_overrides(steps=61, reward_transform="identity", batch_size=32, expectile=0.8)
    with pytest.raises(ValueError, match="different run"):
        run(other, toy, critic=fresh(), seed=3, run_dir=tmp_path, progress=False)
