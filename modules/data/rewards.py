"""Registered reward functions of (obs, action, next_obs) for relabelling a dataset (`hub.datasets.relabel`).

A reward is code declared once in `REWARDS`, never text from a card or a file: a name (with an optional
parameter, ``target-speed:1.5``) picks an entry of this table. Each entry says which datasets it applies to.

Definitions (v: the torso's speed towards the walk target in m/s, averaged over the step from ``obs`` and
``next_obs``, see `modules.data.locomotion`; a: the action, n its dimension):

* ``forward``: the task's own reward as far as the observations allow:
  ``alive(next_obs) + v - 2 mean|a * joint_speed(next_obs)| - 0.1 mean(a^2) - 0.1 (joints at their limit)``.
  pybullet's progress term is the speed of the mean x of all body parts, which the observations do not hold; the
  torso speed stands in for it. Over an episode the two integrate to nearly the same distance, step by step they
  differ (see docs/data.md for the measured gap).
* ``backward``: the same with the progress term negated (``alive - v + costs``): running backwards is rewarded.
* ``target-speed:V``: ``-|v - V|`` (V in m/s, a finite number with ``|V| <= 16``, the observations' clip).
* ``energy``: ``-sum(a^2)`` over the action's dimensions (any dataset, the toys included).

The terminals and timeouts of the source are kept. With a reward that is never positive (``target-speed``,
``energy``) an episode that ends early collects less penalty: falling is not punished by these rewards alone.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import DatasetError
from .locomotion import Layout, alive, forward_speed

__all__ = ["RewardError", "RewardFn", "REWARDS", "ParsedReward", "parse_reward", "reward_names", "compute_reward"]

MAX_SPEED = 5.0 / 0.3  # the observations clip 0.3 v to +-5


class RewardError(DatasetError):
    """An unknown reward name, a malformed parameter, or a reward that does not apply to a dataset."""


# fn(layout or None, obs, actions, next_obs, parameter or None) -> rewards (N,) float64
RewardCall = Callable[[Layout | None, np.ndarray, np.ndarray, np.ndarray, float | None], np.ndarray]


@dataclass(frozen=True)
class RewardFn:
    """One registered reward: its name, its parameter (name and meaning, or None), whether it needs the walker
    observations, its definition in words and the function."""

    name: str
    definition: str
    fn: RewardCall
    param: str | None = None
    needs_locomotion: bool = True

    @property
    def usage(self) -> str:
        return f"{self.name}:{self.param}" if self.param else self.name


def _speed(obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    return 0.5 * (forward_speed(obs) + forward_speed(next_obs))


def _costs(lay: Layout, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """pybullet's electricity, stall-torque and joints-at-limit costs (all from the state reached)."""
    a = np.asarray(act, dtype=np.float64)
    j = np.asarray(next_obs, dtype=np.float64)[:, lay.joints]
    pos, speed = j[:, 0::2], j[:, 1::2]
    electricity = -2.0 * np.abs(a * speed).mean(1) - 0.1 * np.square(a).mean(1)
    at_limit = -0.1 * (np.abs(pos) > 0.99).sum(1)
    return np.asarray(electricity + at_limit, dtype=np.float64)


def _forward(lay: Layout | None, obs: np.ndarray, act: np.ndarray, nxt: np.ndarray, _: float | None) -> np.ndarray:
    assert lay is not None
    return alive(lay, nxt) + lay.progress_scale * _speed(obs, nxt) + _costs(lay, act, nxt)


def _backward(lay: Layout | None, obs: np.ndarray, act: np.ndarray, nxt: np.ndarray, _: float | None) -> np.ndarray:
    assert lay is not None
    return alive(lay, nxt) - lay.progress_scale * _speed(obs, nxt) + _costs(lay, act, nxt)


def _target_speed(lay: Layout | None, obs: np.ndarray, act: np.ndarray, nxt: np.ndarray,
                  v: float | None) -> np.ndarray:
    assert v is not None
    return np.asarray(-np.abs(_speed(obs, nxt) - v), dtype=np.float64)


def _energy(lay: Layout | None, obs: np.ndarray, act: np.ndarray, nxt: np.ndarray, _: float | None) -> np.ndarray:
    return np.asarray(-np.square(np.asarray(act, dtype=np.float64)).sum(1), dtype=np.float64)


REWARDS: dict[str, RewardFn] = {r.name: r for r in (
    RewardFn("forward", "the task's own reward: alive + forward speed - electricity and joint-limit costs "
             "(torso speed for the body's)", _forward),
    RewardFn("backward", "alive - forward speed - the same costs (run backwards)", _backward),
    RewardFn("target-speed", "-|v - V|, v the forward speed in m/s", _target_speed, param="V"),
    RewardFn("energy", "-sum(a^2) over the action's dimensions", _energy, needs_locomotion=False),
)}


def reward_names() -> str:
    """'forward, backward, target-speed:V, energy' (for errors and help texts)."""
    return ", ".join(r.usage for r in REWARDS.values())


@dataclass(frozen=True)
class ParsedReward:
    """A reward picked from `REWARDS` with its parameter; ``name`` is canonical (``target-speed:1.5``)."""

    reward: RewardFn
    param: float | None

    @property
    def name(self) -> str:
        return self.reward.name if self.param is None else f"{self.reward.name}:{self.param:g}"


def parse_reward(text: str) -> ParsedReward:
    """``NAME`` or ``NAME:PARAM`` -> a registered reward; `RewardError` names what is wrong and the known rewards."""
    raw = str(text).strip()
    name, sep, arg = raw.partition(":")
    reward = REWARDS.get(name.lower())
    if reward is None:
        raise RewardError(f"unknown reward {text!r}; known rewards: {reward_names()}")
    if reward.param is None:
        if sep:
            raise RewardError(f"reward {reward.name!r} takes no parameter, got {text!r}")
        return ParsedReward(reward, None)
    if not sep or not arg.strip():
        raise RewardError(f"reward {reward.name!r} needs a parameter: {reward.usage} (e.g. {reward.name}:1.5)")
    try:
        value = float(arg)
    except ValueError:
        raise RewardError(f"reward {text!r}: parameter {reward.param} must be a number (m/s), got {arg!r}") from None
    if not math.isfinite(value) or abs(value) > MAX_SPEED:
        raise RewardError(f"reward {text!r}: parameter {reward.param} must be finite and within "
                          f"+-{MAX_SPEED:.1f} m/s (what the observations can show), got {arg!r}")
    return ParsedReward(reward, value + 0.0)


def compute_reward(reward: ParsedReward, layout: Layout | None, obs: np.ndarray, actions: np.ndarray,
                   next_obs: np.ndarray, dataset: str = "dataset") -> np.ndarray:
    """The rewards of every transition, ``(N,) float32``. ``layout`` is the dataset's walker layout
    (`modules.data.locomotion.layout_for`), None when its observations are not a walker's state."""
    if reward.reward.needs_locomotion and layout is None:
        raise RewardError(f"reward {reward.name!r} does not apply to {dataset}: it needs the observations of a "
                          "pybullet walker task (forward speed at obs[3]); rewards for any dataset: "
                          + ", ".join(r.usage for r in REWARDS.values() if not r.needs_locomotion))
    out = reward.reward.fn(layout, obs, actions, next_obs, reward.param)
    out = np.asarray(out, dtype=np.float32)
    if out.shape != (len(obs),) or not np.isfinite(out).all():
        raise RewardError(f"reward {reward.name!r} gave {out.shape} values (finite: {bool(np.isfinite(out).all())}) "
                          f"for {len(obs)} transitions of {dataset}")
    return out
