"""Remote backends: where modules are shared, behind one small interface (`Backend`).

    hf    the Hugging Face Hub via `huggingface_hub` (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, the HF cache)
    file  a plain folder tree (`file:///ROOT::user/name`), for air-gapped teams

See `hub.remote.refs` for the reference grammar and `hub.remote.sharing` for push/pull of modules on top of this.
"""
from __future__ import annotations

from hub.remote.base import (
    DEFAULT_BRANCH,
    DEFAULT_PULL_TIMEOUT,
    PULL_TIMEOUT_ENV,
    REPO_TYPES,
    Backend,
    Deadline,
    RepoType,
    Snapshot,
    UploadResult,
)
from hub.remote.errors import (
    BadResponseError,
    NotCachedError,
    RemoteError,
    RemoteIntegrityError,
    RemoteTimeoutError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SizeLimitError,
)
from hub.remote.folder import FileBackend
from hub.remote.hf import HFBackend
from hub.remote.refs import RepoRef, parse_repo_ref, ref_from_source


def backend_for(ref: RepoRef, repo_type: RepoType = "model") -> Backend:
    """The backend that serves `ref` (configured from the environment now), for model or dataset repositories."""
    if ref.backend == "file":
        assert ref.root is not None
        return FileBackend(ref.root, repo_type=repo_type)
    return HFBackend(repo_type=repo_type)


__all__ = [
    "DEFAULT_BRANCH", "DEFAULT_PULL_TIMEOUT", "PULL_TIMEOUT_ENV", "REPO_TYPES", "Backend", "BadResponseError",
    "Deadline",
    "FileBackend", "HFBackend", "NotCachedError", "RemoteError", "RemoteIntegrityError", "RemoteTimeoutError",
    "RepoNotFoundError", "RepoRef", "RepoType", "RevisionNotFoundError", "SizeLimitError", "Snapshot", "UploadResult",
    "backend_for", "parse_repo_ref", "ref_from_source",
]
