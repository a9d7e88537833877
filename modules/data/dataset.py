"""`OfflineDataset`: aligned per-transition arrays plus a metadata record, saved as a plain ``.npz``.

On-disk format (readable with numpy alone, ``np.load(path, allow_pickle=False)``):

=====================  ==================  =========  =================================================
key                    shape               dtype      meaning
=====================  ==================  =========  =================================================
``observations``       (N, obs_dim)        float32    s_t
``actions``            (N, act_dim)        float32    a_t
``rewards``            (N,)                float32    r_t = r(s_t, a_t)   (row-aligned, no D4RL shift)
``next_observations``  (N, obs_dim)        float32    s_{t+1}
``terminals``          (N,)                bool       episode ended in a true terminal state at s_{t+1}
``timeouts``           (N,)                bool       episode cut by the time limit after this step
``metadata``           ()                  str (<U)   JSON text, see `build_metadata`
=====================  ==================  =========  =================================================

An episode ends at row i when ``terminals[i] or timeouts[i]``. Rows after the last such mark form an unfinished
episode (a dataset cut at its size); it is kept but left out of the return statistics.

``metadata["sha256"]`` is a content hash of the six arrays (`content_sha256`), independent of zip timestamps:
the same generator, settings and seed give the same hash.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..atomic import fsync_dir
from ..envs import UnknownEnvError, env_spec, normalized_score
from .errors import DatasetError

__all__ = [
    "ARRAY_KEYS",
    "FORMAT",
    "OfflineDataset",
    "build_metadata",
    "content_sha256",
    "episode_returns",
    "episode_bounds",
    "return_stats",
    "validate_arrays",
]

FORMAT = "mdhub-offline-dataset/1"
ARRAY_KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
_FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
_BOOL_KEYS = ("terminals", "timeouts")
_NDIM = {"observations": 2, "actions": 2, "rewards": 1, "next_observations": 2, "terminals": 1, "timeouts": 1}


def validate_arrays(arrays: Mapping[str, Any], source: str, coerce: bool = False) -> dict[str, np.ndarray]:
    """Check keys, ranks, lengths and dtypes of the six arrays; return them (cast when ``coerce``).

    ``source`` names the file or origin in error messages. With ``coerce`` floats are cast to float32 and 0/1
    flags to bool; without it a wrong dtype is an error (used when loading our own files).
    """
    missing = [k for k in ARRAY_KEYS if k not in arrays]
    if missing:
        found = sorted(str(k) for k in arrays.keys())
        raise DatasetError(f"{source}: missing key(s) {missing}; expected {list(ARRAY_KEYS)}, found {found}")
    out: dict[str, np.ndarray] = {}
    for k in ARRAY_KEYS:
        a = np.asarray(arrays[k])
        if a.ndim != _NDIM[k]:
            want = "(N, dim)" if _NDIM[k] == 2 else "(N,)"
            raise DatasetError(f"{source}: key {k!r} has shape {a.shape}, expected {want}")
        if k in _FLOAT_KEYS:
            if a.dtype != np.float32:
                if coerce and np.issubdtype(a.dtype, np.number):
                    a = a.astype(np.float32)
                else:
                    raise DatasetError(f"{source}: key {k!r} has dtype {a.dtype}, expected float32")
        else:
            if a.dtype != np.bool_:
                if coerce and (np.issubdtype(a.dtype, np.number)) and np.isin(a, (0, 1)).all():
                    a = a.astype(bool)
                else:
                    raise DatasetError(f"{source}: key {k!r} has dtype {a.dtype}, expected bool")
        out[k] = a
    n = len(out["observations"])
    for k in ARRAY_KEYS:
        if len(out[k]) != n:
            raise DatasetError(
                f"{source}: key {k!r} has {len(out[k])} rows, expected {n} (the length of 'observations')"
            )
    if out["next_observations"].shape[1] != out["observations"].shape[1]:
        raise DatasetError(
            f"{source}: key 'next_observations' has shape {out['next_observations'].shape}, "
            f"expected (N, {out['observations'].shape[1]}) like 'observations'"
        )
    for k in _FLOAT_KEYS:
        if not np.isfinite(out[k]).all():
            raise DatasetError(f"{source}: key {k!r} contains NaN or inf values")
    return out


def content_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the six arrays in `ARRAY_KEYS` order: for each, name, dtype, shape, then C-order bytes."""
    h = hashlib.sha256()
    for k in ARRAY_KEYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(b"\0" + a.dtype.str.encode() + b"\0" + json.dumps(list(a.shape)).encode() + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> list[tuple[int, int]]:
    """Half-open row ranges ``[start, end)`` of the finished episodes (the unfinished tail is left out)."""
    ends = np.flatnonzero(np.asarray(terminals) | np.asarray(timeouts))
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, dtype=np.int64)
    return [(int(s), int(e) + 1) for s, e in zip(starts, ends, strict=True)]


def episode_returns(rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Undiscounted return of each finished episode: ``(n_episodes,) float64``."""
    ends = np.flatnonzero(np.asarray(terminals) | np.asarray(timeouts))
    if len(ends) == 0:
        return np.zeros(0, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(np.asarray(rewards, dtype=np.float64))])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return csum[ends + 1] - csum[starts]


def return_stats(returns: npt.ArrayLike) -> dict[str, float | int]:
    """mean / std / min / max / count of episode returns (zeros and count 0 when there are none)."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) == 0:
        return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "count": 0}
    return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()), "max": float(r.max()),
            "count": int(len(r))}


def build_metadata(
    arrays: Mapping[str, np.ndarray],
    env: str,
    policy: str,
    seed: int | None,
    dataset_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata record: ids, policy, seed, size, dims, return statistics, normalised scores, content sha256.

    ``env`` is a task short name / gym id, or any other name (toy data) for which no normalised score exists.
    """
    try:
        spec = env_spec(env)
        env_name, gym_id = spec.name, spec.gym_id
    except UnknownEnvError:
        spec, env_name, gym_id = None, env, None
    rets = episode_returns(arrays["rewards"], arrays["terminals"], arrays["timeouts"])
    meta: dict[str, Any] = {
        "format": FORMAT,
        "dataset_id": dataset_id,
        "env": env_name,
        "gym_id": gym_id,
        "policy": policy,
        "seed": seed,
        "size": int(len(arrays["observations"])),
        "obs_dim": int(arrays["observations"].shape[1]),
        "act_dim": int(arrays["actions"].shape[1]),
        "returns": return_stats(rets),
        "normalized_scores": None,
        "sha256": content_sha256(arrays),
    }
    if spec is not None:
        ns = normalized_score(spec, rets) if len(rets) else np.zeros(0)
        stats = return_stats(ns)
        meta["normalized_scores"] = {k: stats[k] for k in ("mean", "std", "min", "max")}
    if extra:
        meta.update(dict(extra))
    return meta


@dataclass
class OfflineDataset:
    """Aligned transitions of an offline RL dataset.

    Shapes: ``observations, next_observations: (N, obs_dim) float32``; ``actions: (N, act_dim) float32``;
    ``rewards: (N,) float32``; ``terminals, timeouts: (N,) bool``. ``metadata`` is a JSON-able dict
    (see `build_metadata`); construct with ``OfflineDataset.from_arrays`` to have it filled in.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checked = validate_arrays(self.arrays(), source=str(self.metadata.get("dataset_id") or "dataset"),
                                  coerce=True)
        for k, v in checked.items():
            setattr(self, k, v)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        env: str,
        policy: str,
        seed: int | None,
        dataset_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        source: str = "arrays",
    ) -> OfflineDataset:
        """Validate (and cast) ``arrays`` and attach freshly computed metadata."""
        checked = validate_arrays(arrays, source=source, coerce=True)
        return cls(**checked, metadata=build_metadata(checked, env, policy, seed, dataset_id, extra))

    @classmethod
    def concatenate(cls, parts: list[OfflineDataset], dataset_id: str | None, policy: str,
                    seed: int | None, extra: Mapping[str, Any] | None = None) -> OfflineDataset:
        """Join datasets of the same task row-wise (e.g. medium + expert); an unfinished tail of a part is closed
        with a timeout so episodes do not run across parts."""
        if not parts:
            raise DatasetError("concatenate: no datasets given")
        env = parts[0].metadata.get("env") or "unknown"
        arrays: dict[str, list[np.ndarray]] = {k: [] for k in ARRAY_KEYS}
        for p in parts:
            a = p.arrays()
            if len(a["timeouts"]) and not (a["terminals"][-1] or a["timeouts"][-1]):
                a["timeouts"] = a["timeouts"].copy()
                a["timeouts"][-1] = True
            for k in ARRAY_KEYS:
                arrays[k].append(a[k])
        joined = {k: np.concatenate(v, axis=0) for k, v in arrays.items()}
        return cls.from_arrays(joined, env, policy, seed, dataset_id, extra, source=f"concatenate({dataset_id})")

    # ----------------------------------------------------------------- views
    def __len__(self) -> int:
        return int(len(self.observations))

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def sha256(self) -> str:
        """Content hash of the arrays (recomputed; compare with ``metadata['sha256']``)."""
        return content_sha256(self.arrays())

    def arrays(self) -> dict[str, np.ndarray]:
        """The six arrays by name (no copies)."""
        return {k: getattr(self, k) for k in ARRAY_KEYS}

    def episode_returns(self) -> np.ndarray:
        """Returns of the finished episodes: ``(n_episodes,) float64``."""
        return episode_returns(self.rewards, self.terminals, self.timeouts)

    def episode_bounds(self) -> list[tuple[int, int]]:
        """``[start, end)`` rows of each finished episode."""
        return episode_bounds(self.terminals, self.timeouts)

    # ----------------------------------------------------------------- files
    def save(self, path: str | Path, compress: bool = True) -> Path:
        """Write to ``path`` (``.npz``) atomically: a temp file in the same folder (fsynced), then ``os.replace``,
        then an fsync of the folder so the rename survives a crash. A reader sees the old file or the new one.

        ``metadata['sha256']`` and ``metadata['size']`` are (re)set from the arrays. Returns the path.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.metadata)
        meta.setdefault("format", FORMAT)
        meta["sha256"] = self.sha256
        meta["size"] = len(self)
        self.metadata = meta
        payload: dict[str, Any] = {**self.arrays(), "metadata": np.array(json.dumps(meta, sort_keys=True))}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                (np.savez_compressed if compress else np.savez)(f, **payload)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        fsync_dir(path.parent)
        return path

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> OfflineDataset:
        """Read a file written by `save`; check keys, shapes, dtypes and (with ``verify``) the content sha256.

        Raises `DatasetError` naming the file and the problem for a missing, truncated or foreign file.
        """
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such dataset file")
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
                if "metadata" not in keys:
                    raise DatasetError(
                        f"{path}: missing key 'metadata'; expected {list(ARRAY_KEYS) + ['metadata']}, "
                        f"found {sorted(keys)}"
                    )
                missing = [k for k in ARRAY_KEYS if k not in keys]
                if missing:
                    raise DatasetError(
                        f"{path}: missing key(s) {missing}; expected {list(ARRAY_KEYS) + ['metadata']}, "
                        f"found {sorted(keys)}"
                    )
                arrays = {k: z[k] for k in ARRAY_KEYS}
                raw_meta = z["metadata"]
        except DatasetError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
            raise DatasetError(f"{path}: not a readable dataset file (corrupted or not an .npz): {e}") from None
        try:
            meta = json.loads(str(raw_meta))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (ValueError, TypeError) as e:
            raise DatasetError(f"{path}: key 'metadata' is not a JSON object: {e}") from None
        checked = validate_arrays(arrays, source=str(path), coerce=False)
        if verify and meta.get("sha256"):
            got = content_sha256(checked)
            if got != meta["sha256"]:
                raise DatasetError(
                    f"{path}: content sha256 {got[:16]}... does not match metadata sha256 {meta['sha256'][:16]}... "
                    "(the file was modified or is corrupted)"
                )
        return cls(**checked, metadata=meta)
