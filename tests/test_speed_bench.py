"""benchmarks/speed.py (ours vs an eager Diffusion-QL re-creation, same process) runs and reports every step kind;
benchmarks/dql_reference.py is the design it claims to be where that is checkable: the schedule's coefficients equal
ours, and with the same weights its denoiser, critic and whole reverse chain compute what ours compute."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
OBS, ACT, B, T = 15, 3, 32, 5


@pytest.fixture(scope="module")
def ref():
    sys.path.insert(0, str(BENCH))
    try:
        import dql_reference

        yield dql_reference
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def speed():
    sys.path.insert(0, str(BENCH))
    try:
        import speed

        yield speed
    finally:
        sys.path.remove(str(BENCH))


def test_options_reach_our_side(speed):
    """--precision and --ensemble batched build and step (compile is left out here: slow to compile on CPU);
    what build_ours cannot honour is refused, not ignored."""
    cpu = torch.device("cpu")
    dims = speed.Dims(batch=8, ensemble_k=2, ensemble_step="joint")
    batched = speed.build_ours("ensemble", cpu, {"ensemble": "batched"}, dims)
    assert batched.units == 2 and batched.unit == "seed-steps/s"
    batched.fn()
    speed.build_ours("guidance_first", cpu, {"precision": "bf16"}, dims).fn()
    speed.build_ours("select_1", cpu, {"precision": "bf16"}, dims).fn()
    with pytest.raises(speed.OptionNotWired):
        speed.build_ours("ensemble", cpu, {"ensemble": "sideways"}, dims)


def test_quick_run_reports_every_kind(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(BENCH / "speed.py"), "--quick", "--threads", "1", "--device", "cpu",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    kinds = ["joint", "guidance_first", "bc", "select_1", "select_16", "ensemble"]
    assert list(report["results"]) == kinds and report["skipped"] == {}
    for kind in kinds:
        res = report["results"][kind]
        for side in ("ours", "reference"):
            assert res[side]["median"] > 0 and all(r > 0 for r in res[side]["per_round"]), (kind, side)
            assert len(res[side]["per_round"]) == report["settings"]["rounds"]
        q = res["ratio"]
        assert math.isfinite(q["median"]) and q["median"] > 0, kind
        assert q["min"] <= q["q25"] <= q["median"] <= q["q75"] <= q["max"], kind
    assert report["results"]["ensemble"]["unit"] == "seed-steps/s"
    m = report["machine"]
    assert m["threads"] == 1 and m["device"] == "cpu" and m["torch"] == torch.__version__
    assert m["cpu"] and len(m["load_avg_start"]) == 3 and len(m["load_avg_end"]) == 3
    assert "ratio (median)" in proc.stdout  # the table


def test_schedule_coefficients_equal_ours(ref):
    from modules.diffusion.schedule import Schedule

    d = ref.Diffusion(OBS, ACT, ref.MLP(OBS, ACT), max_action=1.0, beta_schedule="vp", n_timesteps=T)
    s = Schedule("vp", T)
    pairs = {"betas": s.betas, "sqrt_alphas_cumprod": s.sqrt_abar, "sqrt_one_minus_alphas_cumprod": s.sqrt_1m_abar,
             "sqrt_recip_alphas_cumprod": s.recip_sqrt_abar, "sqrt_recipm1_alphas_cumprod": s.sqrt_recip_m1,
             "posterior_variance": s.post_var, "posterior_mean_coef1": s.post_c0, "posterior_mean_coef2": s.post_ct}
    for name, ours in pairs.items():  # float32 (theirs) vs float64 (ours): 1e-6 absolute, relative for the ~12s
        torch.testing.assert_close(getattr(d, name).double(), ours, atol=1e-6, rtol=1e-6, msg=name)
    # log variance: equal where it is used (index 0's noise is masked out in both; there they clip differently)
    torch.testing.assert_close(d.posterior_log_variance_clipped[1:].double(), s.post_logvar[1:], atol=1e-5, rtol=0)


def _same_weights(ref, seed: int = 0):
    """Our DQLDiffusion and DQLCritic, and the reference's MLP / Diffusion / Critic carrying the same weights."""
    from modules.diffusion.dql_mlp import DQLDiffusion, DQLMLPConfig
    from modules.guidance.dql import DQLCritic, DQLCriticConfig

    torch.manual_seed(seed)
    ours = DQLDiffusion(DQLMLPConfig(obs_dim=OBS, act_dim=ACT, T=T)).eval()
    critic = DQLCritic(DQLCriticConfig(obs_dim=OBS, act_dim=ACT)).eval()
    mlp = ref.MLP(OBS, ACT)
    rc = ref.Critic(OBS, ACT)
    with torch.no_grad():
        for i in (1, 3):  # time_mlp: SinusoidalPosEmb, Linear, Mish, Linear
            mlp.time_mlp[i].load_state_dict(ours.time_mlp[i].state_dict())
        for i in (0, 2, 4):  # 3 x (Linear + Mish), then the final Linear
            mlp.mid_layer[i].load_state_dict(ours.net[i].state_dict())
        mlp.final_layer.load_state_dict(ours.net[6].state_dict())
        layers = [*critic.q_net.hidden, critic.q_net.out]  # EnsembleLinear: weight (H, in, out), bias (H, 1, out)
        for h, head in enumerate((rc.q1_model, rc.q2_model)):
            for layer, lin in zip(layers, (head[0], head[2], head[4], head[6]), strict=True):
                lin.weight.copy_(layer.weight[h].T)
                lin.bias.copy_(layer.bias[h, 0])
    diffusion = ref.Diffusion(OBS, ACT, mlp, max_action=1.0, beta_schedule="vp", n_timesteps=T)
    return ours, critic, diffusion, rc


def test_same_weights_same_denoiser_critic_and_chain(ref):
    from modules.sampling import denoise

    ours, critic, diffusion, rc = _same_weights(ref)
    g = torch.Generator().manual_seed(1)
    x, obs = torch.randn(B, ACT, generator=g), torch.randn(B, OBS, generator=g)
    act = torch.rand(B, ACT, generator=g) * 2 - 1
    with torch.no_grad():
        for i in range(T):
            t = torch.full((B,), i, dtype=torch.long)
            torch.testing.assert_close(ours.eps(x, t, obs), diffusion.model(x, t, obs), atol=1e-5, rtol=1e-5)
            mean_ref = diffusion.p_mean_variance(x, t, obs)[0]
            torch.testing.assert_close(ours.reverse_step(x, ours.eps(x, t, obs), i, None), mean_ref, atol=1e-5,
                                       rtol=1e-5)
        q1, q2 = rc(obs, act)
        torch.testing.assert_close(critic.q_all(obs, act), torch.cat([q1, q2], 1).T, atol=1e-5, rtol=1e-5)
        # the whole reverse chain from the same draws: the reference draws x_T, then one noise per step (t = 4..0)
        torch.manual_seed(7)
        a_ref = diffusion.sample(obs)
        torch.manual_seed(7)
        x_T = torch.randn(B, ACT)
        z = {i: torch.randn(B, ACT) for i in reversed(range(T))}
        a_ours = denoise(ours, obs, x_T, lambda i: z[i] if i > 0 else None)
    torch.testing.assert_close(a_ours, a_ref, atol=1e-4, rtol=1e-4)


def test_reference_steps_shapes(ref):
    torch.manual_seed(0)
    np.random.seed(0)
    g = torch.Generator().manual_seed(2)
    s, a = torch.randn(B, OBS, generator=g), torch.rand(B, ACT, generator=g) * 2 - 1
    s2 = torch.randn(B, OBS, generator=g)
    r, nd = torch.randn(B, 1, generator=g), torch.ones(B, 1)
    agent = ref.DiffusionQL(OBS, ACT, n_timesteps=T, step_start_ema=0)
    bc = agent.actor.loss(a, s)
    assert bc.shape == () and torch.isfinite(bc)
    sample = agent.actor.sample(s)
    assert sample.shape == (B, ACT) and sample.abs().max() <= 1.0
    ema_before = [p.clone() for p in agent.ema_model.parameters()]
    m = agent.train_iteration(s, a, s2, r, nd)
    assert set(m) == {"actor_loss", "bc_loss", "ql_loss", "critic_loss"} and all(math.isfinite(v) for v in m.values())
    ema_after = list(agent.ema_model.parameters())
    assert agent.step == 1 and any(not torch.equal(p, q) for p, q in zip(ema_before, ema_after, strict=True))
    agent.freeze_critic()
    critic_before = [p.clone() for p in agent.critic.parameters()]
    m = agent.actor_iteration(s, a)
    assert set(m) == {"actor_loss", "bc_loss", "ql_loss"} and all(math.isfinite(v) for v in m.values())
    assert all(torch.equal(p, q) for p, q in zip(critic_before, agent.critic.parameters(), strict=True))
    one = agent.sample_action(np.zeros(OBS, dtype=np.float32))
    many = agent.sample_actions(np.zeros((16, OBS), dtype=np.float32))
    assert one.shape == (ACT,) and many.shape == (16, ACT)
    loss = ref.DiffusionBC(OBS, ACT, n_timesteps=T).train_iteration(s, a)["bc_loss"]
    assert math.isfinite(loss)
