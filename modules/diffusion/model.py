"""The diffusion model shared by every backbone: schedule, forward noising, BC loss, the reverse step.

A backbone subclass only provides `denoiser(x_t, t_index, obs_normalised, cond) -> eps_hat`.
x: (B, x_dim) with x_dim = act_dim (or act_dim + 1 for SWG's (action, weight)); obs: (B, obs_dim);
cond: (B, cond_dim) or None (zeros = unconditional, as used by classifier-free guidance).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from modules.diffusion.schedule import Schedule
from modules.nets import ObsNormalizer


def time_features(net: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """net(t) -> (B, d); when every row shares one t (a reverse step: t is an expanded view), computed once."""
    if t.dim() == 1 and t.shape[0] > 1 and t.stride(0) == 0:
        return net(t[:1]).expand(t.shape[0], -1)
    return net(t)


class DiffusionConfig(BaseModel):
    """Hyperparameters common to every backbone (rebuild the network exactly)."""

    model_config = ConfigDict(extra="forbid")
    obs_dim: int = Field(gt=0, le=1_000_000)
    act_dim: int = Field(gt=0, le=100_000)
    x_dim: int | None = Field(default=None, gt=0, le=100_001, description="Diffused dimension; default act_dim.")
    cond_dim: int = Field(default=0, ge=0, le=1024, description="Size of a label the denoiser is conditioned on (CFG).")
    T: int = Field(default=5, ge=1, le=1000)
    schedule: Literal["vp", "linear", "cosine"] = "vp"
    reverse: Literal["posterior", "simplified"] = "posterior"
    extra_low: float = Field(default=1e-4, description="Lower clip of dimensions beyond act_dim (SWG weight).")
    extra_high: float = Field(default=1.0, description="Upper clip of dimensions beyond act_dim (SWG weight).")

    @property
    def xdim(self) -> int:
        return self.x_dim or self.act_dim


class DiffusionModel(nn.Module):
    """Schedule + observation normaliser + denoiser; eps-prediction (the loss and the reverse step are shared)."""

    Config = DiffusionConfig
    x_low: torch.Tensor  # buffers (registered in __init__)
    x_high: torch.Tensor
    sqrt_abar: torch.Tensor
    sqrt_1m_abar: torch.Tensor
    t_index: torch.Tensor

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.cfg = cfg
        self.x_dim = cfg.xdim
        self.sched = Schedule(cfg.schedule, cfg.T)
        self.obs_norm = ObsNormalizer(cfg.obs_dim)
        low = torch.full((self.x_dim,), -1.0)
        high = torch.full((self.x_dim,), 1.0)
        low[cfg.act_dim:], high[cfg.act_dim:] = cfg.extra_low, cfg.extra_high
        # derivable, so not persistent (not in the weights file)
        self.register_buffer("x_low", low, persistent=False)
        self.register_buffer("x_high", high, persistent=False)
        self.register_buffer("sqrt_abar", self.sched.sqrt_abar.float(), persistent=False)
        self.register_buffer("sqrt_1m_abar", self.sched.sqrt_1m_abar.float(), persistent=False)
        self.register_buffer("t_index", torch.arange(cfg.T), persistent=False)

    # --- to be provided by a backbone ---------------------------------------------------------------------------
    def denoiser(self, x: torch.Tensor, t: torch.Tensor, obs: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """x: (B, x_dim), t: (B,) long in [0, T), obs: (B, obs_dim) normalised, cond: (B, cond_dim)|None
        -> (B, x_dim)"""
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------------------------------
    def eps(self, x: torch.Tensor, t: torch.Tensor, obs: torch.Tensor,
            cond: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise. obs is raw (normalised here). -> (B, x_dim)"""
        if self.cfg.cond_dim and cond is None:
            cond = x.new_zeros(x.shape[0], self.cfg.cond_dim)
        return self.denoiser(x, t, self.obs_norm(obs), cond)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps. x0, noise: (B, x_dim); t: (B,) -> (B, x_dim)"""
        return self.sqrt_abar[t, None] * x0 + self.sqrt_1m_abar[t, None] * noise

    def bc_loss(self, x0: torch.Tensor, obs: torch.Tensor, cond: torch.Tensor | None = None,
                weights: torch.Tensor | None = None, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """|| eps_theta(x_t, t, s) - eps ||^2 with t uniform, averaged (optionally weighted per sample).
        t: (B,) step indices and noise: (B, x_dim) may be given (training draws them from the run's generators)."""
        if t is None:
            t = torch.randint(0, self.cfg.T, (x0.shape[0],), device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        err = (self.eps(self.q_sample(x0, t, noise), t, obs, cond) - noise).pow(2).mean(-1)
        return (err * weights).mean() if weights is not None else err.mean()

    def x0_hat(self, x: torch.Tensor, eps: torch.Tensor, i: int) -> torch.Tensor:
        """Tweedie estimate of the clean sample at step index i (not clipped)."""
        s = self.sched
        return s.f_recip_sqrt_abar[i] * x - s.f_sqrt_recip_m1[i] * eps

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(x, self.x_high), self.x_low)

    def reverse_step(self, x: torch.Tensor, eps: torch.Tensor, i: int, noise: torch.Tensor | None) -> torch.Tensor:
        """One reverse update x_t -> x_{t-1} at step index i (t = i + 1). `noise` is z * temperature, or None.

        posterior (DQL, SWG): x0_hat clipped, then the posterior mean + sigma_t z (no noise at the last step).
        simplified (IDQL): (x_t - beta_t/sqrt(1-abar_t) eps)/sqrt(alpha_t) + sqrt(beta_t) z, clipped every step.
        """
        s = self.sched
        if self.cfg.reverse == "posterior":
            x0 = self.clip(self.x0_hat(x, eps, i))
            x = s.f_post_c0[i] * x0 + s.f_post_ct[i] * x
            if i > 0 and noise is not None:
                x = x + s.f_post_std[i] * noise
            return x
        x = (x - (s.f_betas[i] / s.f_sqrt_1m_abar[i]) * eps) / s.f_alphas[i] ** 0.5
        if i > 0 and noise is not None:
            x = x + s.f_betas[i] ** 0.5 * noise
        return self.clip(x)
