"""Repository references: which backend, which repository, which revision.

Grammar (what `mdhub push`/`mdhub pull` and `hub.push`/`hub.pull` accept):

    NAMESPACE/NAME[@REVISION]                      the Hugging Face Hub (HF_ENDPOINT, default huggingface.co)
    hf://NAMESPACE/NAME[@REVISION]                 the same, explicitly
    file:///ABS/ROOT::NAMESPACE/NAME[@REVISION]    a plain folder tree at /ABS/ROOT (air-gapped teams)
    /ABS/ROOT::NAMESPACE/NAME[@REVISION]           the same (the form recorded in a card's hub_source.repo)

REVISION is a branch name (default `main`) or a full 40-hex commit id. Repository ids are `namespace/name`:
letters, digits, '.', '_', '-', at most 96 characters each, no '..' or '--' (the Hub's own rules), so an id can
never climb out of a folder. A reference without a scheme is resolved relative to a *base* when one is given:
the parts of a policy pulled from a folder live in that same folder unless their reference says otherwise.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from cards import HubSource
from hub.remote.errors import RemoteError

BackendName = Literal["hf", "file"]

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"^{_NAME}/{_NAME}\Z")
_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(?:/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,4}\Z")
COMMIT_ID = re.compile(r"^[0-9a-f]{40}\Z")
MAX_REF_CHARS = 1024
GRAMMAR = (
    "expected NAMESPACE/NAME[@REVISION], hf://NAMESPACE/NAME[@REVISION] or "
    "file:///ABS/ROOT::NAMESPACE/NAME[@REVISION]"
)


@dataclass(frozen=True)
class RepoRef:
    """A parsed repository reference. `root` is the folder of a `file` backend (None for `hf`)."""

    backend: BackendName
    repo_id: str
    revision: str | None = None
    root: Path | None = None

    def with_revision(self, revision: str | None) -> RepoRef:
        return replace(self, revision=revision)

    @property
    def repo(self) -> str:
        """The repository without revision, in the form recorded in `HubSource.repo` (and accepted back)."""
        return self.repo_id if self.backend == "hf" else f"{self.root}::{self.repo_id}"

    def url(self) -> str:
        """The canonical text form, with scheme and revision (`hf://user/name@main`, `file:///r::user/name`)."""
        base = f"hf://{self.repo_id}" if self.backend == "hf" else f"file://{self.root}::{self.repo_id}"
        return f"{base}@{self.revision}" if self.revision else base

    def same_place(self, other: RepoRef) -> bool:
        """True when both live on the same backend (and, for folders, under the same root)."""
        return self.backend == other.backend and self.root == other.root

    def relative_to(self, base: RepoRef) -> str:
        """The shortest text that `parse_repo_ref(text, base)` turns back into this repository (no revision)."""
        return self.repo_id if self.same_place(base) else self.repo

    def __str__(self) -> str:
        text = self.repo_id if self.backend == "hf" else f"file://{self.root}::{self.repo_id}"
        return f"{text}@{self.revision}" if self.revision else text


def _fail(text: str, why: str) -> RemoteError:
    shown = text if len(text) <= 120 else text[:117] + "..."
    return RemoteError(f"'{shown}' is not a repository reference: {why}; {GRAMMAR}")


def parse_repo_ref(text: str, base: RepoRef | None = None) -> RepoRef:
    """Parse a repository reference (see the module docstring); `base` resolves references without a scheme."""
    if not isinstance(text, str) or not text.strip():
        raise _fail(str(text), "it is empty")
    text = text.strip()
    if len(text) > MAX_REF_CHARS:
        raise _fail(text, f"it is longer than {MAX_REF_CHARS} characters")
    if any(ord(c) < 32 or c.isspace() for c in text):
        raise _fail(text, "it contains whitespace or control characters")
    backend: BackendName
    root: Path | None = None
    if text.startswith("hf://"):
        backend, rest = "hf", text[len("hf://"):]
    elif text.startswith("file://") or "::" in text:
        body = text[len("file://"):] if text.startswith("file://") else text
        folder, sep, rest = body.rpartition("::")
        if not sep:
            raise _fail(text, "a file:// reference separates the folder from the repository with '::'")
        if not folder.startswith("/"):
            raise _fail(text, f"the folder '{folder}' must be an absolute path")
        backend, root = "file", Path(os.path.normpath(folder))
    elif "://" in text:
        raise _fail(text, f"unknown scheme '{text.split('://', 1)[0]}://' (known: hf://, file://)")
    else:
        rest = text
        backend, root = (base.backend, base.root) if base is not None else ("hf", None)
    repo_id, at, revision = rest.partition("@")
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id:
        what = "the repository id" if repo_id == text else f"the repository id '{repo_id}'"
        raise _fail(text, f"{what} must be NAMESPACE/NAME (letters, digits, '.', '_', '-'; no '..' or '--')")
    if at:
        check_revision(revision, text)
    return RepoRef(backend=backend, repo_id=repo_id, revision=revision if at else None, root=root)


def check_revision(revision: str, context: str = "") -> str:
    """A branch name or commit id that can name neither a path outside a repository nor an option."""
    if not _REVISION.match(revision or "") or ".." in revision:
        where = f" in '{context}'" if context else ""
        raise RemoteError(
            f"'{revision}'{where} is not a revision: expected a branch name (letters, digits, '.', '_', '-', '/') "
            "or a 40-hex commit id"
        )
    return revision


def ref_from_source(source: HubSource) -> RepoRef:
    """The exact repository and commit a pulled module came from (what a reproducible pull asks for)."""
    base = RepoRef(backend="hf", repo_id="x/x") if source.backend == "hf" else None
    ref = parse_repo_ref(source.repo, base)
    if ref.backend != source.backend:
        raise RemoteError(f"hub_source: repo '{source.repo}' does not belong to backend '{source.backend}'")
    return ref.with_revision(source.commit or source.revision)


def push_target(repo: str, revision: str | None, default_branch: str = "main") -> tuple[RepoRef, str]:
    """Where a push goes: the parsed repository (with its branch as revision) and the branch. The branch is
    `revision`, else the one `repo` names, else `default_branch`; it may not contradict `repo` nor be a commit id."""
    target = parse_repo_ref(repo)
    if target.revision and revision and target.revision != revision:
        raise RemoteError(f"'{repo}' names revision '{target.revision}' but --revision is '{revision}'")
    branch = revision or target.revision or default_branch
    if COMMIT_ID.match(branch):
        raise RemoteError(f"push to a branch name, not to a commit id ('{branch}')")
    return target.with_revision(branch), branch
