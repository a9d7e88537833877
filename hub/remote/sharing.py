"""Sharing modules: `push` one to a repository in ONE commit; `pull` one (and a policy's parts) into the store.

Push: the module is loaded and verified first (card validated, architecture built from the local registry, sha256
checked, tensors loaded strictly); a card that does not validate is never pushed. The commit holds exactly
`model.safetensors` (none for a policy), `card.json` and `README.md`, the README re-rendered from the card so the
two always agree. `hub_source` is not published (a pull records its own). After a push from the store, the local
card records where the module now lives (`hub_source`), which is how a policy pushed later finds its parts.

Policies: a policy card references its parts and holds no weights. It is pushed with each part's repo and exact
commit filled in. A part that has never been pushed (no repo in the policy card, no `hub_source` in the store) is
refused with a message: push the part first. Nothing is pushed implicitly.

Pull: through the backend (the HF cache for `hf`), at one exact commit, under one deadline for the whole pull
(`timeout`, default $MDHUB_PULL_TIMEOUT, else 600 s; a stall or a drip ends in RemoteTimeoutError). card.json and
README.md come first, size-capped; they must parse (validated, no YAML aliases) into EQUAL cards. The weights are
then fetched at the same commit, capped at the size the card declares, and must match its sha256; the network is
built through the LOCAL registry only (a card names an id, never code), the tensors must load strictly and
re-serialise to the same bytes. The backend checks every identifier the server sends before using it (commit ids,
ETags, oids: plain hashes only, hub.remote.hf). A policy's parts are fetched and checked the same way (by their
recorded repo and commit, against the sha256 the policy names), must live on the same kind of remote as the policy
(a policy from the Hub never reaches into a local folder), and the policy's runtime is built as `load_policy` would
build it (sampling params, compatibility, mode builder) before anything is saved. Only the three known files are
ever downloaded; nothing downloaded is executed or unpickled. Every refusal is one RemoteError line and leaves the
store as it was. The stored card records `hub_source = (backend, repo, revision asked for, exact commit)`, so
`pull(source)` is reproducible.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cards import (
    CardError,
    FileEntry,
    HubSource,
    ModuleCard,
    ModuleRef,
    card_from_json,
    card_from_readme,
    card_to_json,
    card_to_readme,
)
from cards.readme import MAX_README_BYTES
from hub.errors import IntegrityError, MdhubError
from hub.remote import (
    DEFAULT_BRANCH,
    BadResponseError,
    Deadline,
    RemoteError,
    RemoteIntegrityError,
    RepoRef,
    SizeLimitError,
    backend_for,
    parse_repo_ref,
    ref_from_source,
)
from hub.remote.refs import push_target
from hub.store import (
    CARD,
    README,
    WEIGHTS,
    Store,
    StoredModule,
    load_folder,
    read_card,
    sha256_bytes,
    verified_weights_bytes,
    weights_bytes,
)

MODULE_FILES = (WEIGHTS, CARD, README)
MAX_CARD_BYTES = 1_000_000
MAX_WEIGHTS_BYTES = 16 * 2**30
MAX_SIZES = {CARD: MAX_CARD_BYTES, README: MAX_README_BYTES, WEIGHTS: MAX_WEIGHTS_BYTES}
CARD_SIZES = {CARD: MAX_CARD_BYTES, README: MAX_README_BYTES}
_PLACE = {"hf": "the Hugging Face Hub", "file": "a local folder"}
PART_ROLES = {"diffusion": "diffusion", "train_guidance": "guidance", "infer_guidance": "guidance"}
MAX_DEPTH = 2


@dataclass(frozen=True)
class PushResult:
    """What a push made: `repo` is the canonical reference of the new commit (pull it to get exactly this)."""

    module_id: str
    repo: str
    revision: str
    commit: str
    url: str
    files: tuple[str, ...]


@dataclass
class _Fetched:
    """A module downloaded and fully verified, not yet stored."""

    card: ModuleCard
    net: Any
    where: str


def _weights_sha(card: ModuleCard) -> str | None:
    entry = card.file(WEIGHTS)
    return entry.sha256 if entry else None


# --- push ------------------------------------------------------------------------------------------------------------
def push(module: str | Path, repo: str, revision: str | None = None, private: bool = False,
         message: str | None = None, store: Store | None = None) -> PushResult:
    """Push a stored module (by id, or a module folder) to `repo` in ONE commit; create the repo if needed.

    `repo` is a reference (`user/name`, `hf://user/name`, `file:///root::user/name`, see `hub.remote.refs`);
    `revision` is the branch (default main; created from main if new); `private` applies to a new repository.
    """
    store = store or Store()
    target, branch = push_target(repo, revision, DEFAULT_BRANCH)

    folder = store.resolve(module)
    store_id = _store_id(store, module, folder)
    card, weights = _verified_local(folder, module)
    card = card.model_copy(update={"hub_source": None})
    if card.kind == "policy":
        card = _with_published_parts(card, target, store)
    files = _render(card, weights, module)

    backend = backend_for(target)
    msg = message or f"mdhub push {card.id}: {card.kind} {card.architecture} ({card.origin.algorithm})"
    result = backend.upload(target.repo_id, files, revision=branch, private=private, message=msg)
    if store_id is not None:
        source = HubSource(backend=target.backend, repo=target.repo, revision=branch, commit=result.commit)
        store.update_card(store_id, hub_source=source.model_dump())
    return PushResult(module_id=card.id, repo=target.with_revision(result.commit).url(), revision=branch,
                      commit=result.commit, url=result.url, files=tuple(files))


def _store_id(store: Store, module: str | Path, folder: Path) -> str | None:
    """The store id `module` names, or None when it is a folder outside the store's index."""
    if isinstance(module, Path):
        return None
    text = str(module)
    if store.contains(text) and store.folder_of(text) == folder:
        return text
    return None


def _verified_local(folder: Path, module: str | Path) -> tuple[ModuleCard, bytes | None]:
    """The validated card and verified weights of a local module, or a refusal naming the problem."""
    try:
        card = read_card(folder)
        if card.kind == "policy":
            return card, None
        loaded = load_folder(folder)  # registry build, sha256, strict tensors
        return loaded.card, verified_weights_bytes(folder, loaded.card)
    except (MdhubError, CardError) as err:
        raise RemoteError(f"refusing to push '{module}': {err}") from None


def _hub_datasets(card: ModuleCard) -> list[str]:
    """The Hub dataset id of the card's data when the dataset store knows one (pushed or pulled there), for the
    model card's `datasets:`; a local-only dataset is left out."""
    ref = card.interface.dataset
    if ref is None:
        return []
    import hub.datasets

    lookup = getattr(hub.datasets, "hub_dataset_id", None)  # the dataset store's record of where its data live
    found = lookup(ref.id) if lookup is not None else None
    if not isinstance(found, str) or not found:
        return []
    if ref.sha256:  # the data under that id now must be the data the module was trained on
        try:
            stored = hub.datasets.dataset_info(ref.id).get("sha256")
        except (MdhubError, ValueError, OSError):
            return []
        if stored != ref.sha256:
            return []
    return [found]


def _render(card: ModuleCard, weights: bytes | None, module: str | Path) -> dict[str, bytes]:
    """The files of the commit: weights, canonical card.json, README.md rendered from the card (round-trip checked)."""
    try:
        card = ModuleCard.model_validate(card.model_dump())
    except ValueError as err:
        raise RemoteError(f"refusing to push '{module}': the card does not validate: {err}") from None
    files: dict[str, bytes] = {}
    if weights is not None:
        files[WEIGHTS] = weights
    files[CARD] = card_to_json(card).encode()
    readme = card_to_readme(card, hub_datasets=_hub_datasets(card))
    files[README] = readme.encode()
    if card_from_readme(readme) != card:  # pragma: no cover - a rendering bug, never user input
        raise RemoteError(f"refusing to push '{module}': README.md does not parse back to the card")
    for name, limit in MAX_SIZES.items():
        if name in files and len(files[name]) > limit:
            raise RemoteError(f"refusing to push '{module}': {name} is {len(files[name])} bytes, over the "
                              f"{limit}-byte limit a pull accepts")
    return files


def _with_published_parts(card: ModuleCard, target: RepoRef, store: Store) -> ModuleCard:
    """The policy card with every part's repo and exact commit filled in (from the card or the parts' hub_source)."""
    assert card.policy is not None
    updates: dict[str, ModuleRef] = {}
    for role, kind in PART_ROLES.items():
        ref: ModuleRef | None = getattr(card.policy, role)
        if ref is not None:
            updates[role] = _published_part(card.id, role, kind, ref, target, store)
    return card.model_copy(update={"policy": card.policy.model_copy(update=updates)})


def _published_part(policy_id: str, role: str, kind: str, ref: ModuleRef, target: RepoRef,
                    store: Store) -> ModuleRef:
    what = f"policy '{policy_id}': its {role} part '{ref.id}'"
    if ref.repo:
        where = parse_repo_ref(ref.repo, base=target)
        _same_kind(where, target, what)
        return ref.model_copy(update={"repo": where.relative_to(target), "revision": ref.revision or where.revision})
    how = f"push it first (mdhub push {ref.id} NAMESPACE/NAME), then push the policy"
    if not store.contains(ref.id):
        raise RemoteError(f"{what} names no repo and is not in the local store; {how}")
    part = store.card(ref.id)
    if part.kind != kind:
        raise RemoteError(f"{what} is a {part.kind} module in the store, expected a {kind} module")
    sha = _weights_sha(part)
    if ref.sha256 and sha != ref.sha256:
        raise RemoteError(f"{what}: the store holds weights with sha256 {str(sha)[:12]}..., the policy was made "
                          f"with {ref.sha256[:12]}...; push the part the policy was made with")
    if part.hub_source is None:
        raise RemoteError(f"{what} has not been pushed anywhere; {how}")
    where = ref_from_source(part.hub_source)
    _same_kind(where, target, what)
    return ref.model_copy(update={"sha256": ref.sha256 or sha, "repo": where.relative_to(target),
                                  "revision": where.revision})


def _same_kind(part: RepoRef, target: RepoRef, what: str) -> None:
    """A pull refuses a policy whose parts live on another kind of remote, so a push never publishes one."""
    if part.backend != target.backend:
        raise RemoteError(f"{what} lives at {part.url()}, {_PLACE[part.backend]}; a policy pushed to "
                          f"{_PLACE[target.backend]} may only reference parts there too (a pull would refuse it); "
                          f"push the part to {_PLACE[target.backend]} first")


# --- pull ------------------------------------------------------------------------------------------------------------
def pull(repo: str, local_id: str | None = None, store: Store | None = None, force: bool = False,
         timeout: float | None = None) -> StoredModule:
    """Pull `repo` (`user/name[@revision]`, `hf://...`, `file:///root::user/name[@revision]`) into the store.

    Everything is downloaded and verified (a policy's parts too) before anything is stored. The module is stored
    under `local_id` (default: the card's id); parts under the ids the policy names. A different module already
    stored under one of these ids (other weights, other origin) is kept, with an error, unless `force`.
    `timeout`: seconds the whole pull may take, parts included (default $MDHUB_PULL_TIMEOUT, else 600); past it the
    pull ends with RemoteTimeoutError and nothing stored.
    """
    deadline = Deadline.of(timeout)
    store = store or Store()
    ref = parse_repo_ref(repo)
    fetched = _fetch(ref, local_id=local_id, expect_kind=None, store=store, depth=0, deadline=deadline)
    ids = [item.card.id for item in fetched]
    if len(set(ids)) != len(ids):
        raise RemoteError(f"{fetched[-1].where}: the policy and its parts would share a store id ({', '.join(ids)}); "
                          "pull it with --id NEW_ID")
    for item in fetched:
        _check_conflict(store, item, force)
    stored = [store.save(item.net, item.card, overwrite=True) for item in fetched]  # replacement checked above
    top = stored[-1]
    if _weights_sha(top.card) != _weights_sha(fetched[-1].card):  # pragma: no cover - guarded by the canonical check
        raise RemoteIntegrityError(f"{fetched[-1].where}: the stored weights differ from the pulled ones")
    return top


def _fetch(ref: RepoRef, local_id: str | None, expect_kind: str | None, store: Store, depth: int,
           deadline: Deadline) -> list[_Fetched]:
    """Download and verify one module (and, for a policy, its parts first). Stores nothing.

    The card comes first (card.json and README.md, size-capped); the weights are then fetched at the same exact
    commit, capped at the size the card declares, so no server can make a pull read more than the card promised.
    """
    backend = backend_for(ref)
    head = backend.download(ref.repo_id, ref.revision, (CARD, README), max_sizes=CARD_SIZES, deadline=deadline)
    where = str(ref.with_revision(head.commit))
    try:
        card = _verify_card(head.folder, where, expect_kind)
        net = None
        if card.kind != "policy":
            entry = _weights_entry(card, where)
            snap = backend.download(ref.repo_id, head.commit, (WEIGHTS,), max_sizes={WEIGHTS: entry.size},
                                    deadline=deadline)
            if snap.commit != head.commit:  # pragma: no cover - backends pin the commit they are given
                raise RemoteIntegrityError(f"{where}: asked for commit {head.commit}, got {snap.commit}")
            net = _verify_weights(snap.folder, card, entry, where)
    except (RemoteIntegrityError, BadResponseError, SizeLimitError):
        backend.forget(ref.repo_id, head.commit)  # a corrupted cached copy must not poison the next pull
        raise
    source = HubSource(backend=ref.backend, repo=ref.repo, revision=ref.revision or DEFAULT_BRANCH,
                       commit=head.commit)
    update: dict[str, Any] = {"hub_source": source.model_dump()}
    if local_id is not None:
        update["id"] = local_id
    try:
        card = ModuleCard.model_validate({**card.model_dump(), **update})
    except ValueError as err:
        raise RemoteError(f"{where}: cannot store it as '{local_id}': {err}") from None
    parts: list[_Fetched] = []
    if card.kind == "policy":
        parts = _fetch_parts(card, ref, where, store, depth, deadline)
        _validate_policy(card, parts, store, where)
    return parts + [_Fetched(card=card, net=net, where=where)]


def _fetch_parts(card: ModuleCard, base: RepoRef, where: str, store: Store, depth: int,
                 deadline: Deadline) -> list[_Fetched]:
    assert card.policy is not None
    if depth >= MAX_DEPTH:
        raise RemoteError(f"{where}: policy parts nest deeper than {MAX_DEPTH} levels; refused")
    out: list[_Fetched] = []
    seen: set[str] = set()
    for role, kind in PART_ROLES.items():
        ref: ModuleRef | None = getattr(card.policy, role)
        if ref is None or ref.id in seen:
            continue
        seen.add(ref.id)
        what = f"{where}: policy part {role} '{ref.id}'"
        if not ref.repo:
            if ref.sha256 and store.contains(ref.id) and _weights_sha(store.card(ref.id)) == ref.sha256:
                continue  # already here, the very weights the policy names
            raise RemoteError(f"{what} names no repo and is not in the local store with the sha256 the policy names")
        try:
            part_ref = parse_repo_ref(ref.repo, base=base)
        except RemoteError as err:
            raise RemoteError(f"{what}: {err}") from None
        if part_ref.backend != base.backend:
            raise RemoteError(f"{what} points at {part_ref.url()}, {_PLACE[part_ref.backend]}; a policy pulled from "
                              f"{_PLACE[base.backend]} may only reference parts there too; refused")
        part_ref = part_ref.with_revision(ref.revision or part_ref.revision)
        fetched = _fetch(part_ref, local_id=ref.id, expect_kind=kind, store=store, depth=depth + 1,
                         deadline=deadline)
        got = _weights_sha(fetched[-1].card)
        if ref.sha256 and got != ref.sha256:
            raise RemoteIntegrityError(f"{what}: {part_ref} has weights with sha256 {str(got)[:16]}..., the policy "
                                       f"names {ref.sha256[:16]}...; refused")
        out += fetched
    return out


class _PulledFirst:
    """The store as `load_policy` sees it while a pulled policy is validated: the fetched parts (not stored yet)
    first, then what the store holds. Nothing is written through it."""

    def __init__(self, store: Store, fetched: dict[str, StoredModule]):
        self._store, self._fetched = store, fetched

    def load(self, ref: str | Path) -> StoredModule:
        return self._fetched[ref] if isinstance(ref, str) and ref in self._fetched else self._store.load(ref)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _validate_policy(card: ModuleCard, parts: list[_Fetched], store: Store, where: str) -> None:
    """Refuse a policy that could not run: load it exactly as `hub.load_policy` (so `mdhub eval`) will, its parts
    taken from what was just fetched (or from the store), before anything is stored."""
    from hub.combine import load_policy, sampling_config

    assert card.policy is not None
    fetched = {item.card.id: StoredModule(card=item.card, net=item.net, path=Path(where)) for item in parts}
    try:
        sampling_config(card.policy.mode, dict(card.policy.params))  # first: the error names the setting
        load_policy(StoredModule(card=card, net=None, path=Path(where)), store=_PulledFirst(store, fetched))
    except MdhubError as err:
        raise RemoteError(f"{where}: refused: policy '{card.id}' cannot be loaded: {_one_line(err)}") from None
    except Exception as err:  # hostile params or parts that break the runtime builder: one line, no traceback
        raise RemoteError(f"{where}: refused: policy '{card.id}' cannot be built ({type(err).__name__}: "
                          f"{_one_line(err)})") from None


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _read_capped(path: Path, limit: int, where: str) -> bytes:
    """At most `limit` bytes of a file (never an unbounded read, whatever the file claims to be)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SizeLimitError(f"{where}: {path.name} is over the {limit}-byte limit")
    return data


def _verify_card(folder: Path, where: str, expect_kind: str | None) -> ModuleCard:
    """card.json and README.md of a downloaded commit: parsed (size-capped, validated) into EQUAL cards."""
    if not (folder / CARD).is_file():
        raise RemoteError(f"{where}: no {CARD}; not an mdhub module (expected {', '.join(MODULE_FILES)})")
    if not (folder / README).is_file():
        raise RemoteError(f"{where}: no {README} (an mdhub module carries its model card)")
    try:
        card = card_from_json(_read_capped(folder / CARD, MAX_CARD_BYTES, where), f"{where}: {CARD}")
        readme_card = card_from_readme(_read_capped(folder / README, MAX_README_BYTES, where), f"{where}: {README}")
    except CardError as err:
        raise RemoteError(f"refused: {err}") from None
    if readme_card != card:
        a, b = card.model_dump(mode="json"), readme_card.model_dump(mode="json")
        fields = sorted(k for k in a if a[k] != b.get(k))
        raise RemoteIntegrityError(
            f"{where}: the front matter of {README} does not match {CARD} (fields differ: {', '.join(fields)}); "
            "refusing an inconsistent or tampered module"
        )
    if expect_kind is not None and card.kind != expect_kind:
        raise RemoteError(f"{where}: is a {card.kind} module ('{card.id}'), expected a {expect_kind} module")
    return card


def _weights_entry(card: ModuleCard, where: str) -> FileEntry:
    """The card's one weights entry, within the size a pull accepts (the cap for downloading the weights)."""
    extra = [f.name for f in card.files if f.name != WEIGHTS]
    entry = card.file(WEIGHTS)
    if extra or entry is None:
        raise RemoteIntegrityError(f"{where}: {CARD} must list exactly one file, {WEIGHTS} (it lists "
                                   f"{[f.name for f in card.files]})")
    if entry.size > MAX_WEIGHTS_BYTES:
        raise SizeLimitError(f"{where}: {CARD} declares {WEIGHTS} of {entry.size} bytes, over the "
                             f"{MAX_WEIGHTS_BYTES}-byte limit; refusing to download it")
    return entry


def _verify_weights(folder: Path, card: ModuleCard, entry: FileEntry, where: str) -> Any:
    """The downloaded weights: the size and sha256 the card declares; built through the local registry."""
    path = folder / WEIGHTS
    if not path.is_file():
        raise RemoteIntegrityError(f"{where}: {CARD} lists {WEIGHTS} but the commit has no such file")
    size = path.stat().st_size
    if size != entry.size:
        raise RemoteIntegrityError(f"{where}: {WEIGHTS} is {size} bytes, {CARD} says {entry.size}; refused, "
                                   "nothing stored")
    data = _read_capped(path, entry.size, where)
    digest = sha256_bytes(data)
    if digest != entry.sha256:
        raise RemoteIntegrityError(f"{where}: {WEIGHTS}: sha256 mismatch: {CARD} says {entry.sha256[:16]}..., the "
                                   f"downloaded file has {digest[:16]}...; refused, nothing stored")
    return _build(card, data, where)


def _build(card: ModuleCard, data: bytes, where: str) -> Any:
    """Build the network through the local registry from a private temporary copy (hub.store.load_folder)."""
    tmp = Path(tempfile.mkdtemp(prefix="mdhub-pull-"))
    try:
        (tmp / CARD).write_text(card_to_json(card))
        (tmp / WEIGHTS).write_bytes(data)
        try:
            loaded = load_folder(tmp)
        except IntegrityError as err:
            raise RemoteIntegrityError(f"{where}: {str(err).replace(str(tmp) + os.sep, '')}") from None
        except MdhubError as err:
            raise RemoteError(f"{where}: refused: {str(err).replace(str(tmp) + os.sep, '')}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if weights_bytes(loaded.net) != data:
        raise RemoteIntegrityError(f"{where}: {WEIGHTS} is not in canonical form (re-serialising it changes its "
                                   "sha256), so the stored module could not match the published one; refused")
    return loaded.net


def _check_conflict(store: Store, item: _Fetched, force: bool) -> None:
    """Refuse to replace a different module of the same id (other weights and other origin) unless `force`."""
    card = item.card
    if force or not store.contains(card.id):
        return
    try:
        old = store.card(card.id)
    except MdhubError:
        return  # unreadable: replacing it is a repair
    new_src, old_src = card.hub_source, old.hub_source
    same_origin = bool(old_src and new_src and (old_src.backend, old_src.repo) == (new_src.backend, new_src.repo))
    same_module = old.kind == card.kind and _weights_sha(old) == _weights_sha(card) and (
        card.kind != "policy" or old.policy == card.policy)
    if same_origin or same_module:
        return
    origin = f"from {old_src.backend}:{old_src.repo}" if old_src else "made locally"
    raise RemoteError(
        f"a different module '{card.id}' is already in the store ({old.kind}, sha256 "
        f"{str(_weights_sha(old))[:12]}, {origin}); pull with --id NEW_ID to keep both, or --force to replace it"
    )


__all__ = ["MODULE_FILES", "PushResult", "pull", "push"]
