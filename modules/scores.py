"""Score functions for the candidate scorer and for gradient guidance.

Each: (obs (M, obs_dim), x (M, x_dim)) -> (M,), on the device of its inputs. A critic that lives on another device
(a CPU critic scoring CUDA candidates) gets the inputs moved to it and gives its scores back on the inputs' device;
when both are on one device (the usual case: modules are moved once when loaded) nothing is copied.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from modules.guidance.iql import IQLCritic

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _device_of(critic: torch.nn.Module) -> torch.device:
    for p in critic.parameters():
        return p.device
    return torch.device("cpu")


def _on_critic(critic: torch.nn.Module, obs: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dev = _device_of(critic)
    if obs.device == dev and x.device == dev:
        return obs, x
    return obs.to(dev), x.to(dev)


def q_score(critic: IQLCritic, act_dim: int, mean: float = 0.0, std: float = 1.0) -> ScoreFn:
    """Q(s, a) reduced over heads, standardised as (Q - mean) / std (identity by default)."""
    inv = 1.0 / max(std, 1e-8)
    standardise = mean != 0.0 or inv != 1.0

    def score(obs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        o, a = _on_critic(critic, obs, x[:, :act_dim])
        q = critic.q(o, a)
        q = (q - mean) * inv if standardise else q
        return q if q.device == obs.device else q.to(obs.device)

    return score


def advantage_score(critic: IQLCritic, act_dim: int, std: float = 1.0) -> ScoreFn:
    """A(s, a) = Q(s, a) - V(s), optionally divided by a scale."""
    inv = 1.0 / max(std, 1e-8)

    def score(obs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        o, a = _on_critic(critic, obs, x[:, :act_dim])
        adv = (critic.q(o, a) - critic.v(o)) * inv
        return adv if adv.device == obs.device else adv.to(obs.device)

    return score


def weight_score(obs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SWG-R: the sample's own predicted weight (its last dimension), on the device of x."""
    return x[:, -1]
