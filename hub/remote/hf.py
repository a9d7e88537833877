"""The Hugging Face Hub backend: push through `huggingface_hub`'s public API; pull with mdhub's own guarded client.

Push: `HfApi.create_repo` (exist_ok), `create_branch` for a new branch, then ONE `create_commit` of
`CommitOperationAdd`s.

Pull trusts nothing the server says until it is checked, because `huggingface_hub` builds cache paths from what the
server sends (an ETag "../../x" or a commit id "../../../etc" would write outside the cache). So a pull makes its own
requests, on huggingface_hub's shared HTTP client (its configuration, proxies, token and offline switch apply):

1. `GET /api/models/REPO/revision/REV?blobs=true` (what `HfApi.model_info(files_metadata=True)` asks; `/api/datasets/`
   and `/datasets/REPO/resolve/...` for a backend made with `repo_type="dataset"`), capped in
   size: the commit id must be 40 lowercase hex digits (the very one asked for, when a commit was asked for), every
   file's oid a plain 40/64-hex hash, sizes within the caller's limits (`SizeLimitError` before any download).
2. For each file asked for that the commit has: `HEAD /REPO/resolve/COMMIT/FILE` (as `get_hf_file_metadata`):
   X-Repo-Commit must be the pinned commit, ETag / X-Linked-Etag plain hashes agreeing with the listing, the size
   announced within the limit and equal to the listing's. Only then a `GET`, streamed into a unique `*.incomplete`
   file in the cache: never more bytes than announced, a Content-Length that contradicts the HEAD is refused, the
   bytes must hash to the ETag (git blob sha1, or sha256 for LFS), a dropped connection resumes (Range) a few
   times. The blob is renamed into place and linked from the snapshot only when complete and verified.
3. Everything runs under the pull's `Deadline` (hub.remote.guarded): a stall, a drip or a body that never ends gives
   one `RemoteTimeoutError` naming the repo and file, and leaves no partial file.

The cache is huggingface_hub's layout (hub.remote.hf_cache), so its tools (`hf cache scan`, `scan_cache_dir`) see
what mdhub pulled; refs are written only after the commit id was checked.

Configuration is read when the backend is made (not when `huggingface_hub` was imported), so a process can change it:
`HF_ENDPOINT` (default https://huggingface.co), `HF_TOKEN` (read by `huggingface_hub` itself), `HF_HUB_CACHE` or
`HF_HOME` (the cache), `HF_HUB_OFFLINE` (cache only: a module already cached loads with no network at all; one that
is not gives `NotCachedError`). When the server cannot be reached, a pull also falls back to the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

from hub.remote.base import DEFAULT_BRANCH, REPO_TYPES, Deadline, DeadlineLike, RepoType, Snapshot, UploadResult
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
from hub.remote.guarded import guarded_stream, read_capped
from hub.remote.hf_cache import HASH_ID, HFCacheRepo, _shown
from hub.remote.refs import COMMIT_ID, BackendName, check_revision, parse_repo_ref

if TYPE_CHECKING:
    from huggingface_hub import HfApi

_TRUE = {"1", "ON", "YES", "TRUE"}
MAX_INFO_BYTES = 8 * 2**20  # the JSON of one model_info answer
MAX_ERROR_BYTES = 64 * 2**10  # the body of an error answer
MAX_REDIRECTS = 5
MAX_ATTEMPTS = 5  # per file: a dropped connection is resumed this many times at most


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


def _first_line(err: BaseException) -> str:
    server = getattr(err, "server_message", None)
    text = str(server or err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def _etag_value(raw: str) -> str:
    """An ETag header's value without quotes or weak prefix (as huggingface_hub normalises it)."""
    text = raw.strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


class _Digest(Protocol):
    """What a file's bytes are hashed with (hashlib's sha256 or sha1)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _hasher(etag: str, size: int) -> _Digest:
    """What the bytes of a file identified by `etag` hash to: sha256 (LFS) or the git blob sha1 (regular file)."""
    if len(etag) == 64:
        return hashlib.sha256()
    h = hashlib.sha1()
    h.update(b"blob %d\0" % size)
    return h


@dataclass(frozen=True)
class _Sibling:
    size: int | None
    oids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class _Info:
    commit: str
    files: dict[str, _Sibling]


@dataclass(frozen=True)
class _FileMeta:
    etag: str
    size: int
    location: str


class HFBackend:
    """The Hugging Face Hub (or any server speaking its API at HF_ENDPOINT)."""

    name: BackendName = "hf"

    def __init__(self, endpoint: str | None = None, token: str | None = None, cache_dir: str | Path | None = None,
                 offline: bool | None = None, repo_type: RepoType = "model"):
        from huggingface_hub import constants

        if repo_type not in REPO_TYPES:
            raise RemoteError(f"repo_type must be one of {list(REPO_TYPES)}, not {repo_type!r}")
        self.repo_type: RepoType = repo_type

        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.token = token
        if cache_dir is None:
            env_cache, env_home = os.environ.get("HF_HUB_CACHE"), os.environ.get("HF_HOME")
            cache_dir = env_cache or (os.path.join(env_home, "hub") if env_home else constants.HF_HUB_CACHE)
        self.cache_dir = Path(os.path.expanduser(str(cache_dir)))
        self.offline = offline if offline is not None else (_env_true("HF_HUB_OFFLINE") or constants.HF_HUB_OFFLINE)

    def _api(self) -> HfApi:
        from huggingface_hub import HfApi

        from hub import __version__

        return HfApi(endpoint=self.endpoint, token=self.token, library_name="mdhub", library_version=__version__)

    def _where(self, repo_id: str, revision: str | None = None) -> str:
        kind = "" if self.repo_type == "model" else f"{self.repo_type} "
        return f"{kind}{repo_id}@{revision or DEFAULT_BRANCH} on {self.endpoint}"

    # --- Backend interface ---------------------------------------------------------------------------------------
    def upload(self, repo_id: str, files: Mapping[str, bytes], *, revision: str | None = None,
               private: bool = False, message: str = "") -> UploadResult:
        """Create the repo (and branch) if needed, then ONE commit of `files`. `private` applies to a new repo."""
        from huggingface_hub import CommitOperationAdd

        parse_repo_ref(repo_id)
        branch = check_revision(revision or DEFAULT_BRANCH)
        if COMMIT_ID.match(branch):
            raise RemoteError(f"{repo_id}: push to a branch name, not to a commit id ('{branch}')")
        if self.offline:
            raise RemoteError(f"cannot push to {self._where(repo_id, branch)}: offline mode is on (HF_HUB_OFFLINE)")
        api = self._api()
        with self._errors(repo_id, branch, "push to"):
            api.create_repo(repo_id, repo_type=self.repo_type, private=private, exist_ok=True)
            if branch != DEFAULT_BRANCH:
                api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type=self.repo_type)
            ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
            try:
                info = api.create_commit(repo_id, operations=ops, commit_message=message or "mdhub push",
                                         revision=branch, repo_type=self.repo_type)
            except ValueError as err:  # the Hub's validate-yaml refused README.md's metadata: one line, each reason
                if "metadata" not in str(err):
                    raise
                reasons = "; ".join(line.lstrip("- ") for line in str(err).splitlines()[1:]) or str(err)
                raise RemoteError(f"push to {self._where(repo_id, branch)}: the Hub refused README.md's metadata: "
                                  f"{reasons}") from None
        return UploadResult(commit=info.oid, url=info.commit_url)

    def download(self, repo_id: str, revision: str | None, filenames: Sequence[str],
                 max_sizes: Mapping[str, int] | None = None, deadline: DeadlineLike = None) -> Snapshot:
        """Resolve `revision` to one commit and fetch `filenames` at it into the cache (see the module doc)."""
        import httpx2
        from huggingface_hub.errors import OfflineModeIsEnabled

        parse_repo_ref(repo_id)
        rev = check_revision(revision or DEFAULT_BRANCH)
        deadline = Deadline.of(deadline)
        limits = dict(max_sizes or {})
        cache = HFCacheRepo(self.cache_dir, repo_id, self.repo_type)
        with self._errors(repo_id, rev, "pull"):
            info = None
            if not self.offline:
                try:
                    info = self._info(repo_id, rev, deadline)
                except (httpx2.TransportError, OfflineModeIsEnabled):
                    pass  # the server cannot be reached: the cache is all there is
            if info is None:
                return self._from_cache(cache, repo_id, rev, filenames, limits)
            commit = info.commit
            where = self._where(repo_id, commit)
            for name, limit in limits.items():
                size = info.files[name].size if name in info.files else None
                if size is not None and size > limit:
                    raise SizeLimitError(f"{where}: {name} is {size} bytes, over the {limit}-byte limit; refusing "
                                         "to download it")
            for name in filenames:
                if name in info.files:
                    self._fetch_file(cache, repo_id, commit, name, info.files[name], limits.get(name), deadline)
            try:
                cache.write_ref(rev, commit)  # for offline use later; best effort (a read-only cache still pulls)
            except OSError:
                pass
        return Snapshot(folder=cache.snapshot_dir(commit), commit=commit)

    def _from_cache(self, cache: HFCacheRepo, repo_id: str, rev: str, filenames: Sequence[str],
                    limits: Mapping[str, int]) -> Snapshot:
        """The files of `rev` as cached by an earlier pull (offline, or the server unreachable)."""
        try:
            commit = cache.cached_commit(rev)
            paths = {name: cache.cached_file(commit, name) for name in filenames} if commit else {}
        except RemoteError as err:
            raise type(err)(f"pull {self._where(repo_id, rev)}: {err}") from None
        if commit is None:
            raise self._not_cached(self._where(repo_id, rev))
        for name in filenames:
            path = paths[name]
            if path is None:
                raise self._not_cached(f"{self._where(repo_id, commit)}: {name}")
            limit = limits.get(name)
            if limit is not None and path.stat().st_size > limit:
                raise SizeLimitError(f"{self._where(repo_id, commit)}: the cached {name} is {path.stat().st_size} "
                                     f"bytes, over the {limit}-byte limit; refused")
        return Snapshot(folder=cache.snapshot_dir(commit), commit=commit)

    def _not_cached(self, what: str) -> NotCachedError:
        why = "offline mode is on (HF_HUB_OFFLINE)" if self.offline else f"{self.endpoint} cannot be reached"
        return NotCachedError(f"{what}: not cached, and {why}; pull it once while online (the cache is "
                              f"{self.cache_dir})")

    # --- pull, step by step (see the module docstring) -------------------------------------------------------------
    def _headers(self, auth: bool = True) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        from hub import __version__

        headers = build_hf_headers(token=self.token if auth else False, library_name="mdhub",
                                   library_version=__version__)
        headers["Accept-Encoding"] = "identity"  # sizes are the files' sizes, nothing to inflate
        return headers

    @staticmethod
    def _raise_for_status(response: Any, body: bytes) -> None:
        """Raise huggingface_hub's error for an error answer (the caller maps it to ours, see _errors)."""
        import httpx2
        from huggingface_hub.utils import hf_raise_for_status

        answer = httpx2.Response(response.status_code, headers=response.headers, content=body,
                                 request=response.request)
        hf_raise_for_status(answer)

    def _info(self, repo_id: str, rev: str, deadline: Deadline) -> _Info:
        """Step 1: the commit `rev` is at, and the commit's files (size, oids), every identifier checked."""
        what = f"pull {self._where(repo_id, rev)}"
        url = f"{self.endpoint}/api/{self.repo_type}s/{repo_id}/revision/{quote(rev, safe='')}?blobs=true"
        with guarded_stream("GET", url, self._headers(), deadline, what, follow_redirects=True) as response:
            if response.status_code >= 400:
                self._raise_for_status(response, read_capped(response, MAX_ERROR_BYTES, deadline, what))
            body = read_capped(response, MAX_INFO_BYTES, deadline, what)
            status = response.status_code
        if status != 200:
            raise BadResponseError(f"{what}: the server answered HTTP {status} to the repository lookup; refused")
        try:
            data = json.loads(body)
        except ValueError:
            raise BadResponseError(f"{what}: the server's repository lookup is not JSON; refused") from None
        if not isinstance(data, dict):
            raise BadResponseError(f"{what}: the server's repository lookup is not a JSON object; refused")
        commit = data.get("sha")
        if not isinstance(commit, str) or not COMMIT_ID.match(commit):
            raise BadResponseError(f"{what}: the server says '{rev}' is at commit {_shown(commit)}, which is not a "
                                   "commit id (40 lowercase hex digits); refusing a malformed or hostile answer, "
                                   "nothing was written")
        if COMMIT_ID.match(rev) and commit != rev:
            raise BadResponseError(f"{what}: asked for commit {rev}, the server answered for {commit}; refused")
        siblings = data.get("siblings") or []
        if not isinstance(siblings, list):
            raise BadResponseError(f"{what}: the server's file listing is not a list; refused")
        files: dict[str, _Sibling] = {}
        for sib in siblings:
            name = sib.get("rfilename") if isinstance(sib, dict) else None
            if not isinstance(name, str):
                raise BadResponseError(f"{what}: the server's file listing has an entry without a file name; refused")
            files[name] = self._sibling(sib, name, f"pull {self._where(repo_id, commit)}")
        return _Info(commit=commit, files=files)

    @staticmethod
    def _sibling(sib: dict[str, Any], name: str, what: str) -> _Sibling:
        size = sib.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise BadResponseError(f"{what}: {name}: the server lists size {_shown(size)}; refused")
        oids = []
        lfs = sib.get("lfs")
        if lfs is not None:
            if not isinstance(lfs, dict):
                raise BadResponseError(f"{what}: {name}: malformed LFS entry in the server's listing; refused")
            oids.append(("lfs sha256", lfs.get("sha256")))
        if sib.get("blobId") is not None:
            oids.append(("oid", sib.get("blobId")))
        checked: list[str] = []
        for label, oid in oids:
            if not isinstance(oid, str) or not HASH_ID.match(oid):
                raise BadResponseError(f"{what}: {name}: the server lists {label} {_shown(oid)}, which is not a "
                                       "plain 40/64-hex hash; refusing a malformed or hostile answer, nothing was "
                                       "written")
            checked.append(oid)
        return _Sibling(size=size, oids=frozenset(checked))

    def _fetch_file(self, cache: HFCacheRepo, repo_id: str, commit: str, name: str, sib: _Sibling,
                    limit: int | None, deadline: Deadline) -> None:
        """Step 2: one file of the pinned commit into the cache (nothing when it is already there)."""
        from huggingface_hub import hf_hub_url

        what = f"pull {self._where(repo_id, commit)}: {name}"
        try:
            cached = cache.cached_file(commit, name)
        except RemoteError as err:
            raise type(err)(f"{what}: {err}") from None
        if cached is not None:
            if limit is not None and cached.stat().st_size > limit:
                raise SizeLimitError(f"{what}: the cached copy is {cached.stat().st_size} bytes, over the "
                                     f"{limit}-byte limit; refused")
            return
        meta = self._head(hf_hub_url(repo_id, name, revision=commit, endpoint=self.endpoint,
                                     repo_type=self.repo_type), commit, what, deadline)
        if sib.oids and meta.etag not in sib.oids:
            raise BadResponseError(f"{what}: the server's ETag {meta.etag[:12]}... is not the file's oid in its own "
                                   "listing; refused")
        if sib.size is not None and meta.size != sib.size:
            raise BadResponseError(f"{what}: the server announces {meta.size} bytes, its listing says {sib.size}; "
                                   "refused")
        if limit is not None and meta.size > limit:
            raise SizeLimitError(f"{what}: {meta.size} bytes, over the {limit}-byte limit; refusing to download it")
        blob = cache.blob_path(meta.etag)
        if not (blob.is_file() and blob.stat().st_size == meta.size):
            tmp = cache.new_download(meta.etag)
            try:
                self._get(meta, tmp, what, deadline)
                cache.add_blob(tmp, meta.etag)
            finally:
                tmp.unlink(missing_ok=True)
        cache.link(commit, name, meta.etag)

    def _head(self, url: str, commit: str, what: str, deadline: Deadline) -> _FileMeta:
        """The checked metadata of one file: its identifier, size and where to GET it."""
        headers = self._headers()
        for _ in range(MAX_REDIRECTS + 1):
            with guarded_stream("HEAD", url, headers, deadline, what, follow_redirects=False) as response:
                status, answer = response.status_code, response.headers
                if status >= 400:
                    self._raise_for_status(response, b"")
            location = answer.get("Location")
            if 300 <= status < 400 and location:
                target = urljoin(url, location)
                if urlsplit(target).netloc == urlsplit(url).netloc:
                    url = target  # a renamed repository: ask again there
                    continue
            break
        else:
            raise BadResponseError(f"{what}: more than {MAX_REDIRECTS} redirects; refused")
        redirected = 300 <= status < 400
        if status != 200 and not redirected:
            raise BadResponseError(f"{what}: the server answered HTTP {status} to HEAD; refused")
        served = answer.get("X-Repo-Commit")
        if served is None:
            raise BadResponseError(f"{what}: the answer has no X-Repo-Commit header: not a Hub-compatible endpoint "
                                   "(check HF_ENDPOINT); refused")
        if not COMMIT_ID.match(served):
            raise BadResponseError(f"{what}: the server says the file is at commit {_shown(served)} (X-Repo-Commit), "
                                   "which is not a commit id (40 lowercase hex digits); refusing a malformed or "
                                   "hostile answer, nothing was written")
        if served != commit:
            raise BadResponseError(f"{what}: asked for commit {commit}, the server answered for {served}; refused")
        etags = {}
        for header in ("X-Linked-Etag", "ETag"):
            raw = answer.get(header)
            if raw is not None:
                value = _etag_value(raw)
                if not HASH_ID.match(value):
                    raise BadResponseError(f"{what}: the server identifies the file as {_shown(raw)} ({header}), "
                                           "which is not a plain 40/64-hex hash; refusing a malformed or hostile "
                                           "answer, nothing was written")
                etags[header] = value
        etag = etags.get("X-Linked-Etag") or etags.get("ETag")
        if etag is None:
            raise BadResponseError(f"{what}: the answer has no ETag: the file cannot be identified; refused")
        size_text = answer.get("X-Linked-Size") or (None if redirected else answer.get("Content-Length"))
        if size_text is None or not size_text.strip().isdigit():
            raise BadResponseError(f"{what}: the server does not say how large the file is ({_shown(size_text)}); "
                                   "refused")
        return _FileMeta(etag=etag, size=int(size_text), location=urljoin(url, location) if redirected else url)

    def _get(self, meta: _FileMeta, tmp: Path, what: str, deadline: Deadline) -> None:
        """Download the file into `tmp`: exactly `meta.size` bytes hashing to `meta.etag`, resuming a dropped
        connection, all by the deadline."""
        import httpx2

        same_host = urlsplit(meta.location).netloc == urlsplit(self.endpoint).netloc
        received, attempts, digest = 0, 0, _hasher(meta.etag, meta.size)
        with open(tmp, "wb") as f:
            while True:
                headers = self._headers(auth=same_host)  # no token to another host (a CDN)
                if received:
                    headers["Range"] = f"bytes={received}-"
                try:
                    with guarded_stream("GET", meta.location, headers, deadline, what,
                                        follow_redirects=True) as response:
                        if response.status_code >= 400:
                            self._raise_for_status(response, read_capped(response, MAX_ERROR_BYTES, deadline, what))
                        if response.status_code == 200 and received:  # the Range was ignored: start over
                            f.seek(0)
                            f.truncate()
                            received, digest = 0, _hasher(meta.etag, meta.size)
                        elif response.status_code == 206:
                            first = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
                            if first != str(received):
                                raise BadResponseError(f"{what}: asked for the bytes from {received}, the server "
                                                       f"sent {_shown(response.headers.get('Content-Range'))}; refused")
                        elif response.status_code != 200:
                            raise BadResponseError(f"{what}: the server answered HTTP {response.status_code}; "
                                                   "refused")
                        announced = response.headers.get("Content-Length")
                        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
                        if announced is not None and not encoded and announced.strip() != str(meta.size - received):
                            raise BadResponseError(
                                f"{what}: the download announces {_shown(announced)} bytes (Content-Length), the "
                                f"server's metadata {meta.size - received}; refusing a lying or broken answer, "
                                "nothing was stored")
                        for chunk in response.iter_bytes():
                            if received + len(chunk) > meta.size:
                                raise BadResponseError(f"{what}: the server sends more than the {meta.size} bytes "
                                                       "it announced; refused, nothing was stored")
                            f.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            deadline.check(what)
                    if received == meta.size:
                        break
                    raise httpx2.RemoteProtocolError(f"the body ended after {received} of {meta.size} bytes")
                except (httpx2.TransportError) as err:
                    attempts += 1
                    if attempts >= MAX_ATTEMPTS:
                        raise RemoteError(f"{what}: the connection failed ({type(err).__name__}: {_first_line(err)}) "
                                          f"{attempts} times, {received} of {meta.size} bytes received; nothing was "
                                          "stored; try again") from None
                    time.sleep(min(0.05 * attempts, deadline.remaining()))
                    deadline.check(what)
        if digest.hexdigest() != meta.etag:
            raise RemoteIntegrityError(f"{what}: the downloaded bytes do not hash to the file's identifier "
                                       f"{meta.etag[:16]}... (ETag); refused, nothing was stored")

    def exists(self, repo_id: str, revision: str | None = None) -> bool:
        try:
            with self._errors(repo_id, revision, "look up"):
                self._api().repo_info(repo_id, revision=revision, repo_type=self.repo_type)
        except (RepoNotFoundError, RevisionNotFoundError):
            return False
        return True

    def forget(self, repo_id: str, commit: str) -> None:
        """Delete the cached snapshot of `commit` (and blobs only it used), so the next pull downloads it afresh."""
        try:
            HFCacheRepo(self.cache_dir, repo_id, self.repo_type).forget(commit)
        except (OSError, RemoteError):  # best effort: a copy we cannot clean is caught by the next verification
            pass

    # --- errors ----------------------------------------------------------------------------------------------------
    @contextmanager
    def _errors(self, repo_id: str, revision: str | None, action: str) -> Iterator[None]:
        """Turn `huggingface_hub` / transport errors into RemoteErrors naming the repo, revision and server."""
        import httpx2
        from huggingface_hub import errors as e

        where = self._where(repo_id, revision)
        try:
            yield
        except RemoteError:
            raise
        except e.RepositoryNotFoundError:
            kind = "" if self.repo_type == "model" else f"{self.repo_type} "
            raise RepoNotFoundError(
                f"{where}: no such {kind}repository (or it is private or gated and your token, HF_TOKEN, "
                "cannot see it)"
            ) from None
        except e.RevisionNotFoundError:
            raise RevisionNotFoundError(
                f"{repo_id} on {self.endpoint}: no revision '{revision}' (expected a branch name or a full commit id)"
            ) from None
        except e.RemoteEntryNotFoundError as err:
            raise RemoteError(f"{action} {where}: a file is missing on the server ({_first_line(err)})") from None
        except e.HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else "?"
            hint = "; check HF_TOKEN (a write token for a push)" if status in (401, 403) else ""
            raise RemoteError(f"{action} {where} failed: HTTP {status}: {_first_line(err)}{hint}") from None
        except (e.OfflineModeIsEnabled, e.LocalEntryNotFoundError, e.RevisionResolutionError):
            why = "offline mode is on (HF_HUB_OFFLINE)" if self.offline else f"{self.endpoint} cannot be reached"
            raise NotCachedError(
                f"{where}: not cached, and {why}; pull it once while online (the cache is {self.cache_dir})"
            ) from None
        except e.HFValidationError as err:
            raise RemoteError(f"'{repo_id}': not a valid Hub repository id ({err})") from None
        except httpx2.TimeoutException as err:
            raise RemoteTimeoutError(f"{action} {where}: timed out ({_first_line(err)}); nothing was stored") from None
        except httpx2.TransportError as err:
            raise RemoteError(
                f"{action} {where}: the connection failed ({type(err).__name__}: {_first_line(err)}); "
                "nothing was stored; try again"
            ) from None
        except OSError as err:  # e.g. the client's size consistency check after an interrupted download
            raise RemoteError(f"{action} {where}: {_first_line(err)}; nothing was stored; try again") from None
