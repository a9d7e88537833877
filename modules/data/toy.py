"""2D toy datasets with a known reward (8 Gaussians, spiral), as in the toy experiments of guided-diffusion RL papers.

Each transition is a one-step episode: the state is a dummy constant ``obs = 0`` of dimension ``obs_dim``
(default 1), the action is a 2D point in [-1, 1]^2 drawn from the behaviour distribution, and the reward is a known
energy ``toy_reward(name, actions)``. A guided sampler should move mass to the high-reward region:

* ``8gaussians``: 8 modes on a circle of radius 0.75 (mode k at angle 2*pi*k/8, std 0.05); reward is a smooth
  soft-assignment of each point to the modes with mode values ``v_k = k / 7``, so mode 7 (angle 7*pi/4, lower
  right) is best and mode 0 (angle 0, right) is worst.
* ``spiral``: one and a half turns of a spiral, radius 0.1 -> 0.9 along the curve, noise std 0.02; reward is the
  distance from the origin, so the outer end of the spiral is best.
"""
from __future__ import annotations

import numpy as np

from .dataset import OfflineDataset

__all__ = ["TOY_NAMES", "toy_reward", "sample_toy_actions", "make_toy_dataset", "EIGHT_GAUSSIAN_CENTERS",
           "EIGHT_GAUSSIAN_VALUES"]

TOY_NAMES = ("8gaussians", "spiral")
_RADIUS, _STD, _ASSIGN_STD = 0.75, 0.05, 0.15
_ANGLES = 2 * np.pi * np.arange(8) / 8
EIGHT_GAUSSIAN_CENTERS: np.ndarray = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1) * _RADIUS  # (8, 2)
EIGHT_GAUSSIAN_VALUES: np.ndarray = np.arange(8) / 7.0  # (8,)


def _check(name: str) -> str:
    key = name.lower().removeprefix("toy-")
    if key not in TOY_NAMES:
        raise ValueError(f"unknown toy dataset {name!r}; known: {', '.join('toy-' + n for n in TOY_NAMES)}")
    return key


def toy_reward(name: str, actions: np.ndarray) -> np.ndarray:
    """The known reward of a toy task. ``actions: (N, 2)`` -> ``rewards: (N,) float32``."""
    key = _check(name)
    a = np.asarray(actions, dtype=np.float64)
    if key == "8gaussians":
        d2 = ((a[:, None, :] - EIGHT_GAUSSIAN_CENTERS[None]) ** 2).sum(-1)  # (N, 8)
        logits = -d2 / (2 * _ASSIGN_STD**2)
        w = np.exp(logits - logits.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        return (w @ EIGHT_GAUSSIAN_VALUES).astype(np.float32)
    return np.linalg.norm(a, axis=1).astype(np.float32)


def sample_toy_actions(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``(n, 2)`` float32 points of the behaviour distribution, clipped to [-1, 1]."""
    key = _check(name)
    if key == "8gaussians":
        k = rng.integers(0, 8, size=n)
        pts = EIGHT_GAUSSIAN_CENTERS[k] + _STD * rng.standard_normal((n, 2))
    else:
        t = rng.uniform(0.0, 1.0, size=n)
        theta = 3.0 * np.pi * t
        r = 0.1 + 0.8 * t
        pts = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1) + 0.02 * rng.standard_normal((n, 2))
    return np.clip(pts, -1.0, 1.0).astype(np.float32)


def make_toy_dataset(name: str, n: int = 10_000, seed: int = 0, obs_dim: int = 1) -> OfflineDataset:
    """A toy `OfflineDataset` of ``n`` one-step episodes: ``observations: (n, obs_dim)`` zeros, ``actions: (n, 2)``,
    ``rewards = toy_reward(name, actions)``, all ``terminals`` True. Deterministic in ``seed``; takes milliseconds."""
    key = _check(name)
    if n <= 0:
        raise ValueError(f"toy dataset size must be positive, got {n}")
    rng = np.random.default_rng(seed)
    acts = sample_toy_actions(key, n, rng)
    obs = np.zeros((n, obs_dim), dtype=np.float32)
    arrays = {
        "observations": obs,
        "actions": acts,
        "rewards": toy_reward(key, acts),
        "next_observations": obs.copy(),
        "terminals": np.ones(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }
    return OfflineDataset.from_arrays(arrays, env=f"toy-{key}", policy=f"toy-{key}-behaviour", seed=seed,
                                      dataset_id=f"toy-{key}",
                                      extra={"reward": f"modules.data.toy.toy_reward('{key}')"})
