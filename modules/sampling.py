"""One reverse-diffusion loop and one candidate scorer; every guidance mode plugs into them.

- no guidance:     reverse_chain(model, obs)
- `gradient`:      reverse_chain(..., guide=GradientGuide(critic, rho))        (classifier guidance)
- `cfg`:           reverse_chain(..., guide=CFGGuide(w), cond=label)            (classifier-free guidance)
- `self`:          reverse_chain(..., guide=SelfWeightGuide(rho))                (SWG)
- `resample`:      select(candidates, obs, scorer, rule)                         (IDQL, DQL, SWG-R)
- `q_loss`:        reverse_chain(..., grad=True) inside a training step          (DQL: gradient through the chain)
Shapes: obs (B, obs_dim); candidates (B, N, x_dim); actions (B, act_dim).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from modules.diffusion.model import DiffusionModel

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""score(obs: (M, obs_dim), x: (M, x_dim)) -> (M,): higher is better."""


class EpsGuide(Protocol):
    """Changes the predicted noise at each reverse step."""

    needs_grad: bool

    def eps(self, model: DiffusionModel, x: torch.Tensor, t: torch.Tensor, i: int, obs: torch.Tensor,
            obs_n: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """x: (M, x_dim) at step index i; obs raw and obs_n normalised: (M, obs_dim) -> eps: (M, x_dim)."""
        ...


def reverse_chain(model: DiffusionModel, obs: torch.Tensor, n: int = 1, guide: EpsGuide | None = None,
                  temperature: float = 1.0, cond: torch.Tensor | None = None, grad: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw n samples per state through the whole reverse chain. obs: (B, obs_dim) -> (B, n, x_dim).

    temperature scales the injected noise (0: deterministic). grad=True keeps the graph (DQL's q_loss).
    """
    if grad:
        return _chain(model, obs, n, guide, temperature, cond, generator)
    if guide is not None and guide.needs_grad:
        with torch.no_grad():
            return _chain(model, obs, n, guide, temperature, cond, generator)
    with torch.inference_mode():
        return _chain(model, obs, n, guide, temperature, cond, generator)


def _chain(model, obs, n, guide, temperature, cond, generator):
    B = obs.shape[0]
    if n > 1:
        obs = obs.repeat_interleave(n, 0)
        cond = cond.repeat_interleave(n, 0) if cond is not None else None
    M = obs.shape[0]
    x = torch.randn(M, model.x_dim, generator=generator, device=obs.device, dtype=obs.dtype)

    def noise_at(i: int) -> torch.Tensor | None:
        if i == 0 or temperature <= 0:
            return None
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return z * temperature if temperature != 1.0 else z

    return denoise(model, obs, x, noise_at, guide, cond).view(B, n, model.x_dim)


def denoise(model: DiffusionModel, obs: torch.Tensor, x: torch.Tensor,
            noise_at: Callable[[int], torch.Tensor | None], guide: EpsGuide | None = None,
            cond: torch.Tensor | None = None) -> torch.Tensor:
    """The reverse loop itself: x_T -> x_0 with `noise_at(i)` the noise injected at step index i (None: none).
    obs: (M, obs_dim) raw; x: (M, x_dim) the starting noise -> (M, x_dim). Gradients flow if enabled."""
    M = obs.shape[0]
    if model.cfg.cond_dim and cond is None:
        cond = obs.new_zeros(M, model.cfg.cond_dim)
    obs_n = model.obs_norm(obs)
    for i in reversed(range(model.cfg.T)):
        t = model.t_index[i].expand(M)  # one shared step index: time features are computed once per step
        if guide is None:
            eps = model.denoiser(x, t, obs_n, cond)
        else:
            eps = guide.eps(model, x, t, i, obs, obs_n, cond)
        x = model.reverse_step(x, eps, i, noise_at(i))
    return x


def chain_noise_shapes(model: DiffusionModel, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of the draws `chain_from_noise` takes: x_T (B, x_dim) and the injected noise (T - 1, B, x_dim)."""
    return (batch, model.x_dim), (max(model.cfg.T - 1, 1), batch, model.x_dim)


def chain_from_noise(model: DiffusionModel, obs: torch.Tensor, x_T: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One sample per state through the reverse chain from given draws (training: the draws come from the run's own
    generators, so an ensemble member sees exactly the noise of the single run of its seed).
    obs: (B, obs_dim), x_T: (B, x_dim), noise: (T - 1, B, x_dim), noise[i - 1] used at step index i -> (B, x_dim).
    Runs with whatever grad mode the caller set (DQL's q_loss keeps the graph)."""
    return denoise(model, obs, x_T, lambda i: noise[i - 1] if i > 0 else None)


@dataclass
class CFGGuide:
    """Classifier-free guidance: eps = eps_u + w (eps_c - eps_u), both from one batched forward pass."""

    w: float = 1.0
    needs_grad: bool = False

    def eps(self, model, x, t, i, obs, obs_n, cond):
        if cond is None:
            raise ValueError("cfg guidance needs a condition label")
        both = model.denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([obs_n, obs_n]),
                              torch.cat([cond, torch.zeros_like(cond)]))
        eps_c, eps_u = both.chunk(2)
        return eps_u + self.w * (eps_c - eps_u)


@dataclass
class GradientGuide:
    """Classifier guidance by a critic: eps - rho sqrt(1 - abar_t) grad_{x_t} score(s, x0_hat(x_t)).

    The gradient is taken at the Tweedie estimate x0_hat (the critic was trained on clean actions), treating eps as
    constant, so grad_{x_t} = grad_{x0} / sqrt(abar_t): no backward pass through the denoiser.
    """

    score: ScoreFn
    rho: float = 1.0
    act_dim: int | None = None
    needs_grad: bool = True

    def eps(self, model, x, t, i, obs, obs_n, cond):
        eps = model.denoiser(x, t, obs_n, cond)
        s = model.sched
        with torch.enable_grad():
            x0 = model.clip(model.x0_hat(x, eps, i)).detach().requires_grad_(True)
            act = x0[:, : self.act_dim] if self.act_dim else x0
            (g,) = torch.autograd.grad(self.score(obs, act).sum(), x0)
        return eps - self.rho * s.f_sqrt_1m_abar[i] * s.f_recip_sqrt_abar[i] * g


@dataclass
class SelfWeightGuide:
    """SWG: the model's own Tweedie estimate of the clean weight (last dimension) steers it.

    w0_hat = (z_t^w - sqrt(1 - abar_t) eps^w) / sqrt(abar_t), clipped to [w_min, 1];
    eps_tilde = eps - rho sqrt(1 - abar_t) grad_{z_t} log w0_hat (NaN -> 0).
    """

    rho: float = 1.0
    w_min: float = 1e-4
    needs_grad: bool = True

    def eps(self, model, x, t, i, obs, obs_n, cond):
        s = model.sched
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            eps = model.denoiser(z, t, obs_n, cond)
            w0 = self.weight_estimate(z, eps, s.f_sqrt_1m_abar[i], s.f_sqrt_abar[i])
            (g,) = torch.autograd.grad(torch.log(w0).sum(), z)
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        return eps.detach() - self.rho * s.f_sqrt_1m_abar[i] * g

    def weight_estimate(self, z: torch.Tensor, eps: torch.Tensor, sqrt_1m_abar: float,
                        sqrt_abar: float) -> torch.Tensor:
        """Tweedie estimate of the clean weight. z, eps: (M, x_dim) -> (M,)"""
        return ((z[:, -1] - sqrt_1m_abar * eps[:, -1]) / sqrt_abar).clamp(self.w_min, 1.0)


SelectionRule = Literal["argmax", "softmax", "expectile", "first"]


def score_candidates(score: ScoreFn, obs: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    """The candidate scorer: every candidate of every state in one batched call. cands: (B, N, X) -> (B, N)."""
    B, N, X = cands.shape
    return score(obs.repeat_interleave(N, 0), cands.reshape(B * N, X)).view(B, N)


def select(cands: torch.Tensor, scores: torch.Tensor | None, rule: SelectionRule = "argmax",
           temperature: float = 1.0, expectile: float = 0.7,
           generator: torch.Generator | None = None, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Pick one candidate per state. cands: (B, N, X), scores: (B, N) -> (B, X).

    argmax: the best score. softmax: sample from softmax(scores / temperature).
    expectile (IDQL): sample with p_i proportional to tau if score_i > 0 else 1 - tau (scores are advantages).
    first: no scorer, the first candidate.
    The sampling rules draw with `generator`, or from `uniform` (B,) in [0, 1) when given (inverse CDF: a draw made
    beforehand, so the selection is a pure function that torch.compile can take whole).
    """
    B = cands.shape[0]
    if rule == "first" or scores is None:
        return cands[:, 0]
    if rule == "argmax":
        idx = scores.argmax(dim=1)
    elif rule in ("softmax", "expectile"):
        if rule == "softmax":
            probs = torch.softmax(scores / max(temperature, 1e-8), dim=1)
        else:
            probs = torch.where(scores > 0, expectile, 1.0 - expectile)
        if uniform is None:
            idx = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            cdf = probs.cumsum(1)
            idx = (cdf < uniform[:, None] * cdf[:, -1:]).sum(1).clamp(max=probs.shape[1] - 1)
    else:
        raise ValueError(f"unknown selection rule '{rule}'; known: argmax, softmax, expectile, first")
    return cands.gather(1, idx.view(B, 1, 1).expand(B, 1, cands.shape[2])).squeeze(1)
