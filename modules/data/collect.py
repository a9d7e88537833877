"""Collect transitions from a behaviour policy in a pybullet task, in shards spread over worker processes.

Determinism: a request for ``N`` transitions with ``seed`` is split into shards whose number depends on ``N``
alone (`shard_quotas`); shard ``s`` seeds its env resets and policy noise from ``SeedSequence([seed, s])`` and
runs whole episodes until it holds at least its quota. Shards are joined in order and cut to exactly ``N`` rows
(the last episode may be unfinished: it has no terminal/timeout mark). The result is identical whatever the number
of workers. Workers are spawned processes that step their own env; the policy is rebuilt in each from a small
`PolicySpec` (numpy only, no torch).
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..envs import env_spec, make_env
from .dataset import ARRAY_KEYS

__all__ = ["PolicySpec", "collect", "shard_quotas", "SHARD_SIZE", "CollectStats"]

SHARD_SIZE = 50_000
MIN_PARALLEL = 10_000  # from this size on, at least two shards (so two workers can share the work)


@dataclass(frozen=True)
class PolicySpec:
    """How to build a behaviour policy in any process: ``kind`` in {'expert', 'sac', 'random'}.

    ``deterministic=False`` samples: a SAC actor from its tanh-Gaussian, a pybullet expert with Gaussian noise of
    std ``noise_std`` (clipped to [-1, 1]; `behaviour.EXPERT_NOISE_STD` when None).
    """

    kind: str
    env: str
    path: str | None = None
    deterministic: bool = True
    noise_std: float | None = None

    @property
    def expert_noise_std(self) -> float:
        from .behaviour import EXPERT_NOISE_STD

        return EXPERT_NOISE_STD if self.noise_std is None else float(self.noise_std)

    def build(self, seed: int):
        """The policy: a callable ``obs: (B, obs_dim) -> actions: (B, act_dim)``."""
        from .behaviour import GaussianNoisePolicy, RandomPolicy, SACPolicy, load_expert

        spec = env_spec(self.env)
        if self.kind == "expert":
            if self.deterministic:
                return load_expert(spec)
            return GaussianNoisePolicy(load_expert(spec), std=self.expert_noise_std, seed=seed)
        if self.kind == "random":
            return RandomPolicy(spec.act_dim, seed=seed)
        if self.kind == "sac":
            assert self.path is not None
            return SACPolicy.load(Path(self.path), deterministic=self.deterministic, seed=seed, env=spec)
        raise ValueError(f"unknown policy kind {self.kind!r}; expected expert, sac or random")

    def describe(self) -> str:
        if self.kind == "sac":
            mode = "deterministic" if self.deterministic else "stochastic"
            return f"sac({Path(self.path or '').name}, {mode})"
        if self.kind == "expert":
            if self.deterministic:
                return "pybullet-expert-mlp(enjoy_TF_*_2017may)"
            return f"pybullet-expert-mlp(enjoy_TF_*_2017may, stochastic: +N(0, {self.expert_noise_std:g}^2), clipped)"
        return "uniform-random"


@dataclass
class CollectStats:
    """Throughput of a collection: env steps simulated (including the rows cut off), seconds, workers."""

    steps: int
    seconds: float
    workers: int
    shards: int

    @property
    def steps_per_s(self) -> float:
        return self.steps / max(self.seconds, 1e-9)


def shard_quotas(n: int) -> list[int]:
    """Split ``n`` transitions into shard quotas (depends on ``n`` only)."""
    shards = max(1, math.ceil(n / SHARD_SIZE))
    if n >= MIN_PARALLEL:
        shards = max(shards, 2)
    base, extra = divmod(n, shards)
    return [base + (1 if i < extra else 0) for i in range(shards)]


_COUNTER = None  # shared step counter in worker processes


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter
    # Ctrl-C is the parent's to handle (it terminates the pool): a worker killed by it while holding the task
    # queue's lock would leave Pool.terminate waiting for that lock forever
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_shard(policy: PolicySpec, seed: int, shard: int, quota: int,
               report: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Run whole episodes until ``quota`` rows are held; returns the six arrays (may exceed the quota)."""
    spec = env_spec(policy.env)
    ss = np.random.SeedSequence([int(seed), int(shard)])
    ep_seeds = np.random.default_rng(ss.spawn(1)[0])
    pi = policy.build(seed=int(ss.generate_state(1)[0]))
    env = make_env(spec, seed=None)
    cap = quota + spec.max_episode_steps
    obs = np.zeros((cap, spec.obs_dim), np.float32)
    nxt = np.zeros((cap, spec.obs_dim), np.float32)
    act = np.zeros((cap, spec.act_dim), np.float32)
    rew = np.zeros(cap, np.float32)
    term = np.zeros(cap, bool)
    tout = np.zeros(cap, bool)
    i = 0
    try:
        while i < quota:
            o, _ = env.reset(seed=int(ep_seeds.integers(0, 2**31 - 1)))
            start = i
            while True:
                a = pi(o[None])[0]  # every PolicySpec policy returns float32 actions in [-1, 1]
                o2, r, te, tr, _ = env.step(a)
                obs[i], act[i], rew[i], nxt[i] = o, a, r, o2
                term[i], tout[i] = bool(te), bool(tr and not te)
                i += 1
                o = o2
                if te or tr:
                    break
            if report is not None:
                report(i - start)
            elif _COUNTER is not None:
                with _COUNTER.get_lock():
                    _COUNTER.value += i - start
    finally:
        env.close()
    return {"observations": obs[:i], "actions": act[:i], "rewards": rew[:i], "next_observations": nxt[:i],
            "terminals": term[:i], "timeouts": tout[:i]}


def _mp_context():
    """'fork' where the platform has it (no re-import of the caller's __main__, fast start); else 'spawn'.

    Workers use numpy and pybullet only (never torch), so forking a parent that imported torch is safe.
    """
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def _bar(n: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=n, desc=desc, unit="step", disable=not progress, smoothing=0.1, dynamic_ncols=True)


def _shard_job(args: tuple) -> dict[str, np.ndarray]:
    return _run_shard(*args)


def collect(
    policy: PolicySpec,
    n: int,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> tuple[dict[str, np.ndarray], CollectStats]:
    """Collect exactly ``n`` transitions with ``policy``; returns the six arrays and throughput statistics.

    ``workers``: processes to use (default: ``min(2, os.cpu_count(), shards)``; 1 runs in this process).
    ``progress``: a tqdm bar counting env steps.
    """
    if n <= 0:
        raise ValueError(f"number of transitions must be positive, got {n}")
    quotas = shard_quotas(n)
    if workers is None:
        workers = min(2, os.cpu_count() or 1, len(quotas))
    workers = max(1, min(int(workers), len(quotas)))
    jobs = [(policy, seed, s, q) for s, q in enumerate(quotas)]
    t0 = time.perf_counter()
    parts: list[dict[str, np.ndarray]] = []
    if workers == 1:
        bar = _bar(n, desc or policy.describe(), progress)
        try:
            parts = [_run_shard(*job, report=lambda k: bar.update(max(0, min(k, n - bar.n)))) for job in jobs]
            bar.update(max(0, n - bar.n))
        finally:
            bar.close()
    else:
        ctx = _mp_context()
        counter = ctx.Value("q", 0)
        # the pool is started before the bar, so no tqdm monitor thread exists when the workers fork
        with ctx.Pool(workers, initializer=_init_worker, initargs=(counter,)) as pool:
            res = pool.map_async(_shard_job, jobs, chunksize=1)
            bar = _bar(n, desc or policy.describe(), progress)
            try:
                while not res.ready():
                    res.wait(0.25)
                    bar.update(max(0, min(counter.value, n) - bar.n))
                parts = res.get()
                bar.update(max(0, n - bar.n))
            finally:
                bar.close()
    seconds = time.perf_counter() - t0
    steps = sum(len(p["rewards"]) for p in parts)
    arrays = {k: np.concatenate([p[k] for p in parts], axis=0)[:n] for k in ARRAY_KEYS}
    return arrays, CollectStats(steps=steps, seconds=seconds, workers=workers, shards=len(quotas))
