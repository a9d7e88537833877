"""The local store of modules under the hub home: module folders and the index that names them.

How a single module folder is written and read lives in `hub.module_folder`; this file decides which folder is a
module's current version (the index) and keeps that decision safe against concurrent writers and crashes.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from cards import ModuleCard
from hub.errors import NotFoundError, StoreError
from hub.module_folder import (  # noqa: F401  (re-exported: the store's public names)
    CARD,
    README,
    WEIGHTS,
    StoredModule,
    _fsync_write,
    finalize_card,
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

INDEX_FORMAT = 1


def _source(card: ModuleCard) -> str | None:
    """Where a module came from, for the index: 'hf://repo@commit', or None when made here."""
    src = card.hub_source
    return f"{src.backend}://{src.repo}@{src.commit or src.revision}" if src else None


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
        self._lock = FileLock(str(self.root / "index.lock"), timeout=60)

    # --- index -------------------------------------------------------------------------------------------------
    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            if data.get("format") != INDEX_FORMAT or not isinstance(data.get("modules"), dict):
                raise ValueError(f"expected format {INDEX_FORMAT} with a 'modules' mapping")
        except (ValueError, AttributeError) as err:
            raise StoreError(
                f"{self.index_path}: the store index is corrupted ({err}); run `mdhub reindex` to rebuild it "
                "from the module folders (nothing in them is lost)"
            ) from None
        return data["modules"]

    def _write_index(self, modules: dict[str, dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_name(f".index-{secrets.token_hex(4)}.json")
        body = json.dumps({"format": INDEX_FORMAT, "modules": modules}, indent=2, sort_keys=True) + "\n"
        _fsync_write(tmp, body.encode())
        os.replace(tmp, self.index_path)

    def entries(self, kind: str | None = None) -> list[IndexEntry]:
        """Index entries, sorted by id; optionally only one kind."""
        with self._locked():
            modules = self._read_index()
        out = [IndexEntry(id=k, **v) for k, v in sorted(modules.items())]
        return [e for e in out if kind is None or e.kind == kind]

    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        return self._lock

    # --- modules -----------------------------------------------------------------------------------------------
    def folder_of(self, module_id: str) -> Path:
        """The folder of a stored module, by id."""
        with self._locked():
            entry = self._read_index().get(module_id)
        if entry is None:
            known = [e.id for e in self.entries()]
            close = [k for k in known if module_id.lower() in k.lower() or k.lower() in module_id.lower()]
            hint = f"; did you mean {', '.join(close[:5])}?" if close else f" ({len(known)} modules stored; `mdhub list` shows them)"
            raise NotFoundError(f"no module '{module_id}' in the store at {self.root}{hint}")
        return self.modules_dir / entry["folder"]

    def resolve(self, ref: str | Path) -> Path:
        """A module folder from an id or a path (a path: anything with a separator, or an existing folder)."""
        text = str(ref)
        if isinstance(ref, Path) or os.sep in text or text.startswith(".") or Path(text).is_dir():
            return Path(text)
        return self.folder_of(text)

    def contains(self, module_id: str) -> bool:
        with self._locked():
            return module_id in self._read_index()

    def save(self, net: Any, card: ModuleCard, overwrite: bool = True, source: str | None = None) -> StoredModule:
        """Save into the store under `card.id` (replacing a module of that id when `overwrite`)."""
        if card.kind != "policy":
            registry().get(card.architecture, kind=card.kind)
        final, data = finalize_card(net, card)
        if not overwrite and self.contains(final.id):
            raise StoreError(f"a module '{final.id}' is already stored; choose another id or allow overwriting")
        folder_name = f"{final.id}.{secrets.token_hex(4)}"
        folder = self.modules_dir / folder_name
        write_folder(folder, final, data)
        old_folder = None
        try:
            with self._locked():
                modules = self._read_index()
                if not overwrite and final.id in modules:
                    raise StoreError(f"a module '{final.id}' is already stored; choose another id or allow overwriting")
                old = modules.get(final.id)
                old_folder = old["folder"] if old else None
                modules[final.id] = {
                    "kind": final.kind,
                    "architecture": final.architecture,
                    "folder": folder_name,
                    "sha256": final.file(WEIGHTS).sha256 if final.file(WEIGHTS) else None,
                    "source": _source(final) or source,
                }
                self._write_index(modules)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if old_folder and old_folder != folder_name:
            shutil.rmtree(self.modules_dir / old_folder, ignore_errors=True)
        return StoredModule(card=final, net=net, path=folder)

    def load(self, ref: str | Path) -> StoredModule:
        return load_folder(self.resolve(ref))

    def card(self, ref: str | Path) -> ModuleCard:
        return read_card(self.resolve(ref))

    def update_card(self, module_id: str, **changes: Any) -> ModuleCard:
        """Rewrite a stored module's card (e.g. new metrics), keeping its weights; atomic like a save."""
        folder = self.folder_of(module_id)
        card = read_card(folder)
        new = ModuleCard.model_validate({**card.model_dump(), **changes})
        data = verified_weights_bytes(folder, card) if new.kind != "policy" else None
        write_folder(folder, new, data)
        with self._locked():
            modules = self._read_index()
            if module_id in modules:
                modules[module_id]["source"] = _source(new) or modules[module_id].get("source")
                self._write_index(modules)
        return new

    def remove(self, module_id: str) -> None:
        with self._locked():
            modules = self._read_index()
            if module_id not in modules:
                raise NotFoundError(f"no module '{module_id}' in the store at {self.root}")
            entry = modules.pop(module_id)
            self._write_index(modules)
        shutil.rmtree(self.modules_dir / entry["folder"], ignore_errors=True)

    def reindex(self) -> int:
        """Rebuild the index from the module folders (newest folder wins per id). Returns the number indexed."""
        modules: dict[str, dict[str, Any]] = {}
        with self._locked():
            folders = sorted(self._folders(), key=lambda p: p.stat().st_mtime)
            for folder in folders:
                try:
                    card = read_card(folder)
                except StoreError:
                    continue
                weights = card.file(WEIGHTS)
                modules[card.id] = {
                    "kind": card.kind, "architecture": card.architecture, "folder": folder.name,
                    "sha256": weights.sha256 if weights else None, "source": _source(card),
                }
            self._write_index(modules)
        return len(modules)

    def _folders(self) -> Iterator[Path]:
        if self.modules_dir.is_dir():
            for p in self.modules_dir.iterdir():
                if p.is_dir() and not p.name.startswith("."):
                    yield p
