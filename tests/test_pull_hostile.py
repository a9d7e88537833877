"""`mdhub pull` against a hostile or broken Hub (issue 12): the real client, the loopback Hub misbehaving on purpose.

Every case ends in ONE RemoteError line naming the repo (and the file), leaves the store exactly as it was, and
writes nothing anywhere but the HF cache and the store: the cache sits a few folders deep in the test's tmp_path and
the whole of tmp_path is compared before and after, so a path built from a crafted ETag or commit id ("../../x")
would show up. Deadlines here are about a second, so every timeout case is short.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import hub
from hub.cli.share import register
from hub.remote import (
    BadResponseError,
    Deadline,
    NotCachedError,
    RemoteError,
    RemoteTimeoutError,
    SizeLimitError,
)
from hub.remote.sharing import MAX_CARD_BYTES, pull, push
from hub.store import CARD, README, WEIGHTS, Store
from tests.hub_server import HubServer, git_blob_sha1
from tests.test_sharing import (  # noqa: F401  (hub_server and tiny_diffusion are fixtures used here)
    hub_server,
    other_store,
    policy_card,
    published,
    readme_for,
    stored_critic,
    stored_diffusion,
    tiny_diffusion,
    weights_of,
)

DEADLINE = 1.0  # seconds: the deadline of every timeout case
SLOW = 30.0  # seconds a stalling server would wait: far past any deadline here


# --- the sandbox: a deep HF cache, a store, and a record of everything under tmp_path --------------------------------
def _tree(root: Path) -> dict[str, str]:
    """Every path under `root` (links not followed) with what it is, its size and mtime."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            out[str(path.relative_to(root))] = f"{kind}:{st.st_size if kind == 'file' else 0}:{st.st_mtime_ns}"
    return out


@dataclass
class Sandbox:
    root: Path
    cache: Path
    store: Store

    def snapshot(self) -> tuple[dict[str, str], bytes | None, list[str]]:
        index = self.store.index_path.read_bytes() if self.store.index_path.exists() else None
        modules = sorted(p.name for p in self.store.modules_dir.iterdir()) if self.store.modules_dir.exists() else []
        return _tree(self.root), index, modules

    def changed_outside(self, before: dict[str, str], after: dict[str, str]) -> list[str]:
        """Paths created, changed or removed under tmp_path that are neither in the HF cache nor in the store."""
        allowed = [str(p.relative_to(self.root)) for p in (self.cache, self.store.root)]
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        return sorted(k for k in changed if not any(k == a or k.startswith(a + os.sep) for a in allowed)
                      and not any(a.startswith(k + os.sep) for a in allowed))  # parents of the two may appear

    def assert_refused_cleanly(self, before) -> None:
        tree, index, modules = before
        after_tree, after_index, after_modules = self.snapshot()
        assert self.changed_outside(tree, after_tree) == []
        assert after_index == index and after_modules == modules  # index.json and modules/ unchanged
        assert not [p for p in self.cache.rglob("*") if p.name.endswith(".incomplete")]
        assert not (self.root.parent / "escaped").exists() and not (self.root / "escaped").exists()

    def blobs(self, repo: str = "alice/critic") -> list[str]:
        folder = self.cache / f"models--{repo.replace('/', '--')}" / "blobs"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def sandbox(hub_server, tmp_path, monkeypatch) -> Sandbox:
    cache = tmp_path / "d1" / "d2" / "d3" / "hf-cache"  # deep enough that '../../../x' stays visible in tmp_path
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("MDHUB_PULL_TIMEOUT", raising=False)
    return Sandbox(root=tmp_path, cache=cache, store=other_store(tmp_path, "store"))


@pytest.fixture
def critic(hub_server, sandbox) -> tuple[dict, bytes]:
    """alice/critic published (card as a dict, weights), and the sandbox store holding an earlier pull of it."""
    card, blob = published(hub_server)
    with pytest.MonkeyPatch.context() as mp:  # through another cache: the sandbox's stays cold
        mp.setenv("HF_HUB_CACHE", str(sandbox.root / "warm-cache"))
        pull("alice/critic", local_id="kept", store=sandbox.store)  # the store is not empty: it must stay as it is
    return card, blob


def refused(sandbox: Sandbox, error: type[Exception], match: str, repo: str = "alice/critic", names_repo: bool = True,
            **kw) -> str:
    """Pull `repo` into the sandbox store, expecting a refusal; check it stored and leaked nothing."""
    before = sandbox.snapshot()
    with pytest.raises(error, match=match) as info:
        pull(repo, store=sandbox.store, **kw)
    message = str(info.value)
    assert "\n" not in message and (repo in message or not names_repo)
    sandbox.assert_refused_cleanly(before)
    return message


# --- crafted identifiers: nothing the server names becomes a path before it is checked ------------------------------
@pytest.mark.parametrize("path", [CARD, WEIGHTS])
@pytest.mark.parametrize("forge", [
    dict(etag="../../x"),
    dict(etag="../../../../escaped"),
    dict(etag="../../../../../../../escaped"),
    dict(etag="not-a-hash"),
    dict(etag="ABCDEF" + "0" * 34),  # upper case is not what the Hub sends
    dict(linked_etag="../../../../escaped"),  # a valid ETag does not excuse a crafted X-Linked-Etag
    dict(repo_commit="../../../etc"),
    dict(repo_commit="not-hex-at-all"),
    dict(repo_commit="f" * 40),  # a well-formed id, but not the commit asked for
])
def test_crafted_etag_or_commit_header_is_refused_before_any_write(hub_server, sandbox, critic, path, forge):
    commit = hub_server.head("alice/critic")
    gets = hub_server.count("GET", f"resolve/{commit}/{path}")
    hub_server.forge_headers(path, **forge)
    refused(sandbox, BadResponseError, rf"pull alice/critic@{commit} on .*: {path}: .*refus")
    assert hub_server.count("GET", f"resolve/{commit}/{path}") == gets  # never downloaded


@pytest.mark.parametrize("sha", ["../../../etc", "../../../../../../../escaped", "z" * 40, "A" * 40, "a" * 39,
                                 "a" * 40 + "\n", "", 40])
def test_crafted_commit_id_is_refused(hub_server, sandbox, critic, sha):
    heads, gets = hub_server.count("HEAD"), hub_server.count("GET", "/resolve/")
    hub_server.forge_model_info(sha=sha)
    message = refused(sandbox, BadResponseError, r"is not a commit id \(40 lowercase hex digits\); refusing")
    assert repr(sha)[:20] in message
    assert (hub_server.count("HEAD"), hub_server.count("GET", "/resolve/")) == (heads, gets)  # no file asked for


def test_crafted_oid_in_the_listing_is_refused(hub_server, sandbox, critic):
    hub_server.forge_model_info(oids={README: "../../../../escaped"})
    refused(sandbox, BadResponseError, r"README.md: the server lists oid '../../../../escaped', which is not a plain")
    head = hub_server.head("alice/critic")
    hub_server.clear_faults()
    hub_server.forge_model_info(oids={CARD: "0" * 40})  # a plain hash, but not what HEAD says the file is
    refused(sandbox, BadResponseError, rf"alice/critic@{head} on .*: card.json: the server's ETag \w+\.\.\. is not "
                                       "the file's oid in its own listing")


def test_a_poisoned_cache_is_refused_offline(hub_server, sandbox, critic, monkeypatch):
    pull("alice/critic", store=other_store(sandbox.root, "warm"))  # fills the sandbox's cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = sandbox.cache / "models--alice--critic" / "refs" / "main"
    good = ref.read_text()
    ref.write_text("../../../etc")
    refused(sandbox, RemoteError, r"the cached ref .*refs/main holds '../../../etc', not a commit id")
    ref.write_text(good)
    pointer = sandbox.cache / "models--alice--critic" / "snapshots" / good / CARD
    outside = sandbox.root / "planted.json"
    outside.write_text("{}")
    pointer.unlink()
    pointer.symlink_to(outside)
    refused(sandbox, RemoteError, r"card.json is not a file inside .*; refusing it")
    pointer.unlink()
    with pytest.raises(NotCachedError, match=rf"alice/critic@{good} on .*: card.json: not cached"):
        pull("alice/critic", store=sandbox.store)


# --- sizes: the card's declared size caps the weights; a lying Content-Length is refused -----------------------------
def test_weights_larger_than_the_card_declares_are_never_downloaded(hub_server, sandbox, critic):
    card, blob = critic
    hub_server.commit("eve/fat", {CARD: json.dumps(card).encode(), README: readme_for(card),
                                  WEIGHTS: blob + b"\0" * 4096})
    refused(sandbox, SizeLimitError, rf"eve/fat@\w{{40}} on .*: model.safetensors is {len(blob) + 4096} bytes, over "
                                     rf"the {len(blob)}-byte limit; refusing to download it", repo="eve/fat")
    assert hub_server.count(contains=f"eve/fat/resolve/{hub_server.head('eve/fat')}/{WEIGHTS}") == 0


def test_a_card_over_the_cap_is_never_downloaded(hub_server, sandbox, critic):
    card, blob = critic
    huge_json = json.dumps(card).encode() + b" " * MAX_CARD_BYTES
    hub_server.commit("eve/bigcard", {CARD: huge_json, README: readme_for(card), WEIGHTS: blob})
    refused(sandbox, SizeLimitError, rf"card.json is \d+ bytes, over the {MAX_CARD_BYTES}-byte limit",
            repo="eve/bigcard")
    assert hub_server.count(contains="eve/bigcard/resolve") == 0


@pytest.mark.parametrize("path", [CARD, WEIGHTS])
@pytest.mark.parametrize("delta, keep_open", [(+100, False), (+100, True), (-10, False)])
def test_a_lying_content_length_is_refused(hub_server, sandbox, critic, path, delta, keep_open):
    hub_server.lie_content_length(delta, path, keep_open=keep_open)
    started = time.monotonic()
    refused(sandbox, BadResponseError, rf"{path}: the download announces '\d+' bytes \(Content-Length\), the server's "
                                       r"metadata \d+; refusing a lying or broken answer", timeout=DEADLINE * 5)
    assert time.monotonic() - started < DEADLINE * 4  # refused on the headers, not by waiting for a body


def test_a_lying_head_is_refused(hub_server, sandbox, critic):
    hub_server.lie_content_length(-10, WEIGHTS, methods=("HEAD",))
    refused(sandbox, BadResponseError, r"model.safetensors: the server announces \d+ bytes, its listing says \d+")


def test_a_body_longer_than_announced_is_cut_at_the_announced_size(hub_server, sandbox, critic):
    size = len(hub_server.file("alice/critic", README))
    hub_server.forge_model_info(sizes={README: size - 10})  # every announcement agrees on 10 bytes less ...
    hub_server.lie_content_length(-10, README, methods=("HEAD",))
    hub_server.lie_content_length(None, README)  # ... and the body, with no length, is longer
    refused(sandbox, BadResponseError, rf"README.md: the server sends more than the {size - 10} bytes it announced")


def test_a_body_without_content_length_is_fine_when_it_is_right(hub_server, sandbox, critic):
    hub_server.lie_content_length(None)  # every file ends with the connection instead
    pulled = pull("alice/critic", store=other_store(sandbox.root, "plain"))
    assert weights_of(pulled) == critic[1]


# --- deadline: stalls and drips end in one line, with nothing half-written ------------------------------------------
def _open_ended_card(server: HubServer) -> None:
    """Every announcement says card.json is 100 bytes longer than it is; the body ends, the connection stays open."""
    size = len(server.file("alice/critic", CARD))
    server.forge_model_info(sizes={CARD: size + 100})
    server.lie_content_length(+100, CARD, methods=("HEAD", "GET"), keep_open=True)


@pytest.mark.parametrize("fault, where", [
    (lambda s: s.stall(SLOW, WEIGHTS), WEIGHTS),  # no answer at all to the GET
    (lambda s: s.stall(SLOW, WEIGHTS, after_bytes=100), WEIGHTS),  # headers and 100 bytes, then silence
    (lambda s: s.stall(SLOW, CARD, methods=("HEAD",)), CARD),  # the metadata request hangs
    (lambda s: s.stall(SLOW, "/revision/main", methods=("GET",)), "alice/critic@main"),  # the repository lookup
    (lambda s: s.drip(0.1, README), README),  # one byte every 0.1 s: it would take minutes
    (_open_ended_card, CARD),  # a Content-Length larger than the body, on a connection left open
], ids=["stall-get", "stall-mid-body", "stall-head", "stall-lookup", "drip", "open-ended"])
def test_a_stall_or_a_drip_ends_at_the_deadline(hub_server, sandbox, critic, fault, where):
    fault(hub_server)
    started = time.monotonic()
    message = refused(sandbox, RemoteTimeoutError, rf"no complete answer within the pull's {DEADLINE:g} s deadline",
                      timeout=DEADLINE)
    assert where in message and "nothing was stored" in message
    assert time.monotonic() - started < DEADLINE + 4  # generous: the machine is shared
    if where == WEIGHTS:
        assert git_blob_sha1(critic[1]) not in sandbox.blobs()  # no partial blob either (checked in refused())


def test_the_deadline_covers_a_policys_parts(hub_server, sandbox, parts):
    hub_server_policy(hub_server, *parts)
    hub_server.stall(SLOW, WEIGHTS)  # the parts' weights never come
    before = sandbox.snapshot()
    with pytest.raises(RemoteTimeoutError, match=rf"pull alice/diff@\w{{40}} on .*: model.safetensors: no complete "
                                                 rf"answer within the pull's {DEADLINE:g} s deadline"):
        pull("alice/policy", store=sandbox.store, timeout=DEADLINE)
    sandbox.assert_refused_cleanly(before)


def test_the_timeout_comes_from_the_argument_or_the_environment(hub_server, sandbox, critic, monkeypatch):
    assert Deadline.of(None).seconds == 600.0 and Deadline.of(2.5).seconds == 2.5
    monkeypatch.setenv("MDHUB_PULL_TIMEOUT", str(DEADLINE))
    assert Deadline.of(None).seconds == DEADLINE
    hub_server.stall(SLOW, WEIGHTS)
    refused(sandbox, RemoteTimeoutError, rf"model.safetensors: no complete answer within the pull's {DEADLINE:g} s "
                                         r"deadline; nothing was stored")
    monkeypatch.setenv("MDHUB_PULL_TIMEOUT", "soon")
    refused(sandbox, RemoteError, r"MDHUB_PULL_TIMEOUT='soon' is not a positive number of seconds", names_repo=False)
    for bad in (0, -1, float("nan")):
        refused(sandbox, RemoteError, r"a pull timeout must be a positive number of seconds", timeout=bad,
                names_repo=False)


# --- policies: only parts on the same kind of remote, and only policies that can run --------------------------------
def hub_server_policy(server: HubServer, diff, guide, repo: str = "alice/policy", mode: str = "resample",
                      params: dict | None = None, diffusion_repo: str | None = None) -> None:
    """Publish a policy card on the loopback Hub directly (bypassing push's checks, as an attacker would)."""
    d_ref = diff.card.ref().model_copy(update={"repo": diffusion_repo or "alice/diff",
                                               "revision": server.head("alice/diff")})
    g_ref = guide.card.ref().model_copy(update={"repo": "alice/guide", "revision": server.head("alice/guide")})
    card = policy_card(d_ref, g_ref)
    card = card.model_copy(update={"policy": card.policy.model_copy(update={"mode": mode, "params": params or {}})})
    text = card.model_dump_json()
    server.commit(repo, {CARD: text.encode(), README: readme_for(json.loads(text))})


@pytest.fixture
def parts(hub_server, tiny_diffusion):
    diff, guide = stored_diffusion(), stored_critic("guide-a")
    push("diff-a", "alice/diff")
    push("guide-a", "alice/guide")
    return diff, guide


@pytest.mark.parametrize("local", ["file://{root}/shared::team/diff", "{root}/shared::team/diff"])
def test_a_hub_policy_whose_part_is_a_local_folder_is_refused(hub_server, sandbox, parts, local):
    target = local.format(root=sandbox.root)
    hub_server_policy(hub_server, *parts, repo="eve/policy", diffusion_repo=target)
    refused(sandbox, RemoteError, rf"eve/policy@\w{{40}}: policy part diffusion 'diff-a' points at file://"
                                  rf"{sandbox.root}/shared::team/diff, a local folder; a policy pulled from the "
                                  r"Hugging Face Hub may only reference parts there too; refused", repo="eve/policy")


def test_a_policy_is_not_pushed_with_a_part_in_a_local_folder(hub_server, sandbox, parts):
    push("diff-a", f"file://{sandbox.root}/shared::team/diff")  # the part now lives in a folder
    hub.save(None, policy_card(hub.show("diff-a").ref(), parts[1].card.ref()))
    with pytest.raises(RemoteError, match=r"policy 'policy-a': its diffusion part 'diff-a' lives at file://.*, a "
                                          r"local folder; a policy pushed to the Hugging Face Hub may only reference "
                                          r"parts there too"):
        push("policy-a", "alice/policy")
    assert "alice/policy" not in hub_server.repos


@pytest.mark.parametrize("mode, params, why", [
    ("resample", {"n_candidates": 0}, r"n_candidates"),
    ("resample", {"rule": "telepathy"}, r"rule"),
    ("resample", {"warp_factor": 9}, r"warp_factor"),
    ("q_loss", {}, r"'q_loss' is a training mode"),
    ("gradient", {}, r"does not accept 'gradient'"),
])
def test_a_policy_that_could_not_run_is_refused_before_anything_is_stored(hub_server, sandbox, parts, mode, params,
                                                                          why):
    hub_server_policy(hub_server, *parts, repo="eve/policy", mode=mode, params=params)
    refused(sandbox, RemoteError, rf"eve/policy@\w{{40}}: refused: policy 'policy-a' cannot be loaded: .*{why}",
            repo="eve/policy")


# --- the CLI, and a clean success -------------------------------------------------------------------------------------
def test_the_cli_prints_one_line_and_exits_1(hub_server, sandbox, critic, monkeypatch):
    monkeypatch.setenv("MDHUB_HOME", str(sandbox.store.root))
    app = typer.Typer()
    register(app)
    hub_server.forge_headers(CARD, etag="../../../../escaped")
    before = sandbox.snapshot()
    result = CliRunner().invoke(app, ["pull", "alice/critic"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: pull alice/critic@") and CARD in lines[0], result.output
    assert "Traceback" not in result.output
    sandbox.assert_refused_cleanly(before)
    hub_server.clear_faults()
    hub_server.stall(SLOW, WEIGHTS)
    monkeypatch.setenv("MDHUB_PULL_TIMEOUT", str(DEADLINE))
    result = CliRunner().invoke(app, ["pull", "alice/critic"])
    assert result.exit_code == 1 and "deadline" in result.output and "Traceback" not in result.output
    monkeypatch.delenv("MDHUB_PULL_TIMEOUT")
    result = CliRunner().invoke(app, ["pull", "alice/critic", "--timeout", str(DEADLINE)])  # the flag, no env
    assert result.exit_code == 1 and "deadline" in result.output and "Traceback" not in result.output


def test_a_good_pull_writes_only_the_cache_and_the_store_in_the_hubs_layout(hub_server, sandbox):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    card, blob = published(hub_server)
    before = sandbox.snapshot()
    pulled = pull("alice/critic", store=sandbox.store, timeout=30)
    assert weights_of(pulled) == blob
    tree, _, _ = before
    assert sandbox.changed_outside(tree, sandbox.snapshot()[0]) == []
    commit = hub_server.head("alice/critic")
    repo = next(r for r in scan_cache_dir(sandbox.cache).repos if r.repo_id == "alice/critic")
    assert {rev.commit_hash for rev in repo.revisions} == {commit} and repo.refs["main"].commit_hash == commit
    cached = try_to_load_from_cache("alice/critic", WEIGHTS, cache_dir=sandbox.cache, revision="main")
    assert Path(cached).read_bytes() == blob  # huggingface_hub itself finds what mdhub cached
    assert sandbox.blobs() == sorted(git_blob_sha1(hub_server.file("alice/critic", n)) for n in (CARD, README, WEIGHTS))
