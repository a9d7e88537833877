"""The pybullet locomotion tasks, seeded env construction, normalised scores and batched rollouts.

Tasks are named by short name (``hopper``, ``halfcheetah``, ``walker2d``, ``ant``) or by their gymnasium id
(``HopperBulletEnv-v0`` ...). Envs come from ``pybullet-envs-gymnasium``; the normalised score uses D4RL's bullet
reference returns: ``score = 100 * (R - R_min) / (R_max - R_min)``.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModulesError

__all__ = [
    "EnvSpec",
    "ENVS",
    "UnknownEnvError",
    "env_spec",
    "make_env",
    "normalized_score",
    "rollout",
    "rollout_lengths",
    "close_pooled_envs",
    "quiet_stdout",
]


class UnknownEnvError(ModulesError):
    """Raised for an env name that is neither a known short name nor a known gymnasium id."""


@dataclass(frozen=True)
class EnvSpec:
    """One locomotion task: names, dimensions, episode length, D4RL bullet references and SAC target return."""

    name: str
    gym_id: str
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    r_min: float
    r_max: float
    target_return: float


ENVS: dict[str, EnvSpec] = {
    "hopper": EnvSpec("hopper", "HopperBulletEnv-v0", 15, 3, 1000, 20.058972, 1441.8059623430963, 1000.0),
    "halfcheetah": EnvSpec("halfcheetah", "HalfCheetahBulletEnv-v0", 26, 6, 1000, -1275.766996, 2381.6725, 800.0),
    "walker2d": EnvSpec("walker2d", "Walker2DBulletEnv-v0", 22, 6, 1000, 16.523877, 1623.6476303317536, 1300.0),
    "ant": EnvSpec("ant", "AntBulletEnv-v0", 28, 8, 1000, 373.705955, 2650.495, 700.0),
}
_BY_GYM_ID = {s.gym_id.lower(): s for s in ENVS.values()}


def env_spec(env: str | EnvSpec) -> EnvSpec:
    """Look up a task by short name or gymnasium id (case-insensitive); raise `UnknownEnvError` listing known ones."""
    if isinstance(env, EnvSpec):
        return env
    key = str(env).strip().lower()
    if key in ENVS:
        return ENVS[key]
    if key in _BY_GYM_ID:
        return _BY_GYM_ID[key]
    known = ", ".join(f"{s.name} ({s.gym_id})" for s in ENVS.values())
    raise UnknownEnvError(f"unknown env {env!r}; known envs: {known}")


@contextlib.contextmanager
def quiet_stdout(fds: tuple[int, ...] = (1,)) -> Iterator[None]:
    """Silence C-level writes to the given file descriptors (default stdout).

    pybullet prints ``argv[0]=`` to stdout when a physics client starts and its build time to stderr on import.
    The descriptors are pointed at /dev/null for the duration; where that is impossible nothing is silenced.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(fd) for fd in fds]
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        _c_fflush()
        for fd, sv in zip(fds, saved, strict=True):
            os.dup2(sv, fd)
            os.close(sv)
        os.close(devnull)


def _c_fflush() -> None:
    """Flush C stdio buffers so text printed by C code goes where fd 1 points *now*."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        with quiet_stdout((1, 2)):
            import pybullet  # noqa: F401  (prints its build time on import)
            import pybullet_envs_gymnasium  # noqa: F401  (registers the *BulletEnv-v0 ids)
        _REGISTERED = True


def make_env(env: str | EnvSpec, seed: int | None = None, max_episode_steps: int | None = None):
    """Make a gymnasium env for a task (short name or gym id), already reset once with ``seed``.

    The pybullet physics client is created on the first reset; that reset is done here, with pybullet's console
    noise silenced. ``env.reset(seed=seed)`` afterwards is deterministic: the same seed gives the same episode
    under the same actions. Returns the gymnasium env (with its TimeLimit of 1000 steps unless overridden).
    """
    spec = env_spec(env)
    _register()
    import gymnasium as gym

    kwargs: dict[str, Any] = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    with quiet_stdout():
        e = gym.make(spec.gym_id, **kwargs)
        e.reset(seed=seed)
    if seed is not None:
        e.action_space.seed(seed)
    return e


def normalized_score(env: str | EnvSpec, returns: float | np.ndarray) -> float | np.ndarray:
    """D4RL bullet normalised score ``100 * (R - R_min) / (R_max - R_min)``; works on scalars and arrays."""
    spec = env_spec(env)
    r = np.asarray(returns, dtype=np.float64)
    out = 100.0 * (r - spec.r_min) / (spec.r_max - spec.r_min)
    return float(out) if out.ndim == 0 else out


PolicyFn = Callable[[np.ndarray], np.ndarray]

# env copies kept for reuse by rollouts with keep_envs=True, by (gym id, episode cap): creating a pybullet env (its
# physics client and scene) costs about as much as a hundred steps; every episode starts with a seeded reset
# (restoring the scene's saved state), so a reused copy plays the same episode as a fresh one
_ENV_POOL: dict[tuple[str, int], list[Any]] = {}


def close_pooled_envs() -> None:
    """Close the env copies kept for reuse (rollout(..., keep_envs=True)); done at exit too."""
    while _ENV_POOL:
        _, envs = _ENV_POOL.popitem()
        for e in envs:
            with contextlib.suppress(Exception):
                e.close()


def _take_envs(spec: EnvSpec, horizon: int, n: int, keep: bool) -> list[Any]:
    pooled = _ENV_POOL.get((spec.gym_id, horizon), []) if keep else []
    taken = [pooled.pop() for _ in range(min(n, len(pooled)))]
    return taken + [make_env(spec, seed=None, max_episode_steps=horizon) for _ in range(n - len(taken))]


def _give_back(spec: EnvSpec, horizon: int, envs: list[Any], keep: bool) -> None:
    if keep:
        if not _ENV_POOL:
            import atexit

            atexit.register(close_pooled_envs)
        _ENV_POOL.setdefault((spec.gym_id, horizon), []).extend(envs)
        return
    for e in envs:
        e.close()


def rollout(
    policy_fn: PolicyFn,
    env: str | EnvSpec,
    n_episodes: int,
    seed: int = 0,
    max_steps: int | None = None,
    n_envs: int | None = None,
    on_episode: Callable[[int, float], None] | None = None,
    keep_envs: bool = False,
) -> np.ndarray:
    """Run ``n_episodes`` episodes with env copies stepped in lockstep; return their undiscounted returns.

    ``policy_fn(obs) -> actions`` gets a batch ``obs: (n, obs_dim) float32`` of all live episodes and must return
    ``actions: (n, act_dim)``; it is called once per time step. Episode ``i`` is reset with seed ``seed + i``, so
    results do not depend on ``n_envs`` (default: ``min(n_episodes, 16)`` copies at a time). ``max_steps`` caps
    each episode (default: the task's 1000). Actions are clipped to the action space [-1, 1].
    ``on_episode(index, return)`` is called as each episode ends (progress reports). ``keep_envs``: keep the env
    copies afterwards for the next rollout of this process (``close_pooled_envs()`` closes them).
    Returns ``returns: (n_episodes,) float64`` in episode order.
    """
    return rollout_lengths(policy_fn, env, n_episodes, seed, max_steps, n_envs, on_episode, keep_envs)[0]


def rollout_lengths(
    policy_fn: PolicyFn,
    env: str | EnvSpec,
    n_episodes: int,
    seed: int = 0,
    max_steps: int | None = None,
    n_envs: int | None = None,
    on_episode: Callable[[int, float], None] | None = None,
    keep_envs: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """`rollout`, also counting environment steps: -> (returns (n_episodes,) float64, lengths (n_episodes,) int64),
    both in episode order."""
    spec = env_spec(env)
    if n_episodes <= 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    horizon = int(max_steps) if max_steps is not None else spec.max_episode_steps
    width = max(1, min(n_episodes, n_envs or 16))
    envs = _take_envs(spec, horizon, width, keep_envs)
    ok = False
    returns = np.zeros(n_episodes, dtype=np.float64)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    try:
        next_ep = 0
        slot_ep: list[int | None] = [None] * width
        obs = np.zeros((width, spec.obs_dim), dtype=np.float32)

        def start(slot: int) -> None:
            nonlocal next_ep
            if next_ep >= n_episodes:
                slot_ep[slot] = None
                return
            o, _ = envs[slot].reset(seed=seed + next_ep)
            obs[slot] = o
            slot_ep[slot] = next_ep
            next_ep += 1

        for s in range(width):
            start(s)
        while any(e is not None for e in slot_ep):
            live = [s for s in range(width) if slot_ep[s] is not None]
            acts = np.asarray(policy_fn(obs[live].copy()), dtype=np.float32)
            if acts.shape != (len(live), spec.act_dim):
                raise ValueError(
                    f"policy_fn returned actions of shape {acts.shape}, expected {(len(live), spec.act_dim)}"
                )
            acts = np.clip(acts, -1.0, 1.0)
            for a, s in zip(acts, live, strict=True):
                o, r, term, trunc, _ = envs[s].step(a)
                returns[slot_ep[s]] += float(r)
                lengths[slot_ep[s]] += 1
                obs[s] = o
                if term or trunc:
                    ep = slot_ep[s]
                    if on_episode is not None and ep is not None:
                        on_episode(ep, float(returns[ep]))
                    start(s)
        ok = True
    finally:  # a rollout that failed midway closes its copies rather than keep them
        _give_back(spec, horizon, envs, keep_envs and ok)
    return returns, lengths
