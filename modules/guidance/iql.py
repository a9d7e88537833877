"""The IQL critic: an ensemble of Q heads and (optionally) a state value V. The usual policy-free guidance."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from modules.nets import EnsembleMLP, ObsNormalizer, mlp


class CriticConfig(BaseModel):
    """Hyperparameters that rebuild a critic exactly (bounded: a card cannot ask for an absurd network)."""

    model_config = ConfigDict(extra="forbid")
    obs_dim: int = Field(gt=0, le=1_000_000)
    act_dim: int = Field(gt=0, le=100_000)
    hidden: int = Field(default=256, gt=0, le=16_384)
    layers: int = Field(default=2, ge=1, le=64)
    q_heads: int = Field(default=2, ge=1, le=64)
    activation: Literal["relu", "mish", "swish", "tanh"] = "relu"
    with_v: bool = True
    v_layer_norm: bool = False
    reduction: Literal["min", "mean"] = "min"


class IQLCritic(nn.Module):
    """Q heads on [s, a] and V on s, with observation normalisation inside.

    q_all(obs: (B, obs_dim), act: (B, act_dim)) -> (H, B); q -> (B,) reduced by min or mean; v(obs) -> (B,).
    """

    Config = CriticConfig

    def __init__(self, cfg: CriticConfig):
        super().__init__()
        self.cfg = cfg
        self.obs_norm = ObsNormalizer(cfg.obs_dim)
        self.q_net = EnsembleMLP(cfg.q_heads, cfg.obs_dim + cfg.act_dim, cfg.hidden, 1, cfg.layers, cfg.activation)
        self.v_net = (
            mlp(cfg.obs_dim, cfg.hidden, 1, cfg.layers, cfg.activation, layer_norm=cfg.v_layer_norm)
            if cfg.with_v else None
        )

    @property
    def provides(self) -> tuple[str, ...]:
        return ("q", "v") if self.v_net is not None else ("q",)

    def q_all(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Every head's Q. obs: (B, obs_dim), act: (B, act_dim) -> (H, B)."""
        x = torch.cat([self.obs_norm(obs), act], dim=-1)
        return self.q_net(x).squeeze(-1)

    def q(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q reduced over heads (min or mean, as configured). -> (B,)."""
        qs = self.q_all(obs, act)
        return qs.min(dim=0).values if self.cfg.reduction == "min" else qs.mean(dim=0)

    def v(self, obs: torch.Tensor) -> torch.Tensor:
        """State value. obs: (B, obs_dim) -> (B,)."""
        if self.v_net is None:
            raise ValueError("this critic has no V head (provides q only)")
        return self.v_net(self.obs_norm(obs)).squeeze(-1)
