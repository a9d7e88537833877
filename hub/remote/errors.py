"""Errors of the remote backends. Each names the repository, the revision and the file, and what was expected."""
from __future__ import annotations

from hub.errors import IntegrityError, MdhubError


class RemoteError(MdhubError):
    """A push or a pull that failed: bad reference, unreachable or refusing server, hostile or broken content."""


class RepoNotFoundError(RemoteError):
    """No such repository (or a private one the token cannot see)."""


class RevisionNotFoundError(RemoteError):
    """The repository exists but has no such branch or commit."""


class NotCachedError(RemoteError):
    """Offline (or the server is unreachable) and the requested revision is not in the local cache."""


class RemoteIntegrityError(RemoteError, IntegrityError):
    """Downloaded content that does not match its card (sha256, size) or is inconsistent (card.json vs README.md)."""


class RemoteTimeoutError(RemoteError):
    """A pull that ran past its deadline (a stalled or dripping server, a body that never ends); nothing was stored."""


class BadResponseError(RemoteError):
    """A server answer that breaks the protocol: a commit id or file identifier that is not a plain hash, a commit
    other than the one asked for, sizes that contradict each other. Refused before anything is written from it."""


class SizeLimitError(RemoteError):
    """A file larger than a pull accepts (the card's declared size, or the hub's fixed caps); never downloaded."""
