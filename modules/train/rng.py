"""The random draws of a training run: one generator per seed, so K seeds trained at once see exactly the draws of K
single runs.

A single run (`members is None`) draws plain tensors; an ensemble of K seeds draws each tensor once per member, from
that member's own generator, in the same order as the single run of its seed, and stacks them: (K, *shape).
"""
from __future__ import annotations

import torch


def noise_seed(seed: int) -> int:
    """The noise generator's seed for a run seed (apart from the batch-index generator, which uses the seed itself)."""
    return (seed * 1_000_003 + 7919) % (2**63 - 1)


class Rng:
    """Per-member generators on the training device. normal/randint/uniform -> shape or (K, *shape)."""

    def __init__(self, seeds: list[int] | int, device: torch.device | str = "cpu"):
        self.members: int | None = len(seeds) if isinstance(seeds, list) else None
        self.seeds = seeds if isinstance(seeds, list) else [seeds]
        self.device = torch.device(device)
        self.gens = [torch.Generator(device=self.device).manual_seed(noise_seed(s)) for s in self.seeds]

    def _draw(self, one) -> torch.Tensor:
        if self.members is None:
            return one(self.gens[0])
        return torch.stack([one(g) for g in self.gens])

    def normal(self, *shape: int) -> torch.Tensor:
        return self._draw(lambda g: torch.randn(shape, generator=g, device=self.device))

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return self._draw(lambda g: torch.randint(0, high, shape, generator=g, device=self.device))

    def uniform(self, *shape: int) -> torch.Tensor:
        return self._draw(lambda g: torch.rand(shape, generator=g, device=self.device))

    def get_state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.gens]

    def set_state(self, states: list[torch.Tensor]) -> None:
        if len(states) != len(self.gens):
            raise ValueError(f"{len(states)} generator states for {len(self.gens)} members")
        for g, s in zip(self.gens, states, strict=True):
            g.set_state(s)
