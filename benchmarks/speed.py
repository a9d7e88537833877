"""Training and sampling speed of the hot loops, on hopper's dimensions (obs 15, act 3), reference network sizes.

Measures gradient steps per second of: the joint DQL iteration (critic TD update with next actions from the EMA
actor + actor update with the Q-loss through the reverse chain), the guidance-first DQL iteration (actor update
under a frozen critic only), IQL critic updates, BC-only diffusion updates; and the latency of one action selection
(50 candidates, T = 5, one state) and of a batched selection. Writes benchmarks/out/speed.json.

    python benchmarks/speed.py [--threads 2] [--seconds 5] [--batch 256]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from common import latency_summary  # benchmarks/ is on sys.path when this script runs


def rate(fn, seconds: float, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def latency_ms(fn, seconds: float, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return latency_summary(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from modules.diffusion.dql_mlp import DQLDiffusion, DQLMLPConfig
    from modules.guidance.dql import DQLCritic, DQLCriticConfig
    from modules.guidance.iql import CriticConfig, IQLCritic
    from modules.policy import GuidedPolicy
    from modules.scores import q_score
    from modules.train.updates import DiffusionUpdate, DQLCriticUpdate, IQLUpdate

    obs_dim, act_dim, B = 15, 3, args.batch
    batch = {"obs": torch.randn(B, obs_dim), "act": torch.rand(B, act_dim) * 2 - 1, "rew": torch.randn(B),
             "next_obs": torch.randn(B, obs_dim), "done": torch.zeros(B)}

    def new_actor():
        return DQLDiffusion(DQLMLPConfig(obs_dim=obs_dim, act_dim=act_dim))

    # joint DQL: critic update (next action from the EMA actor) + actor update with the live critic
    critic = DQLCritic(DQLCriticConfig(obs_dim=obs_dim, act_dim=act_dim))
    actor_upd = DiffusionUpdate(new_actor(), guidance=critic, eta=1.0, grad_clip=9.0)
    critic_upd = DQLCriticUpdate(critic, actor_upd.act, grad_clip=9.0)
    step = [0]

    def joint():
        step[0] += 1
        critic_upd.step(batch, step[0])
        actor_upd.step(batch, step[0])

    # guidance-first DQL: actor update only, under a frozen critic
    frozen = IQLCritic(CriticConfig(obs_dim=obs_dim, act_dim=act_dim)).requires_grad_(False).eval()
    gf_upd = DiffusionUpdate(new_actor(), guidance=frozen, eta=1.0, grad_clip=9.0)

    def gf():
        step[0] += 1
        gf_upd.step(batch, step[0])

    iql_upd = IQLUpdate(IQLCritic(CriticConfig(obs_dim=obs_dim, act_dim=act_dim)))
    bc_upd = DiffusionUpdate(new_actor())

    def iql():
        step[0] += 1
        iql_upd.step(batch, step[0])

    def bc():
        step[0] += 1
        bc_upd.step(batch, step[0])

    results = {
        "joint_dql_it_per_s": rate(joint, args.seconds),
        "guidance_first_dql_it_per_s": rate(gf, args.seconds),
        "iql_critic_it_per_s": rate(iql, args.seconds),
        "bc_diffusion_it_per_s": rate(bc, args.seconds),
    }
    results["guidance_first_over_joint"] = results["guidance_first_dql_it_per_s"] / results["joint_dql_it_per_s"]
    policy = GuidedPolicy(gf_upd.ema.eval(), n_candidates=50, scorer=q_score(frozen, act_dim), rule="softmax")
    one = torch.randn(1, obs_dim)
    results["action_selection_1_state_50_candidates"] = latency_ms(lambda: policy.act_tensor(one), args.seconds)
    many = torch.randn(16, obs_dim)
    results["action_selection_16_states_50_candidates"] = latency_ms(lambda: policy.act_tensor(many), args.seconds)
    report = {
        "what": "steps per second of the hot loops and action-selection latency (median of repeated calls)",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": args.threads, "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0]},
        "settings": {"batch": B, "obs_dim": obs_dim, "act_dim": act_dim, "T": 5, "hidden": 256,
                     "seconds_per_measure": args.seconds},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
