"""The one small interface every remote backend implements, and the deadline a pull runs under."""
from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from hub.remote.errors import RemoteError, RemoteTimeoutError
from hub.remote.refs import BackendName

DEFAULT_BRANCH = "main"
DEFAULT_PULL_TIMEOUT = 600.0
PULL_TIMEOUT_ENV = "MDHUB_PULL_TIMEOUT"
RepoType = Literal["model", "dataset"]
REPO_TYPES: tuple[RepoType, ...] = ("model", "dataset")  # modules live in model repos, datasets in dataset repos


class Deadline:
    """One time budget for a whole pull: every request, every file, a policy's parts too.

    `Deadline.of(x)`: x itself when it is a Deadline, else a new one of x seconds (None: $MDHUB_PULL_TIMEOUT, else
    DEFAULT_PULL_TIMEOUT). Backends bound every network wait by `remaining()` and raise `RemoteTimeoutError`.
    """

    def __init__(self, seconds: float):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds <= 0:
            raise RemoteError(f"a pull timeout must be a positive number of seconds, not {seconds!r}")
        self.seconds = float(seconds)
        self.at = time.monotonic() + self.seconds

    @classmethod
    def of(cls, value: Deadline | float | None = None) -> Deadline:
        if isinstance(value, Deadline):
            return value
        if value is None:
            text = os.environ.get(PULL_TIMEOUT_ENV, "").strip()
            if not text:
                return cls(DEFAULT_PULL_TIMEOUT)
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value <= 0:
                raise RemoteError(f"{PULL_TIMEOUT_ENV}='{text[:40]}' is not a positive number of seconds")
        return cls(value)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def error(self, what: str, detail: str = "") -> RemoteTimeoutError:
        """The one-line error of a pull that ran out of time while doing `what` (names the repo and file)."""
        return RemoteTimeoutError(
            f"{what}: no complete answer within the pull's {self.seconds:g} s deadline{detail}; nothing was stored "
            f"(give it more time with timeout= or {PULL_TIMEOUT_ENV}=SECONDS)"
        )

    def check(self, what: str) -> None:
        if self.expired:
            raise self.error(what)


DeadlineLike = Deadline | float | None


@dataclass(frozen=True)
class UploadResult:
    """One commit made by a push: its full id and a link to it."""

    commit: str
    url: str


@dataclass(frozen=True)
class Snapshot:
    """Files of one exact commit, downloaded (or found in the cache) into `folder`; read them, never modify them.

    `folder` holds the files asked for that the commit has (one it lacks is simply absent); it may hold others,
    which callers ignore.
    """

    folder: Path
    commit: str


@runtime_checkable
class Backend(Protocol):
    """Where modules are shared. All methods raise `hub.remote.errors.RemoteError` subclasses."""

    name: BackendName

    def upload(self, repo_id: str, files: Mapping[str, bytes], *, revision: str | None = None,
               private: bool = False, message: str = "") -> UploadResult:
        """Put `files` in ONE commit on branch `revision` (default main), creating the repo and branch if needed."""
        ...

    def download(self, repo_id: str, revision: str | None, filenames: Sequence[str],
                 max_sizes: Mapping[str, int] | None = None, deadline: DeadlineLike = None) -> Snapshot:
        """Fetch `filenames` (those that exist) at `revision`, resolved to one exact commit.

        A file listed in `max_sizes` that is larger than its limit is refused (SizeLimitError) before it is
        downloaded, and never more than that many bytes are read. Everything ends by `deadline` (a `Deadline` shared
        by the calls of one pull, or seconds; RemoteTimeoutError). A failed download leaves no partial file behind.
        """
        ...

    def exists(self, repo_id: str, revision: str | None = None) -> bool:
        """Whether the repository (and revision) exists."""
        ...

    def forget(self, repo_id: str, commit: str) -> None:
        """Drop any locally cached copy of `commit` (after it failed verification), so a retry downloads afresh."""
        ...
