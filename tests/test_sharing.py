"""Push and pull over HTTP: the real huggingface_hub client against a loopback Hub (tests/hub_server.py).

Covers the round trip, revision pinning, policies with their parts, offline use of the cache, the file:// backend,
and the failures: missing repo or revision, tampered files, dropped connections, invalid cards, hostile READMEs.
"""
from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

import hub
from cards import DiffusionSpec, HubSource, Interface, ModuleCard, ModuleRef, Origin, PolicySpec, card_from_readme
from hub.cli.share import register
from hub.remote import (
    Backend,
    FileBackend,
    HFBackend,
    NotCachedError,
    RemoteError,
    RemoteIntegrityError,
    RepoNotFoundError,
    RevisionNotFoundError,
    parse_repo_ref,
    ref_from_source,
)
from hub.remote.sharing import pull, push
from hub.store import CARD, README, WEIGHTS, Store
from tests.conftest import critic_card, small_critic
from tests.hub_server import HubServer


# --- fixtures and helpers ----------------------------------------------------------------------------------------
def _loopback_only_client():
    """huggingface_hub's HTTP client, refusing any host but the loopback hub (and ignoring proxy settings)."""
    import httpx2
    from huggingface_hub.utils._http import hf_request_event_hook

    def only_loopback(request) -> None:
        if request.url.host != "127.0.0.1":
            raise RuntimeError(f"a test tried to reach {request.url}: only the loopback hub is allowed")

    return httpx2.Client(event_hooks={"request": [only_loopback, hf_request_event_hook]}, follow_redirects=True,
                         timeout=None, trust_env=False)


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    """A loopback Hub; HF_ENDPOINT points at it, the HF cache is per test, nothing can leave 127.0.0.1."""
    import importlib

    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    bars = importlib.import_module("huggingface_hub.utils.tqdm")
    server = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # huggingface_hub reads these at import time: patch the constants too.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setitem(bars.progress_bar_states, "_global", False)
    previous = _http._GLOBAL_CLIENT_FACTORY
    huggingface_hub.set_client_factory(_loopback_only_client)
    try:
        yield server
    finally:
        huggingface_hub.set_client_factory(previous)
        server.stop()


@pytest.fixture
def instant_retries(monkeypatch):
    """The client pauses 1 s before resuming a broken download; tests do not wait."""
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd, "time", types.SimpleNamespace(sleep=lambda seconds: None))


def stored_critic(module_id: str = "critic-a", seed: int = 0) -> hub.StoredModule:
    net = small_critic(seed)
    return hub.save(net, critic_card(net, module_id), overwrite=True)  # tests replace it on purpose


def other_store(tmp_path: Path, name: str = "other") -> Store:
    return Store(root=tmp_path / name)


def weights_of(stored: hub.StoredModule) -> bytes:
    """The stored weights' bytes. A card update moves a module to a new folder, so a stored module is looked up
    again by id when its folder has been replaced since it was loaded."""
    path = stored.path / WEIGHTS
    if not path.exists() and stored.path.parent.name == "modules":
        path = Store(stored.path.parent.parent).folder_of(stored.id) / WEIGHTS
    return path.read_bytes()


def readme_for(card: dict, **extra) -> bytes:
    """A model card whose front matter says whatever a test wants (bypassing our renderer)."""
    meta = {"library_name": "mdhub", "license": "mit", "tags": ["mdhub"], "mdhub": card, **extra}
    return ("---\n" + yaml.safe_dump(meta, sort_keys=True) + "---\n\n# a module\n").encode()


def published(server: HubServer) -> tuple[dict, bytes]:
    """Push a valid module and return its card (as a dict) and weights, as raw material for hostile repos."""
    push(stored_critic().id, "alice/critic")
    return json.loads(server.file("alice/critic", CARD)), server.file("alice/critic", WEIGHTS)


def assert_nothing_stored(store: Store | None = None) -> None:
    store = store or Store()
    assert store.entries() == []
    if store.modules_dir.exists():
        assert list(store.modules_dir.iterdir()) == []


# --- round trip ------------------------------------------------------------------------------------------------------
def test_push_then_pull_round_trip(hub_server, tmp_path):
    local = stored_critic()
    result = push("critic-a", "alice/critic", message="first upload")
    repo = hub_server.repos["alice/critic"]
    head = repo.commits[result.commit]
    assert len(repo.commits) == 2 and head.parent is not None  # the Hub's initial commit + exactly ONE push commit
    assert head.message == "first upload"
    assert sorted(head.files) == [".gitattributes", README, CARD, WEIGHTS]
    assert head.files[WEIGHTS] == weights_of(local)
    meta = yaml.safe_load(head.files[README].decode().split("---\n")[1])
    assert meta["library_name"] == "mdhub" and {"iql", "guidance"} <= set(meta["tags"])
    assert card_from_readme(head.files[README]) == local.card  # README and card.json agree, no hub_source published
    assert result.repo == f"hf://alice/critic@{result.commit}"

    # the local card now records where the module lives
    assert hub.show("critic-a").hub_source == HubSource(backend="hf", repo="alice/critic", revision="main",
                                                        commit=result.commit)

    store = other_store(tmp_path)
    pulled = pull("alice/critic", store=store)
    assert weights_of(pulled) == weights_of(local)
    assert pulled.card.model_copy(update={"hub_source": None}) == local.card
    assert pulled.card.hub_source == HubSource(backend="hf", repo="alice/critic", revision="main", commit=result.commit)
    assert store.load("critic-a").card == pulled.card
    import torch

    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    assert torch.equal(pulled.net.q(obs, act), local.net.q(obs, act))


def test_revision_pinning(hub_server, tmp_path):
    old = weights_of(stored_critic(seed=0))
    first = push("critic-a", "alice/critic")
    branch = push("critic-a", "alice/critic", revision="stable")  # same files: the new branch needs no commit
    assert branch.commit == first.commit and hub_server.head("alice/critic", "stable") == first.commit
    new = weights_of(stored_critic(seed=1))
    second = push("critic-a", "hf://alice/critic")
    assert second.commit != first.commit and old != new

    store = other_store(tmp_path)
    by_commit = pull(f"alice/critic@{first.commit}", local_id="by-commit", store=store)
    by_branch = pull("alice/critic@stable", local_id="by-branch", store=store)
    latest = pull("alice/critic", local_id="latest", store=store)
    assert weights_of(by_commit) == weights_of(by_branch) == old
    assert weights_of(latest) == new
    assert by_commit.card.hub_source.commit == by_branch.card.hub_source.commit == first.commit
    assert by_branch.card.hub_source.revision == "stable"
    assert latest.card.hub_source.commit == second.commit

    # a pull is reproducible from what it recorded, even after the branch moved on
    push(stored_critic(seed=2).id, "alice/critic", revision="stable")
    again = pull(str(ref_from_source(by_branch.card.hub_source)), local_id="again", store=store)
    assert weights_of(again) == old


# --- policies --------------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_diffusion(monkeypatch):
    """A diffusion architecture for tests (a small network under a diffusion card; no combine module needed)."""
    from hub.registry import Architecture, registry

    arch = Architecture(id="tiny_diffusion", kind="diffusion", build="modules.guidance.iql:IQLCritic",
                        sample_guidance=("resample",))
    monkeypatch.setitem(registry().architectures, "tiny_diffusion", arch)


def stored_diffusion(module_id: str = "diff-a", seed: int = 7) -> hub.StoredModule:
    net = small_critic(seed)
    card = ModuleCard(id=module_id, kind="diffusion", architecture="tiny_diffusion",
                      config=net.cfg.model_dump(mode="json"), interface=Interface(obs_dim=3, act_dim=2),
                      origin=Origin(algorithm="DQL", recipe="behaviour-only", seed=seed),
                      diffusion=DiffusionSpec(T=5, sample_guidance=["resample"]))
    return hub.save(net, card)


def policy_card(diffusion: ModuleRef, guidance: ModuleRef, module_id: str = "policy-a") -> ModuleCard:
    return ModuleCard(id=module_id, kind="policy", architecture="combined", interface=Interface(obs_dim=3, act_dim=2),
                      origin=Origin(algorithm="DQL", recipe="combined"),
                      policy=PolicySpec(diffusion=diffusion, infer_guidance=guidance, mode="resample"))


def test_policy_push_and_pull_with_its_parts(hub_server, tmp_path, tiny_diffusion):
    diff, guide = stored_diffusion(), stored_critic("guide-a")
    hub.save(None, policy_card(diff.card.ref(), guide.card.ref()))
    with pytest.raises(RemoteError, match=r"policy 'policy-a': its diffusion part 'diff-a' has not been pushed "
                                          r"anywhere; push it first \(mdhub push diff-a NAMESPACE/NAME\)"):
        push("policy-a", "alice/policy")
    assert "alice/policy" not in hub_server.repos
    d = push("diff-a", "alice/diff")
    g = push("guide-a", "alice/guide")
    p = push("policy-a", "alice/policy")
    assert sorted(hub_server.repos["alice/policy"].commits[p.commit].files) == [".gitattributes", README, CARD]
    spec = json.loads(hub_server.file("alice/policy", CARD))["policy"]
    assert (spec["diffusion"]["repo"], spec["diffusion"]["revision"]) == ("alice/diff", d.commit)
    assert (spec["infer_guidance"]["repo"], spec["infer_guidance"]["revision"]) == ("alice/guide", g.commit)

    store = other_store(tmp_path)
    pulled = pull("alice/policy", store=store)
    assert pulled.net is None and pulled.card.kind == "policy"
    assert sorted(e.id for e in store.entries()) == ["diff-a", "guide-a", "policy-a"]
    assert weights_of(store.load("diff-a")) == weights_of(diff)
    assert weights_of(store.load("guide-a")) == weights_of(guide)
    assert store.card("diff-a").hub_source.commit == d.commit
    assert pulled.card.policy.diffusion.sha256 == diff.card.file(WEIGHTS).sha256


def test_policy_whose_part_has_other_weights_is_refused(hub_server, tmp_path, tiny_diffusion):
    diff, guide = stored_diffusion(), stored_critic("guide-a")
    d, g = push("diff-a", "alice/diff"), push("guide-a", "alice/guide")
    wrong = diff.card.ref().model_copy(update={"sha256": "0" * 64, "repo": "alice/diff", "revision": d.commit})
    card = policy_card(wrong, guide.card.ref().model_copy(update={"repo": "alice/guide", "revision": g.commit}))
    text = card.model_dump_json()
    hub_server.commit("eve/policy", {CARD: text.encode(), README: readme_for(json.loads(text))})
    store = other_store(tmp_path)
    with pytest.raises(RemoteIntegrityError, match=r"policy part diffusion 'diff-a': alice/diff@\w+ has weights "
                                                   r"with sha256 \w+\.\.\., the policy names 0000"):
        pull("eve/policy", store=store)
    assert_nothing_stored(store)


# --- offline and unreachable -----------------------------------------------------------------------------------------
def test_offline_pull_from_cache(hub_server, tmp_path, monkeypatch):
    from huggingface_hub import constants

    local = stored_critic()
    result = push("critic-a", "alice/critic")
    pull("alice/critic", store=other_store(tmp_path, "first"))  # fills the HF cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after huggingface_hub was imported: mdhub reads it anyway
    before = len(hub_server.requests)
    by_branch = pull("alice/critic", store=other_store(tmp_path, "b"))
    by_commit = pull(f"alice/critic@{result.commit}", store=other_store(tmp_path, "c"))
    assert len(hub_server.requests) == before  # no network at all
    assert weights_of(by_branch) == weights_of(by_commit) == weights_of(local)
    assert by_branch.card.hub_source.commit == result.commit
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as set at import time: the client refuses any request
    with pytest.raises(NotCachedError, match=r"alice/other@main on http://127.0.0.1:\d+: not cached, and offline "
                                             r"mode is on \(HF_HUB_OFFLINE\)"):
        pull("alice/other", store=other_store(tmp_path, "d"))
    with pytest.raises(NotCachedError, match="not cached"):
        pull("alice/critic@" + "1" * 40, store=other_store(tmp_path, "d"))
    with pytest.raises(RemoteError, match="offline mode is on"):
        push("critic-a", "alice/critic")


def test_unreachable_server_falls_back_to_the_cache(hub_server, tmp_path):
    local = stored_critic()
    push("critic-a", "alice/critic")
    pull("alice/critic", store=other_store(tmp_path, "first"))
    hub_server.stop()
    again = pull("alice/critic", store=other_store(tmp_path, "again"))
    assert weights_of(again) == weights_of(local)
    with pytest.raises(NotCachedError, match=r"alice/other@main on .*: not cached, and http://127.0.0.1:\d+ cannot "
                                             r"be reached"):
        pull("alice/other", store=other_store(tmp_path, "none"))


# --- failures --------------------------------------------------------------------------------------------------------
def test_repo_and_revision_not_found(hub_server, tmp_path):
    push(stored_critic().id, "alice/critic")
    store = other_store(tmp_path)
    with pytest.raises(RepoNotFoundError, match=r"alice/missing@main on http://127.0.0.1:\d+: no such repository"):
        pull("alice/missing", store=store)
    with pytest.raises(RevisionNotFoundError, match=r"alice/critic on .*: no revision 'nope'"):
        pull("alice/critic@nope", store=store)
    with pytest.raises(RevisionNotFoundError, match="no revision '0000000000"):
        pull("alice/critic@" + "0" * 40, store=store)
    assert_nothing_stored(store)
    backend = HFBackend()
    assert isinstance(backend, Backend) and backend.endpoint == hub_server.url
    assert backend.exists("alice/critic") and backend.exists("alice/critic", "main")
    assert not backend.exists("alice/missing") and not backend.exists("alice/critic", "nope")


def test_tampered_file_is_refused_and_nothing_is_stored(hub_server, tmp_path):
    local = stored_critic()
    push("critic-a", "alice/critic")
    store = other_store(tmp_path)
    original = hub_server.tamper("alice/critic", WEIGHTS)
    with pytest.raises(RemoteIntegrityError, match=r"alice/critic@\w{40}: model.safetensors: sha256 mismatch: "
                                                   r"card.json says \w+\.\.\., the downloaded file has \w+"):
        pull("alice/critic", store=store)
    assert_nothing_stored(store)
    hub_server.tamper("alice/critic", WEIGHTS, change=lambda data: data[:-10])
    with pytest.raises(RemoteIntegrityError, match=r"model.safetensors is \d+ bytes, card.json says \d+"):
        pull("alice/critic", store=store)
    assert_nothing_stored(store)
    hub_server.restore("alice/critic", WEIGHTS, original)
    pulled = pull("alice/critic", store=store)  # the bad copies were evicted from the cache
    assert weights_of(pulled) == weights_of(local)


def test_dropped_connection_is_resumed_or_leaves_nothing(hub_server, tmp_path, instant_retries, monkeypatch):
    local = weights_of(stored_critic())
    push("critic-a", "alice/critic")
    # once, after 100 bytes: the client downloads again by itself and the pull succeeds
    hub_server.drop_downloads(1, keep_bytes=100, path_suffix=WEIGHTS)
    resumed = pull("alice/critic", store=other_store(tmp_path, "resumed"))
    assert weights_of(resumed) == local and hub_server.count("GET", WEIGHTS) == 2

    # every time, before any byte of the body: the pull fails, nothing is half-stored, a retry succeeds
    store = other_store(tmp_path, "broken")
    hf_cache = tmp_path / "hf-cache-2"
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))  # a cold cache
    hub_server.drop_downloads(100, keep_bytes=0, path_suffix=WEIGHTS)
    with pytest.raises(RemoteError, match=r"pull alice/critic@\w+ on .*: the connection failed .*nothing was "
                                          r"stored; try again"):
        pull("alice/critic", store=store)
    assert_nothing_stored(store)
    assert not [p for p in hf_cache.rglob("*") if p.name.endswith(".incomplete")]
    hub_server.clear_faults()
    retried = pull("alice/critic", store=store)
    assert weights_of(retried) == local


def test_a_card_that_does_not_validate_is_refused_on_push_and_pull(hub_server, tmp_path):
    stored = stored_critic()
    card_path = stored.path / CARD
    good = card_path.read_text()
    data = json.loads(good)
    del data["interface"]
    card_path.write_text(json.dumps(data))
    with pytest.raises(RemoteError, match=r"refusing to push 'critic-a': .*card.json: invalid card: missing field "
                                          r"'interface'"):
        push("critic-a", "alice/critic")
    card_path.write_text(good)
    weights = stored.path / WEIGHTS
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(RemoteError, match="refusing to push 'critic-a': .*sha256 mismatch"):
        push("critic-a", "alice/critic")
    assert hub_server.repos == {}  # nothing was created or pushed

    card, blob = published(hub_server)
    del card["interface"]
    hub_server.commit("eve/broken", {CARD: json.dumps(card).encode(), README: readme_for(card), WEIGHTS: blob})
    store = other_store(tmp_path)
    with pytest.raises(RemoteError, match=r"eve/broken@\w+.*card.json: invalid card: missing field 'interface'"):
        pull("eve/broken", store=store)
    assert_nothing_stored(store)


def _unknown_architecture(card: dict) -> None:
    card["architecture"] = "evil_arch"


def _path_like_id(card: dict) -> None:
    card["id"] = "../../escape"


def _oversized_field(card: dict) -> None:
    card["description"] = "x" * 30_000


@pytest.mark.parametrize("mutate, message", [
    (_unknown_architecture, r"refused: unknown guidance architecture 'evil_arch'; known: .*iql"),
    (_path_like_id, r"eve/hostile@\w+: card.json: invalid card: field 'id': String should match pattern .* \(got "
                    r"'../../escape'\)"),
    (_oversized_field, r"invalid card: field 'description': String should have at most 20000 characters"),
])
def test_hostile_front_matter_is_refused(hub_server, tmp_path, mutate, message):
    card, blob = published(hub_server)
    mutate(card)
    # the attacker controls card.json too; the README is checked before it (and must agree with it)
    hub_server.commit("eve/hostile", {CARD: json.dumps(card).encode(), README: readme_for(card), WEIGHTS: blob})
    store = other_store(tmp_path)
    with pytest.raises(RemoteError, match=message):
        pull("eve/hostile", store=store)
    assert_nothing_stored(store)


def test_inconsistent_huge_or_aliased_readme_is_refused(hub_server, tmp_path):
    card, blob = published(hub_server)
    store = other_store(tmp_path)
    liar = dict(card, metrics={"normalised_score": 999.0})
    hub_server.commit("eve/liar", {CARD: json.dumps(card).encode(), README: readme_for(liar), WEIGHTS: blob})
    with pytest.raises(RemoteIntegrityError, match=r"the front matter of README.md does not match card.json "
                                                   r"\(fields differ: metrics\)"):
        pull("eve/liar", store=store)

    huge = readme_for(card) + b"x" * 1_100_000
    hub_server.commit("eve/huge", {CARD: json.dumps(card).encode(), README: huge, WEIGHTS: blob})
    with pytest.raises(RemoteError, match=r"README.md is \d+ bytes, over the 1000000-byte limit; refusing to "
                                          r"download it"):
        pull("eve/huge", store=store)
    assert hub_server.count("GET", "eve/huge/resolve") == 0

    escape = dict(card, id="../../escape")
    hub_server.commit("eve/escape", {CARD: json.dumps(card).encode(), README: readme_for(escape), WEIGHTS: blob})
    with pytest.raises(RemoteError, match=r"eve/escape@\w+: README.md \(front matter 'mdhub'\): invalid card: "
                                          r"field 'id': String should match pattern"):
        pull("eve/escape", store=store)

    bomb = b"---\nlibrary_name: mdhub\na: &a [x, x]\nb: [*a, *a]\nmdhub: {}\n---\n"
    hub_server.commit("eve/bomb", {CARD: json.dumps(card).encode(), README: bomb, WEIGHTS: blob})
    with pytest.raises(RemoteError, match="YAML anchors are not allowed"):
        pull("eve/bomb", store=store)
    assert_nothing_stored(store)


def test_extra_files_are_never_downloaded(hub_server, tmp_path):
    card, blob = published(hub_server)
    hub_server.commit("eve/extras", {CARD: json.dumps(card).encode(), README: readme_for(card), WEIGHTS: blob,
                                     "evil.py": b"import os; os.system('touch /tmp/pwned')\n",
                                     "pytorch_model.bin": b"\x80\x04 not really a pickle"})
    pulled = pull("eve/extras", store=other_store(tmp_path))
    assert weights_of(pulled) == blob
    assert hub_server.count(contains="evil.py") == 0 and hub_server.count(contains="pytorch_model.bin") == 0
    assert sorted(p.name for p in pulled.path.iterdir()) == [README, CARD, WEIGHTS]


def test_a_different_local_module_is_not_replaced_silently(hub_server):
    pushed = weights_of(stored_critic(seed=0))
    push("critic-a", "alice/critic")
    stored_critic(seed=1)  # a different module, made locally, under the same id
    with pytest.raises(RemoteError, match=r"a different module 'critic-a' is already in the store \(guidance, "
                                          r"sha256 \w+, made locally\); pull with --id NEW_ID"):
        pull("alice/critic")
    assert weights_of(pull("alice/critic", local_id="critic-b")) == pushed
    assert weights_of(pull("alice/critic", force=True)) == pushed
    assert weights_of(pull("alice/critic")) == pushed  # same origin: an update, no question asked


def test_token_and_private_repositories(hub_server, monkeypatch, tmp_path):
    hub_server.token = "hf_secret"
    stored_critic()
    with pytest.raises(RemoteError, match=r"push to alice/critic@main on .* failed: HTTP 401: .*check HF_TOKEN"):
        push("critic-a", "alice/critic", private=True)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    push("critic-a", "alice/critic", private=True)
    assert hub_server.repos["alice/critic"].private
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(RepoNotFoundError, match="private or gated and your token, HF_TOKEN, cannot see it"):
        pull("alice/critic", store=other_store(tmp_path))
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert pull("alice/critic", store=other_store(tmp_path)).card.id == "critic-a"


# --- the file:// backend ---------------------------------------------------------------------------------------------
def test_file_backend_round_trip_pinning_and_tampering(tmp_path):
    root = tmp_path / "shared"
    ref = f"file://{root}::team/critic"
    old = weights_of(stored_critic(seed=0))
    first = push("critic-a", ref)
    repo = root / "team" / "critic"
    assert (repo / "refs" / "heads" / "main").read_text().strip() == first.commit
    assert sorted(p.name for p in (repo / "commits" / first.commit / "files").iterdir()) == [README, CARD, WEIGHTS]
    assert push("critic-a", ref).commit == first.commit  # nothing changed: no new commit
    new = weights_of(stored_critic(seed=1))
    second = push("critic-a", ref)
    assert second.commit != first.commit

    store = other_store(tmp_path)
    pinned = pull(f"{ref}@{first.commit}", local_id="old", store=store)
    latest = pull(ref, local_id="new", store=store)
    assert weights_of(pinned) == old and weights_of(latest) == new
    assert latest.card.hub_source == HubSource(backend="file", repo=f"{root}::team/critic", revision="main",
                                               commit=second.commit)
    again = pull(str(ref_from_source(pinned.card.hub_source)), local_id="again", store=store)
    assert weights_of(again) == old

    target = repo / "commits" / second.commit / "files" / WEIGHTS
    blob = bytearray(target.read_bytes())
    blob[-1] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(RemoteIntegrityError, match="sha256 mismatch"):
        pull(ref, local_id="tampered", store=store)
    assert not store.contains("tampered")
    with pytest.raises(RepoNotFoundError, match="team/none: no such repository"):
        pull(f"file://{root}::team/none", store=store)
    with pytest.raises(RevisionNotFoundError, match=r"no revision 'nope' \(branches: main"):
        pull(f"{ref}@nope", store=store)
    backend = FileBackend(root)
    assert isinstance(backend, Backend)
    assert backend.exists("team/critic", first.commit) and not backend.exists("team/critic", "nope")
    target.unlink()
    target.symlink_to(repo / "commits" / first.commit / "files" / WEIGHTS)
    with pytest.raises(RemoteError, match="model.safetensors is not a plain file; refused"):
        pull(ref, local_id="linked", store=store)


def test_repository_references():
    hf = parse_repo_ref("alice/critic")
    assert (hf.backend, hf.repo_id, hf.revision) == ("hf", "alice/critic", None)
    assert parse_repo_ref("hf://alice/critic@v1.2").revision == "v1.2"
    assert parse_repo_ref("alice/critic@refs/pr/1").revision == "refs/pr/1"
    folder = parse_repo_ref("file:///srv/mdhub::team/iql@" + "a" * 40)
    assert (folder.backend, str(folder.root), folder.repo_id, folder.revision) == ("file", "/srv/mdhub", "team/iql",
                                                                                   "a" * 40)
    assert parse_repo_ref("/srv/mdhub::team/iql") == folder.with_revision(None)
    sibling = parse_repo_ref("team/dql", base=folder)
    assert sibling.backend == "file" and sibling.root == folder.root
    for ref in (hf, folder, sibling):
        assert parse_repo_ref(ref.url()) == ref
    for bad in ["critic", "../etc/passwd", "alice/../x", "alice/cr itic", "s3://a/b", "alice/critic@../../x",
                "file://relative::a/b", "file:///srv/mdhub", "alice/a--b", "", "alice/critic@"]:
        with pytest.raises(RemoteError, match="not a re"):
            parse_repo_ref(bad)


# --- the CLI ---------------------------------------------------------------------------------------------------------
def test_cli_push_and_pull(hub_server):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    assert "REPO_ID" in runner.invoke(app, ["push", "--help"]).output
    stored_critic()
    result = runner.invoke(app, ["push", "critic-a", "alice/critic", "--revision", "dev", "-m", "from the CLI"])
    assert result.exit_code == 0, result.output
    commit = hub_server.head("alice/critic", "dev")
    assert f"pushed 'critic-a' to alice/critic (branch dev): commit {commit}" in result.output
    assert hub_server.repos["alice/critic"].commits[commit].message == "from the CLI"
    result = runner.invoke(app, ["pull", "alice/critic@dev", "--id", "copy"])
    assert result.exit_code == 0, result.output
    assert f"pulled alice/critic@dev (commit {commit}) as 'copy' (guidance, iql)" in result.output
    assert hub.show("copy").hub_source.commit == commit
    result = runner.invoke(app, ["pull", "alice/missing"])
    assert result.exit_code == 1
    assert "error: alice/missing@main on" in result.output and "no such repository" in result.output
    assert "Traceback" not in result.output
