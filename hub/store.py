"""The local store of modules under the hub home: module folders and the index that names them.

How a single module folder is written and read lives in `hub.module_folder`; this file decides which folder is a
module's current version and keeps that decision safe against concurrent writers and crashes.

The rules (see docs/design.md, "The store"):
- **The index is the truth.** `index.json` maps each id to one folder under `modules/`. A module exists when the
  index names it; a folder the index does not name is a leftover, never a module.
- **Every change happens under the store's file lock** (`index.lock`): save, card update, removal. A change never
  edits a folder in place: it writes a new folder (`<id>.<generation>`), then switches the index to it (the commit
  point, one atomic rename), then removes the old folder. Readers that find a folder gone between reading the index
  and reading the folder simply read the index again.
- **Crash recovery is deterministic.** Before touching anything a change writes a journal (`journal.json`) naming
  the folder it creates and the one it will remove. Whoever next takes the lock and finds a journal finishes the
  change if the index already names the new folder (removes the old one) and rolls it back otherwise (removes the new
  one); either way it removes the temporary files. So an acknowledged write is never lost and an unacknowledged one
  never appears.
- **Nothing is replaced silently.** Saving over an id whose weights (or policy parts) or kind differ needs
  `overwrite=True` (CLI `--force`), and so does replacing or removing a module that a stored policy references.
"""
from __future__ import annotations

import difflib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from cards import EvalRecord, ModuleCard, card_to_json, card_to_readme, merge_evaluations
from hub.errors import NotFoundError, StoreError
from hub.module_folder import (
    CARD,
    README,
    WEIGHTS,
    StoredModule,
    finalize_card,
    inside,
    load_folder,
    read_card,
    read_weights,
    save_folder,
    sha256_bytes,
    verified_weights_bytes,
    weights_bytes,
    write_folder,
)
from hub.paths import home
from hub.registry import registry
from modules.atomic import fsync_dir, fsync_write

# the store's public names; module-folder I/O is re-exported from hub.module_folder
__all__ = [
    "CARD", "IMMUTABLE_FIELDS", "INDEX_FORMAT", "JOURNAL", "README", "READ_RETRIES", "WEIGHTS", "IndexEntry", "Store",
    "StoredModule", "content_key", "finalize_card", "inside", "load_folder", "policy_parts", "read_card",
    "read_weights", "save_folder", "sha256_bytes", "verified_weights_bytes", "weights_bytes", "write_folder",
]

_T = TypeVar("_T")

INDEX_FORMAT = 1


JOURNAL = "journal.json"
IMMUTABLE_FIELDS = ("id", "kind", "architecture", "config", "files", "format_version")
READ_RETRIES = 5


def _source(card: ModuleCard) -> str | None:
    """Where a module came from, for the index: 'hf://repo@commit', or None when made here."""
    src = card.hub_source
    return f"{src.backend}://{src.repo}@{src.commit or src.revision}" if src else None


def content_key(card: ModuleCard) -> tuple[str, str]:
    """What makes two versions of a module 'the same module': its kind and its weights' sha256 (a policy: its parts
    and how they meet). Two saves with the same key differ only in description, metrics and the like."""
    weights = card.file(WEIGHTS)
    if weights is not None:
        return card.kind, weights.sha256
    body = card.policy.model_dump(mode="json") if card.policy is not None else None
    return card.kind, json.dumps(body, sort_keys=True)


def policy_parts(card: ModuleCard) -> list[str]:
    """The ids a policy card references (its diffusion module and guidance modules)."""
    if card.policy is None:
        return []
    refs = (card.policy.diffusion, card.policy.train_guidance, card.policy.infer_guidance)
    return [r.id for r in refs if r is not None]


def format_ids(ids: list[str], limit: int = 5, quote: bool = False) -> str:
    """'a, b, c' or 'a, b, c, d, e and 3 more' (each id in single quotes with `quote`)."""
    shown = ", ".join(f"'{i}'" if quote else i for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _plain_folder_name(name: Any, source: str) -> str:
    """An index entry's folder: one plain name inside `modules/` (never a path, never '.' or '..')."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or name.startswith(".")):
        raise StoreError(f"{source}: folder {name!r} is not a plain folder name inside the store; the index was "
                         "tampered with: run `mdhub reindex`")
    return name


def _entry(card: ModuleCard, folder: str, source: str | None = None) -> dict[str, Any]:
    weights = card.file(WEIGHTS)
    return {"kind": card.kind, "architecture": card.architecture, "folder": folder,
            "sha256": weights.sha256 if weights else None, "source": _source(card) or source}


@dataclass(frozen=True)
class IndexEntry:
    id: str
    kind: str
    architecture: str
    folder: str
    sha256: str | None
    source: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    """The local store under the hub home: `modules/<folder>/` and an index (`index.json`) behind a file lock."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else home()
        self.modules_dir = self.root / "modules"
        self.index_path = self.root / "index.json"
        self.journal_path = self.root / JOURNAL
        self._lock = FileLock(str(self.root / "index.lock"), timeout=60)

    # --- the lock, the journal and recovery ---------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock; first finish or roll back whatever a crashed writer left in the journal."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StoreError(
                f"{self.root}: the hub home is a file, not a folder (set MDHUB_HOME to a folder)") from None
        with self._lock:
            if self.journal_path.exists():
                self._recover()
            yield

    def _write_journal(self, op: dict[str, Any]) -> None:
        """Written in place, before anything else changes: a journal cut short by a crash names nothing that was
        done yet, and recovery then only removes temporary files."""
        fsync_write(self.journal_path, json.dumps(op, sort_keys=True).encode())
        fsync_dir(self.root)

    def _clear_journal(self) -> None:
        self.journal_path.unlink(missing_ok=True)

    def _remove_folder(self, name: str | None) -> None:
        if name:
            path = self.modules_dir / _plain_folder_name(name, str(self.journal_path))
            if path.is_symlink():  # never follow a link out of the store: remove the link itself
                path.unlink()
            else:
                shutil.rmtree(inside(self.modules_dir, path), ignore_errors=True)

    def _recover(self) -> None:
        """Finish (index names the new folder) or roll back (it does not) the change a crashed writer journaled."""
        try:
            op = json.loads(self.journal_path.read_bytes())
            new, old, module_id = op.get("new"), op.get("old"), op["id"]
        except (ValueError, KeyError, TypeError, AttributeError):
            op, new, old, module_id = None, None, None, None
        try:
            modules = self._read_index()
        except StoreError:
            modules = None  # a damaged index: leave the folders for `reindex` to judge
        if op is not None and modules is not None:
            current = (modules.get(module_id) or {}).get("folder")
            if new is not None and current == new:  # committed: finish it
                if old and old != new:
                    self._remove_folder(old)
            elif new is None:  # a removal
                if module_id not in modules and old:
                    self._remove_folder(old)
            else:  # not committed: roll back
                self._remove_folder(new)
        self._remove_leftovers(temporary_only=True)
        self._clear_journal()

    def _remove_leftovers(self, temporary_only: bool, keep: Iterable[str] = ()) -> list[str]:
        """Remove temporary files (`.tmp-*`, `.old-*`, `.index-*.json`) and, unless
        `temporary_only`, every module folder not in `keep`. Returns what was removed (names)."""
        removed = []
        for pattern in (".index-*.json",):
            for p in self.root.glob(pattern):
                p.unlink(missing_ok=True)
                removed.append(p.name)
        keep = set(keep)
        if self.modules_dir.is_dir():
            for p in self.modules_dir.iterdir():
                temp = p.name.startswith((".tmp-", ".old-"))
                if temp or (not temporary_only and p.name not in keep):
                    if p.is_symlink() or not p.is_dir():
                        p.unlink(missing_ok=True)
                    else:
                        shutil.rmtree(p, ignore_errors=True)
                    removed.append(p.name)
        return removed

    # --- index -------------------------------------------------------------------------------------------------
    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return {}
        except IsADirectoryError:
            raise StoreError(f"{self.index_path}: a folder, expected the store's index file") from None
        try:
            data = json.loads(raw)
            if data.get("format") != INDEX_FORMAT or not isinstance(data.get("modules"), dict):
                raise ValueError(f"expected format {INDEX_FORMAT} with a 'modules' mapping")
            for module_id, entry in data["modules"].items():
                if not isinstance(entry, dict):
                    raise ValueError(f"entry '{module_id}' is not an object")
                _plain_folder_name(entry.get("folder"), f"{self.index_path}: entry '{module_id}'")
        except (ValueError, AttributeError, RecursionError) as err:
            raise StoreError(
                f"{self.index_path}: the store index is corrupted ({err}); run `mdhub reindex` to rebuild it "
                "from the module folders (nothing in them is lost)"
            ) from None
        modules: dict[str, dict[str, Any]] = data["modules"]
        return modules

    def _write_index(self, modules: dict[str, dict[str, Any]]) -> None:
        tmp = self.index_path.with_name(f".index-{secrets.token_hex(4)}.json")
        body = json.dumps({"format": INDEX_FORMAT, "modules": modules}, indent=2, sort_keys=True) + "\n"
        fsync_write(tmp, body.encode())
        os.replace(tmp, self.index_path)
        fsync_dir(self.root)

    def entries(self, kind: str | None = None) -> list[IndexEntry]:
        """Index entries, sorted by id; optionally only one kind."""
        with self._locked():
            modules = self._read_index()
        out = [IndexEntry(id=k, **v) for k, v in sorted(modules.items())]
        return [e for e in out if kind is None or e.kind == kind]

    # --- modules -----------------------------------------------------------------------------------------------
    def _not_found(self, module_id: str, known: Iterable[str]) -> NotFoundError:
        """'no module X', with the stored ids closest to X by edit distance (difflib's ratio; case ignored)."""
        known = list(known)
        by_lower: dict[str, str] = {}
        for k in known:
            by_lower.setdefault(k.lower(), k)
        close = [by_lower[k] for k in difflib.get_close_matches(module_id.lower(), list(by_lower), n=5, cutoff=0.6)]
        hint = (f"; did you mean {', '.join(close)}?" if close
                else f" ({len(known)} modules stored; `mdhub list` shows them)")
        return NotFoundError(f"no module '{module_id}' in the store at {self.root}{hint}")

    def folder_of(self, module_id: str) -> Path:
        """The folder of a stored module, by id."""
        with self._locked():
            modules = self._read_index()
        entry = modules.get(module_id)
        if entry is None:
            raise self._not_found(module_id, modules)
        return inside(self.modules_dir, entry["folder"])

    @staticmethod
    def _is_path(ref: str | Path) -> bool:
        text = str(ref)
        return isinstance(ref, Path) or os.sep in text or text.startswith(".") or Path(text).is_dir()

    def resolve(self, ref: str | Path) -> Path:
        """A module folder from an id or a path (a path: anything with a separator, or an existing folder)."""
        return Path(str(ref)) if self._is_path(ref) else self.folder_of(str(ref))

    def _read_by_ref(self, ref: str | Path, read: Callable[[Path], _T]) -> _T:
        """`read(folder)` for an id or a path. By id, a folder replaced by a concurrent change between reading the
        index and reading the folder is looked up again, so readers never see a module vanish mid-update."""
        if self._is_path(ref):
            return read(Path(str(ref)))
        for attempt in range(READ_RETRIES):
            folder = self.folder_of(str(ref))
            try:
                return read(folder)
            except StoreError:
                if folder.exists() or attempt == READ_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def contains(self, module_id: str) -> bool:
        with self._locked():
            return module_id in self._read_index()

    def _referencing_policies(self, modules: dict[str, dict[str, Any]], module_id: str) -> list[str]:
        """Ids of stored policies whose card references `module_id` as a part (call under the lock)."""
        out = []
        for pid, entry in sorted(modules.items()):
            if entry.get("kind") != "policy" or pid == module_id:
                continue
            try:
                card = read_card(self.modules_dir / entry["folder"])
            except StoreError:
                continue
            if module_id in policy_parts(card):
                out.append(pid)
        return out


    def _write_new_folder(self, name: str, card: ModuleCard, weights: bytes | Path | None) -> None:
        """Write the module folder `name` (under the lock); `weights` as bytes, or an existing verified file to
        link (a card update keeps the very same weights file)."""
        tmp = self.modules_dir / f".tmp-{name}"
        self.modules_dir.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        if isinstance(weights, Path):
            try:
                os.link(weights, tmp / WEIGHTS)
            except OSError:
                shutil.copyfile(weights, tmp / WEIGHTS)
        elif weights is not None:
            fsync_write(tmp / WEIGHTS, weights)
        fsync_write(tmp / CARD, card_to_json(card).encode())
        fsync_write(tmp / README, card_to_readme(card).encode())
        fsync_dir(tmp)
        os.replace(tmp, self.modules_dir / name)
        fsync_dir(self.modules_dir)

    def _commit(self, modules: dict[str, dict[str, Any]], card: ModuleCard, weights: bytes | Path | None,
                source: str | None) -> str:
        """Journal, write the new folder, switch the index (the commit point), remove the old folder."""
        old = (modules.get(card.id) or {}).get("folder")
        name = f"{card.id}.{time.time_ns():x}"  # the generation: newer saves sort later (used by a rebuild)
        self._write_journal({"op": "write", "id": card.id, "new": name, "old": old})
        try:
            self._write_new_folder(name, card, weights)
            modules[card.id] = _entry(card, name, source)
            self._write_index(modules)
        except BaseException:
            self._recover()  # roll back: the index does not name the new folder
            raise
        if old and old != name:
            self._remove_folder(old)
        self._clear_journal()
        return name

    def save(self, net: Any, card: ModuleCard, overwrite: bool = False, source: str | None = None) -> StoredModule:
        """Save into the store under `card.id`.

        Saving again what is already stored (same kind and weights, or the same policy parts) replaces its card.
        Replacing a module with different weights or of another kind, or one that stored policies reference, needs
        `overwrite=True`; without it the store is left as it was and the error says why.
        """
        if card.kind != "policy":
            registry().get(card.architecture, kind=card.kind)
        final, data = finalize_card(net, card)
        with self._locked():
            modules = self._read_index()
            if final.id in modules:
                self._check_replace(modules, final, overwrite)
            folder = self._commit(modules, final, data, source)
        return StoredModule(card=final, net=net, path=self.modules_dir / folder)

    def _check_replace(self, modules: dict[str, dict[str, Any]], new: ModuleCard, overwrite: bool) -> None:
        entry = modules[new.id]
        try:
            old = read_card(self.modules_dir / entry["folder"])
            same = content_key(old) == content_key(new)
        except StoreError:
            old, same = None, False
        if same or overwrite:
            return
        if old is not None and old.kind != new.kind:
            what = f"a {old.kind} module, and this is a {new.kind} module"
        elif old is not None and old.kind == "policy":
            what = "a policy with other parts"
        else:
            what = f"a {entry.get('kind', 'module')} with different weights (sha256 {str(entry.get('sha256'))[:12]}...)"
        users = self._referencing_policies(modules, new.id)
        used = f"; stored policies reference it: {format_ids(users, quote=True)}" if users else ""
        raise StoreError(f"'{new.id}' is already stored as {what}{used}; choose another id, or replace it with "
                         "--force (API: overwrite=True)")

    def load(self, ref: str | Path) -> StoredModule:
        return self._read_by_ref(ref, load_folder)

    def card(self, ref: str | Path) -> ModuleCard:
        return self._read_by_ref(ref, read_card)

    def update_card(self, module_id: str, **changes: Any) -> ModuleCard:
        """Change a stored module's card, keeping its weights: `metrics` are merged key by key into the card's,
        `evaluations` accumulate (cards.merge_evaluations), any other field replaces. The read, the change and the
        swap happen under the store's lock, so concurrent updates are never lost, and the swap is a new folder plus
        an index switch, so a crash loses nothing."""
        frozen = sorted(set(changes) & set(IMMUTABLE_FIELDS))
        if frozen:
            raise StoreError(f"update_card('{module_id}'): {', '.join(frozen)} cannot change on a stored module; "
                             "save a new module instead")
        with self._locked():
            modules = self._read_index()
            if module_id not in modules:
                raise self._not_found(module_id, modules)
            folder = inside(self.modules_dir, modules[module_id]["folder"])
            card = read_card(folder)
            data = card.model_dump()
            for key, value in changes.items():
                if key == "metrics":
                    data["metrics"] = {**data["metrics"], **dict(value)}
                elif key == "evaluations":  # accumulated, labelled (cards.merge_evaluations)
                    merged = merge_evaluations(card.evaluations, [EvalRecord.model_validate(v) for v in value])
                    data["evaluations"] = [r.model_dump() for r in merged]
                else:
                    data[key] = value.model_dump() if hasattr(value, "model_dump") else value
            new = ModuleCard.model_validate(data)
            weights = None
            if new.kind != "policy":
                verified_weights_bytes(folder, card)  # never carry forward weights that no longer match the card
                weights = folder / WEIGHTS
            self._commit(modules, new, weights, modules[module_id].get("source"))
        return new

    def remove(self, module_id: str, force: bool = False) -> None:
        """Remove a module. Refused while a stored policy references it, unless `force`."""
        with self._locked():
            modules = self._read_index()
            if module_id not in modules:
                raise self._not_found(module_id, modules)
            users = self._referencing_policies(modules, module_id)
            if users and not force:
                raise StoreError(f"'{module_id}' is a part of the stored policies {format_ids(users, quote=True)}; "
                                 "remove them first, or remove it anyway with --force (API: force=True)")
            entry = modules.pop(module_id)
            self._write_journal({"op": "remove", "id": module_id, "new": None, "old": entry["folder"]})
            self._write_index(modules)
            self._remove_folder(entry["folder"])
            self._clear_journal()

    def referencing_policies(self, module_id: str) -> list[str]:
        """Ids of the stored policies that reference `module_id` as a part."""
        with self._locked():
            return self._referencing_policies(self._read_index(), module_id)

    def reindex(self) -> int:
        """Make the index and the folders agree. Returns the number of modules indexed.

        With a readable index, the index is the truth: entries whose folder is missing or unreadable are dropped,
        and every folder it does not name (an unacknowledged save, an old version whose removal was interrupted) and
        every temporary file is removed. With a damaged or missing index, it is rebuilt from the folders: per id,
        the newest folder whose card validates and whose weights match it (the folder names carry the generation).
        """
        with self._locked():
            try:
                modules: dict[str, dict[str, Any]] | None = self._read_index() if self.index_path.exists() else None
            except StoreError:
                modules = None
            if modules is None:
                modules = self._rebuild()
            kept = {}
            for module_id, entry in modules.items():
                try:
                    card = read_card(self.modules_dir / entry["folder"])
                    if card.id != module_id:
                        continue
                    if card.kind != "policy":
                        verified_weights_bytes(self.modules_dir / entry["folder"], card)
                except StoreError:
                    continue
                kept[module_id] = _entry(card, entry["folder"], entry.get("source"))
            self._write_index(kept)
            self._remove_leftovers(temporary_only=False, keep=[e["folder"] for e in kept.values()])
            self._clear_journal()
        return len(kept)

    def _rebuild(self) -> dict[str, dict[str, Any]]:
        """Index entries from the folders alone: per id, the newest valid folder."""
        modules: dict[str, dict[str, Any]] = {}
        generation: dict[str, tuple[int, float]] = {}
        for folder in self._folders():
            try:
                card = read_card(folder)
                if card.kind != "policy":
                    verified_weights_bytes(folder, card)
            except StoreError:
                continue
            if not folder.name.startswith(card.id + "."):
                continue
            suffix = folder.name[len(card.id) + 1:]
            try:
                gen = (int(suffix, 16) if len(suffix) > 8 else -1, folder.stat().st_mtime)
            except ValueError:
                continue
            if card.id not in generation or gen > generation[card.id]:
                generation[card.id] = gen
                modules[card.id] = _entry(card, folder.name)
        return modules

    def _folders(self) -> Iterator[Path]:
        if self.modules_dir.is_dir():
            for p in self.modules_dir.iterdir():
                if p.is_dir() and not p.is_symlink() and not p.name.startswith("."):
                    yield p
