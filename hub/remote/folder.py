"""The `file://` backend: repositories in a plain folder tree, for air-gapped teams (a shared disk, a USB stick).

Layout under ROOT (everything a pull needs is plain files; nothing is executed):

    ROOT/NAMESPACE/NAME/
        refs/heads/BRANCH             the commit id the branch points to (one line)
        commits/COMMIT/commit.json    {"format": 1, "parent", "message", "date", "files": {name: {sha256, size}}}
        commits/COMMIT/files/NAME     the files of that commit (a full snapshot, not a diff)
        .lock                         serialises writers
    ROOT/.datasets/NAMESPACE/NAME/    a dataset repository (repo_type="dataset"), the same layout; a namespace
                                      never starts with '.', so the two kinds cannot meet

A commit id is the sha1 of its canonical commit.json, so it names its content. A push writes the new commit folder
under a temporary name, renames it into place, then switches the branch file with an atomic rename, all under the
repository's lock: a crash leaves the old branch head or the new one, never a half-written commit.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from hub.remote.base import DEFAULT_BRANCH, REPO_TYPES, Deadline, DeadlineLike, RepoType, Snapshot, UploadResult
from hub.remote.errors import RemoteError, RepoNotFoundError, RevisionNotFoundError, SizeLimitError
from hub.remote.refs import COMMIT_ID, BackendName, check_revision, parse_repo_ref
from modules.atomic import fsync_write

COMMIT_FORMAT = 1
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


class FileBackend:
    """Repositories under a root folder (see the module docstring)."""

    name: BackendName = "file"

    def __init__(self, root: str | Path, repo_type: RepoType = "model"):
        if repo_type not in REPO_TYPES:
            raise RemoteError(f"repo_type must be one of {list(REPO_TYPES)}, not {repo_type!r}")
        self.root = Path(root)
        self.repo_type: RepoType = repo_type

    # --- paths ---------------------------------------------------------------------------------------------------
    def _repo_dir(self, repo_id: str) -> Path:
        parse_repo_ref(repo_id)  # refuses anything that is not NAMESPACE/NAME (so no '..', no absolute path)
        return (self.root / ".datasets" if self.repo_type == "dataset" else self.root) / repo_id

    def _where(self, repo_id: str, revision: str | None = None) -> str:
        text = f"file://{self.root}::{repo_id}"
        text = f"{text}@{revision}" if revision else text
        return f"dataset {text}" if self.repo_type == "dataset" else text

    def _branch_file(self, repo_dir: Path, branch: str) -> Path:
        return repo_dir / "refs" / "heads" / check_revision(branch)

    def _branches(self, repo_dir: Path) -> list[str]:
        heads = repo_dir / "refs" / "heads"
        return sorted(str(p.relative_to(heads)) for p in heads.rglob("*") if p.is_file()) if heads.is_dir() else []

    def _resolve(self, repo_id: str, revision: str | None) -> tuple[Path, str]:
        repo_dir = self._repo_dir(repo_id)
        if not (repo_dir / "commits").is_dir():
            raise RepoNotFoundError(f"{self._where(repo_id)}: no such repository (no folder {repo_dir}/commits)")
        rev = revision or DEFAULT_BRANCH
        check_revision(rev, self._where(repo_id, rev))
        branch = self._branch_file(repo_dir, rev)
        if branch.is_file():
            commit = branch.read_text().strip()
            if not COMMIT_ID.match(commit) or not (repo_dir / "commits" / commit).is_dir():
                raise RemoteError(f"{self._where(repo_id, rev)}: branch file {branch} points to a missing commit "
                                  f"'{commit[:40]}'")
            return repo_dir, commit
        if COMMIT_ID.match(rev) and (repo_dir / "commits" / rev / "commit.json").is_file():
            return repo_dir, rev
        raise RevisionNotFoundError(
            f"{self._where(repo_id)}: no revision '{rev}' (branches: {', '.join(self._branches(repo_dir)) or 'none'}; "
            "or give a full 40-hex commit id)"
        )

    # --- Backend interface ---------------------------------------------------------------------------------------
    def upload(self, repo_id: str, files: Mapping[str, bytes], *, revision: str | None = None,
               private: bool = False, message: str = "") -> UploadResult:
        """One commit on branch `revision` (created from main if new). `private` is up to the folder's permissions."""
        branch = check_revision(revision or DEFAULT_BRANCH)
        if COMMIT_ID.match(branch):
            raise RemoteError(f"{self._where(repo_id)}: push to a branch name, not to a commit id ('{branch}')")
        for name in files:
            if not _FILE_NAME.match(name):
                raise RemoteError(f"{self._where(repo_id)}: '{name}' is not a plain file name")
        repo_dir = self._repo_dir(repo_id)
        (repo_dir / "commits").mkdir(parents=True, exist_ok=True)
        with FileLock(str(repo_dir / ".lock"), timeout=60):
            parent = self._head(repo_dir, branch)
            snapshot: dict[str, bytes] = self._files_of(repo_dir, parent) if parent else {}
            if parent and all(snapshot.get(n) == data for n, data in files.items()):
                return UploadResult(commit=parent, url=self._where(repo_id, parent))  # nothing changed: no commit
            snapshot.update(files)
            record = {
                "format": COMMIT_FORMAT,
                "parent": parent,
                "message": message,
                "date": datetime.now(timezone.utc).isoformat(),
                "files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                          for n, d in sorted(snapshot.items())},
            }
            body = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
            commit = hashlib.sha1(body).hexdigest()
            tmp = repo_dir / "commits" / f".tmp-{secrets.token_hex(6)}"
            (tmp / "files").mkdir(parents=True)
            try:
                for n, d in snapshot.items():
                    fsync_write(tmp / "files" / n, d)
                fsync_write(tmp / "commit.json", body)
                os.replace(tmp, repo_dir / "commits" / commit)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            branch_file = self._branch_file(repo_dir, branch)
            branch_file.parent.mkdir(parents=True, exist_ok=True)
            tmp_ref = branch_file.with_name(f".{branch_file.name}.{secrets.token_hex(4)}")
            fsync_write(tmp_ref, (commit + "\n").encode())
            os.replace(tmp_ref, branch_file)
        return UploadResult(commit=commit, url=self._where(repo_id, commit))

    def download(self, repo_id: str, revision: str | None, filenames: Sequence[str],
                 max_sizes: Mapping[str, int] | None = None, deadline: DeadlineLike = None) -> Snapshot:
        """The files are read in place (nothing is copied); sizes are checked against `max_sizes`."""
        deadline = Deadline.of(deadline)
        deadline.check(f"pull {self._where(repo_id, revision)}")
        repo_dir, commit = self._resolve(repo_id, revision)
        folder = repo_dir / "commits" / commit / "files"
        for name in filenames:
            path = folder / name
            if not _FILE_NAME.match(name) or path.is_symlink() or (path.exists() and not path.is_file()):
                raise RemoteError(f"{self._where(repo_id, commit)}: {name} is not a plain file; refused")
        for name, limit in (max_sizes or {}).items():
            path = folder / name
            if path.is_file() and path.stat().st_size > limit:
                raise SizeLimitError(f"{self._where(repo_id, commit)}: {name} is {path.stat().st_size} bytes, "
                                     f"over the {limit}-byte limit")
        return Snapshot(folder=folder, commit=commit)

    def exists(self, repo_id: str, revision: str | None = None) -> bool:
        try:
            self._resolve(repo_id, revision)
        except (RepoNotFoundError, RevisionNotFoundError):
            return False
        return True

    def forget(self, repo_id: str, commit: str) -> None:
        """Nothing is cached: the folder is read in place."""

    # --- helpers -------------------------------------------------------------------------------------------------
    def _head(self, repo_dir: Path, branch: str) -> str | None:
        for name in dict.fromkeys([branch, DEFAULT_BRANCH]):  # a new branch starts from main
            path = self._branch_file(repo_dir, name)
            if path.is_file():
                return path.read_text().strip()
        return None

    def _files_of(self, repo_dir: Path, commit: str) -> dict[str, bytes]:
        folder = repo_dir / "commits" / commit / "files"
        return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
