"""Import datasets the user already has: D4RL-style HDF5 files and Minari datasets, as `OfflineDataset`.

Both need optional packages (``h5py``; ``minari``) that are imported only when called; a missing one raises
`MissingDependencyError` saying what to install. Shapes are validated on import (errors name the source and key).

D4RL HDF5 layout: top-level datasets ``observations (N, obs_dim)``, ``actions (N, act_dim)``, ``rewards (N,)``,
``terminals (N,)``, ``timeouts (N,)`` (optional in old files), ``next_observations (N, obs_dim)`` (optional).
Without ``next_observations`` they are rebuilt as ``observations[i + 1]``; rows whose successor is unknown (the
time-limit ends and the last row) are dropped, like D4RL's ``qlearning_dataset``.

d4rl-pybullet layout (takuseno/d4rl-pybullet, d3rlpy's episode buffer): every episode is stored as rows
``(s_0, a_0, 0), (s_1, a_1, r_0), ..., (s_T, 0, r_{T-1})`` with ``terminals`` set on its last row, time-limit ends
included, and no ``timeouts`` / ``next_observations``. So the reward of row i sits in row i + 1, the last row of an
episode holds only the final observation, and an episode of exactly the task's time limit ended by a timeout, not a
terminal state. ``layout='d4rl-pybullet'`` (or ``'auto'``, `detect_layout`) realigns it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import OfflineDataset
from .errors import DatasetError, MissingDependencyError

__all__ = ["LAYOUTS", "detect_layout", "from_d4rl_arrays", "from_d4rl_hdf5", "from_episodes", "from_minari",
           "infer_env"]

_D4RL_REQUIRED = ("observations", "actions", "rewards", "terminals")
LAYOUTS = ("auto", "d4rl", "d4rl-pybullet")


def _flat(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a


def _floats(arrays: Mapping[str, Any], key: str, source: str) -> np.ndarray:
    a = np.asarray(arrays[key])
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DatasetError(f"{source}: key {key!r} has dtype {a.dtype}, expected numbers")
    out = a.astype(np.float32)
    if not np.isfinite(out).all():
        raise DatasetError(f"{source}: key {key!r} contains NaN or inf values")
    return out


def _flags(arrays: Mapping[str, Any], key: str, source: str) -> np.ndarray:
    """A 0/1 column as bool; NaN or any other value is refused (not silently read as True)."""
    a = _flat(arrays[key])
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DatasetError(f"{source}: key {key!r} has dtype {a.dtype}, expected 0/1 flags")
    if a.dtype != np.bool_ and not np.isin(a, (0, 1)).all():
        raise DatasetError(f"{source}: key {key!r} holds values other than 0 and 1 (NaN or others)")
    return a.astype(bool)


def infer_env(obs_dim: int, act_dim: int, env: str | None, source: str) -> str:
    """``env`` checked against the data's dims when it is a known task; without one, the task with these dims."""
    from ..envs import ENVS, UnknownEnvError, env_spec

    if env is not None:
        try:
            spec = env_spec(env)
        except UnknownEnvError:
            return env  # a task mdhub does not know: no normalised score, no dim check
        if (spec.obs_dim, spec.act_dim) != (obs_dim, act_dim):
            raise DatasetError(f"{source}: env {env!r} has obs_dim {spec.obs_dim}, act_dim {spec.act_dim}; the "
                               f"data has obs_dim {obs_dim}, act_dim {act_dim}")
        return spec.name
    hits = [s.name for s in ENVS.values() if (s.obs_dim, s.act_dim) == (obs_dim, act_dim)]
    if len(hits) != 1:
        raise DatasetError(f"{source}: cannot tell the task from obs_dim {obs_dim}, act_dim {act_dim}; name it "
                           "with env= (CLI: --env ENV)")
    return hits[0]


def detect_layout(arrays: Mapping[str, Any]) -> str:
    """'d4rl-pybullet' when the file looks like d3rlpy's episode layout (no timeouts / next_observations, the
    first row and each row after an episode end have reward 0, every end row has an all-zero action), else 'd4rl'."""
    if "timeouts" in arrays or "next_observations" in arrays:
        return "d4rl"
    try:
        term = _flat(arrays["terminals"]).astype(bool)
        rew = _flat(arrays["rewards"])
        act = np.asarray(arrays["actions"])
        ends = np.flatnonzero(term)
        if len(ends) == 0 or act.ndim != 2 or len(act) != len(term) or len(rew) != len(term):
            return "d4rl"
        starts = np.concatenate([[0], ends[:-1] + 1])
        starts = starts[starts < len(rew)]
        if np.all(rew[starts] == 0) and np.all(act[ends] == 0):
            return "d4rl-pybullet"
    except (TypeError, ValueError):
        pass
    return "d4rl"


def _pybullet_rows(obs: np.ndarray, act: np.ndarray, rew: np.ndarray, term: np.ndarray,
                   max_episode_steps: int | None) -> dict[str, np.ndarray]:
    """d4rl-pybullet (d3rlpy's episode buffer): an episode's rows are (s_0, a_0, 0), (s_1, a_1, r_0), ...,
    (s_T, 0, r_{T-1}) with the end flagged on the last row, time-limit ends included. Transition t is
    (obs[t], act[t], rew[t + 1], obs[t + 1]); an episode of exactly ``max_episode_steps`` steps ended at the time
    limit (a timeout), a shorter one in a true terminal state. Rows after the last end are an unfinished episode."""
    n = len(obs)
    ends = np.flatnonzero(term)
    idx: list[np.ndarray] = []
    t_flags: list[np.ndarray] = []
    o_flags: list[np.ndarray] = []
    start = 0
    for end in list(ends) + ([n] if (not len(ends) or ends[-1] != n - 1) else []):
        last = int(end) if end < n else n - 1  # the row holding the final observation
        rows = np.arange(start, last)
        if len(rows):
            te = np.zeros(len(rows), bool)
            to = np.zeros(len(rows), bool)
            if end < n:  # a finished episode
                if max_episode_steps is not None and len(rows) >= max_episode_steps:
                    to[-1] = True
                else:
                    te[-1] = True
            idx.append(rows)
            t_flags.append(te)
            o_flags.append(to)
        start = last + 1
    rows = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    return {"observations": obs[rows], "actions": act[rows], "rewards": rew[rows + 1],
            "next_observations": obs[rows + 1],
            "terminals": np.concatenate(t_flags) if t_flags else np.zeros(0, bool),
            "timeouts": np.concatenate(o_flags) if o_flags else np.zeros(0, bool)}


def from_d4rl_arrays(
    arrays: Mapping[str, Any],
    env: str | None = None,
    source: str = "arrays",
    dataset_id: str | None = None,
    reward_shift: int = 0,
    layout: str = "d4rl",
    max_episode_steps: int | None = None,
) -> OfflineDataset:
    """Build an `OfflineDataset` from D4RL-named arrays (see the module docstring); validates every shape.

    ``layout``: 'd4rl', 'd4rl-pybullet' or 'auto' (`detect_layout`). ``reward_shift=1`` is the old spelling of
    ``layout='d4rl-pybullet'``. ``env``: a task name (checked against the dims), or None to infer it from them.
    ``max_episode_steps`` (d4rl-pybullet): the time limit, default the task's."""
    missing = [k for k in _D4RL_REQUIRED if k not in arrays]
    if missing:
        raise DatasetError(f"{source}: missing key(s) {missing}; a D4RL file has {list(_D4RL_REQUIRED)} "
                           f"(+ timeouts, next_observations); found {sorted(arrays)}")
    if reward_shift not in (0, 1):
        raise DatasetError(f"{source}: reward_shift must be 0 or 1, got {reward_shift}")
    if layout not in LAYOUTS:
        raise DatasetError(f"{source}: unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    if reward_shift:
        layout = "d4rl-pybullet"
    if layout == "auto":
        layout = detect_layout(arrays)
    for k in (*_D4RL_REQUIRED, "timeouts", "next_observations"):
        if k in arrays and np.ndim(arrays[k]) == 0:
            raise DatasetError(f"{source}: key {k!r} is a scalar, expected an array of rows")
    obs = _floats(arrays, "observations", source)
    act = _floats(arrays, "actions", source)
    rew = _flat(_floats(arrays, "rewards", source))
    term = _flags(arrays, "terminals", source)
    n = len(obs)
    tout = _flags(arrays, "timeouts", source) if "timeouts" in arrays else np.zeros(n, bool)
    if obs.ndim != 2 or act.ndim != 2:
        raise DatasetError(f"{source}: 'observations' {obs.shape} and 'actions' {act.shape} must be 2-D (N, dim)")
    if n < 2:
        raise DatasetError(f"{source}: {n} row(s); a dataset needs at least 2")
    for k, a in (("actions", act), ("rewards", rew), ("terminals", term), ("timeouts", tout)):
        if len(a) != n or (k != "actions" and a.ndim != 1):
            want = f"({n}, act_dim)" if k == "actions" else f"({n},)"
            raise DatasetError(f"{source}: key {k!r} has shape {a.shape}, expected {want} (ragged lengths: "
                               f"'observations' has {n} rows)")
    env_name = infer_env(obs.shape[1], act.shape[1], env, source)
    extra: dict[str, Any] = {"imported_from": source, "import_layout": layout}
    if layout == "d4rl-pybullet":
        if "next_observations" in arrays:
            raise DatasetError(f"{source}: layout d4rl-pybullet has no 'next_observations' key; this file has one "
                               "(use layout d4rl)")
        if max_episode_steps is None:
            from ..envs import UnknownEnvError, env_spec

            try:
                max_episode_steps = env_spec(env_name).max_episode_steps
            except UnknownEnvError:
                max_episode_steps = None
        extra["max_episode_steps"] = max_episode_steps
        out = _pybullet_rows(obs, act, rew, term | tout, max_episode_steps)
        if not len(out["observations"]):
            raise DatasetError(f"{source}: no transitions in the d4rl-pybullet layout")
        return OfflineDataset.from_arrays(out, env=env_name, policy=f"imported({source})", seed=None,
                                          dataset_id=dataset_id, extra=extra, source=source)
    if "next_observations" in arrays:
        nxt = _floats(arrays, "next_observations", source)
        if nxt.shape != obs.shape:
            raise DatasetError(f"{source}: key 'next_observations' has shape {nxt.shape}, expected {obs.shape}")
        keep = np.ones(n, bool)
    else:
        nxt = np.concatenate([obs[1:], obs[-1:]], axis=0)
        keep = ~tout
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
    if not len(out["observations"]):
        raise DatasetError(f"{source}: no transitions left (every row ends at a time limit)")
    return OfflineDataset.from_arrays(out, env=env_name, policy=f"imported({source})", seed=None,
                                      dataset_id=dataset_id, extra=extra, source=source)


def from_d4rl_hdf5(path: str | Path, env: str | None = None, dataset_id: str | None = None,
                   reward_shift: int = 0, layout: str = "auto", max_episode_steps: int | None = None) -> OfflineDataset:
    """Read a D4RL-style ``.hdf5`` file (needs ``h5py``) into an `OfflineDataset` (see `from_d4rl_arrays`)."""
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
        with h5py.File(path, "r") as f:  # only the keys the importer reads (D4RL files carry large extras)
            names = sorted(k for k in f.keys() if isinstance(f[k], h5py.Dataset))
            missing = [k for k in _D4RL_REQUIRED if k not in names]
            if missing:
                raise DatasetError(f"{path}: missing key(s) {missing}; a D4RL file has {list(_D4RL_REQUIRED)} "
                                   f"(+ timeouts, next_observations); found {names}")
            arrays = {k: f[k][()] for k in (*_D4RL_REQUIRED, "timeouts", "next_observations") if k in names}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a readable HDF5 file: {' '.join(str(e).split())}") from None
    return from_d4rl_arrays(arrays, env=env, source=str(path), dataset_id=dataset_id, reward_shift=reward_shift,
                            layout=layout, max_episode_steps=max_episode_steps)


def from_episodes(episodes: Iterable[Any], env: str | None, source: str,
                  dataset_id: str | None = None) -> OfflineDataset:
    """Join Minari-style episodes: each has ``observations (T + 1, obs_dim)``, ``actions (T, act_dim)``,
    ``rewards (T,)``, ``terminations (T,)``, ``truncations (T,)``. An episode ends at its last step only."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("o", "a", "r", "o2", "te", "tr")}
    for i, ep in enumerate(episodes):
        obs = getattr(ep, "observations", None)
        if isinstance(obs, dict):
            raise DatasetError(f"{source}: episode {i} has dict observations; only flat Box observations import")
        try:
            obs = np.asarray(obs, dtype=np.float32)
            act = np.asarray(ep.actions, dtype=np.float32)
            rew = np.asarray(ep.rewards, dtype=np.float32).reshape(-1)
            te = np.asarray(ep.terminations).reshape(-1)
            tr = np.asarray(ep.truncations).reshape(-1)
        except (TypeError, ValueError, AttributeError) as e:
            raise DatasetError(f"{source}: episode {i} cannot be read as arrays: {' '.join(str(e).split())}") from None
        t = len(act)
        if obs.ndim != 2 or act.ndim != 2 or obs.shape[0] != t + 1 or not (len(rew) == len(te) == len(tr) == t):
            raise DatasetError(
                f"{source}: episode {i} has observations {obs.shape}, actions {act.shape}, rewards {rew.shape}, "
                f"terminations {te.shape}, truncations {tr.shape}; expected (T+1, obs_dim), (T, act_dim), (T,) x3"
            )
        for key, a in (("observations", obs), ("actions", act), ("rewards", rew)):
            if not np.isfinite(a).all():
                raise DatasetError(f"{source}: episode {i}: {key} contain NaN or inf values")
        for key, a in (("terminations", te), ("truncations", tr)):
            if a.dtype != np.bool_ and not np.isin(a, (0, 1)).all():
                raise DatasetError(f"{source}: episode {i}: {key} hold values other than 0 and 1")
        te, tr = te.astype(bool), tr.astype(bool)
        if t == 0:
            continue
        if (te[:-1] | tr[:-1]).any():
            raise DatasetError(f"{source}: episode {i} ends before its last step (step "
                               f"{int(np.flatnonzero(te[:-1] | tr[:-1])[0])} of {t})")
        tr = tr & ~te
        if not (te[-1] or tr[-1]):
            tr = tr.copy()
            tr[-1] = True  # an episode's last step ends it
        for key, part in (("o", obs[:-1]), ("o2", obs[1:]), ("a", act), ("r", rew), ("te", te), ("tr", tr)):
            cols[key].append(part)
    if not cols["o"]:
        raise DatasetError(f"{source}: no non-empty episodes")
    dims = {(o.shape[1], a.shape[1]) for o, a in zip(cols["o"], cols["a"], strict=True)}
    if len(dims) != 1:
        raise DatasetError(f"{source}: episodes disagree on (obs_dim, act_dim): {sorted(dims)}")
    obs_dim, act_dim = dims.pop()
    env_name = infer_env(obs_dim, act_dim, env, source)
    arrays = {"observations": np.concatenate(cols["o"]), "actions": np.concatenate(cols["a"]),
              "rewards": np.concatenate(cols["r"]), "next_observations": np.concatenate(cols["o2"]),
              "terminals": np.concatenate(cols["te"]), "timeouts": np.concatenate(cols["tr"])}
    return OfflineDataset.from_arrays(arrays, env=env_name, policy=f"imported({source})", seed=None,
                                      dataset_id=dataset_id, extra={"imported_from": source}, source=source)


def _minari_data_dir(path: Path) -> Path:
    """The folder holding metadata.json: ``path`` itself, or its ``data/`` (a dataset's root folder)."""
    for cand in (path, path / "data"):
        if (cand / "metadata.json").is_file():
            return cand
    raise DatasetError(f"{path}: not a Minari dataset folder (no metadata.json in it or in {path / 'data'})")


def from_minari(minari_id: str | Path, env: str | None = None, dataset_id: str | None = None) -> OfflineDataset:
    """Load a locally available Minari dataset (needs ``minari``; nothing is downloaded) as an `OfflineDataset`.

    ``minari_id``: a dataset id in the local Minari root ($MINARI_DATASETS_PATH, else ~/.minari/datasets), or the
    path of a dataset folder. ``env``: default the dataset's env spec id (checked against the dims)."""
    try:
        import minari
    except ImportError:
        raise MissingDependencyError(
            "importing Minari datasets needs minari, which is not installed: pip install minari h5py "
            "(or pip install 'modular-diffusion-hub[minari]')"
        ) from None
    text = str(minari_id)
    path = Path(text).expanduser()
    source = f"minari:{text}"
    try:
        if path.is_dir():
            ds = minari.MinariDataset(_minari_data_dir(path))
        else:
            ds = minari.load_dataset(text, download=False)
    except DatasetError:
        raise
    except Exception as e:  # minari raises various types for a dataset it does not have or cannot read
        raise DatasetError(f"{source}: cannot be loaded as a local Minari dataset: "
                           f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    env_name = env
    if env_name is None:
        spec = getattr(getattr(ds, "spec", None), "env_spec", None) or getattr(ds, "env_spec", None)
        env_name = getattr(spec, "id", None)
    try:
        episodes = list(ds.iterate_episodes())
    except Exception as e:  # a damaged data file: one line naming it
        raise DatasetError(f"{source}: its episodes cannot be read: {type(e).__name__}: "
                           f"{' '.join(str(e).split())[:300]}") from None
    return from_episodes(episodes, env=env_name, source=source, dataset_id=dataset_id)
