"""A loopback Hugging Face Hub for tests: the real `huggingface_hub` client talks HTTP to it on 127.0.0.1.

It speaks the subset of the Hub's HTTP API that **huggingface_hub 2.4.0** uses (read from that version's
hf_api.py, _commit_api.py, file_download.py, _snapshot_download.py and utils/_http.py) for:

    POST /api/repos/create                              HfApi.create_repo (409 + {"url"} when it exists)
    POST /api/validate-yaml                             HfApi.create_commit checks README.md metadata: the
                                                        Hub's rules for the fields mdhub writes (tests/hub_yaml.py)
    POST /api/models/{ns}/{name}/branch/{branch}        HfApi.create_branch ({"startingPoint"}; 409 if it exists)
    GET  /api/models/{ns}/{name}/refs                   HfApi.list_repo_refs
    POST /api/models/{ns}/{name}/preupload/{rev}        _commit_api._fetch_upload_modes: every file "regular"
                                                        (so no LFS or Xet upload), with the oid of the file it
                                                        would replace (the client skips unchanged files)
    POST /api/models/{ns}/{name}/commit/{rev}           _commit_api._send_commit: NDJSON, a "header" line then
                                                        "file" (base64), "deletedFile", "deletedFolder" lines
    GET  /api/models?search=&filter=&library=&author=&limit=  HfApi.list_models: public repos (and, with the token,
                                                        private ones) whose id contains `search` (any case) and
                                                        whose tags hold every `filter`; tags as the Hub derives
                                                        them from README.md's front matter of main (library_name,
                                                        tags, pipeline_tag, license:, dataset:); one page
    GET  /api/models/{ns}/{name}[/revision/{rev}]       HfApi.model_info / repo_info / resolve_revision: "sha",
                                                        "siblings" (with "size" when ?blobs=true)
    GET  /api/models/{ns}/{name}/tree/{rev}[/{path}]    HfApi.list_repo_tree (snapshot_download lists files)
    HEAD /{ns}/{name}/resolve/{rev}/{path}              get_hf_file_metadata: X-Repo-Commit, ETag (git blob
                                                        sha1), Content-Length; no redirect
    GET  /{ns}/{name}/resolve/{rev}/{path}              http_get, with Range (206) so a client can resume

Revisions are branches or commit ids (full, or a unique prefix of 7+ hex digits). Commits are full snapshots, as
in git: a commit's files are its parent's plus the additions, minus the deletions. Errors carry the headers the
client maps to its exceptions: `X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound` (404), and
`X-Error-Message`. With `token` set, writes need `Authorization: Bearer <token>` (else 401) and private repos are
invisible (404 RepoNotFound) without it, as on the Hub.

Fault injection for tests (every switch is off by default; `clear_faults()` turns them all off; `n` limits a switch
to the next n matching requests, None means every one; `path_suffix` limits it to paths ending with it):

    tamper(repo, path)                 change a stored file's bytes in place (the server then serves them, with a
                                       matching ETag, as a compromised host would)
    drop_downloads(n, keep_bytes)      the next n file GETs send the headers and `keep_bytes` bytes of the body,
                                       then close the connection
    forge_headers(etag=, linked_etag=, repo_commit=)
                                       file HEADs and GETs answer with these ETag / X-Linked-Etag / X-Repo-Commit
                                       values (e.g. etag="../../x", repo_commit="../../../etc" or "not-hex"): what
                                       a client builds cache paths from
    forge_model_info(sha=, oids=, sizes=)
                                       model_info answers with this commit id ("sha") and these per-file oids
                                       ("blobId" of the siblings, e.g. {"card.json": "../../x"}) and sizes
    stall(seconds, after_bytes=None)   a matching request gets nothing for `seconds` (not even headers; or, with
                                       `after_bytes`, the headers and that many body bytes first), then the
                                       connection is closed; methods=("HEAD",) or an API path stalls those instead
    drip(interval)                     file GETs send the headers, then the body one byte every `interval` seconds
    lie_content_length(delta)          file GETs (methods= to choose) announce len + delta bytes: delta > 0 sends the
                                       real body, then closes the connection (keep_open=True: waits instead);
                                       delta < 0 sends the whole body anyway; delta=None sends no Content-Length
                                       and ends the body by closing the connection

`requests` records every request (method, path). `stop()` also closes the open keep-alive connections and wakes
stalled or dripping handlers, so a stopped server is unreachable and leaves no busy thread behind.
Dataset repositories (repo_type="dataset") are served the same way under `/api/datasets/{ns}/{name}/...` and
`/datasets/{ns}/{name}/resolve/...`, in a namespace of their own (`dataset_repos`; the test helpers take
`repo_type="dataset"`): a model repository is not found as a dataset, and the reverse.
Not covered: LFS/Xet uploads, pull requests, tags, gated repos, spaces, pagination (one page).
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CLIENT_VERSION = "2.4.0"
_COMMIT_ID = re.compile(r"^[0-9a-f]{7,40}$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's content: what the Hub uses as ETag / oid of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, bytes]
    message: str
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    repo_type: str = "model"
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.commits:
            return self.commits[revision]
        if _COMMIT_ID.match(revision):
            hits = [c for oid, c in self.commits.items() if oid.startswith(revision)]
            if len(hits) == 1:
                return hits[0]
        return None


@dataclass
class _Fault:
    """One fault-injection switch: `kind` applies to requests of `methods` whose path ends with `path_suffix`."""

    kind: str  # drop | forge | forge_info | hang | stall | drip | length
    methods: tuple[str, ...]
    path_suffix: str | None = None
    remaining: int | None = None  # None: every matching request
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return ((self.remaining is None or self.remaining > 0) and method in self.methods
                and (self.path_suffix is None or path.endswith(self.path_suffix)))


class HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body


class HubServer:
    """The server and its state. Use as a context manager, or call start() / stop()."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}  # model repositories
        self.dataset_repos: dict[str, Repo] = {}  # dataset repositories: a namespace of their own, as on the Hub
        self.requests: list[tuple[str, str]] = []
        self._connections: set[socket.socket] = set()
        self.lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._stopping = threading.Event()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        self._stopping = threading.Event()
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled and dripping handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self.lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections.clear()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # --- test helpers --------------------------------------------------------------------------------------------
    def repos_of(self, repo_type: str = "model") -> dict[str, Repo]:
        """The model or dataset repositories (the Hub keeps them apart: the same id can name one of each)."""
        if repo_type not in ("model", "dataset"):
            raise ValueError(f"repo_type {repo_type!r}")
        return self.repos if repo_type == "model" else self.dataset_repos

    def create_repo(self, repo_id: str, private: bool = False, repo_type: str = "model") -> Repo:
        with self.lock:
            repos = self.repos_of(repo_type)
            if repo_id in repos:
                return repos[repo_id]
            repo = Repo(repo_id=repo_id, private=private, repo_type=repo_type)
            repos[repo_id] = repo
            # Like the Hub: a new repository has one commit holding .gitattributes.
            self._commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                         [], "initial commit")
            return repo

    def commit(self, repo_id: str, files: dict[str, bytes], message: str = "test commit", branch: str = "main",
               private: bool = False, repo_type: str = "model") -> str:
        """Commit `files` directly (bypassing the client): how tests publish hostile or broken repositories."""
        with self.lock:
            repo = self.create_repo(repo_id, private=private, repo_type=repo_type)
            if branch not in repo.branches:
                repo.branches[branch] = repo.branches["main"]
            return self._commit(repo, branch, files, [], message).oid

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str:
        with self.lock:
            return self.repos_of(repo_type)[repo_id].branches[branch]

    def file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        with self.lock:
            commit = self.repos_of(repo_type)[repo_id].resolve(revision)
            assert commit is not None
            return commit.files[path]

    def tamper(self, repo_id: str, path: str, revision: str = "main",
               change: Callable[[bytes], bytes] | None = None, repo_type: str = "model") -> bytes:
        """Change a stored file's bytes in place (default: flip the last byte). Returns the original bytes."""
        with self.lock:
            commit = self.repos_of(repo_type)[repo_id].resolve(revision)
            assert commit is not None and path in commit.files
            original = commit.files[path]
            commit.files[path] = change(original) if change else original[:-1] + bytes([original[-1] ^ 0xFF])
            return original

    def restore(self, repo_id: str, path: str, data: bytes, revision: str = "main", repo_type: str = "model") -> None:
        with self.lock:
            commit = self.repos_of(repo_type)[repo_id].resolve(revision)
            assert commit is not None
            commit.files[path] = data

    def drop_downloads(self, n: int, keep_bytes: int = 0, path_suffix: str | None = None) -> None:
        """The next `n` file GETs (whose path ends with `path_suffix`, if given) break after `keep_bytes` bytes."""
        self._add("drop", ("GET",), path_suffix, n, keep_bytes=keep_bytes)

    def forge_headers(self, path_suffix: str | None = None, *, etag: str | None = None,
                      linked_etag: str | None = None, repo_commit: str | None = None, n: int | None = None) -> None:
        """File HEADs and GETs answer with these ETag / X-Linked-Etag / X-Repo-Commit values (None: the true one;
        X-Linked-Etag is only sent when given)."""
        self._add("forge", ("HEAD", "GET"), path_suffix, n, etag=etag, linked_etag=linked_etag,
                  repo_commit=repo_commit)

    def forge_model_info(self, *, sha: str | None = None, oids: dict[str, str] | None = None,
                         sizes: dict[str, int] | None = None, n: int | None = None) -> None:
        """model_info / repo_info answer with this commit id ("sha") and these file oids ("blobId") and sizes, by
        path."""
        self._add("forge_info", ("GET",), None, n, sha=sha, oids=dict(oids or {}), sizes=dict(sizes or {}))

    def stall(self, seconds: float, path_suffix: str | None = None, *, after_bytes: int | None = None,
              methods: tuple[str, ...] = ("GET",), n: int | None = None) -> None:
        """Matching requests get nothing for `seconds` (with `after_bytes`: the headers and that many body bytes
        first, file GETs only), then the connection is closed."""
        if after_bytes is None:
            self._add("hang", tuple(methods), path_suffix, n, seconds=seconds)
        else:
            self._add("stall", ("GET",), path_suffix, n, seconds=seconds, after_bytes=after_bytes)

    def drip(self, interval: float, path_suffix: str | None = None, *, n: int | None = None) -> None:
        """File GETs send the headers, then the body one byte every `interval` seconds."""
        self._add("drip", ("GET",), path_suffix, n, interval=interval)

    def lie_content_length(self, delta: int | None, path_suffix: str | None = None, *,
                           methods: tuple[str, ...] = ("GET",), keep_open: bool = False, n: int | None = None) -> None:
        """Matching file responses announce len + delta bytes in Content-Length (None: no Content-Length, the body
        ends when the connection closes). delta > 0: the real body is sent, then the connection is closed (or, with
        `keep_open`, left open and silent); delta < 0: the whole body is sent anyway."""
        self._add("length", tuple(methods), path_suffix, n, delta=delta, keep_open=keep_open)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def _add(self, kind: str, methods: tuple[str, ...], path_suffix: str | None, n: int | None, **params: Any) -> None:
        with self.lock:
            self._faults.append(_Fault(kind=kind, methods=methods, path_suffix=path_suffix, remaining=n,
                                       params=params))

    def _take(self, kind: str, method: str, path: str) -> _Fault | None:
        """The first active fault of `kind` for this request (counting it as used), or None."""
        with self.lock:
            for fault in self._faults:
                if fault.kind == kind and fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def _sleep(self, seconds: float) -> bool:
        """Wait (False when the server stops meanwhile)."""
        return not self._stopping.wait(seconds)

    def count(self, method: str | None = None, contains: str = "") -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if (method is None or m == method) and contains in p)

    # --- internals -----------------------------------------------------------------------------------------------
    def _commit(self, repo: Repo, branch: str, add: dict[str, bytes], delete: list[str], message: str,
                description: str = "") -> Commit:
        parent_oid = repo.branches.get(branch)
        files = dict(repo.commits[parent_oid].files) if parent_oid else {}
        for path in delete:
            files = {p: d for p, d in files.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
        files.update(add)
        stamp = f"{repo.repo_id}\n{parent_oid}\n{message}\n{description}\n{next(self._counter)}\n"
        manifest = "".join(f"{p} {git_blob_sha1(d)}\n" for p, d in sorted(files.items()))
        oid = hashlib.sha1((stamp + manifest).encode()).hexdigest()
        commit = Commit(oid=oid, parent=parent_oid, files=files, message=message,
                        date=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"))
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit



class _Handler(BaseHTTPRequestHandler):
    """Routes one request. `hub` is bound by HubServer.start()."""

    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "loopback-hub/1"
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stalls)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.hub.lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub.lock:
            self.hub._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # --- plumbing ------------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json", head: bool = False, length: int | None = -1) -> None:
        """One response; `length` overrides the Content-Length (None: no Content-Length header)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(len(body) if length == -1 else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, err: HTTPError, head: bool = False) -> None:
        headers = dict(err.headers)
        headers["X-Error-Message"] = err.message
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, json.dumps(err.body or {"error": err.message}).encode(), headers, head=head)

    def _authorized(self) -> bool:
        token = self.hub.token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _need_write(self) -> None:
        if not self._authorized():
            raise HTTPError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        repo = self.hub.repos_of(repo_type).get(repo_id)
        if repo is None or (repo.private and self.hub.token is not None and not self._authorized()):
            raise HTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def _revision(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        with self.hub.lock:
            self.hub.requests.append((method, split.path))
        hang = self.hub._take("hang", method, split.path)
        if hang is not None:
            self.hub._sleep(hang.params["seconds"])  # nothing at all, then hang up
            self._hang_up()
            return
        try:
            body = self._body() if method == "POST" else b""
            with self.hub.lock:
                action = self._route(method, segments, query, body)
            if action is not None:
                action()  # streaming a file happens outside the lock
        except HTTPError as err:
            self._error(err, head=method == "HEAD")
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- routes --------------------------------------------------------------------------------------------------
    def _route(self, method: str, seg: list[str], query: dict[str, str], body: bytes) -> Callable[[], None] | None:
        if seg[:1] == ["api"]:
            if method == "GET" and seg[1:] in (["models"], ["models", ""]):
                return self._list_models(parse_qs(urlsplit(self.path).query))
            if method == "POST" and seg[1:] == ["repos", "create"]:
                return self._create_repo(json.loads(body or b"{}"))
            if method == "POST" and seg[1:] == ["validate-yaml"]:  # the Hub's metadata rules (tests/hub_yaml.py)
                from tests.hub_yaml import validate_readme

                errors = validate_readme(json.loads(body or b"{}"))
                return self._json(400 if errors else 200, {"errors": [{"message": m} for m in errors],
                                                           "warnings": []})
            if len(seg) >= 4 and seg[1] in ("models", "datasets"):
                repo_id, rest = f"{seg[2]}/{seg[3]}", seg[4:]
                return self._models_api(method, repo_id, rest, query, body, repo_type=seg[1][:-1])
            if len(seg) >= 4 and seg[1] in ("spaces", "kernels"):
                raise HTTPError(404, f"only model and dataset repositories are served here, not {seg[1]}",
                                "RepoNotFound")
            raise HTTPError(404, f"no route for {method} {self.path}")
        if len(seg) >= 6 and seg[0] == "datasets" and seg[3] == "resolve" and method in ("GET", "HEAD"):
            repo = self._repo(f"{seg[1]}/{seg[2]}", "dataset")
            commit = self._revision(repo, seg[4])
            return self._resolve(repo, commit, "/".join(seg[5:]), head=method == "HEAD")
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            repo = self._repo(f"{seg[0]}/{seg[1]}")
            commit = self._revision(repo, seg[3])
            return self._resolve(repo, commit, "/".join(seg[4:]), head=method == "HEAD")
        raise HTTPError(404, f"no route for {method} {self.path}")

    def _create_repo(self, payload: dict[str, Any]) -> None:
        self._need_write()
        repo_type = payload.get("type") or "model"
        if repo_type not in ("model", "dataset"):
            raise HTTPError(400, "only model and dataset repositories are supported by the loopback hub")
        name, org = payload.get("name"), payload.get("organization")
        if not org:
            raise HTTPError(400, "give a namespace: NAMESPACE/NAME")
        repo_id = f"{org}/{name}"
        url = f"{self._base()}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
        if repo_id in self.hub.repos_of(repo_type):
            raise HTTPError(409, f"You already created this {repo_type} repo",
                            body={"error": f"You already created this {repo_type} repo", "url": url})
        self.hub.create_repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")),
                             repo_type=repo_type)
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def _models_api(self, method: str, repo_id: str, rest: list[str], query: dict[str, str],
                    body: bytes, repo_type: str = "model") -> Callable[[], None] | None:
        repo = self._repo(repo_id, repo_type)
        if method == "GET" and (not rest or rest[0] == "revision"):
            commit = self._revision(repo, "/".join(rest[1:]) if rest else "main")
            return self._model_info(repo, commit, blobs=query.get("blobs", "").lower() == "true")
        if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
            commit = self._revision(repo, rest[1])
            return self._tree(commit, "/".join(rest[2:]), recursive=query.get("recursive", "").lower() == "true")
        if method == "GET" and rest == ["refs"]:
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()]
            return self._json(200, {"branches": branches, "converts": [], "tags": []})
        if method == "POST" and rest[:1] == ["branch"] and len(rest) >= 2:
            return self._create_branch(repo, "/".join(rest[1:]), json.loads(body or b"{}"))
        if method == "POST" and rest[:1] == ["preupload"] and len(rest) >= 2:
            return self._preupload(repo, "/".join(rest[1:]), json.loads(body or b"{}"), query)
        if method == "POST" and rest[:1] == ["commit"] and len(rest) >= 2:
            return self._commit(repo, "/".join(rest[1:]), body, query)
        raise HTTPError(404, f"no route for {method} {self.path}")

    @staticmethod
    def _front_matter(commit: Commit) -> dict[str, Any]:
        """README.md's YAML front matter at `commit` ({} when there is none or it does not parse)."""
        import yaml

        text = commit.files.get("README.md", b"").decode("utf-8", "replace")
        if not text.startswith("---"):
            return {}
        end = text.find("\n---", 3)
        try:
            meta = yaml.safe_load(text[3:end]) if end > 0 else None
        except yaml.YAMLError:
            return {}
        return meta if isinstance(meta, dict) else {}

    def _list_models(self, query: dict[str, list[str]]) -> None:
        """HfApi.list_models: the Hub's model search over the repos' main branches (one page)."""
        search = (query.get("search") or [""])[-1].lower()
        filters = [f for value in query.get("filter", []) for f in value.split(",") if f]
        author = (query.get("author") or [None])[-1]
        library = (query.get("library") or [None])[-1]  # the Hub's library filter (older clients send it)
        limit = int((query.get("limit") or ["1000"])[-1])
        out: list[dict[str, Any]] = []
        for repo_id, repo in sorted(self.hub.repos_of("model").items()):
            if repo.private and not (self.headers.get("Authorization") and self._authorized()):
                continue  # as on the Hub: private repositories are listed to a token that can see them only
            if "main" not in repo.branches:
                continue
            commit = repo.commits[repo.branches["main"]]
            meta = self._front_matter(commit)
            tags = [str(t) for t in meta.get("tags") or [] if isinstance(t, str | int | float)]
            library_name = meta.get("library_name") if isinstance(meta.get("library_name"), str) else None
            pipeline = meta.get("pipeline_tag") if isinstance(meta.get("pipeline_tag"), str) else None
            lic = meta.get("license")
            extra = [library_name, pipeline, f"license:{lic}" if isinstance(lic, str) else None]
            extra += [f"dataset:{d}" for d in meta.get("datasets") or [] if isinstance(d, str)]
            all_tags = list(dict.fromkeys([t for t in [library_name, *tags, *extra] if t]))
            if search and search not in repo_id.lower():
                continue
            if author and repo_id.split("/")[0] != author:
                continue
            if not all(f in all_tags for f in filters) or (library and library != library_name):
                continue
            out.append({"_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
                        "author": repo_id.split("/")[0], "private": repo.private, "downloads": 0, "likes": 0,
                        "tags": all_tags, "library_name": library_name, "pipeline_tag": pipeline,
                        "lastModified": commit.date, "createdAt": repo.commits[min(
                            repo.commits, key=lambda oid: repo.commits[oid].date)].date})
        self._json(200, out[:limit])

    def _model_info(self, repo: Repo, commit: Commit, blobs: bool) -> None:
        forged = self.hub._take("forge_info", "GET", urlsplit(self.path).path)
        oids: dict[str, str] = forged.params["oids"] if forged else {}
        sizes: dict[str, int] = forged.params["sizes"] if forged else {}
        siblings = []
        for path, data in sorted(commit.files.items()):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=sizes.get(path, len(data)), blobId=oids.get(path, git_blob_sha1(data)))
            siblings.append(sib)
        sha = forged.params["sha"] if forged and forged.params["sha"] is not None else commit.oid
        ns = repo.repo_id.split("/")[0]
        self._json(200, {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id, "modelId": repo.repo_id,
            "author": ns, "sha": sha, "lastModified": commit.date, "createdAt": commit.date,
            "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
            "siblings": siblings,
        })

    def _tree(self, commit: Commit, prefix: str, recursive: bool) -> None:
        prefix = prefix.strip("/")
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path, data in sorted(commit.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rel = path[len(prefix) + 1:] if prefix else path
            if not recursive and "/" in rel:
                folders.add((prefix + "/" if prefix else "") + rel.split("/")[0])
                continue
            entries.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path})
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        if prefix and not entries:
            raise HTTPError(404, f"{prefix} does not exist", "EntryNotFound")
        self._json(200, entries)

    def _create_branch(self, repo: Repo, branch: str, payload: dict[str, Any]) -> None:
        self._need_write()
        if branch in repo.branches:
            raise HTTPError(409, f"Reference refs/heads/{branch} already exists")
        start = self._revision(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        self._json(200, {})

    def _preupload(self, repo: Repo, revision: str, payload: dict[str, Any], query: dict[str, str]) -> None:
        self._need_write()
        if query.get("create_pr"):
            raise HTTPError(400, "pull requests are not supported by the loopback hub")
        commit = self._revision(repo, revision)
        files = []
        for f in payload.get("files", []):
            existing = commit.files.get(f["path"])
            files.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                          "oid": git_blob_sha1(existing) if existing is not None else None})
        self._json(200, {"files": files, "commitOid": commit.oid})

    def _commit(self, repo: Repo, revision: str, body: bytes, query: dict[str, str]) -> None:
        self._need_write()
        if query.get("create_pr"):
            raise HTTPError(400, "pull requests are not supported by the loopback hub")
        if revision not in repo.branches:
            raise HTTPError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HTTPError(400, "the first NDJSON line must be the commit header")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and parent != repo.branches[revision]:
            raise HTTPError(412, f"A commit has happened since. Please refresh and try again ({parent} is not the "
                                 f"head of {revision})")
        add: dict[str, bytes] = {}
        delete: list[str] = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if not path or path.startswith("/") or ".." in path.split("/"):
                raise HTTPError(400, f"invalid path in commit: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HTTPError(400, f"{path}: unsupported encoding {value.get('encoding')!r}")
                add[path] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                delete.append(path)
            elif key == "lfsFile":
                raise HTTPError(400, f"{path}: LFS files are not supported (preupload answers 'regular')")
            else:
                raise HTTPError(400, f"unknown commit operation {key!r}")
        commit = self.hub._commit(repo, revision, add, delete, header.get("summary") or "",
                                  header.get("description") or "")
        self._json(200, {"success": True, "commitOid": commit.oid, "commitMessage": commit.message,
                         "commitUrl": f"{self._base()}/{'datasets/' if repo.repo_type == 'dataset' else ''}"
                                      f"{repo.repo_id}/commit/{commit.oid}",
                         "hookOutput": "", "pullRequestUrl": None})

    def _resolve(self, repo: Repo, commit: Commit, path: str, head: bool) -> Callable[[], None] | None:
        data = commit.files.get(path)
        if data is None:
            raise HTTPError(404, f"{path} does not exist at {commit.oid}", "EntryNotFound",
                            headers={"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_sha1(data)}"', "Accept-Ranges": "bytes"}
        method = "HEAD" if head else "GET"
        forged = self.hub._take("forge", method, path)
        if forged is not None:
            p = forged.params
            if p["etag"] is not None:
                headers["ETag"] = f'"{p["etag"]}"'
            if p["linked_etag"] is not None:
                headers["X-Linked-Etag"] = f'"{p["linked_etag"]}"'
            if p["repo_commit"] is not None:
                headers["X-Repo-Commit"] = p["repo_commit"]
        lie = self.hub._take("length", method, path)
        if head:
            length = -1 if lie is None else (None if lie.params["delta"] is None else len(data) + lie.params["delta"])
            self._send(200, data, headers, content_type="application/octet-stream", head=True, length=length)
            return None
        status, start = 200, 0
        match = re.match(r"^bytes=(\d+)-$", self.headers.get("Range", ""))
        if match and int(match.group(1)) < len(data):
            start = int(match.group(1))
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        payload = data[start:]
        faults = {kind: self.hub._take(kind, "GET", path) for kind in ("drop", "stall", "drip")}
        faults["length"] = lie
        return lambda: self._stream(status, payload, headers, faults)

    def _stream(self, status: int, payload: bytes, headers: dict[str, str], faults: dict[str, _Fault | None]) -> None:
        """Send a file (GET), misbehaving as the active faults say."""
        drop, stall, drip, lie = faults["drop"], faults["stall"], faults["drip"], faults["length"]
        if not any(faults.values()):
            self._send(status, payload, headers, content_type="application/octet-stream")
            return
        length: int | None = len(payload)
        if lie is not None:
            length = None if lie.params["delta"] is None else len(payload) + lie.params["delta"]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.close_connection = True  # no length: the body ends when the connection closes
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        body = payload
        if drop is not None:
            body = payload[: max(0, min(drop.params["keep_bytes"], len(payload) - 1))]
        elif stall is not None:
            body = payload[: stall.params["after_bytes"]]
        if drip is not None:
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                if not self.hub._sleep(drip.params["interval"]):
                    break
        else:
            self.wfile.write(body)
            self.wfile.flush()
        if stall is not None:
            self.hub._sleep(stall.params["seconds"])
        if drop is not None or stall is not None or length is None or (
                lie is not None and lie.params["delta"] > 0 and not lie.params["keep_open"]):
            self._hang_up()
