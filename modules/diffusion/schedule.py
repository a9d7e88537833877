"""Noise schedules and the quantities the forward and reverse processes need.

Index convention: tensors are indexed by i = t - 1 for t in {1..T}.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

ScheduleKind = Literal["vp", "linear", "cosine"]


def vp_betas(T: int, b_min: float = 0.1, b_max: float = 10.0) -> torch.Tensor:
    """beta_t = 1 - exp(-b_min/T - 0.5 (b_max - b_min)(2t - 1)/T^2), t = 1..T (DQL, IDQL, SWG). -> (T,)"""
    t = torch.arange(1, T + 1, dtype=torch.float64)
    return 1.0 - torch.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2)


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008) -> torch.Tensor:
    steps = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((steps / T) + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


def betas_for(kind: str, T: int) -> torch.Tensor:
    table: dict[str, Callable[[int], torch.Tensor]] = {"vp": vp_betas, "linear": linear_betas, "cosine": cosine_betas}
    if kind not in table:
        raise ValueError(f"unknown schedule '{kind}'; known: {', '.join(table)}")
    if T < 1:
        raise ValueError(f"schedule length T must be >= 1, got {T}")
    return table[kind](T)


class Schedule:
    """Precomputed schedule coefficients (float64 -> float32 tensors, and python floats for the sampling loop)."""

    def __init__(self, kind: str, T: int):
        b = betas_for(kind, T)
        a = 1.0 - b
        abar = torch.cumprod(a, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.kind, self.T = kind, T
        self.betas, self.alphas, self.abar, self.abar_prev = b, a, abar, abar_prev
        self.sqrt_abar = abar.sqrt()
        self.sqrt_1m_abar = (1 - abar).sqrt()
        # posterior q(x_{t-1} | x_t, x_0)
        self.post_var = b * (1 - abar_prev) / (1 - abar)
        self.post_logvar = torch.log(torch.cat([self.post_var[1:2], self.post_var[1:]])) if T > 1 else torch.log(
            self.post_var.clamp_min(1e-20))
        self.post_c0 = b * abar_prev.sqrt() / (1 - abar)
        self.post_ct = (1 - abar_prev) * a.sqrt() / (1 - abar)
        self.recip_sqrt_abar = (1 / abar).sqrt()
        self.sqrt_recip_m1 = (1 / abar - 1).sqrt()
        # python floats for the per-step loop (no tensor indexing inside it)
        f = lambda x: [float(v) for v in x]  # noqa: E731
        self.f_recip_sqrt_abar, self.f_sqrt_recip_m1 = f(self.recip_sqrt_abar), f(self.sqrt_recip_m1)
        self.f_post_c0, self.f_post_ct = f(self.post_c0), f(self.post_ct)
        self.f_post_std = f((0.5 * self.post_logvar).exp())
        self.f_betas, self.f_alphas = f(b), f(a)
        self.f_sqrt_abar, self.f_sqrt_1m_abar = f(self.sqrt_abar), f(self.sqrt_1m_abar)
