"""Soft actor-critic for collecting the bullet-D4RL-style datasets (the reference protocol: docs/data.md).

Protocol: actor and twin critics 2 x 256 ReLU, Adam lr 3e-4, gamma 0.99, Polyak tau 0.005, batch 100, automatic
entropy tuning with target entropy ``-act_dim``; trained online, one gradient step per env step after
``start_steps`` uniform-random steps, until the deterministic policy's evaluation reaches the task's target return
(hopper 1000, halfcheetah 800, ant 700, walker2d 1300) or a step budget runs out. "Reached" means: the mean
return of ``eval_episodes`` (10) deterministic evaluation episodes with fixed reset seeds is at least the target
(a single lucky episode, the literal reference criterion, gives a fragile policy on hopper). The final deterministic
policy gives ``medium`` and the replay buffer gives ``mixed``.

The actor is saved as safetensors (keys ``trunk.0.weight`` ... ``head.bias``, see `Actor`) with a JSON sidecar;
`modules.data.behaviour.SACPolicy` runs a saved actor in numpy. No pickle anywhere.

Run as a script: ``python -m modules.data.sac hopper --out runs/sac_hopper`` (see ``--help``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..envs import EnvSpec, env_spec, make_env, rollout
from .dataset import OfflineDataset, build_metadata

__all__ = ["SACConfig", "Actor", "TwinCritic", "ReplayBuffer", "SACAgent", "train_sac", "save_actor"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclass
class SACConfig:
    """Settings of a SAC run; defaults follow the reference protocol."""

    env: str = "hopper"
    seed: int = 0
    hidden: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 100
    init_alpha: float = 1.0
    start_steps: int = 10_000
    max_steps: int = 1_000_000
    target_return: float | None = None  # None: the task's target (EnvSpec.target_return)
    eval_every: int = 5_000
    eval_episodes: int = 10
    max_wall_s: float | None = None
    extra: dict = field(default_factory=dict)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy. ``obs: (B, obs_dim)`` -> mean and log-std ``(B, act_dim)`` each."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.trunk = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2 * act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.head(self.trunk(obs)).split(self.act_dim, dim=-1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample: ``action: (B, act_dim)`` in (-1, 1) and its ``log_prob: (B,)``."""
        mu, log_std = self(obs)
        std = log_std.exp()
        u = mu + std * torch.randn_like(mu)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), numerically stable
        logp = logp - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return a, logp

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """``obs: (B, obs_dim)`` numpy -> ``actions: (B, act_dim)`` float32 numpy."""
        o = torch.as_tensor(obs, dtype=torch.float32)
        if deterministic:
            a = torch.tanh(self(o)[0])
        else:
            a = self.sample(o)[0]
        return a.numpy().astype(np.float32)


class TwinCritic(nn.Module):
    """Two Q networks evaluated together with batched matmuls. ``(obs, act): (B, .)`` -> ``q: (2, B)``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, n: int = 2) -> None:
        super().__init__()
        dims = [obs_dim + act_dim, hidden, hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for din, dout in pairwise(dims):
            w = torch.empty(n, din, dout)
            b = torch.empty(n, 1, dout)
            for k in range(n):  # same init as nn.Linear
                lin = nn.Linear(din, dout)
                w[k] = lin.weight.detach().t()
                b[k, 0] = lin.bias.detach()
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(len(self.weights[0]), -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.relu(x)
        return x.squeeze(-1)


class ReplayBuffer:
    """Preallocated numpy ring of transitions, kept in insertion order (never overwritten below capacity)."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        self.capacity = int(capacity)
        self.observations = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.next_observations = np.zeros((capacity, obs_dim), np.float32)
        self.terminals = np.zeros(capacity, bool)
        self.timeouts = np.zeros(capacity, bool)
        self.size = 0
        self.ptr = 0

    def add(self, o: np.ndarray, a: np.ndarray, r: float, o2: np.ndarray, term: bool, trunc: bool) -> None:
        i = self.ptr
        self.observations[i], self.actions[i], self.rewards[i] = o, a, r
        self.next_observations[i], self.terminals[i], self.timeouts[i] = o2, term, trunc
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.size, size=batch)
        return (
            torch.from_numpy(self.observations[idx]),
            torch.from_numpy(self.actions[idx]),
            torch.from_numpy(self.rewards[idx]),
            torch.from_numpy(self.next_observations[idx]),
            torch.from_numpy(self.terminals[idx].astype(np.float32)),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The stored transitions in insertion order (valid while size < capacity)."""
        n = self.size
        return {
            "observations": self.observations[:n],
            "actions": self.actions[:n],
            "rewards": self.rewards[:n],
            "next_observations": self.next_observations[:n],
            "terminals": self.terminals[:n],
            "timeouts": self.timeouts[:n],
        }


class SACAgent:
    """Actor, twin critics with Polyak targets, learned temperature; ``update`` does one gradient step of each."""

    def __init__(self, spec: EnvSpec, cfg: SACConfig) -> None:
        self.cfg = cfg
        self.actor = Actor(spec.obs_dim, spec.act_dim, cfg.hidden)
        self.critic = TwinCritic(spec.obs_dim, spec.act_dim, cfg.hidden)
        self.critic_target = TwinCritic(spec.obs_dim, spec.act_dim, cfg.hidden)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_alpha), requires_grad=True)
        self.target_entropy = -float(spec.act_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        o, a, r, o2, d = batch
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = self.actor.sample(o2)
            q_targ = self.critic_target(o2, a2).min(0).values - alpha * logp2
            y = r + self.cfg.gamma * (1.0 - d) * q_targ
        q = self.critic(o, a)
        critic_loss = ((q - y.unsqueeze(0)) ** 2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        self.critic.requires_grad_(False)
        pi, logp = self.actor.sample(o)
        actor_loss = (alpha * logp - self.critic(o, pi).min(0).values).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.critic.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for p, pt in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
                pt.lerp_(p, self.cfg.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha.item()}


def save_actor(actor: Actor, path: str | Path, info: dict) -> None:
    """Write the actor's tensors to ``path`` (safetensors) and ``info`` to ``path`` with suffix ``.json``; atomic."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in actor.state_dict().items()}
    meta = {"format": "mdhub-sac-actor", "obs_dim": str(tensors["trunk.0.weight"].shape[1]),
            "act_dim": str(actor.act_dim)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, side)


def explore_step(env: Any, agent: SACAgent, buf: ReplayBuffer, obs: np.ndarray, step: int, start_steps: int,
                 rng: np.random.Generator, seed: int, n_eps: int) -> tuple[np.ndarray, float, bool, int]:
    """One environment step of SAC's data collection: uniform actions for the first `start_steps` steps, then the
    actor's sampled ones; the transition goes into `buf`; an ended episode is reset (reset seed from `seed` and the
    episode count). Returns (next observation, reward, whether the episode ended, episodes ended so far)."""
    if step <= start_steps:
        a = rng.uniform(-1.0, 1.0, buf.actions.shape[1]).astype(np.float32)
    else:
        a = agent.actor.act(obs[None], deterministic=False)[0]
    o2, r, term, trunc, _ = env.step(a)
    buf.add(obs, a, r, o2, term, trunc)
    ended = bool(term or trunc)
    if ended:
        n_eps += 1
        o2, _ = env.reset(seed=seed * 1_000_003 + n_eps)
    return o2, float(r), ended, n_eps


def train_sac(cfg: SACConfig, out_dir: str | Path, log=print) -> dict:
    """Train SAC online; return a summary. Writes into ``out_dir``:

    ``actor_final.safetensors`` (+ ``.json``), ``actor_best.safetensors`` (best evaluation so far),
    ``checkpoints/actor_<step>.safetensors`` at each evaluation, ``replay.npz`` (the whole replay buffer as an
    `OfflineDataset`) and ``log.jsonl`` (one JSON record per evaluation).
    """
    torch.set_num_threads(1)
    spec = env_spec(cfg.env)
    target = spec.target_return if cfg.target_return is None else float(cfg.target_return)
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = make_env(spec, seed=cfg.seed)
    agent = SACAgent(spec, cfg)
    buf = ReplayBuffer(spec.obs_dim, spec.act_dim, min(cfg.max_steps, 2_000_000))
    obs, _ = env.reset(seed=cfg.seed)
    ep_ret, n_eps = 0.0, 0
    train_returns: list[float] = []
    best = -float("inf")
    history: list[dict] = []
    t0 = time.time()
    reached = False
    logf = open(out / "log.jsonl", "a")

    def policy(o: np.ndarray) -> np.ndarray:
        return agent.actor.act(o, deterministic=True)

    step = 0
    for step in range(1, cfg.max_steps + 1):
        obs, r, ended, n_eps = explore_step(env, agent, buf, obs, step, cfg.start_steps, rng, cfg.seed, n_eps)
        ep_ret += r
        if ended:
            train_returns.append(ep_ret)
            ep_ret = 0.0
        if step > cfg.start_steps // 10 and buf.size >= cfg.batch_size:
            stats = agent.update(buf.sample(rng, cfg.batch_size))
        else:
            stats = {}
        if step % cfg.eval_every == 0:
            # the same evaluation episodes (fixed reset seeds) every time, so evaluations compare policies only
            rets = rollout(policy, spec, cfg.eval_episodes, seed=10_000 + cfg.seed * 1000)
            rec: dict[str, Any] = {
                "step": step,
                "wall_s": round(time.time() - t0, 1),
                "eval_mean": float(rets.mean()),
                "eval_std": float(rets.std()),
                "eval_returns": [round(float(x), 1) for x in rets],
                "train_last10": float(np.mean(train_returns[-10:])) if train_returns else None,
                "episodes": n_eps,
                **{k: round(v, 4) for k, v in stats.items()},
            }
            history.append(rec)
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(json.dumps(rec))
            info = {"env": spec.name, "step": step, "eval_mean": rec["eval_mean"], "seed": cfg.seed}
            save_actor(agent.actor, out / "checkpoints" / f"actor_{step:07d}.safetensors", info)
            if rec["eval_mean"] > best:
                best = rec["eval_mean"]
                save_actor(agent.actor, out / "actor_best.safetensors", info)
            if rec["eval_mean"] >= target:
                reached = True
                break
            if cfg.max_wall_s is not None and time.time() - t0 > cfg.max_wall_s:
                break
    logf.close()
    env.close()
    summary = {
        "env": spec.name,
        "gym_id": spec.gym_id,
        "config": asdict(cfg),
        "target_return": target,
        "stop_criterion": f"mean of {cfg.eval_episodes} deterministic eval episodes (fixed seeds) >= target",
        "reached_target": reached,
        "steps": step,
        "episodes": n_eps,
        "wall_s": round(time.time() - t0, 1),
        "final_eval": history[-1] if history else None,
        "best_eval_mean": best,
        "torch": torch.__version__,
    }
    save_actor(agent.actor, out / "actor_final.safetensors", summary)
    arrays = buf.arrays()
    meta = build_metadata(arrays, env=spec.name, policy=f"sac-replay(seed={cfg.seed})", seed=cfg.seed,
                          extra={"sac_steps": step})
    OfflineDataset(**arrays, metadata=meta).save(out / "replay.npz")
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the SAC data-collection agent (reference protocol).")
    p.add_argument("env")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=1_000_000)
    p.add_argument("--max-wall-s", type=float, default=None)
    p.add_argument("--target", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--start-steps", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    a = p.parse_args(argv)
    cfg = SACConfig(env=a.env, seed=a.seed, max_steps=a.max_steps, max_wall_s=a.max_wall_s,
                    target_return=a.target, eval_every=a.eval_every, start_steps=a.start_steps,
                    eval_episodes=a.eval_episodes)
    summary = train_sac(cfg, a.out, log=lambda s: print(s, flush=True))
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main()
