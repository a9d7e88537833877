"""Labels from a frozen guidance, for the `labels` training mode (SWG, CFG): the guidance labels the data once,
the diffusion model learns with the labels.

    q, v = critic_values(critic, obs, act)                 # every dataset row, in batches, no grad
    w = swg_weights(q - v, "expectile", tau=0.7)           # SWG: w in [1e-4, 1]
    targets = swg_targets(w)                               # batch -> (cat(action, w), None, None)
    c = cfg_labels(q, v, "sign")                           # CFG: one-hot [1 - o, o], o = 1(Q - V >= 0)
    targets = cfg_targets(c, p_uncond=0.2)                 # batch -> (action, cond with dropout to zeros, None)

Labels are indexed by dataset row: a training batch carries "idx" (its rows), so a TargetFn looks them up.
Shapes: obs (N, obs_dim), act (N, act_dim), q, v, adv, w (N,), labels (N, cond_dim).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from modules.train.updates import TargetFn

ACTION_CLIP = 1.0 - 1e-5
W_MIN = 1e-4
WeightFn = Literal["expectile", "exp", "linex"]
LabelKind = Literal["sign", "sign-scalar", "value"]


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()


@torch.no_grad()
def critic_values(critic, obs, act, batch_size: int = 8192, need_v: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Q_hat(s, a) (the critic's reduction over heads, min for IQL) and V(s) for every row. -> (N,), (N,) | None"""
    obs, act = _t(obs), _t(act).clamp(-1.0, 1.0)
    was_training = critic.training
    critic.eval()
    qs, vs = [], []
    try:
        for o, a in zip(obs.split(batch_size), act.split(batch_size), strict=True):
            qs.append(critic.q(o, a))
            if need_v:
                vs.append(critic.v(o))
    finally:
        critic.train(was_training)
    return torch.cat(qs), (torch.cat(vs) if need_v else None)


# --- SWG weights ----------------------------------------------------------------------------------------------------
def expectile_weights(adv: torch.Tensor, tau: float = 0.7) -> torch.Tensor:
    """w = tau if A > 0 else 1 - tau (the SWG default; A = Q_hat - V)."""
    return torch.where(adv > 0, torch.tensor(tau), torch.tensor(1.0 - tau)).to(adv.dtype)


def _scale(adv: torch.Tensor, scale: float | None) -> torch.Tensor:
    """A / scale, scale default std(A) over the data (so beta does not depend on the reward scale)."""
    s = float(adv.std()) if scale is None and adv.numel() > 1 else (scale or 1.0)
    return adv / max(s, 1e-8)


def _normalise(w: torch.Tensor, max_weight: float, w_min: float) -> torch.Tensor:
    """Clip at max_weight, divide by the largest weight (so max = 1), floor at w_min: w in [w_min, 1]."""
    w = w.clamp(max=max_weight)
    return (w / w.max().clamp_min(1e-30)).clamp(w_min, 1.0)


def exp_adv_weights(adv: torch.Tensor, beta: float = 3.0, scale: float | None = None, max_weight: float = 100.0,
                    w_min: float = W_MIN) -> torch.Tensor:
    """Exponential advantage (AWR): w = exp(beta A / scale) clipped at max_weight, normalised to (0, 1]."""
    x = beta * _scale(adv, scale)
    w = torch.exp(x - x.max())  # the max-shift cancels in the normalisation; avoids overflow
    cap = max_weight * float(torch.exp(-x.max()))
    return _normalise(w, cap, w_min)


def linex_weights(adv: torch.Tensor, beta: float = 3.0, scale: float | None = None, max_weight: float = 100.0,
                  w_min: float = W_MIN) -> torch.Tensor:
    """Lin-ex: exponential below zero, linear above: f(x) = exp(x) if x <= 0 else 1 + x, x = beta A / scale
    (continuous with its first derivative at 0; rewards good actions less aggressively than exp), clipped at
    max_weight, normalised to (0, 1]."""
    x = beta * _scale(adv, scale)
    w = torch.where(x <= 0, torch.exp(x.clamp(max=0.0)), 1.0 + x)
    return _normalise(w, max_weight, w_min)


def swg_weights(adv, fn: WeightFn = "expectile", tau: float = 0.7, beta: float = 3.0, scale: float | None = None,
                max_weight: float = 100.0) -> torch.Tensor:
    """SWG weights from advantages A = Q_hat - V. adv: (N,) -> w: (N,) in [1e-4, 1]."""
    adv = _t(adv)
    if fn == "expectile":
        w = expectile_weights(adv, tau)
    elif fn == "exp":
        w = exp_adv_weights(adv, beta, scale, max_weight)
    elif fn == "linex":
        w = linex_weights(adv, beta, scale, max_weight)
    else:
        raise ValueError(f"unknown SWG weight function '{fn}'; known: expectile, exp, linex")
    return w.clamp(W_MIN, 1.0)


# --- CFG labels -----------------------------------------------------------------------------------------------------
def advantage_sign(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """o = 1 if Q - V >= 0 else 0 (CFGRL's optimality label). -> (N,) float"""
    return (q - v >= 0).float()


def cfg_labels(q, v=None, kind: LabelKind = "sign", mean: float | None = None, std: float | None = None,
               clip: float = 3.0) -> torch.Tensor:
    """CFG condition per row. -> (N, cond_dim), never all-zero (zeros mean "unconditional").

    sign: one-hot [1 - o, o]; sign-scalar: [2 o - 1]; value: [clip((Q - mean) / std), 1], mean/std default to the
    data's statistics of Q.
    """
    q = _t(q)
    if kind in ("sign", "sign-scalar"):
        if v is None:
            raise ValueError("the advantage-sign label needs V (fit one to a Q-only guidance first)")
        o = advantage_sign(q, _t(v))
        return torch.stack([1.0 - o, o], dim=1) if kind == "sign" else (2.0 * o - 1.0)[:, None]
    if kind == "value":
        m = float(q.mean()) if mean is None else mean
        s = (float(q.std()) if q.numel() > 1 else 1.0) if std is None else std
        z = ((q - m) / max(s, 1e-8)).clamp(-clip, clip)
        return torch.stack([z, torch.ones_like(z)], dim=1)
    raise ValueError(f"unknown CFG label '{kind}'; known: sign, sign-scalar, value")


# --- TargetFn factories (the hook of modules.train.updates.DiffusionUpdate) ------------------------------------------
def _rows(table: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
    if "idx" not in b:
        raise KeyError("a labels target needs the batch's row indices ('idx')")
    idx = b["idx"]
    return table[idx.to(table.device)].to(b["act"].device)


def swg_targets(weights) -> TargetFn:
    """x0 = cat(action clipped to +-(1 - 1e-5), w[row]). weights: (N,) over all dataset rows."""
    w = _t(weights).reshape(-1).clamp(W_MIN, 1.0)

    def targets(b: dict[str, torch.Tensor]):
        act = b["act"].clamp(-ACTION_CLIP, ACTION_CLIP)
        return torch.cat([act, _rows(w, b)[:, None]], dim=-1), None, None

    return targets


def cfg_targets(labels, p_uncond: float = 0.2,
                generator: torch.Generator | None = None) -> TargetFn:
    """x0 = action, cond = labels[row], each dropped to zeros ("unconditional") with probability p_uncond.
    labels: (N, cond_dim) (or (N,) for a scalar label)."""
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
    lab = _t(labels)
    lab = lab[:, None] if lab.ndim == 1 else lab

    def targets(b: dict[str, torch.Tensor]):
        cond = _rows(lab, b)
        if p_uncond > 0:
            keep = torch.rand(cond.shape[0], generator=generator) >= p_uncond
            cond = cond * keep.to(cond.device, cond.dtype)[:, None]
        return b["act"], cond, None

    return targets


# --- whole-dataset helpers ------------------------------------------------------------------------------------------
def label_swg(critic, obs, act, fn: WeightFn = "expectile", tau: float = 0.7, beta: float = 3.0,
              batch_size: int = 8192) -> torch.Tensor:
    """SWG weights of every row under a frozen critic providing q and v. -> (N,)"""
    q, v = critic_values(critic, obs, act, batch_size)
    assert v is not None  # need_v
    return swg_weights(q - v, fn, tau=tau, beta=beta)


def label_cfg(critic, obs, act, kind: LabelKind = "sign", clip: float = 3.0, batch_size: int = 8192) -> torch.Tensor:
    """CFG labels of every row under a frozen critic (sign labels need v). -> (N, cond_dim)"""
    q, v = critic_values(critic, obs, act, batch_size, need_v=kind != "value")
    return cfg_labels(q, v, kind, clip=clip)
