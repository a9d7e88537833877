"""Dataset ids and `make_dataset`: build any dataset of the project from registry packages alone.

Ids:

* ``<env>-bullet-<quality>`` with env in hopper, halfcheetah, walker2d, ant and quality in

  - ``random``: uniform random actions;
  - ``medium``: the shipped SAC actor (``modules/data/policies/<env>_sac_medium.safetensors``, trained with the
    reference protocol until its evaluation reached the task's target return) acting deterministically;
  - ``mixed``: the replay buffer of that SAC run (``<env>_sac_replay.npz``) when shipped; see `make_mixed`;
  - ``expert``: pybullet's shipped expert MLP (hopper, halfcheetah, ant);
  - ``medium-expert``: ``medium`` followed by ``expert``, each of ``transitions`` rows (D4RL's convention);
  - ``tiny``: a small set made in seconds for tests (expert policy where one exists, else random; 2,000 rows).

* ``toy-8gaussians``, ``toy-spiral``: 2D toy data with a known reward (`modules.data.toy`).

``transitions`` defaults to `DEFAULT_TRANSITIONS` (the reference used 1,000,000: pass it for full-size sets).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..envs import ENVS, UnknownEnvError, env_spec
from .behaviour import EXPERT_ENVS, policies_dir, shipped_sac_path
from .collect import PolicySpec, collect
from .dataset import OfflineDataset
from .errors import DatasetError
from .locomotion import sampling_of, travel_stats
from .toy import TOY_NAMES, make_toy_dataset

__all__ = [
    "QUALITIES",
    "DEFAULT_TRANSITIONS",
    "DatasetId",
    "parse_dataset_id",
    "known_dataset_ids",
    "make_dataset",
    "shipped_replay_path",
    "availability",
    "make_mixed",
]

QUALITIES = ("random", "medium", "mixed", "expert", "medium-expert", "tiny")
DEFAULT_TRANSITIONS: dict[str, int] = {
    "random": 100_000, "medium": 100_000, "expert": 100_000, "medium-expert": 100_000, "tiny": 2_000, "toy": 10_000,
}


@dataclass(frozen=True)
class DatasetId:
    """A parsed dataset id: ``kind`` 'bullet' (env, quality) or 'toy' (quality = toy name)."""

    kind: str
    env: str
    quality: str

    def __str__(self) -> str:
        return f"toy-{self.quality}" if self.kind == "toy" else f"{self.env}-bullet-{self.quality}"


def parse_dataset_id(dataset_id: str) -> DatasetId:
    """Parse ``<env>-bullet-<quality>`` or ``toy-<name>``; raise `DatasetError` naming what is wrong and the choices."""
    raw = str(dataset_id).strip().lower()
    if raw.startswith("toy-"):
        name = raw[4:]
        if name not in TOY_NAMES:
            raise DatasetError(
                f"unknown toy dataset {dataset_id!r}; known: {', '.join('toy-' + n for n in TOY_NAMES)}"
            )
        return DatasetId("toy", "toy", name)
    env, sep, quality = raw.partition("-bullet-")
    if not sep:
        raise DatasetError(
            f"bad dataset id {dataset_id!r}: expected '<env>-bullet-<quality>' (e.g. hopper-bullet-medium) or "
            f"toy-<name>; envs: {', '.join(ENVS)}; qualities: {', '.join(QUALITIES)}"
        )
    if env not in ENVS:
        raise DatasetError(f"unknown env {env!r} in dataset id {dataset_id!r}; known envs: {', '.join(ENVS)}")
    if quality not in QUALITIES:
        raise DatasetError(
            f"unknown quality {quality!r} in dataset id {dataset_id!r}; known qualities: {', '.join(QUALITIES)}"
        )
    return DatasetId("bullet", env, quality)


def known_dataset_ids() -> list[str]:
    """All ids `make_dataset` understands (some need shipped policies: see `availability`)."""
    ids = [f"{e}-bullet-{q}" for e in ENVS for q in QUALITIES]
    return ids + [f"toy-{n}" for n in TOY_NAMES]


def shipped_replay_path(env: str) -> Path:
    """``modules/data/policies/<env>_sac_replay.npz``: the replay buffer of the shipped SAC run (may be absent)."""
    return policies_dir() / f"{env_spec(env).name}_sac_replay.npz"


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sac_spec(env: str, dataset_id: str) -> PolicySpec:
    path = shipped_sac_path(env)
    if not path.is_file():
        raise DatasetError(
            f"cannot make {dataset_id!r}: no shipped SAC policy for {env!r} ({path} is missing). Train one with "
            f"`python -m modules.data.sac {env} --out runs/sac_{env}` and copy its actor_final.safetensors "
            f"(+ .json) to {path}"
        )
    return PolicySpec("sac", env, str(path), deterministic=True)


def _expert_spec(env: str, dataset_id: str) -> PolicySpec:
    if env not in EXPERT_ENVS:
        raise DatasetError(
            f"cannot make {dataset_id!r}: pybullet ships no working expert for {env!r} (its walker2d policy does "
            f"not transfer to the gymnasium port); experts exist for {', '.join(EXPERT_ENVS)}"
        )
    return PolicySpec("expert", env)


def _collected(did: DatasetId, spec: PolicySpec, n: int, seed: int, progress: bool,
               workers: int | None) -> OfflineDataset:
    arrays, stats = collect(spec, n, seed=seed, workers=workers, progress=progress, desc=str(did))
    extra: dict[str, Any] = {
        "quality": did.quality,
        "sampling": "uniform" if spec.kind == "random" else ("deterministic" if spec.deterministic else "stochastic"),
        "generator": {
            "policy_kind": spec.kind,
            "policy_file": Path(spec.path).name if spec.path else None,
            "policy_sha256": _file_sha256(Path(spec.path)) if spec.path else None,
            "transitions_requested": n,
            "shards": stats.shards,
            "workers": stats.workers,
            "env_steps": stats.steps,
            "seconds": round(stats.seconds, 2),
            "steps_per_s": round(stats.steps_per_s, 1),
        },
    }
    if spec.kind == "sac" and spec.path:
        side = Path(spec.path).with_suffix(".json")
        if side.is_file():
            import json

            info = json.loads(side.read_text())
            extra["generator"]["policy_training"] = {
                k: info.get(k) for k in ("steps", "reached_target", "target_return", "best_eval_mean")
            }
    return OfflineDataset.from_arrays(arrays, env=did.env, policy=spec.describe(), seed=seed,
                                      dataset_id=str(did), extra=extra)


def make_mixed(did: DatasetId, n: int | None, seed: int, progress: bool, workers: int | None) -> OfflineDataset:
    """``mixed``: the shipped SAC run's replay buffer, in collection order (first ``n`` rows when ``n`` is given).

    The buffer is fixed by the SAC run (seed 0), so ``seed`` only names the request. Where no buffer is shipped,
    the documented alternative is used: equal shares of rollouts of the run's intermediate checkpoints
    (``<env>_sac_ckpt_<k>.safetensors``, increasing returns) acting stochastically.
    """
    path = shipped_replay_path(did.env)
    if path.is_file():
        buf = OfflineDataset.load(path)
        m = len(buf) if n is None else min(int(n), len(buf))
        arrays = {k: v[:m] for k, v in buf.arrays().items()}
        extra = {"quality": "mixed", "generator": {"source": path.name, "buffer_size": len(buf),
                                                     "sac_run": buf.metadata.get("sac_steps")}}
        return OfflineDataset.from_arrays(arrays, env=did.env, policy="sac-replay-buffer", seed=seed,
                                          dataset_id=str(did), extra=extra)
    ckpts = sorted(policies_dir().glob(f"{did.env}_sac_ckpt_*.safetensors"))
    if not ckpts:
        raise DatasetError(
            f"cannot make {str(did)!r}: neither a shipped replay buffer ({path}) nor SAC checkpoints "
            f"({policies_dir()}/{did.env}_sac_ckpt_*.safetensors) exist for {did.env!r}"
        )
    total = DEFAULT_TRANSITIONS["medium"] if n is None else int(n)
    shares = [total // len(ckpts) + (1 if i < total % len(ckpts) else 0) for i in range(len(ckpts))]
    parts = []
    for i, (ck, share) in enumerate(zip(ckpts, shares, strict=True)):
        if share <= 0:
            continue
        spec = PolicySpec("sac", did.env, str(ck), deterministic=False)
        parts.append(_collected(did, spec, share, seed * 1000 + i, progress, workers))
    return OfflineDataset.concatenate(
        parts, str(did), policy="sac-checkpoints(stochastic)", seed=seed,
        extra={"quality": "mixed", "generator": {"source": [c.name for c in ckpts], "shares": shares}},
    )


def make_dataset(
    dataset_id: str,
    transitions: int | None = None,
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
) -> OfflineDataset:
    """Build the dataset ``dataset_id`` (see the module docstring) with ``transitions`` rows and ``seed``.

    Same id, transitions and seed give the same arrays (same ``metadata['sha256']``), whatever ``workers``.
    ``progress`` shows a tqdm bar; ``workers`` defaults to up to 2 processes for sets of 10,000 rows or more.
    Raises `DatasetError` for an unknown env or quality, or a missing shipped policy.

    The metadata also holds ``sampling`` (how actions were drawn: 'deterministic', 'stochastic', 'uniform') and
    ``travel_m``, the per-episode forward travel statistics (`modules.data.locomotion`; None for the toys).
    """
    ds = _make(dataset_id, transitions, seed, progress, workers)
    ds.metadata["sampling"] = sampling_of(ds.metadata)
    ds.metadata["travel_m"] = travel_stats(ds.arrays(), ds.metadata.get("env"))
    return ds


def _make(dataset_id: str, transitions: int | None, seed: int, progress: bool,
          workers: int | None) -> OfflineDataset:
    did = parse_dataset_id(dataset_id)
    if transitions is not None and int(transitions) <= 0:
        raise DatasetError(f"transitions must be a positive number, got {transitions}")
    if did.kind == "toy":
        n = int(transitions or DEFAULT_TRANSITIONS["toy"])
        return make_toy_dataset(did.quality, n=n, seed=seed)
    if did.quality == "mixed":
        return make_mixed(did, transitions, seed, progress, workers)
    n = int(transitions or DEFAULT_TRANSITIONS[did.quality])
    if did.quality == "random":
        return _collected(did, PolicySpec("random", did.env), n, seed, progress, workers)
    if did.quality == "medium":
        return _collected(did, _sac_spec(did.env, str(did)), n, seed, progress, workers)
    if did.quality == "expert":
        return _collected(did, _expert_spec(did.env, str(did)), n, seed, progress, workers)
    if did.quality == "tiny":
        spec = PolicySpec("expert", did.env) if did.env in EXPERT_ENVS else PolicySpec("random", did.env)
        return _collected(did, spec, n, seed, progress, workers)
    # medium-expert: the same arrays as medium and expert with this seed, one after the other.
    med = _collected(DatasetId("bullet", did.env, "medium"), _sac_spec(did.env, str(did)), n, seed, progress,
                     workers)
    exp = _collected(DatasetId("bullet", did.env, "expert"), _expert_spec(did.env, str(did)), n, seed, progress,
                     workers)
    return OfflineDataset.concatenate(
        [med, exp], str(did), policy=f"{med.metadata['policy']} + {exp.metadata['policy']}", seed=seed,
        extra={"quality": "medium-expert",
               "parts": {"medium": {k: med.metadata[k] for k in ("sha256", "size", "returns")},
                         "expert": {k: exp.metadata[k] for k in ("sha256", "size", "returns")}}},
    )


def availability(env: str) -> dict[str, bool]:
    """Which qualities can be made for ``env`` from what is shipped (policies, replay buffer)."""
    try:
        name = env_spec(env).name
    except UnknownEnvError as e:
        raise DatasetError(str(e)) from None
    sac = shipped_sac_path(name).is_file()
    mixed = shipped_replay_path(name).is_file() or any(policies_dir().glob(f"{name}_sac_ckpt_*.safetensors"))
    expert = name in EXPERT_ENVS
    return {"random": True, "medium": sac, "mixed": mixed, "expert": expert, "medium-expert": sac and expert,
            "tiny": True}

