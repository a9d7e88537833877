"""A runnable policy: a diffusion model, a sampling-time guide and a candidate selection. act(obs) -> action.

The policy computes on its model's device: `act_tensor` takes and returns tensors there (no host round trip);
`act(numpy)` is the environment boundary (the batch moves to the device and the actions back). Its noise comes from
`generator` when one is set (`seeded(seed)`: a reproducible evaluation), else from torch's global generator.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from modules.diffusion.model import DiffusionModel
from modules.sampling import EpsGuide, ScoreFn, SelectionRule, reverse_chain, score_candidates, select


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

    @property
    def device(self) -> torch.device:
        """Where the model (and so the policy's computation) lives."""
        return module_device(self.model)

    def act_tensor(self, obs: torch.Tensor) -> torch.Tensor:
        """obs: (B, obs_dim) on the model's device -> actions (B, act_dim) on the same device."""
        cond = self.cond_fn(obs) if self.cond_fn is not None else None
        cands = reverse_chain(self.model, obs, n=self.n_candidates, guide=self.guide, temperature=self.temperature,
                              cond=cond, generator=self.generator)
        scores = None
        if self.scorer is not None and self.n_candidates > 1:
            with torch.inference_mode():
                scores = score_candidates(self.scorer, obs, cands)
        chosen = select(cands, scores, self.rule if scores is not None else "first", self.select_temperature,
                        self.expectile, generator=self.generator)
        return chosen[:, : self.model.cfg.act_dim]

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
