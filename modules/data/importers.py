"""Import datasets the user already has: D4RL-style HDF5 files and Minari datasets, as `OfflineDataset`.

Both need optional packages (``h5py``; ``minari``) that are imported only when called; a missing one raises
`MissingDependencyError` saying what to install. Shapes are validated on import (errors name the source and key).

D4RL HDF5 layout: top-level datasets ``observations (N, obs_dim)``, ``actions (N, act_dim)``, ``rewards (N,)``,
``terminals (N,)``, ``timeouts (N,)`` (optional in old files), ``next_observations (N, obs_dim)`` (optional).
Without ``next_observations`` they are rebuilt as ``observations[i + 1]``; rows whose successor is unknown (the
time-limit ends and the last row) are dropped, like D4RL's ``qlearning_dataset``. d4rl-pybullet files store the
reward of row i in row i + 1: pass ``reward_shift=1`` to realign them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import OfflineDataset
from .errors import DatasetError, MissingDependencyError

__all__ = ["from_d4rl_arrays", "from_d4rl_hdf5", "from_episodes", "from_minari"]

_D4RL_REQUIRED = ("observations", "actions", "rewards", "terminals")


def _flat(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a


def from_d4rl_arrays(
    arrays: Mapping[str, Any],
    env: str,
    source: str = "arrays",
    dataset_id: str | None = None,
    reward_shift: int = 0,
) -> OfflineDataset:
    """Build an `OfflineDataset` from D4RL-named arrays (see the module docstring); validates every shape."""
    missing = [k for k in _D4RL_REQUIRED if k not in arrays]
    if missing:
        raise DatasetError(f"{source}: missing key(s) {missing}; a D4RL file has {list(_D4RL_REQUIRED)} "
                           f"(+ timeouts, next_observations); found {sorted(arrays)}")
    obs = np.asarray(arrays["observations"], dtype=np.float32)
    act = np.asarray(arrays["actions"], dtype=np.float32)
    rew = _flat(arrays["rewards"]).astype(np.float32)
    term = _flat(arrays["terminals"]).astype(bool)
    n = len(obs)
    tout = _flat(arrays["timeouts"]).astype(bool) if "timeouts" in arrays else np.zeros(n, bool)
    if obs.ndim != 2 or act.ndim != 2:
        raise DatasetError(f"{source}: 'observations' {obs.shape} and 'actions' {act.shape} must be 2-D (N, dim)")
    for k, a in (("actions", act), ("rewards", rew), ("terminals", term), ("timeouts", tout)):
        if len(a) != n or (k != "actions" and a.ndim != 1):
            want = f"({n}, act_dim)" if k == "actions" else f"({n},)"
            raise DatasetError(f"{source}: key {k!r} has shape {a.shape}, expected {want}")
    if reward_shift:
        if reward_shift != 1:
            raise DatasetError(f"{source}: reward_shift must be 0 or 1, got {reward_shift}")
        rew = np.concatenate([rew[1:], np.zeros(1, np.float32)])
    if "next_observations" in arrays:
        nxt = np.asarray(arrays["next_observations"], dtype=np.float32)
        if nxt.shape != obs.shape:
            raise DatasetError(f"{source}: key 'next_observations' has shape {nxt.shape}, expected {obs.shape}")
        keep = np.ones(n, bool)
    else:
        nxt = np.concatenate([obs[1:], obs[-1:]], axis=0)
        keep = ~tout
        keep[-1] = False
    if reward_shift:
        keep[-1] = False
    out = {"observations": obs[keep], "actions": act[keep], "rewards": rew[keep], "next_observations": nxt[keep],
           "terminals": term[keep], "timeouts": tout[keep]}
    dropped_ends = np.flatnonzero(~keep & tout)
    if len(dropped_ends):
        # a dropped time-limit row ended its episode: the kept row before it now ends it (as a timeout)
        prev = dropped_ends - 1
        prev = prev[(prev >= 0) & keep[np.maximum(prev, 0)]]
        new_pos = (np.cumsum(keep) - 1)[prev]
        out["timeouts"][new_pos] = ~out["terminals"][new_pos]
    return OfflineDataset.from_arrays(out, env=env, policy=f"imported({source})", seed=None, dataset_id=dataset_id,
                                      extra={"imported_from": source, "reward_shift": reward_shift}, source=source)


def from_d4rl_hdf5(path: str | Path, env: str, dataset_id: str | None = None,
                   reward_shift: int = 0) -> OfflineDataset:
    """Read a D4RL-style ``.hdf5`` file (needs ``h5py``) into an `OfflineDataset` for task ``env``."""
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(
            "importing D4RL HDF5 files needs h5py, which is not installed: pip install h5py "
            "(or pip install 'modular-diffusion-hub[hdf5]')"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file: {e}") from None
    return from_d4rl_arrays(arrays, env=env, source=str(path), dataset_id=dataset_id, reward_shift=reward_shift)


def from_episodes(episodes: Iterable[Any], env: str, source: str, dataset_id: str | None = None) -> OfflineDataset:
    """Join Minari-style episodes: each has ``observations (T + 1, obs_dim)``, ``actions (T, act_dim)``,
    ``rewards (T,)``, ``terminations (T,)``, ``truncations (T,)``."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("o", "a", "r", "o2", "te", "tr")}
    for i, ep in enumerate(episodes):
        obs = getattr(ep, "observations", None)
        if isinstance(obs, dict):
            raise DatasetError(f"{source}: episode {i} has dict observations; only flat Box observations import")
        obs = np.asarray(obs, dtype=np.float32)
        act = np.asarray(ep.actions, dtype=np.float32)
        rew = np.asarray(ep.rewards, dtype=np.float32).reshape(-1)
        te = np.asarray(ep.terminations, dtype=bool).reshape(-1)
        tr = np.asarray(ep.truncations, dtype=bool).reshape(-1)
        t = len(act)
        if obs.ndim != 2 or act.ndim != 2 or obs.shape[0] != t + 1 or not (len(rew) == len(te) == len(tr) == t):
            raise DatasetError(
                f"{source}: episode {i} has observations {obs.shape}, actions {act.shape}, rewards {rew.shape}, "
                f"terminations {te.shape}, truncations {tr.shape}; expected (T+1, obs_dim), (T, act_dim), (T,) x3"
            )
        if t == 0:
            continue
        tr = tr & ~te
        if not (te[-1] or tr[-1]):
            tr = tr.copy()
            tr[-1] = True  # an episode's last step ends it
        for key, part in (("o", obs[:-1]), ("o2", obs[1:]), ("a", act), ("r", rew), ("te", te), ("tr", tr)):
            cols[key].append(part)
    if not cols["o"]:
        raise DatasetError(f"{source}: no non-empty episodes")
    arrays = {"observations": np.concatenate(cols["o"]), "actions": np.concatenate(cols["a"]),
              "rewards": np.concatenate(cols["r"]), "next_observations": np.concatenate(cols["o2"]),
              "terminals": np.concatenate(cols["te"]), "timeouts": np.concatenate(cols["tr"])}
    return OfflineDataset.from_arrays(arrays, env=env, policy=f"imported({source})", seed=None,
                                      dataset_id=dataset_id, extra={"imported_from": source}, source=source)


def from_minari(minari_id: str, env: str | None = None, dataset_id: str | None = None) -> OfflineDataset:
    """Load a locally available Minari dataset (needs ``minari``; nothing is downloaded) as an `OfflineDataset`."""
    try:
        import minari
    except ImportError:
        raise MissingDependencyError(
            "importing Minari datasets needs minari, which is not installed: pip install minari"
        ) from None
    try:
        ds = minari.load_dataset(minari_id, download=False)
    except Exception as e:  # minari raises various types for a dataset it does not have locally
        raise DatasetError(f"minari dataset {minari_id!r} cannot be loaded locally: {e}") from None
    env_name = env
    if env_name is None:
        spec = getattr(ds, "env_spec", None) or getattr(getattr(ds, "spec", None), "env_spec", None)
        env_name = getattr(spec, "id", None) or minari_id
    return from_episodes(ds.iterate_episodes(), env=env_name, source=f"minari:{minari_id}", dataset_id=dataset_id)
