"""Dataset ids and `make_dataset`: build any dataset of the project from registry packages alone.

Ids:

* ``<env>-bullet-<quality>`` with env in hopper, halfcheetah, walker2d, ant and quality in

  - ``random``: uniform random actions;
  - ``medium``: the shipped SAC actor (``modules/data/policies/<env>_sac_medium.safetensors``) **sampled** from
    its tanh-Gaussian, as D4RL's MuJoCo sets were collected;
  - ``expert``: the expert policy, sampled: a shipped SAC expert (``<env>_sac_expert.safetensors``) where there is
    one, else pybullet's shipped expert MLP (hopper, halfcheetah, ant) with Gaussian action noise of std
    `behaviour.EXPERT_NOISE_STD`, clipped to [-1, 1];
  - ``medium-expert``: ``medium`` followed by ``expert`` (same seed), each of ``transitions`` rows (D4RL's
    convention: half medium, half expert);
  - ``medium-det``, ``expert-det``, ``medium-expert-det``: the same policies acting deterministically (SAC's
    ``tanh(mean)``, the expert's output): one action per state;
  - ``medium-replay``: the replay buffer of the SAC run that produced the medium actor, up to the point where it
    was saved (``<env>_sac_replay.npz``; first ``transitions`` rows when given); see `make_replay`;
  - ``mixed``: the older name of ``medium-replay`` (the same rows);
  - ``tiny``: a small set made in seconds for tests (deterministic expert where one exists, else random; 2,000 rows).

* ``toy-8gaussians``, ``toy-spiral``: 2D toy data with a known reward (`modules.data.toy`).

``transitions`` defaults to `DEFAULT_TRANSITIONS` (the reference used 1,000,000: pass it for full-size sets).
The metadata's ``sampling`` says how actions were drawn: 'stochastic', 'deterministic' or 'uniform'.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..envs import ENVS, UnknownEnvError, env_spec
from .behaviour import EXPERT_ENVS, policies_dir, shipped_sac_expert_path, shipped_sac_path
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
    "make_replay",
    "DET_SUFFIX",
    "SAMPLED_QUALITIES",
]

DET_SUFFIX = "-det"
SAMPLED_QUALITIES = ("medium", "expert", "medium-expert")
"""Collected by sampling the policy; ``<quality>-det`` is the deterministic variant."""
QUALITIES = ("random", "medium", "mixed", "expert", "medium-expert", "medium-replay", "tiny") + tuple(
    q + DET_SUFFIX for q in SAMPLED_QUALITIES)
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


def _sac_spec(env: str, dataset_id: str, deterministic: bool) -> PolicySpec:
    path = shipped_sac_path(env)
    if not path.is_file():
        raise DatasetError(
            f"cannot make {dataset_id!r}: no shipped SAC policy for {env!r} ({path} is missing). Train one with "
            f"`python -m modules.data.sac {env} --out runs/sac_{env}` and copy its actor_final.safetensors "
            f"(+ .json) to {path}"
        )
    return PolicySpec("sac", env, str(path), deterministic=deterministic)


def _expert_spec(env: str, dataset_id: str, deterministic: bool) -> PolicySpec:
    """A shipped SAC expert (``<env>_sac_expert.safetensors``) when there is one, else pybullet's expert MLP."""
    sac = shipped_sac_expert_path(env)
    if sac.is_file():
        return PolicySpec("sac", env, str(sac), deterministic=deterministic)
    if env not in EXPERT_ENVS:
        raise DatasetError(
            f"cannot make {dataset_id!r}: no expert policy for {env!r}: pybullet ships none that works (its "
            f"walker2d policy does not transfer to the gymnasium port) and {sac.name} is not in {policies_dir()}; "
            f"experts exist for {', '.join(EXPERT_ENVS)}"
        )
    return PolicySpec("expert", env, deterministic=deterministic)


def _collected(did: DatasetId, spec: PolicySpec, n: int, seed: int, progress: bool,
               workers: int | None) -> OfflineDataset:
    arrays, stats = collect(spec, n, seed=seed, workers=workers, progress=progress, desc=str(did))
    extra: dict[str, Any] = {
        "quality": did.quality,
        "sampling": "uniform" if spec.kind == "random" else ("deterministic" if spec.deterministic else "stochastic"),
        "action_noise": _action_noise(spec),
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
            keys = ("steps", "step", "why", "reached_target", "target_return", "best_eval_mean", "reference_travel_m")
            training = {k: info[k] for k in keys if k in info}
            measured = info.get("measured")
            if isinstance(measured, dict):  # the travel-selected actors (modules/data/sac_travel.py)
                training["measured_travel_m"] = {mode: (m.get("travel_m") or {}).get("mean")
                                                 for mode, m in measured.items() if isinstance(m, dict)}
            extra["generator"]["policy_training"] = training
    return OfflineDataset.from_arrays(arrays, env=did.env, policy=spec.describe(), seed=seed,
                                      dataset_id=str(did), extra=extra)


def _action_noise(spec: PolicySpec) -> dict[str, Any] | None:
    """How a sampled policy's actions were drawn (None when deterministic or uniform)."""
    if spec.kind == "random" or spec.deterministic:
        return None
    if spec.kind == "sac":
        return {"kind": "tanh-gaussian", "definition": "tanh(mean + exp(log_std) * eps), eps ~ N(0, I)"}
    return {"kind": "gaussian", "std": spec.expert_noise_std, "clip": [-1.0, 1.0],
            "definition": "clip(expert(s) + std * eps, -1, 1), eps ~ N(0, I)"}


def make_replay(did: DatasetId, n: int | None, seed: int) -> OfflineDataset | None:
    """``medium-replay`` (and its older name ``mixed``): the shipped replay buffer ``<env>_sac_replay.npz`` of the
    SAC run that produced the medium actor, in collection order, up to the medium point (the buffer's
    ``medium_step`` metadata when recorded, else the whole file, which the shipped files already are), then the
    first ``n`` rows when ``n`` is given. None when no buffer is shipped. The buffer is fixed by the SAC run, so
    ``seed`` only names the request."""
    path = shipped_replay_path(did.env)
    if not path.is_file():
        return None
    buf = OfflineDataset.load(path)
    stop = buf.metadata.get("medium_step")
    m = len(buf) if not isinstance(stop, int) else min(len(buf), stop)
    if n is not None:
        m = min(int(n), m)
    arrays = {k: v[:m] for k, v in buf.arrays().items()}
    extra = {"quality": did.quality, "sampling": "stochastic",
             "generator": {"source": path.name, "buffer_size": len(buf), "medium_step": stop,
                           "sac_run": buf.metadata.get("sac_steps")}}
    return OfflineDataset.from_arrays(arrays, env=did.env, policy="sac-replay-buffer", seed=seed,
                                      dataset_id=str(did), extra=extra)


def make_mixed(did: DatasetId, n: int | None, seed: int, progress: bool, workers: int | None) -> OfflineDataset:
    """``mixed``: the shipped SAC run's replay buffer, in collection order (first ``n`` rows when ``n`` is given).

    The buffer is fixed by the SAC run (seed 0), so ``seed`` only names the request. Where no buffer is shipped,
    the documented alternative is used: equal shares of rollouts of the run's intermediate checkpoints
    (``<env>_sac_ckpt_<k>.safetensors``, increasing returns) acting stochastically.
    """
    path = shipped_replay_path(did.env)
    replay = make_replay(did, n, seed)
    if replay is not None:
        return replay
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
    if did.quality == "medium-replay":
        replay = make_replay(did, transitions, seed)
        if replay is None:
            raise DatasetError(
                f"cannot make {str(did)!r}: no replay buffer of a SAC run is shipped for {did.env!r} "
                f"({shipped_replay_path(did.env)} is missing)"
            )
        return replay
    det = did.quality.endswith(DET_SUFFIX)
    quality = did.quality.removesuffix(DET_SUFFIX)
    n = int(transitions or DEFAULT_TRANSITIONS[quality])
    if quality == "random":
        return _collected(did, PolicySpec("random", did.env), n, seed, progress, workers)
    if quality == "medium":
        return _collected(did, _sac_spec(did.env, str(did), det), n, seed, progress, workers)
    if quality == "expert":
        return _collected(did, _expert_spec(did.env, str(did), det), n, seed, progress, workers)
    if quality == "tiny":
        spec = PolicySpec("expert", did.env) if did.env in EXPERT_ENVS else PolicySpec("random", did.env)
        return _collected(did, spec, n, seed, progress, workers)
    # medium-expert(-det): the same arrays as medium(-det) and expert(-det) with this seed, one after the other.
    suffix = DET_SUFFIX if det else ""
    med = _collected(DatasetId("bullet", did.env, "medium" + suffix), _sac_spec(did.env, str(did), det), n, seed,
                     progress, workers)
    exp = _collected(DatasetId("bullet", did.env, "expert" + suffix), _expert_spec(did.env, str(did), det), n,
                     seed, progress, workers)
    return OfflineDataset.concatenate(
        [med, exp], str(did), policy=f"{med.metadata['policy']} + {exp.metadata['policy']}", seed=seed,
        extra={"quality": did.quality, "sampling": "deterministic" if det else "stochastic",
               "parts": {name: {**{k: part.metadata[k] for k in ("sha256", "size", "returns", "policy")},
                                "travel_m": travel_stats(part.arrays(), did.env)}
                         for name, part in (("medium", med), ("expert", exp))}},
    )


def availability(env: str) -> dict[str, bool]:
    """Which qualities can be made for ``env`` from what is shipped (policies, replay buffer)."""
    try:
        name = env_spec(env).name
    except UnknownEnvError as e:
        raise DatasetError(str(e)) from None
    sac = shipped_sac_path(name).is_file()
    replay = shipped_replay_path(name).is_file()
    mixed = replay or any(policies_dir().glob(f"{name}_sac_ckpt_*.safetensors"))
    expert = name in EXPERT_ENVS or shipped_sac_expert_path(name).is_file()
    out = {"random": True, "medium": sac, "mixed": mixed, "expert": expert, "medium-expert": sac and expert,
           "medium-replay": replay, "tiny": True}
    for q in SAMPLED_QUALITIES:
        out[q + DET_SUFFIX] = out[q]
    return out

