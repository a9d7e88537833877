"""Measure behaviour policies the way the datasets need them judged: return, normalised score and forward travel.

`rollout_travel` runs episodes like `modules.envs.rollout` (env copies in lockstep, one batched policy call per
step, episode ``i`` reset with ``seed + i``, actions clipped to [-1, 1]) and also sums each episode's forward
travel from its observations (`modules.data.locomotion.step_travel`). `measure_policy` summarises 10 episodes
(mean, std, min, max of each). Run as a script to measure every policy that exists now::

    python -m modules.data.measure                    # all envs, shipped experts and SAC actors
    python -m modules.data.measure hopper --extra runs/x/actor.safetensors --json out.json

Policies are measured deterministically (the policy's mean action) and sampled (SAC's tanh-Gaussian, the
pybullet expert with `behaviour.EXPERT_NOISE_STD` noise), since the datasets are collected sampled.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..envs import ENVS, EnvSpec, env_spec, make_env, normalized_score
from .locomotion import step_travel

__all__ = ["MEASURE_SEED", "MEASURE_EPISODES", "rollout_travel", "measure_policy", "shipped_policies", "main"]

MEASURE_SEED = 20_000
"""Reset seeds ``MEASURE_SEED + i`` of the measurements recorded in shipped JSONs (held out from SAC's own
evaluation seeds, ``10_000 + 1000 seed``)."""
MEASURE_EPISODES = 10


def rollout_travel(policy_fn: Callable[[np.ndarray], np.ndarray], env: str | EnvSpec, n_episodes: int,
                   seed: int = MEASURE_SEED, n_envs: int | None = None) -> dict[str, np.ndarray]:
    """Run ``n_episodes`` episodes; returns ``returns``, ``travel_m`` (forward travel, metres) and ``lengths``,
    each ``(n_episodes,)`` in episode order. ``policy_fn: (n, obs_dim) float32 -> (n, act_dim)``."""
    spec = env_spec(env)
    width = max(1, min(n_episodes, n_envs or 16))
    envs = [make_env(spec, seed=None) for _ in range(width)]
    rets = np.zeros(n_episodes)
    travel = np.zeros(n_episodes)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    slot_ep: list[int | None] = [None] * width
    obs = np.zeros((width, spec.obs_dim), np.float32)
    next_ep = 0

    def start(slot: int) -> None:
        nonlocal next_ep
        if next_ep >= n_episodes:
            slot_ep[slot] = None
            return
        obs[slot] = envs[slot].reset(seed=seed + next_ep)[0]
        slot_ep[slot] = next_ep
        next_ep += 1

    try:
        for s in range(width):
            start(s)
        while any(e is not None for e in slot_ep):
            live = [s for s in range(width) if slot_ep[s] is not None]
            acts = np.clip(np.asarray(policy_fn(obs[live].copy()), dtype=np.float32), -1.0, 1.0)
            for a, s in zip(acts, live, strict=True):
                o2, r, term, trunc, _ = envs[s].step(a)
                ep = slot_ep[s]
                assert ep is not None
                rets[ep] += float(r)
                travel[ep] += float(step_travel(obs[s][None], np.asarray(o2, np.float32)[None])[0])
                lengths[ep] += 1
                obs[s] = o2
                if term or trunc:
                    start(s)
    finally:
        for e in envs:
            e.close()
    return {"returns": rets, "travel_m": travel, "lengths": lengths}


def _stats(x: np.ndarray, digits: int = 3) -> dict[str, float]:
    return {"mean": round(float(x.mean()), digits), "std": round(float(x.std()), digits),
            "min": round(float(x.min()), digits), "max": round(float(x.max()), digits)}


def measure_policy(policy_fn: Callable[[np.ndarray], np.ndarray], env: str | EnvSpec,
                   episodes: int = MEASURE_EPISODES, seed: int = MEASURE_SEED) -> dict[str, Any]:
    """Return, normalised score, forward travel (m) and episode length over ``episodes`` fixed-seed episodes:
    ``{"return": {mean, std, min, max}, "score": {...}, "travel_m": {...}, "length": {...}, "episodes", "seed"}``."""
    spec = env_spec(env)
    r = rollout_travel(policy_fn, spec, episodes, seed=seed)
    return {"env": spec.name, "episodes": int(episodes), "seed": int(seed),
            "return": _stats(r["returns"], 1), "score": _stats(np.asarray(normalized_score(spec, r["returns"])), 1),
            "travel_m": _stats(r["travel_m"], 2), "length": _stats(r["lengths"].astype(float), 1)}


def shipped_policies(env: str) -> list[tuple[str, Any]]:
    """(label, PolicySpec) of every behaviour policy for ``env`` that exists now, deterministic and sampled."""
    from .behaviour import EXPERT_ENVS, policies_dir, shipped_sac_expert_path, shipped_sac_path
    from .collect import PolicySpec

    out: list[tuple[str, Any]] = []
    if env in EXPERT_ENVS:
        out += [("pybullet-expert det", PolicySpec("expert", env, deterministic=True)),
                ("pybullet-expert sampled", PolicySpec("expert", env, deterministic=False))]
    for path in (shipped_sac_path(env), shipped_sac_expert_path(env),
                 *sorted(policies_dir().glob(f"{env}_sac_ckpt_*.safetensors"))):
        if path.is_file():
            out += [(f"{path.stem} det", PolicySpec("sac", env, str(path), deterministic=True)),
                    (f"{path.stem} sampled", PolicySpec("sac", env, str(path), deterministic=False))]
    return out


def _fmt(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['mean']:.{digits}f} +- {s['std']:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Measure behaviour policies: return, normalised score, travel.")
    p.add_argument("envs", nargs="*", default=list(ENVS))
    p.add_argument("--episodes", type=int, default=MEASURE_EPISODES)
    p.add_argument("--seed", type=int, default=MEASURE_SEED)
    p.add_argument("--extra", action="append", default=[], help="another SAC actor (.safetensors) to measure; "
                   "its env is the first one named")
    p.add_argument("--json", default=None, help="write the measurements here")
    a = p.parse_args(argv)
    from .collect import PolicySpec

    rows = []
    for env in a.envs:
        name = env_spec(env).name
        pols = shipped_policies(name)
        if name == env_spec(a.envs[0]).name:
            for x in a.extra:
                pols += [(f"{Path(x).stem} det", PolicySpec("sac", name, x, deterministic=True)),
                         (f"{Path(x).stem} sampled", PolicySpec("sac", name, x, deterministic=False))]
        for label, spec in pols:
            m = measure_policy(spec.build(seed=a.seed), name, a.episodes, a.seed)
            m["policy"] = label
            rows.append(m)
            print(f"{name:12} {label:42} return {_fmt(m['return'])}  score {_fmt(m['score'])}  travel "
                  f"{_fmt(m['travel_m'], 2)} m  length {m['length']['mean']:.0f}", flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
