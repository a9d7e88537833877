"""IDQL's LN-ResNet denoiser: [x_t, s, time features(, cond)] -> Linear 256 -> 3 residual blocks
(dropout, LayerNorm, Linear 1024, swish, Linear 256, + x) -> swish -> Linear(x_dim).
Time: learnable Fourier features -> MLP (256, 256)."""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from modules.diffusion.model import DiffusionConfig, DiffusionModel, time_features


class FourierFeatures(nn.Module):
    """Learnable Fourier features. t: (B,) -> (B, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(1, dim // 2) * 0.2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * t.float()[:, None] * self.w
        return torch.cat([arg.cos(), arg.sin()], dim=-1)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, expand: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(), nn.LayerNorm(width),
            nn.Linear(width, width * expand), nn.SiLU(), nn.Linear(width * expand, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LNResNetConfig(DiffusionConfig):
    # IDQL's reference samples with the simplified step; registry.yaml declares it and a test keeps the two equal
    reverse: Literal["posterior", "simplified"] = "simplified"
    hidden: int = Field(default=256, gt=0, le=16_384)
    blocks: int = Field(default=3, ge=1, le=64)
    expand: int = Field(default=4, ge=1, le=16)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    time_dim: int = Field(default=128, ge=2, le=4096)
    time_hidden: int = Field(default=256, gt=0, le=16_384)
    weight_head: bool = Field(default=False, description="SWG variant: the weight gets its own head off block 2.")


class IDQLDiffusion(DiffusionModel):
    """The IDQL backbone (simplified reverse step by default; also SWG's, with x_dim = act_dim + 1)."""

    Config = LNResNetConfig

    def __init__(self, cfg: LNResNetConfig):
        super().__init__(cfg)
        self.time = nn.Sequential(
            FourierFeatures(cfg.time_dim), nn.Linear(cfg.time_dim, cfg.time_hidden), nn.SiLU(),
            nn.Linear(cfg.time_hidden, cfg.time_hidden),
        )
        self.inp = nn.Linear(self.x_dim + cfg.obs_dim + cfg.time_hidden + cfg.cond_dim, cfg.hidden)
        self.blocks = nn.ModuleList(ResidualBlock(cfg.hidden, cfg.expand, cfg.dropout) for _ in range(cfg.blocks))
        self.act = nn.SiLU()
        split = cfg.weight_head and self.x_dim > cfg.act_dim
        self.out = nn.Linear(cfg.hidden, cfg.act_dim if split else self.x_dim)
        self.weight_out = nn.Linear(cfg.hidden, self.x_dim - cfg.act_dim) if split else None

    def denoiser(self, x, t, obs, cond):
        parts = [x, obs, time_features(self.time, t)] + ([cond] if cond is not None else [])
        h = self.inp(torch.cat(parts, dim=-1))
        branch = None
        for k, block in enumerate(self.blocks):
            h = block(h)
            if k == 1:
                branch = h
        out = self.out(self.act(h))
        if self.weight_out is not None:
            out = torch.cat([out, self.weight_out(self.act(branch if branch is not None else h))], dim=-1)
        return out
