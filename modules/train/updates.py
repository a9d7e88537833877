"""The three kinds of gradient update a recipe composes: policy-free TD (IQL), joint TD (DQL critic), diffusion."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from modules.diffusion.model import DiffusionModel
from modules.guidance.iql import IQLCritic
from modules.sampling import reverse_chain

M = TypeVar("M", bound=nn.Module)

TargetFn = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]
"""batch -> (x0: (B, x_dim), cond: (B, cond_dim) | None, weights: (B,) | None): what the diffusion model learns."""


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """E[ |tau - 1(diff < 0)| diff^2 ] with diff = Q_hat - V."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.pow(2)).mean()


@torch.no_grad()
def polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau online, for parameters (buffers are copied)."""
    tp: list[torch.Tensor] = list(target.parameters())
    op: list[torch.Tensor] = list(online.parameters())
    torch._foreach_lerp_(tp, op, tau)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)


def frozen_copy(module: M) -> M:
    c = copy.deepcopy(module)
    c.requires_grad_(False)
    return c.eval()


class IQLUpdate:
    """Policy-free TD: L_V = expectile(Q_target_hat - V), L_Q = sum_i (r + gamma (1 - d) V(s') - Q_i)^2."""

    log_every = 100  # losses are read (one host sync) on these steps only; the loop sets it

    def __init__(self, critic: IQLCritic, lr: float = 3e-4, discount: float = 0.99, expectile: float = 0.7,
                 tau: float = 0.005):
        self.critic, self.discount, self.expectile, self.tau = critic, discount, expectile, tau
        self.target = frozen_copy(critic)
        self.opt = torch.optim.Adam(critic.parameters(), lr=lr)

    def step(self, b: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        c = self.critic
        with torch.no_grad():
            q_t = self.target.q(b["obs"], b["act"])
            v_next = c.v(b["next_obs"])
            target = b["rew"] + self.discount * (1.0 - b["done"]) * v_next
        v = c.v(b["obs"])
        v_loss = expectile_loss(q_t - v, self.expectile)
        q_loss = (c.q_all(b["obs"], b["act"]) - target).pow(2).mean(1).sum()
        self.opt.zero_grad(set_to_none=True)
        (v_loss + q_loss).backward()
        self.opt.step()
        polyak(self.target, c, self.tau)
        return {"v_loss": v_loss.item(), "q_loss": q_loss.item()} if step % self.log_every == 0 else {}

    def state(self) -> dict:
        return {"critic": self.critic.state_dict(), "target": self.target.state_dict(), "opt": self.opt.state_dict()}

    def load(self, s: dict) -> None:
        self.critic.load_state_dict(s["critic"])
        self.target.load_state_dict(s["target"])
        self.opt.load_state_dict(s["opt"])


class DQLCriticUpdate:
    """Joint TD (DQL): sum_i MSE(Q_i(s,a), r + gamma (1 - d) min_i Q'_i(s', a')), a' ~ the EMA actor at s'."""

    log_every = 100

    def __init__(self, critic: IQLCritic, actor: Callable[[torch.Tensor], torch.Tensor], lr: float = 3e-4,
                 discount: float = 0.99, tau: float = 0.005, grad_clip: float | None = None):
        self.critic, self.actor, self.discount, self.tau, self.grad_clip = critic, actor, discount, tau, grad_clip
        self.target = frozen_copy(critic)
        self.opt = torch.optim.Adam(critic.parameters(), lr=lr)

    def step(self, b: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        with torch.no_grad():
            a_next = self.actor(b["next_obs"])
            q_next = self.target.q_all(b["next_obs"], a_next).min(0).values
            target = b["rew"] + self.discount * (1.0 - b["done"]) * q_next
        loss = (self.critic.q_all(b["obs"], b["act"]) - target).pow(2).mean(1).sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.critic.parameters(), self.grad_clip)
        self.opt.step()
        polyak(self.target, self.critic, self.tau)
        return {"critic_loss": loss.item()} if step % self.log_every == 0 else {}

    def state(self) -> dict:
        return {"critic": self.critic.state_dict(), "target": self.target.state_dict(), "opt": self.opt.state_dict()}

    def load(self, s: dict) -> None:
        self.critic.load_state_dict(s["critic"])
        self.target.load_state_dict(s["target"])
        self.opt.load_state_dict(s["opt"])


def default_targets(b: dict[str, torch.Tensor]):
    return b["act"], None, None


class DiffusionUpdate:
    """BC denoising loss, plus (q_loss) eta * -Q_i(s, a_hat) / mean|Q_j(s, a_hat)| with a_hat drawn through the whole
    reverse chain with gradients; (i, j) a random order of two heads. The guidance may be frozen (guidance-first) or
    the live critic of a joint run; `guidance_start` > 0 trains BC-only until that step, then switches guidance on.
    An EMA copy of the model is kept and is what gets stored and sampled."""

    log_every = 100

    def __init__(self, model: DiffusionModel, lr: float = 3e-4, guidance: IQLCritic | None = None, eta: float = 0.0,
                 grad_clip: float | None = None, ema_decay: float = 0.995, ema_every: int = 5, ema_start: int = 1000,
                 targets: TargetFn = default_targets, total_steps: int | None = None, cosine_lr: bool = False,
                 weight_decay: float = 0.0, guidance_start: int = 0):
        self.model, self.guidance, self.eta, self.grad_clip = model, guidance, eta, grad_clip
        self.guidance_start = guidance_start
        self.targets = targets
        self.ema = frozen_copy(model)
        self.ema_decay, self.ema_every, self.ema_start = ema_decay, ema_every, ema_start
        opt_cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
        opt_kwargs: dict[str, Any] = {"weight_decay": weight_decay} if weight_decay else {}
        self.opt = opt_cls(model.parameters(), lr=lr, **opt_kwargs)
        self.sched = (torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(total_steps or 1, 1))
                      if cosine_lr else None)

    def q_loss(self, obs: torch.Tensor) -> torch.Tensor:
        assert self.guidance is not None  # step() calls q_loss only with a guidance
        a_hat = reverse_chain(self.model, obs, n=1, grad=True)[:, 0, : self.model.cfg.act_dim]
        qs = self.guidance.q_all(obs, a_hat)
        if qs.shape[0] >= 2:
            i, j = (0, 1) if torch.rand(()) < 0.5 else (1, 0)
        else:
            i = j = 0
        return -qs[i].mean() / qs[j].abs().mean().detach().clamp_min(1e-6)

    def step(self, b: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        x0, cond, weights = self.targets(b)
        bc = self.model.bc_loss(x0, b["obs"], cond, weights)
        loss = bc
        ql = None
        if self.guidance is not None and self.eta > 0 and step > self.guidance_start:
            ql = self.q_loss(b["obs"])
            loss = bc + self.eta * ql
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        if step < self.ema_start:
            if step % self.ema_every == 0:
                self.ema.load_state_dict(self.model.state_dict())
        elif step % self.ema_every == 0:
            polyak(self.ema, self.model, 1.0 - self.ema_decay)
        if step % self.log_every != 0:
            return {}
        logs = {"bc_loss": bc.item()}
        if ql is not None:
            logs["q_loss"] = ql.item()
        return logs

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """One action per state from the EMA model (used as DQL's next-action sampler). -> (B, act_dim)"""
        return reverse_chain(self.ema, obs, n=1)[:, 0, : self.model.cfg.act_dim]

    def state(self) -> dict:
        s = {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict()}
        if self.sched is not None:
            s["sched"] = self.sched.state_dict()
        return s

    def load(self, s: dict) -> None:
        self.model.load_state_dict(s["model"]), self.ema.load_state_dict(s["ema"]), self.opt.load_state_dict(s["opt"])
        if self.sched is not None and "sched" in s:
            self.sched.load_state_dict(s["sched"])
