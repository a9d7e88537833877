"""Small network building blocks shared by critics and denoisers."""
from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, Literal

import torch
from torch import nn

Activation = Literal["relu", "mish", "swish", "tanh"]


def _mish_parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, s) with s = sigmoid(-x) and w = tanh(softplus(x)) = (1 - s^2) / (1 + s^2), since 1 + e^x = 1 / s.
    sigmoid is far cheaper than exp/softplus/tanh on CPU."""
    s = torch.sigmoid(-x)
    q = s * s
    return (1.0 - q) / (1.0 + q), s


class _MishFn(torch.autograd.Function):
    """mish(x) = x tanh(softplus(x)) through one sigmoid, with a closed-form derivative
    d/dx = w + x (1 - w^2) sigmoid(x). About 1.5x (training) to 2.5x (inference) faster than aten::mish on CPU;
    same values to 1e-6 in float32."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        w, s = _mish_parts(x)
        ctx.save_for_backward(x, w, s)
        return x * w

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, w, s = ctx.saved_tensors
        return grad * (w + x * (1.0 - w * w) * (1.0 - s))


class Mish(nn.Module):
    """Drop-in for nn.Mish (no parameters, so stored weights are unaffected)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _MishFn.apply(x)
        return x * _mish_parts(x)[0]


_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "mish": Mish, "swish": nn.SiLU, "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation '{name}'; known: {', '.join(_ACTIVATIONS)}") from None


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int, act: str = "relu",
        layer_norm: bool = False) -> nn.Sequential:
    """`layers` hidden layers of width `hidden` (optionally LayerNorm before the activation), then a linear head."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods.append(nn.Linear(d, hidden))
        if layer_norm:
            mods.append(nn.LayerNorm(hidden))
        mods.append(activation(act))
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


class EnsembleLinear(nn.Module):
    """H independent linear layers applied at once. x: (B, in) or (H, B, in) -> (H, B, out)."""

    def __init__(self, heads: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(heads, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(heads, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return torch.matmul(x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """H MLPs with identical shapes evaluated in one batched pass. x: (B, in) -> (H, B, out)."""

    def __init__(self, heads: int, in_dim: int, hidden: int, out_dim: int, layers: int, act: str = "relu"):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        self.hidden = nn.ModuleList(EnsembleLinear(heads, a, b) for a, b in pairwise(dims))
        self.out = EnsembleLinear(heads, dims[-1], out_dim)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.out(x)


class ObsNormalizer(nn.Module):
    """Observation standardisation whose statistics are buffers (stored in the weights file). obs: (B, obs_dim)."""

    mean: torch.Tensor  # buffers (registered in __init__)
    std: torch.Tensor

    def __init__(self, obs_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-3) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp_min(eps))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std
