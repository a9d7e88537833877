"""A runnable policy: a diffusion model, a sampling-time guide and a candidate selection. act(obs) -> action."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from modules.diffusion.model import DiffusionModel
from modules.sampling import EpsGuide, ScoreFn, SelectionRule, reverse_chain, score_candidates, select


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

    def act_tensor(self, obs: torch.Tensor) -> torch.Tensor:
        """obs: (B, obs_dim) -> actions (B, act_dim)."""
        cond = self.cond_fn(obs) if self.cond_fn is not None else None
        cands = reverse_chain(self.model, obs, n=self.n_candidates, guide=self.guide, temperature=self.temperature,
                              cond=cond)
        scores = None
        if self.scorer is not None and self.n_candidates > 1:
            with torch.inference_mode():
                scores = score_candidates(self.scorer, obs, cands)
        chosen = select(cands, scores, self.rule if scores is not None else "first", self.select_temperature,
                        self.expectile)
        return chosen[:, : self.model.cfg.act_dim]

    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs: (obs_dim,) or (B, obs_dim) numpy -> action(s) of matching shape (act_dim,) or (B, act_dim)."""
        arr = np.asarray(obs, dtype=np.float32)
        single = arr.ndim == 1
        batch = torch.from_numpy(arr[None] if single else arr)
        out = self.act_tensor(batch).numpy()
        return out[0] if single else out

    __call__ = act
