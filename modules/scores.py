"""Score functions for the candidate scorer and for gradient guidance.

Each: (obs (M, obs_dim), x (M, x_dim)) -> (M,).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from modules.guidance.iql import IQLCritic

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def q_score(critic: IQLCritic, act_dim: int, mean: float = 0.0, std: float = 1.0) -> ScoreFn:
    """Q(s, a) reduced over heads, standardised as (Q - mean) / std (identity by default)."""
    inv = 1.0 / max(std, 1e-8)

    def score(obs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = critic.q(obs, x[:, :act_dim])
        return (q - mean) * inv if (mean != 0.0 or inv != 1.0) else q

    return score


def advantage_score(critic: IQLCritic, act_dim: int, std: float = 1.0) -> ScoreFn:
    """A(s, a) = Q(s, a) - V(s), optionally divided by a scale."""
    inv = 1.0 / max(std, 1e-8)

    def score(obs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (critic.q(obs, x[:, :act_dim]) - critic.v(obs)) * inv

    return score


def weight_score(obs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SWG-R: the sample's own predicted weight (its last dimension)."""
    return x[:, -1]
