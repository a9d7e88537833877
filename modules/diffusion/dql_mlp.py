"""DQL's MLP denoiser: [x_t, time embedding, s(, cond)] -> 3 x (Linear 256 + Mish) -> Linear(x_dim)."""
from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from modules.diffusion.model import DiffusionConfig, DiffusionModel, time_features
from modules.nets import Mish, mlp


class SinusoidalEmbedding(nn.Module):
    """t: (B,) -> (B, dim) sin/cos features."""

    freqs: torch.Tensor  # a buffer (registered in __init__)

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t.float()[:, None] * self.freqs[None]
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


class DQLMLPConfig(DiffusionConfig):
    hidden: int = Field(default=256, gt=0, le=16_384)
    layers: int = Field(default=3, ge=1, le=64)
    time_dim: int = Field(default=16, ge=2, le=4096)


class DQLDiffusion(DiffusionModel):
    """The Diffusion-QL backbone (posterior-mean reverse step by default, T = 5, vp)."""

    Config = DQLMLPConfig

    def __init__(self, cfg: DQLMLPConfig):
        super().__init__(cfg)
        self.time_mlp = nn.Sequential(
            SinusoidalEmbedding(cfg.time_dim), nn.Linear(cfg.time_dim, cfg.time_dim * 2), Mish(),
            nn.Linear(cfg.time_dim * 2, cfg.time_dim),
        )
        in_dim = self.x_dim + cfg.time_dim + cfg.obs_dim + cfg.cond_dim
        self.net = mlp(in_dim, cfg.hidden, self.x_dim, cfg.layers, act="mish")

    def denoiser(self, x, t, obs, cond):
        parts = [x, time_features(self.time_mlp, t), obs] + ([cond] if cond is not None else [])
        return self.net(torch.cat(parts, dim=-1))
