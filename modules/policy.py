"""A runnable policy: a diffusion model, a sampling-time guide and a candidate selection. act(obs) -> action.

The policy computes on its model's device: `act_tensor` takes and returns tensors there (no host round trip);
`act(numpy)` is the environment boundary (the batch moves to the device and the actions back). Its noise comes from
`generator` when one is set (`seeded(seed)`: a reproducible evaluation), else from torch's global generator.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from modules.device import autocast
from modules.diffusion.model import DiffusionModel
from modules.sampling import EpsGuide, ScoreFn, SelectionRule, denoise, reverse_chain, score_candidates, select


def module_device(net: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); cpu for a module with neither."""
    for p in net.parameters():
        return p.device
    for b in net.buffers():
        return b.device
    return torch.device("cpu")


@dataclass
class GuidedPolicy:
    """Draws `n_candidates` per state through the shared reverse chain (with `guide` changing eps, if any), then
    picks one with the shared candidate scorer (`scorer` + `rule`). cond_fn gives CFG's condition label."""

    model: DiffusionModel
    n_candidates: int = 1
    guide: EpsGuide | None = None
    scorer: ScoreFn | None = None
    rule: SelectionRule = "argmax"
    temperature: float = 1.0
    select_temperature: float = 1.0
    expectile: float = 0.7
    cond_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    generator: torch.Generator | None = None
    precision: str = "fp32"  # "bf16": the chain and the scorer under bfloat16 autocast (no eps guide only)
    _compiled: Callable[..., torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        """Where the model (and so the policy's computation) lives."""
        return module_device(self.model)

    def act_tensor(self, obs: torch.Tensor) -> torch.Tensor:
        """obs: (B, obs_dim) on the model's device -> actions (B, act_dim) on the same device."""
        cond = self.cond_fn(obs) if self.cond_fn is not None else None
        if self.guide is None:  # no eps guide: draw first, then one pure function (eager or compiled)
            with torch.inference_mode():
                x_T, noise, uniform = self._draws(obs.shape[0], obs.device, obs.dtype)
                with autocast(obs.device, self.precision):
                    out = (self._compiled or self.select_from_draws)(obs, cond, x_T, noise, uniform)
                return out.to(obs.dtype)
        cands = reverse_chain(self.model, obs, n=self.n_candidates, guide=self.guide, temperature=self.temperature,
                              cond=cond, generator=self.generator)
        scores = None
        if self.scorer is not None and self.n_candidates > 1:
            with torch.inference_mode():
                scores = score_candidates(self.scorer, obs, cands)
        chosen = select(cands, scores, self.rule if scores is not None else "first", self.select_temperature,
                        self.expectile, generator=self.generator)
        return chosen[:, : self.model.cfg.act_dim]

    def _draws(self, B: int, device: torch.device,
               dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The random draws of one call: x_T (B N, x_dim), injected noise (T - 1, B N, x_dim) scaled by the
        temperature (None at temperature 0), and one uniform per state for a sampling rule (None otherwise)."""
        M, g = B * self.n_candidates, self.generator
        x_T = torch.randn(M, self.model.x_dim, generator=g, device=device, dtype=dtype)
        noise = None
        if self.temperature > 0 and self.model.cfg.T > 1:
            noise = torch.randn(self.model.cfg.T - 1, M, self.model.x_dim, generator=g, device=device, dtype=dtype)
            if self.temperature != 1.0:
                noise = noise * self.temperature
        sampled = self.scorer is not None and self.n_candidates > 1 and self.rule in ("softmax", "expectile")
        uniform = torch.rand(B, generator=g, device=device, dtype=dtype) if sampled else None
        return x_T, noise, uniform

    def select_from_draws(self, obs: torch.Tensor, cond: torch.Tensor | None, x_T: torch.Tensor,
                          noise: torch.Tensor | None, uniform: torch.Tensor | None) -> torch.Tensor:
        """The whole selection from given draws (no eps guide): N candidates per state through the reverse chain,
        scored in one batched call, one kept. obs: (B, obs_dim) -> (B, act_dim)."""
        B, N = obs.shape[0], self.n_candidates
        obs_rep = obs.repeat_interleave(N, 0) if N > 1 else obs
        cond_rep = cond.repeat_interleave(N, 0) if cond is not None and N > 1 else cond
        x = denoise(self.model, obs_rep, x_T, lambda i: noise[i - 1] if noise is not None and i > 0 else None,
                    None, cond_rep)
        cands = x.view(B, N, self.model.x_dim)
        scores = score_candidates(self.scorer, obs, cands) if self.scorer is not None and N > 1 else None
        chosen = select(cands, scores, self.rule if scores is not None else "first", self.select_temperature,
                        self.expectile, uniform=uniform)
        return chosen[:, : self.model.cfg.act_dim]

    def compile(self, **kwargs) -> GuidedPolicy:
        """Compile the selection (`select_from_draws`) with torch.compile: the same code, fused (no eps guide only;
        a guided chain stays eager). On CUDA with CUDA graphs ("reduce-overhead")."""
        if self.device.type == "cuda":
            kwargs.setdefault("mode", "reduce-overhead")  # CUDA graphs: the reverse chain replayed as one launch
        self._compiled = torch.compile(self.select_from_draws, **kwargs)
        return self

    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs: (obs_dim,) or (B, obs_dim) numpy -> action(s) of matching shape (act_dim,) or (B, act_dim).
        The environment boundary: the batch moves to the model's device once, the actions come back once."""
        arr = np.asarray(obs, dtype=np.float32)
        single = arr.ndim == 1
        batch = torch.from_numpy(arr[None] if single else arr)
        device = self.device
        if device.type != "cpu":
            batch = batch.to(device, non_blocking=True)
        out = self.act_tensor(batch).detach().to("cpu").numpy()
        return out[0] if single else out

    __call__ = act

    def to(self, device: torch.device | str) -> GuidedPolicy:
        """Move the model to `device` (in place; a scorer's or guide's networks are moved by whoever built them)."""
        self.model.to(device)
        return self

    @contextlib.contextmanager
    def seeded(self, seed: int) -> Iterator[GuidedPolicy]:
        """Draw this policy's noise from a generator seeded with `seed` (on the model's device) inside the block:
        the same seed gives the same actions for the same observations, whatever else runs in the process."""
        old = self.generator
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        try:
            yield self
        finally:
            self.generator = old
