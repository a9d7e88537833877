"""The dataset store: ``<hub home>/datasets/<id>.npz``, one file per dataset id (see `modules.data.dataset`).

Files are written atomically (temp file + ``os.replace``); reading checks keys, shapes, dtypes and the content
sha256, and a corrupted file gives a `DatasetError` naming it.
"""
from __future__ import annotations

import json
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hub.errors import MdhubError
from hub.paths import home
from hub.store import format_ids
from modules.data.dataset import OfflineDataset
from modules.data.errors import DatasetError
from modules.data.make import make_dataset, parse_dataset_id

__all__ = ["resolve_dataset", "datasets_dir", "dataset_path", "get_dataset", "make_and_store", "make_in_store",
           "MakeOutcome", "modules_naming", "format_ids", "list_datasets", "dataset_info", "SUMMARY_KEYS",
           "dataset_summary", "relabel"]

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def datasets_dir() -> Path:
    """``home()/datasets`` (not created here)."""
    return home() / "datasets"


def dataset_path(dataset_id: str) -> Path:
    """Where the store keeps ``dataset_id``: ``home()/datasets/<id>.npz``. The id must be a plain lower-case name."""
    did = str(dataset_id).strip().lower()
    if not _ID_RE.match(did):
        raise DatasetError(f"bad dataset id {dataset_id!r}: use lower-case letters, digits, '.', '_' and '-'")
    return datasets_dir() / f"{did}.npz"


def modules_naming(sha256: str | None) -> list[str]:
    """Ids of the stored modules whose card names this dataset content (``card.interface.dataset.sha256``), sorted
    (none for no content).

    A module whose card cannot be read is skipped (``mdhub show ID`` tells what is wrong with it)."""
    from cards import CardError
    from hub.store import Store

    if sha256 is None:
        return []
    store = Store()
    out = []
    for entry in store.entries():
        try:
            card = store.card(entry.id)
        except (MdhubError, CardError, OSError, ValueError):
            continue
        ref = getattr(getattr(card, "interface", None), "dataset", None)
        if ref is not None and ref.sha256 == sha256:
            out.append(entry.id)
    return sorted(out)


@dataclass
class MakeOutcome:
    """What `make_in_store` did.

    ``action``: 'made' (there was no file), 'kept' (a file existed and ``force`` was off; nothing was made),
    'unchanged' (remade with ``force``, same content sha256), 'replaced' (remade with ``force``, new content).
    ``trained_on``: stored modules whose card names the stored content before the call (for 'kept': the kept file).
    ``orphaned``: for 'replaced', those of them that now name a dataset sha256 no longer in the store."""

    path: Path
    action: Literal["made", "kept", "unchanged", "replaced"]
    old_sha256: str | None = None
    new_sha256: str | None = None
    trained_on: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)

    def orphan_message(self) -> str | None:
        """One line about modules left naming replaced data, or None."""
        if not self.orphaned:
            return None
        return (f"{self.path}: replaced data (sha256 {str(self.old_sha256)[:12]}...) that {len(self.orphaned)} "
                f"stored module(s) were trained on; they now name a dataset sha256 no longer in the store: "
                f"{format_ids(self.orphaned)}")


def _stored_sha(path: Path) -> str | None:
    """The content sha256 recorded in a stored file, or None when it cannot be read (a corrupted file)."""
    try:
        sha = _read_metadata(path).get("sha256")
    except DatasetError:
        return None
    return sha if isinstance(sha, str) else None


def _orphaned(old_sha: str | None, trained_on: list[str]) -> list[str]:
    """After replacing content `old_sha`: the modules trained on it, unless another stored file still has it."""
    still_here = {r.get("sha256") for r in list_datasets() if "error" not in r}
    return [] if old_sha in still_here else trained_on


def make_in_store(
    dataset_id: str,
    transitions: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> MakeOutcome:
    """Make ``dataset_id`` with `modules.data.make.make_dataset` and save it into the store (atomically).

    The store rule: data that stored modules were trained on is not replaced silently. An existing file is kept
    unless ``force`` (action 'kept', with the modules trained on it). With ``force`` it is remade; when the content
    changes, the outcome names the modules whose card names the old sha256 and which no longer find it in the store
    (``orphaned``). The request (transitions, seed) is recorded in ``metadata['request']``.
    """
    parse_dataset_id(dataset_id)  # clear error before any work
    path = dataset_path(dataset_id)
    existed = path.exists()
    old_sha = _stored_sha(path) if existed else None
    if existed and not force:
        try:
            trained_on = modules_naming(old_sha)
        except MdhubError:  # e.g. a damaged store index: only information here, the file is kept anyway
            trained_on = []
        return MakeOutcome(path, "kept", old_sha, old_sha, trained_on)
    trained_on = modules_naming(old_sha)  # before the (long) make: a damaged index fails early
    ds = make_dataset(dataset_id, transitions=transitions, seed=seed, progress=progress, workers=workers)
    ds.metadata["request"] = {"transitions": transitions, "seed": seed}
    ds.save(path)
    new_sha = ds.metadata["sha256"]
    if not existed:
        return MakeOutcome(path, "made", None, new_sha)
    if new_sha == old_sha:
        return MakeOutcome(path, "unchanged", old_sha, new_sha, trained_on)
    return MakeOutcome(path, "replaced", old_sha, new_sha, trained_on, _orphaned(old_sha, trained_on))


def make_and_store(
    dataset_id: str,
    transitions: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """`make_in_store`, returning only the path. An existing file is kept unless ``force``; when a forced remake
    replaces data that stored modules were trained on, a `UserWarning` names them."""
    out = make_in_store(dataset_id, transitions=transitions, seed=seed, force=force, progress=progress,
                        workers=workers)
    msg = out.orphan_message()
    if msg:
        warnings.warn(msg, UserWarning, stacklevel=2)
    return out.path


def resolve_dataset(dataset: str | OfflineDataset) -> OfflineDataset:
    """A dataset object from an id in the dataset store (or an OfflineDataset as is)."""
    return get_dataset(dataset) if isinstance(dataset, str) else dataset


def get_dataset(
    dataset_id: str,
    transitions: int | None = None,
    seed: int | None = None,
    make_if_missing: bool = False,
    progress: bool = False,
) -> OfflineDataset:
    """Load ``dataset_id`` from the store (verified); with ``make_if_missing`` make and store it first if absent.

    ``transitions`` / ``seed``: when given, the stored file must have been made with them (else a `DatasetError`
    says how to remake it); when making, ``seed`` defaults to 0 and ``transitions`` to the id's default size.
    """
    path = dataset_path(dataset_id)
    if not path.exists():
        if not make_if_missing:
            raise DatasetError(
                f"dataset {dataset_id!r} is not in the store ({path}); make it with "
                f"`mdhub data make {dataset_id}` or call get_dataset(..., make_if_missing=True)"
            )
        make_and_store(dataset_id, transitions=transitions, seed=0 if seed is None else seed, progress=progress)
    ds = OfflineDataset.load(path)
    req = ds.metadata.get("request") or {}
    stored_seed = req.get("seed", ds.metadata.get("seed"))
    stored_n = req.get("transitions")
    if seed is not None and stored_seed is not None and int(stored_seed) != int(seed):
        raise DatasetError(
            f"{path}: stored dataset was made with seed {stored_seed}, requested seed {seed}; remake it with "
            f"`mdhub data make {dataset_id} --seed {seed} --force`"
        )
    if transitions is not None and stored_n is not None and int(stored_n) != int(transitions):
        raise DatasetError(
            f"{path}: stored dataset was made with transitions={stored_n}, requested {transitions}; remake it with "
            f"`mdhub data make {dataset_id} --transitions {transitions} --force`"
        )
    return ds


def _read_metadata(path: Path) -> dict[str, Any]:
    """Only the metadata record of a stored file (cheap: the arrays are not read)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "metadata" not in z.files:
                raise DatasetError(f"{path}: missing key 'metadata'; found {sorted(z.files)}")
            meta = json.loads(str(z["metadata"]))
    except DatasetError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
        raise DatasetError(f"{path}: not a readable dataset file (corrupted or not an .npz): {e}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: key 'metadata' is not a JSON object")
    return meta


def dataset_info(dataset_id: str, verify: bool = False) -> dict[str, Any]:
    """Metadata of a stored dataset plus ``path`` and ``file_bytes``; ``verify`` also loads and checks the arrays."""
    path = dataset_path(dataset_id)
    if not path.exists():
        raise DatasetError(
            f"dataset {dataset_id!r} is not in the store ({path}); make it with `mdhub data make {dataset_id}`"
        )
    meta = OfflineDataset.load(path).metadata if verify else _read_metadata(path)
    return {**meta, "path": str(path), "file_bytes": path.stat().st_size}


def list_datasets() -> list[dict[str, Any]]:
    """One record per ``.npz`` in the store, sorted by id: ``id, path, file_bytes`` and the metadata, or ``error``
    (a readable message) for a file that cannot be read."""
    folder = datasets_dir()
    if not folder.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for p in sorted(folder.glob("*.npz")):
        rec: dict[str, Any] = {"id": p.stem, "path": str(p), "file_bytes": p.stat().st_size}
        try:
            rec.update(_read_metadata(p))
            rec["id"] = p.stem
        except DatasetError as e:
            rec["error"] = str(e)
        out.append(rec)
    return out


# ----------------------------------------------------------------- per-episode summary (`mdhub data info`)

SUMMARY_KEYS: tuple[str, ...] = (
    "episodes", "return_mean", "return_std", "return_min", "return_max", "score_mean", "score_std", "score_min",
    "score_max", "travel_mean_m", "travel_std_m", "travel_min_m", "travel_max_m", "policy", "sampling", "reward",
    "source",
)
"""The stable keys of `dataset_summary` (and of ``mdhub data info --json``, next to the metadata record)."""


def dataset_summary(dataset_id: str, verify: bool = False) -> dict[str, Any]:
    """Per-episode statistics of a stored dataset under the stable keys `SUMMARY_KEYS`.

    ``episodes``: finished episodes; ``return_*``: their undiscounted returns; ``score_*``: D4RL normalised scores
    (None for toys and relabelled data, whose rewards are not the task's); ``travel_*_m``: forward travel per
    episode in metres (`modules.data.locomotion`; None where the observations are not a walker's state);
    ``policy`` and ``sampling`` ('deterministic', 'stochastic', 'uniform' or 'unknown'): how the data were
    collected; ``reward``: the relabelling reward's name, None for the data's own; ``source``: ``{id, sha256}`` of
    the dataset it was relabelled from, or None. Statistics come from the metadata recorded when the dataset was
    made; a file made before they were recorded has them computed from its arrays.
    """
    from modules.data.dataset import return_stats
    from modules.data.locomotion import sampling_of, travel_stats

    meta = dataset_info(dataset_id, verify=verify)
    rets = meta.get("returns")
    scores = meta.get("normalized_scores")
    if "travel_m" in meta and isinstance(rets, dict):
        travel = meta["travel_m"]
    else:  # made before the statistics were recorded: read the arrays
        ds = OfflineDataset.load(Path(meta["path"]), verify=verify)
        rets = return_stats(ds.episode_returns())
        travel = travel_stats(ds.arrays(), ds.metadata.get("env"))

    def pick(stats: Any, key: str) -> float | None:
        return float(stats[key]) if isinstance(stats, dict) and stats.get(key) is not None else None

    relabel = meta.get("relabelled") if isinstance(meta.get("relabelled"), dict) else None
    out: dict[str, Any] = {"episodes": int((rets or {}).get("count", 0))}
    for key in ("mean", "std", "min", "max"):
        out[f"return_{key}"] = pick(rets, key)
        out[f"score_{key}"] = pick(scores, key)
        out[f"travel_{key}_m"] = pick(travel, key)
    out["policy"] = meta.get("policy")
    out["sampling"] = sampling_of(meta)
    out["reward"] = relabel.get("reward") if relabel else None
    out["source"] = relabel.get("source") if relabel else None
    return {k: out[k] for k in SUMMARY_KEYS}


# ----------------------------------------------------------------- reward relabelling (`mdhub data relabel`)

def relabel(src: str, reward: str, new_id: str, force: bool = False) -> Path:
    """Store a copy of dataset ``src`` under ``new_id`` whose rewards come from the registered reward ``reward``
    (`modules.data.rewards.REWARDS`: 'forward', 'backward', 'target-speed:V', 'energy'). Returns its path.

    The new metadata records ``relabelled``: the source's id and sha256, the reward's canonical name and its
    definition; observations, actions, terminals and timeouts are the source's. Relabelling never overwrites:
    ``new_id`` must not be in the store (``force`` replaces it, but never data that stored modules name) and must
    not be an id `data make` builds. Everything is checked and computed before the file is written (atomically);
    a `DatasetError` names the problem and nothing is written.
    """
    from modules.data.locomotion import layout_for, sampling_of, travel_stats
    from modules.data.rewards import compute_reward, parse_reward

    parsed = parse_reward(reward)
    new_path = dataset_path(new_id)
    new_name = new_path.stem
    try:
        parse_dataset_id(new_name)
    except DatasetError:
        pass
    else:
        raise DatasetError(f"{new_name!r} is a dataset id that `mdhub data make` builds; give the relabelled "
                           f"dataset another id (e.g. {new_name}-{parsed.reward.name})")
    src_path = dataset_path(src)
    if not src_path.exists():
        raise DatasetError(f"source dataset {src!r} is not in the store ({src_path}); `mdhub data list` shows "
                           "what is there")
    if new_path == src_path:
        raise DatasetError(f"relabelling never overwrites its source: give the new dataset another id than {src!r}")
    old_sha = _stored_sha(new_path) if new_path.exists() else None
    if new_path.exists():
        if not force:
            raise DatasetError(f"dataset {new_name!r} is already in the store ({new_path}); relabelling never "
                               "overwrites: pick another --id, or --force to replace it")
        named = modules_naming(old_sha)
        if named:
            raise DatasetError(f"dataset {new_name!r} ({new_path}) is the data {len(named)} stored module(s) were "
                               f"trained on ({format_ids(named)}); refusing to replace it, pick another --id")
    ds = OfflineDataset.load(src_path)
    meta = ds.metadata
    env = meta.get("env")
    layout = layout_for(env if isinstance(env, str) else None, ds.obs_dim)
    rewards = compute_reward(parsed, layout, ds.observations, ds.actions, ds.next_observations,
                             dataset=f"dataset {src!r} (env {env!r}, obs_dim {ds.obs_dim})")
    arrays = {**ds.arrays(), "rewards": rewards}
    src_sha = str(meta.get("sha256") or ds.sha256)
    extra: dict[str, Any] = {
        "quality": meta.get("quality"),
        "sampling": sampling_of(meta),
        "relabelled": {"source": {"id": src_path.stem, "sha256": src_sha}, "reward": parsed.name,
                       "definition": parsed.reward.definition,
                       "source_returns": meta.get("returns")},
        "travel_m": travel_stats(arrays, env if isinstance(env, str) else None),
        "normalized_scores": None,  # D4RL's reference returns are for the task's own reward
    }
    out = OfflineDataset.from_arrays(arrays, env=str(env or "unknown"), policy=str(meta.get("policy")),
                                     seed=meta.get("seed"), dataset_id=new_name, extra=extra,
                                     source=f"relabel({src!r})")
    out.metadata["normalized_scores"] = None
    return out.save(new_path)


# ------------------------------------------------------ imports and the Hub (`mdhub data import | push | pull`)
__all__ += ["ImportOutcome", "import_d4rl", "import_minari", "store_imported", "push", "pull", "hub_dataset_id"]

if TYPE_CHECKING:
    from hub.remote.dataset_sharing import DatasetPullResult, DatasetPushResult


@dataclass
class ImportOutcome:
    """What an import stored: ``action`` 'stored' (new id), 'unchanged' (same content already there) or 'replaced'
    (``force``); ``orphaned``: stored modules left naming the replaced content (as in `MakeOutcome`)."""

    dataset_id: str
    path: Path
    action: Literal["stored", "unchanged", "replaced"]
    sha256: str
    old_sha256: str | None = None
    orphaned: list[str] = field(default_factory=list)


def store_imported(ds: OfflineDataset, dataset_id: str, force: bool = False) -> ImportOutcome:
    """Save an imported dataset under ``dataset_id`` (atomically). The id must be a plain lower-case name; an id
    already in the store with other content is refused unless ``force`` (then the modules trained on the old content
    are named in ``orphaned``). The same content again is 'unchanged' (the file is rewritten with the new record)."""
    from hub.remote.dataset_sharing import check_dataset_id

    check_dataset_id(dataset_id)
    path = dataset_path(dataset_id)
    ds.metadata["dataset_id"] = dataset_id
    with _id_lock(path):  # the check and the write together: two imports of one id cannot both see it free
        return _store_locked(ds, dataset_id, path, force)


def _id_lock(path: Path) -> Any:
    """A file lock for one dataset id (``.<id>.lock`` beside its file), held while a check decides a write."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.stem}.lock")), timeout=600)


def _store_locked(ds: OfflineDataset, dataset_id: str, path: Path, force: bool) -> ImportOutcome:
    new_sha = ds.sha256
    old_sha = _stored_sha(path) if path.exists() else None
    action: Literal["stored", "unchanged", "replaced"] = "stored"
    trained_on: list[str] = []
    if path.exists():
        if old_sha == new_sha:
            action = "unchanged"
        elif not force:
            trained = modules_naming(old_sha)
            extra = f"; {len(trained)} stored module(s) were trained on it: {format_ids(trained)}" if trained else ""
            raise DatasetError(f"dataset {dataset_id!r} is already in the store ({path}) with other content "
                               f"(sha256 {str(old_sha)[:12]}...){extra}; use --force (API: force=True) to replace it, "
                               "or import under another --id")
        else:
            action = "replaced"
            trained_on = modules_naming(old_sha)
    ds.save(path)
    orphaned = _orphaned(old_sha, trained_on) if action == "replaced" else []
    return ImportOutcome(dataset_id, path, action, new_sha, old_sha, orphaned)


def import_d4rl(path: str | Path, dataset_id: str, env: str | None = None, layout: str = "auto",
                max_episode_steps: int | None = None, force: bool = False) -> ImportOutcome:
    """Import a D4RL-style HDF5 file (needs h5py) into the store as ``dataset_id``.

    ``layout``: 'd4rl', 'd4rl-pybullet' (rewards one row late, episodes ending on a final-observation row, time-limit
    ends flagged terminal) or 'auto' (detected); ``env``: the task (default: the one whose dims match);
    ``max_episode_steps``: d4rl-pybullet's time limit (default the task's). See `modules.data.importers`."""
    from hub.remote.dataset_sharing import check_dataset_id
    from modules.data.importers import from_d4rl_hdf5

    check_dataset_id(dataset_id)  # before reading a large file
    ds = from_d4rl_hdf5(path, env=env, dataset_id=dataset_id, layout=layout, max_episode_steps=max_episode_steps)
    return store_imported(ds, dataset_id, force=force)


def default_minari_id(name_or_path: str) -> str:
    """The store id an imported Minari dataset gets without --id: its name, lower-cased, '/' -> '-'."""
    text = str(name_or_path).rstrip("/")
    p = Path(text).expanduser()
    if p.is_dir():
        text = (p.parent.name if p.name == "data" else p.name) or "minari"
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:96] or "minari"


def import_minari(name_or_path: str, dataset_id: str | None = None, env: str | None = None,
                  force: bool = False) -> ImportOutcome:
    """Import a local Minari dataset (an id in the Minari root, or a dataset folder; needs minari) as ``dataset_id``
    (default: `default_minari_id`)."""
    from hub.remote.dataset_sharing import check_dataset_id
    from modules.data.importers import from_minari

    did = dataset_id if dataset_id is not None else default_minari_id(name_or_path)
    check_dataset_id(did)
    ds = from_minari(name_or_path, env=env, dataset_id=did)
    return store_imported(ds, did, force=force)


def push(dataset_id: str, repo: str, revision: str | None = None, private: bool = False,
         message: str | None = None, license: str = "mit") -> DatasetPushResult:
    """Push a stored dataset to a Hub dataset repository in ONE commit: dataset.npz, metadata.json, README.md (a
    dataset card) (`hub.remote.dataset_sharing.push_dataset`). Afterwards its metadata records `hub_source`."""
    from hub.remote.dataset_sharing import push_dataset

    path = dataset_path(dataset_id)
    if not path.exists():
        raise DatasetError(f"dataset {dataset_id!r} is not in the store ({path})")
    return push_dataset(path, repo, revision=revision, private=private, message=message, license=license)


def pull(repo: str, dataset_id: str | None = None, force: bool = False,
         timeout: float | None = None) -> DatasetPullResult:
    """Pull a Hub dataset repository (``user/name[@revision]``) into the store under ``dataset_id`` (default: its
    own id). Everything is downloaded and verified first (`hub.remote.dataset_sharing.fetch_dataset`); the stored
    metadata records ``hub_source`` (the exact commit). Other content under the id is kept unless ``force``."""
    from hub.remote import RemoteError
    from hub.remote.dataset_sharing import DatasetPullResult, check_dataset_id, fetch_dataset

    if dataset_id is not None:
        check_dataset_id(dataset_id)
    fetched = fetch_dataset(repo, timeout=timeout)
    ds = fetched.dataset
    local_id = dataset_id or ds.metadata.get("dataset_id")
    try:
        check_dataset_id(local_id)
    except DatasetError as err:
        raise RemoteError(f"{fetched.url}: cannot store it under its own id: {err}; pull it with --id ID") from None
    path = dataset_path(local_id)
    action = "stored"
    with _id_lock(path):
        if path.exists():
            old = _stored_sha(path)
            if old == ds.sha256:
                action = "unchanged"
            elif not force:
                raise RemoteError(f"a different dataset '{local_id}' is already in the store (sha256 "
                                  f"{str(old)[:12]}..., the pulled one {ds.sha256[:12]}...); pull with --id NEW_ID to "
                                  "keep both, or --force to replace it")
            else:
                action = "replaced"
        ds.metadata = {**ds.metadata, "dataset_id": local_id, "hub_source": fetched.hub_source}
        ds.save(path)
    return DatasetPullResult(dataset_id=local_id, path=path, repo=fetched.url, commit=fetched.hub_source["commit"],
                             sha256=ds.sha256, action=action)


def hub_dataset_id(dataset_id: str) -> str | None:
    """The Hugging Face Hub dataset id (``user/name``) a stored dataset came from or was pushed to (its metadata's
    ``hub_source``), or None (made or imported locally, a ``file://`` remote, not in the store, unreadable). For a
    model card's ``datasets:``."""
    from hub.remote.dataset_sharing import hub_dataset_id as from_metadata

    try:
        path = dataset_path(dataset_id)
        if not path.exists():
            return None
        return from_metadata(_read_metadata(path))
    except DatasetError:
        return None
