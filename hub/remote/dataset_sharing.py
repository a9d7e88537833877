"""Sharing datasets: `push_dataset` one dataset file to a Hub *dataset* repository in ONE commit; `fetch_dataset` one
back, verified (hub.datasets.push / pull are the store's side: ids, replacing, storing).

A dataset repository holds exactly three files:

    dataset.npz     the data, in the store's format (modules.data.dataset; numpy alone reads it, no pickle)
    metadata.json   {"format": "mdhub-dataset-repo/1", "metadata": <the dataset's metadata record>,
                     "files": {"dataset.npz": {"sha256": <of the file's bytes>, "size": <bytes>}}}
    README.md       a Hugging Face dataset card: YAML front matter (license, tags, task_categories:
                    reinforcement-learning, size_categories, and the metadata record under `mdhub`), then prose

Pull goes through the same guarded backends as modules (hub.remote.hf with repo_type="dataset": the server's commit
ids must be 40 hex digits and file identifiers plain hashes before they become cache paths, every request ends by
one deadline, `timeout` / $MDHUB_PULL_TIMEOUT; hub.remote.folder for `file://` roots). metadata.json and README.md
come first, size-capped; the front matter's `mdhub` record must equal metadata.json's. dataset.npz is then fetched at
the same exact commit, capped at the size metadata.json declares, and must have that sha256; its zip members must be
exactly the seven the format has, with the sizes the declared dims and row count allow (no zip bomb); the arrays
must load (keys, dtypes, finite values) and hash to the content sha256, and the metadata inside the file must equal
metadata.json's. Only then does hub.datasets.pull store it (atomically), its metadata recording `hub_source` =
(backend, repo, revision asked for, exact commit). A failed fetch drops the cached copy of a commit that failed
verification. Replacing a stored dataset with other content needs `force`.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.remote import (
    DEFAULT_BRANCH,
    BadResponseError,
    Deadline,
    RemoteError,
    RemoteIntegrityError,
    RepoNotFoundError,
    SizeLimitError,
    backend_for,
    parse_repo_ref,
)
from hub.remote.refs import push_target

DATA_FILE = "dataset.npz"
META_FILE = "metadata.json"
README_FILE = "README.md"
DATASET_FILES = (DATA_FILE, META_FILE, README_FILE)
REPO_FORMAT = "mdhub-dataset-repo/1"
MAX_META_BYTES = 1_000_000
MAX_README_BYTES = 2_000_000
MAX_DATA_BYTES = 64 * 2**30
MAX_DIM = 100_000
HEAD_SIZES = {META_FILE: MAX_META_BYTES, README_FILE: MAX_README_BYTES}
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,95}\Z")
_MEMBERS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "metadata")
_NPY_HEADER_SLACK = 4096  # an .npy member's header and zip framing, per member


@dataclass(frozen=True)
class DatasetPushResult:
    """What a dataset push made: `repo` is the canonical reference of the new commit (pull it to get exactly this)."""

    dataset_id: str
    repo: str
    revision: str
    commit: str
    url: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class DatasetPullResult:
    """What a dataset pull stored: the store id, its file, the exact commit, the content sha256."""

    dataset_id: str
    path: Path
    repo: str
    commit: str
    sha256: str
    action: str  # 'stored' | 'replaced' | 'unchanged'


def check_dataset_id(dataset_id: str) -> str:
    """A store id for a new dataset: a plain lower-case name of at most 96 characters, else a one-line error."""
    from modules.data.errors import DatasetError

    if not isinstance(dataset_id, str) or not _ID_RE.match(dataset_id):
        raise DatasetError(f"bad dataset id {str(dataset_id)[:120]!r}: use 1-96 lower-case letters, digits, '.', '_' "
                           "and '-', starting with a letter or digit")
    return dataset_id


# --- the dataset card ------------------------------------------------------------------------------------------------
def size_category(n: int) -> str:
    """The Hub's size_categories bucket for n rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "100M<n<1B"


def render_dataset_card(meta: dict[str, Any], license: str = "mit") -> str:
    """README.md of a dataset repository: front matter (license, tags, task_categories, size_categories, `mdhub`)."""
    tags = ["mdhub", "offline-rl", "reinforcement-learning"]
    for extra in (meta.get("env"), meta.get("gym_id")):
        if isinstance(extra, str) and extra and extra not in tags:
            tags.append(extra)
    front = {"license": license, "tags": tags, "task_categories": ["reinforcement-learning"],
             "size_categories": [size_category(int(meta.get("size") or 0))], "pretty_name": meta.get("dataset_id"),
             "mdhub": meta}
    rets = meta.get("returns") or {}
    lines = [f"# {meta.get('dataset_id')}", "",
             "An offline RL dataset of the modular diffusion hub (`mdhub`): aligned transitions in one `.npz` "
             "(`observations, actions, rewards, next_observations, terminals, timeouts`), readable with numpy alone.",
             "", "| field | value |", "|---|---|",
             f"| env | `{meta.get('env')}` ({meta.get('gym_id') or '-'}) |",
             f"| policy | `{meta.get('policy')}` |",
             f"| transitions | {meta.get('size')} (obs_dim {meta.get('obs_dim')}, act_dim {meta.get('act_dim')}) |",
             f"| episodes | {rets.get('count', '-')} (return {rets.get('mean', float('nan')):.1f} +- "
             f"{rets.get('std', float('nan')):.1f}) |",
             f"| content sha256 | `{meta.get('sha256')}` |", "",
             f"Pull it with `mdhub data pull REPO_ID`; the metadata record is in `{META_FILE}`."]
    return "---\n" + yaml.safe_dump(front, sort_keys=True) + "---\n\n" + "\n".join(lines) + "\n"


class _Refused(Exception):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases (they allow exponential expansion)."""

    def fetch_alias(self) -> None:
        raise _Refused("YAML aliases are not allowed")

    def fetch_anchor(self) -> None:
        raise _Refused("YAML anchors are not allowed")


def front_matter(text: bytes, where: str) -> dict[str, Any]:
    """The YAML front matter of a dataset card (anchors and aliases refused)."""
    try:
        body = text.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteError(f"{where}: {README_FILE} is not UTF-8; refused") from None
    if not body.startswith("---\n") or "\n---" not in body[3:]:
        raise RemoteError(f"{where}: {README_FILE} has no YAML front matter; not an mdhub dataset card")
    block = body[4:body.index("\n---", 3)]
    try:
        data = yaml.load(block, Loader=_StrictLoader)  # a SafeLoader subclass
    except (_Refused, yaml.YAMLError, RecursionError) as err:
        raise RemoteError(f"{where}: {README_FILE}: the front matter is refused: "
                          f"{' '.join(str(err).split())[:200]}") from None
    if not isinstance(data, dict):
        raise RemoteError(f"{where}: {README_FILE}: the front matter is not a mapping")
    return data


# --- push ------------------------------------------------------------------------------------------------------------
def push_dataset(path: Path, repo: str, revision: str | None = None, private: bool = False,
                 message: str | None = None, license: str = "mit") -> DatasetPushResult:
    """Push the dataset file `path` (the store's `<id>.npz`; hub.datasets.push resolves an id) to the dataset
    repository `repo` (`user/name`, `hf://...`, `file:///root::user/name`) in ONE commit: dataset.npz,
    metadata.json, README.md (a dataset card).

    The file is verified first (keys, dtypes, content sha256). `revision`: the branch (default main); `private`: for
    a new repository. Afterwards the file's metadata records `hub_source` (where it now lives)."""
    from modules.data.dataset import OfflineDataset
    from modules.data.errors import DatasetError

    target, branch = push_target(repo, revision, DEFAULT_BRANCH)
    dataset_id = path.stem
    try:
        ds = OfflineDataset.load(path)
    except DatasetError as err:
        raise RemoteError(f"refusing to push dataset '{dataset_id}': {err}") from None
    meta = {k: v for k, v in ds.metadata.items() if k != "hub_source"}
    meta["dataset_id"] = path.stem
    data = _npz_bytes(ds, meta)
    record = {"format": REPO_FORMAT, "metadata": meta,
              "files": {DATA_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}}
    meta_bytes = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    readme = render_dataset_card(meta, license=license).encode()
    for name, blob, limit in ((META_FILE, meta_bytes, MAX_META_BYTES), (README_FILE, readme, MAX_README_BYTES)):
        if len(blob) > limit:
            raise RemoteError(f"refusing to push dataset '{dataset_id}': {name} is {len(blob)} bytes, over the "
                              f"{limit}-byte limit a pull accepts")
    files = {DATA_FILE: data, META_FILE: meta_bytes, README_FILE: readme}
    backend = backend_for(target, "dataset")
    msg = message or f"mdhub data push {path.stem}: {meta.get('size')} transitions of {meta.get('env')}"
    result = backend.upload(target.repo_id, files, revision=branch, private=private, message=msg)
    ds.metadata = {**ds.metadata, "hub_source": {"backend": target.backend, "repo": target.repo, "revision": branch,
                                                 "commit": result.commit}}
    ds.save(path)
    return DatasetPushResult(dataset_id=path.stem, repo=target.with_revision(result.commit).url(), revision=branch,
                             commit=result.commit, url=result.url, files=tuple(files))


def _npz_bytes(ds: Any, meta: dict[str, Any]) -> bytes:
    """The dataset as the store writes it, with `meta` as its metadata record."""
    from modules.data.dataset import OfflineDataset

    tmp = Path(tempfile.mkdtemp(prefix="mdhub-data-push-"))
    try:
        copy = OfflineDataset(**ds.arrays(), metadata=dict(meta))
        return copy.save(tmp / DATA_FILE).read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- pull ------------------------------------------------------------------------------------------------------------
@dataclass
class FetchedDataset:
    """A dataset downloaded and fully verified (see the module docstring), not yet stored."""

    dataset: Any  # modules.data.dataset.OfflineDataset; its metadata is the pushed record (no hub_source)
    hub_source: dict[str, Any]  # backend, repo, revision asked for, exact commit
    url: str  # the canonical reference of the exact commit


def fetch_dataset(repo: str, timeout: float | None = None) -> FetchedDataset:
    """Download and verify the dataset repository `repo` (`user/name[@revision]`, `hf://...`,
    `file:///root::user/name[@revision]`). Stores nothing (hub.datasets.pull stores it)."""
    deadline = Deadline.of(timeout)
    ref = parse_repo_ref(repo)
    backend = backend_for(ref, "dataset")
    try:
        head = backend.download(ref.repo_id, ref.revision, (META_FILE, README_FILE, "card.json"),
                                max_sizes={**HEAD_SIZES, "card.json": MAX_META_BYTES}, deadline=deadline)
    except RepoNotFoundError:
        if _is_model_repo(ref):
            raise RemoteError(f"{ref}: is a model repository, not a dataset repository; pull a module with "
                              f"`mdhub pull {ref}`, a dataset from a dataset repository") from None
        raise
    where = str(ref.with_revision(head.commit)) + " (dataset)"
    try:
        record = _verify_head(head.folder, where)
        entry = record["files"][DATA_FILE]
        snap = backend.download(ref.repo_id, head.commit, (DATA_FILE,), max_sizes={DATA_FILE: entry["size"]},
                                deadline=deadline)
        if snap.commit != head.commit:  # pragma: no cover - backends pin the commit they are given
            raise RemoteIntegrityError(f"{where}: asked for commit {head.commit}, got {snap.commit}")
        ds = _verify_data(snap.folder / DATA_FILE, record, where)
    except (RemoteIntegrityError, BadResponseError, SizeLimitError):
        backend.forget(ref.repo_id, head.commit)  # a corrupted cached copy must not poison the next pull
        raise
    source = {"backend": ref.backend, "repo": ref.repo, "revision": ref.revision or DEFAULT_BRANCH,
              "commit": head.commit}
    return FetchedDataset(dataset=ds, hub_source=source, url=ref.with_revision(head.commit).url())


def _is_model_repo(ref: Any) -> bool:
    try:
        return backend_for(ref, "model").exists(ref.repo_id)
    except RemoteError:
        return False


def _read_capped(path: Path, limit: int, where: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SizeLimitError(f"{where}: {path.name} is over the {limit}-byte limit")
    return data


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _verify_head(folder: Path, where: str) -> dict[str, Any]:
    """metadata.json and README.md of a downloaded commit: well-formed, size-capped, agreeing with each other."""
    if not (folder / META_FILE).is_file():
        if (folder / "card.json").is_file():
            raise RemoteError(f"{where}: holds an mdhub module (card.json), not a dataset; pull it with `mdhub pull`")
        raise RemoteError(f"{where}: no {META_FILE}; not an mdhub dataset (expected {', '.join(DATASET_FILES)})")
    if not (folder / README_FILE).is_file():
        raise RemoteError(f"{where}: no {README_FILE} (an mdhub dataset carries its dataset card)")
    try:
        record = json.loads(_read_capped(folder / META_FILE, MAX_META_BYTES, where))
    except ValueError:
        raise RemoteError(f"{where}: {META_FILE} is not JSON; refused") from None
    if not isinstance(record, dict) or record.get("format") != REPO_FORMAT:
        raise RemoteError(f"{where}: {META_FILE} is not an mdhub dataset record (format "
                          f"{str(record.get('format') if isinstance(record, dict) else None)[:40]!r}, expected "
                          f"{REPO_FORMAT!r}); refused")
    meta, files = record.get("metadata"), record.get("files")
    if not isinstance(meta, dict) or not isinstance(files, dict) or set(files) != {DATA_FILE}:
        raise RemoteError(f"{where}: {META_FILE} must hold 'metadata' and 'files' listing exactly {DATA_FILE}; "
                          "refused")
    entry = files[DATA_FILE]
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not _SHA256.match(entry["sha256"]):
        raise RemoteError(f"{where}: {META_FILE}: {DATA_FILE} needs a sha256 of 64 lowercase hex digits; refused")
    if not _int_in(entry.get("size"), 1, MAX_DATA_BYTES):
        raise SizeLimitError(f"{where}: {META_FILE} declares {DATA_FILE} of {str(entry.get('size'))[:40]} bytes; "
                             f"expected 1 to {MAX_DATA_BYTES}; refusing to download it")
    for key, high in (("size", 10**10), ("obs_dim", MAX_DIM), ("act_dim", MAX_DIM)):
        if not _int_in(meta.get(key), 1, high):
            raise RemoteError(f"{where}: {META_FILE}: metadata '{key}' is {str(meta.get(key))[:40]}, expected an "
                              f"integer from 1 to {high}; refused")
    if not isinstance(meta.get("sha256"), str) or not _SHA256.match(meta["sha256"]):
        raise RemoteError(f"{where}: {META_FILE}: metadata 'sha256' is not a content sha256; refused")
    card = front_matter(_read_capped(folder / README_FILE, MAX_README_BYTES, where), where)
    if card.get("mdhub") != meta:
        raise RemoteIntegrityError(f"{where}: the front matter of {README_FILE} does not match {META_FILE}; refusing "
                                   "an inconsistent or tampered dataset")
    return record


def _verify_data(path: Path, record: dict[str, Any], where: str) -> Any:
    """The downloaded dataset.npz: declared size and sha256, the zip members the format has (sizes bounded by the
    declared dims), arrays that load and hash to the content sha256, embedded metadata equal to metadata.json's."""
    from modules.data.dataset import OfflineDataset
    from modules.data.errors import DatasetError

    entry, meta = record["files"][DATA_FILE], record["metadata"]
    if not path.is_file():
        raise RemoteIntegrityError(f"{where}: {META_FILE} lists {DATA_FILE} but the commit has no such file")
    size = path.stat().st_size
    if size != entry["size"]:
        raise RemoteIntegrityError(f"{where}: {DATA_FILE} is {size} bytes, {META_FILE} says {entry['size']}; "
                                   "refused, nothing stored")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != entry["sha256"]:
        raise RemoteIntegrityError(f"{where}: {DATA_FILE}: sha256 mismatch: {META_FILE} says "
                                   f"{entry['sha256'][:16]}..., the downloaded file has {digest.hexdigest()[:16]}...; "
                                   "refused, nothing stored")
    n, obs_dim, act_dim = meta["size"], meta["obs_dim"], meta["act_dim"]
    limits = {"observations": n * obs_dim * 4, "next_observations": n * obs_dim * 4, "actions": n * act_dim * 4,
              "rewards": n * 4, "terminals": n, "timeouts": n, "metadata": 4 * MAX_META_BYTES}
    try:
        with zipfile.ZipFile(path) as z:
            infos = {i.filename: i for i in z.infolist()}
    except (zipfile.BadZipFile, OSError) as err:
        raise RemoteIntegrityError(f"{where}: {DATA_FILE} is not a readable .npz ({err}); refused") from None
    if set(infos) != {f"{k}.npy" for k in _MEMBERS}:
        raise RemoteIntegrityError(f"{where}: {DATA_FILE} holds {sorted(infos)[:10]}, expected the members "
                                   f"{[f'{k}.npy' for k in _MEMBERS]}; refused")
    for key, limit in limits.items():
        if infos[f"{key}.npy"].file_size > limit + _NPY_HEADER_SLACK:
            raise SizeLimitError(f"{where}: {DATA_FILE}: {key} unpacks to {infos[f'{key}.npy'].file_size} bytes, "
                                 f"more than {n} rows of the declared dims allow; refused")
    try:
        ds = OfflineDataset.load(path)
    except DatasetError as err:
        raise RemoteIntegrityError(f"{where}: {str(err).replace(str(path), DATA_FILE)}; refused") from None
    if ds.metadata != meta:
        raise RemoteIntegrityError(f"{where}: the metadata inside {DATA_FILE} differs from {META_FILE}; refused")
    if len(ds) != n or ds.obs_dim != obs_dim or ds.act_dim != act_dim:  # pragma: no cover - covered by the sha256
        raise RemoteIntegrityError(f"{where}: {DATA_FILE} does not have the declared shape; refused")
    return ds


def hub_dataset_id(metadata: dict[str, Any]) -> str | None:
    """The Hugging Face Hub dataset id (`user/name`) a dataset's metadata says it lives at, or None."""
    src = metadata.get("hub_source")
    if isinstance(src, dict) and src.get("backend") == "hf" and isinstance(src.get("repo"), str):
        repo = src["repo"]
        try:
            ref = parse_repo_ref(repo)
        except RemoteError:
            return None
        return ref.repo_id if ref.backend == "hf" else None
    return None


__all__ = ["DATASET_FILES", "DatasetPullResult", "DatasetPushResult", "FetchedDataset", "check_dataset_id",
           "fetch_dataset", "hub_dataset_id", "push_dataset", "render_dataset_card", "size_category"]
