"""One repository's folder in the Hugging Face cache, written and read by mdhub itself, in huggingface_hub's layout.

    CACHE/models--NAMESPACE--NAME/   (datasets--NAMESPACE--NAME/ for a dataset repository)
        blobs/ETAG                   a file's bytes, named by its identifier (git blob sha1, or sha256 for LFS)
        snapshots/COMMIT/FILENAME    a relative symlink to ../../blobs/ETAG (a copy where links are unsupported)
        refs/REVISION                the commit a branch pointed to when it was last pulled (for offline use)

Every name that becomes a path here is checked first, whoever supplied it: a commit id must be 40 lowercase hex
digits, an ETag 40 or 64 (`HASH_ID`), a revision passes `check_revision` (no '..'), a file name is one plain name.
A path that would still leave the repository's folder (a symlink planted in the cache) is refused, never followed
out. Downloads go to a unique `*.incomplete` file next to the blob and are renamed into place only when complete and
verified; a failure removes it.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

from hub.remote.errors import BadResponseError, RemoteError
from hub.remote.refs import COMMIT_ID, check_revision, parse_repo_ref

HASH_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
MAX_REF_BYTES = 256


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


class HFCacheRepo:
    """The cache folder of one model repository (see the module docstring)."""

    def __init__(self, cache_dir: str | Path, repo_id: str, repo_type: str = "model"):
        parse_repo_ref(repo_id)  # NAMESPACE/NAME only: no separator or '..' can reach the folder name
        if repo_type not in ("model", "dataset"):
            raise RemoteError(f"repo_type must be 'model' or 'dataset', not {_shown(repo_type)}")
        namespace, name = repo_id.split("/")
        self.cache_dir = Path(os.path.abspath(os.path.expanduser(str(cache_dir))))
        self.root = self.cache_dir / f"{repo_type}s--{namespace}--{name}"

    # --- names -> paths (validated) ----------------------------------------------------------------------------
    @staticmethod
    def _commit(commit: str) -> str:
        if not isinstance(commit, str) or not COMMIT_ID.match(commit):
            raise BadResponseError(f"{_shown(commit)} is not a commit id (40 lowercase hex digits); refused")
        return commit

    @staticmethod
    def _etag(etag: str) -> str:
        if not isinstance(etag, str) or not HASH_ID.match(etag):
            raise BadResponseError(f"{_shown(etag)} is not a file identifier (a 40- or 64-hex hash); refused")
        return etag

    @staticmethod
    def _name(name: str) -> str:
        if not _FILE_NAME.match(name):
            raise RemoteError(f"{_shown(name)} is not a plain file name")
        return name

    def ref_path(self, revision: str) -> Path:
        return self.root / "refs" / check_revision(revision)

    def snapshot_dir(self, commit: str) -> Path:
        return self.root / "snapshots" / self._commit(commit)

    def blob_path(self, etag: str) -> Path:
        return self.root / "blobs" / self._etag(etag)

    def _inside(self, path: Path) -> bool:
        try:
            return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(self.root))
        except (OSError, ValueError):
            return False

    # --- reading ---------------------------------------------------------------------------------------------
    def cached_commit(self, revision: str) -> str | None:
        """The commit `revision` names in the cache (a commit id names itself), or None when it is not cached."""
        if COMMIT_ID.match(revision):
            return revision
        path = self.ref_path(revision)
        if not path.is_file() or not self._inside(path):
            return None
        with open(path, "rb") as f:
            text = f.read(MAX_REF_BYTES).decode("utf-8", "replace").strip()
        if not COMMIT_ID.match(text):
            raise RemoteError(f"the cached ref {path} holds {_shown(text)}, not a commit id; delete it and pull "
                              "again online")
        return text

    def cached_file(self, commit: str, name: str) -> Path | None:
        """The cached file `name` of `commit`, or None. A pointer leading out of the repository folder is refused."""
        path = self.snapshot_dir(commit) / self._name(name)
        if not os.path.lexists(path):
            return None
        if not self._inside(path) or not path.is_file():
            raise RemoteError(f"the cached {path} is not a file inside {self.root}; refusing it (delete "
                              f"{self.snapshot_dir(commit)} and pull again)")
        return path

    # --- writing ---------------------------------------------------------------------------------------------
    def new_download(self, etag: str) -> Path:
        """A fresh, unique temporary file next to where blob `etag` will live."""
        blob = self.blob_path(etag)
        blob.parent.mkdir(parents=True, exist_ok=True)
        return blob.with_name(f"{etag}.{secrets.token_hex(4)}.incomplete")

    def add_blob(self, tmp: Path, etag: str) -> Path:
        """Move a complete, verified download into place as blob `etag`."""
        blob = self.blob_path(etag)
        os.replace(tmp, blob)
        return blob

    def link(self, commit: str, name: str, etag: str) -> Path:
        """Point snapshots/COMMIT/NAME at blob ETAG (atomically replacing any older pointer)."""
        blob = self.blob_path(etag)
        pointer = self.snapshot_dir(commit) / self._name(name)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = pointer.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            try:
                os.symlink(os.path.relpath(blob, pointer.parent), tmp)
            except OSError:  # no symlinks here: a copy
                shutil.copyfile(blob, tmp)
            os.replace(tmp, pointer)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return pointer

    def write_ref(self, revision: str, commit: str) -> None:
        """Remember that `revision` pointed to `commit` (atomic; nothing to do for a commit id)."""
        self._commit(commit)
        if revision == commit:
            return
        path = self.ref_path(revision)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.read_text().strip() == commit:
            return
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.write_text(commit)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def forget(self, commit: str) -> None:
        """Drop the snapshot of `commit`, the refs naming it and the blobs no other snapshot uses."""
        snap = self.snapshot_dir(commit)
        if snap.is_dir() and self._inside(snap):
            shutil.rmtree(snap, ignore_errors=True)
        refs = self.root / "refs"
        if refs.is_dir():
            for ref in refs.rglob("*"):
                try:
                    if ref.is_file() and ref.read_text().strip() == commit:
                        ref.unlink()
                except OSError:
                    pass
        blobs = self.root / "blobs"
        if not blobs.is_dir():
            return
        used = set()
        snapshots = self.root / "snapshots"
        if snapshots.is_dir():
            for pointer in snapshots.rglob("*"):
                if pointer.is_symlink():
                    used.add(os.path.basename(os.readlink(pointer)))
        for blob in blobs.iterdir():
            if blob.is_file() and HASH_ID.match(blob.name) and blob.name not in used:
                blob.unlink(missing_ok=True)
