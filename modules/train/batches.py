"""Offline transitions as torch tensors, with the reward transform applied once, sampled by index."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class RewardScale:
    """r' = scale * r + shift. kind 'return-range': scale = 1000 / (max episode return - min episode return)."""

    kind: str = "identity"
    scale: float = 1.0
    shift: float = 0.0


def reward_scale_for(kind: str, episode_returns: np.ndarray) -> RewardScale:
    if kind == "identity":
        return RewardScale()
    if kind == "return-range":
        spread = float(np.max(episode_returns) - np.min(episode_returns)) if len(episode_returns) > 1 else 0.0
        # Too few or too similar episodes (e.g. a tiny expert set): 1000/spread would blow rewards up; keep them.
        if spread <= 0.05 * max(float(np.max(np.abs(episode_returns))), 1.0) if len(episode_returns) else True:
            return RewardScale()
        return RewardScale("return-range", 1000.0 / spread, 0.0)
    raise ValueError(f"unknown reward transform '{kind}'; known: identity, return-range")


class Batches:
    """Uniformly sampled minibatches. Each batch: obs (B, obs_dim), act (B, act_dim), rew (B,), next_obs, done (B,),
    idx (B,) the rows. With `seeds` (an ensemble of K runs) each member draws its own rows from its own generator
    (seeded like the single run of its seed) and every entry gains a leading member dimension: obs (K, B, obs_dim).
    The data live on `device` once; only the row indices are drawn per step."""

    def __init__(self, dataset, reward: RewardScale, device: str | torch.device = "cpu", seed: int = 0,
                 seeds: list[int] | None = None):
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)  # noqa: E731
        self.obs = t(dataset.observations)
        self.act = t(dataset.actions).clamp(-1.0, 1.0)
        self.rew = t(dataset.rewards) * reward.scale + reward.shift
        self.next_obs = t(dataset.next_observations)
        self.done = t(dataset.terminals)  # time-limit ends are not terminal: they bootstrap
        self.size = self.obs.shape[0]
        self.members = len(seeds) if seeds is not None else None
        # the row generators live with the data: on a GPU no index crosses from the host per step
        dev = self.obs.device
        self.gens = [torch.Generator(device=dev).manual_seed(s) for s in (seeds if seeds is not None else [seed])]
        self.gen = self.gens[0]
        self.device = dev

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        if self.members is None:
            idx = torch.randint(0, self.size, (batch_size,), generator=self.gen, device=self.device)
        else:
            idx = torch.stack([torch.randint(0, self.size, (batch_size,), generator=g, device=self.device)
                               for g in self.gens])
        return {"obs": self.obs[idx], "act": self.act[idx], "rew": self.rew[idx], "next_obs": self.next_obs[idx],
                "done": self.done[idx], "idx": idx}

    def get_state(self) -> torch.Tensor | list[torch.Tensor]:
        return self.gen.get_state() if self.members is None else [g.get_state() for g in self.gens]

    def set_state(self, state: torch.Tensor | list[torch.Tensor]) -> None:
        states = [state] if isinstance(state, torch.Tensor) else list(state)
        if len(states) != len(self.gens):
            raise ValueError(f"{len(states)} batch generator states for {len(self.gens)} members")
        for g, s in zip(self.gens, states, strict=True):
            g.set_state(s)

    def obs_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.obs.mean(0), self.obs.std(0)
