"""`mdhub data push | pull`: datasets in Hub *dataset* repositories, over HTTP against the loopback Hub
(tests/hub_server.py), through the real huggingface_hub client (push) and mdhub's guarded pull.

Covers the round trip (one commit of three files, identical arrays and metadata in another home, the exact commit
recorded, `hub_dataset_id`), tampered and truncated files, a size declared smaller than the file, an inconsistent
dataset card, a model repository pulled as a dataset, bad ids and replacing other data: one line, exit 1, nothing
stored."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hub import datasets as store
from hub.remote import RemoteError, RemoteIntegrityError
from hub.remote.dataset_sharing import DATA_FILE, META_FILE, README_FILE, front_matter
from hub.remote.sharing import push as push_module
from modules.data.dataset import ARRAY_KEYS, OfflineDataset
from tests.cli_checks import data_fails, data_ok
from tests.test_sharing import hub_server as loopback_hub  # noqa: F401  (a fixture, requested by this name)
from tests.test_sharing import stored_critic

runner = CliRunner()
REPO = "alice/hopper-small"


_ok, _fails = data_ok, data_fails


def small_dataset(dataset_id: str = "hop-small", n: int = 120, seed: int = 0) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    ends = np.zeros(n, bool)
    ends[29::30] = True
    arrays = {"observations": rng.normal(size=(n, 15)).astype(np.float32),
              "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
              "rewards": rng.normal(size=n).astype(np.float32),
              "next_observations": rng.normal(size=(n, 15)).astype(np.float32),
              "terminals": ends & (np.arange(n) < 60), "timeouts": ends & (np.arange(n) >= 60)}
    ds = OfflineDataset.from_arrays(arrays, env="hopper", policy="test", seed=seed, dataset_id=dataset_id)
    store.store_imported(ds, dataset_id)
    return store.get_dataset(dataset_id)


def use_home(monkeypatch, path: Path) -> None:
    monkeypatch.setenv("MDHUB_HOME", str(path))


def nothing_stored() -> bool:
    folder = store.datasets_dir()
    return not folder.exists() or not [f for f in folder.iterdir() if f.suffix != ".lock"]  # locks are not data


def test_round_trip_one_commit_identical_data_exact_commit(loopback_hub, tmp_path, monkeypatch):  # noqa: F811
    server = loopback_hub
    ds = small_dataset()
    res = _ok(["push", "hop-small", REPO])
    commit = server.head(REPO, repo_type="dataset")
    assert commit in res.output
    repo = server.dataset_repos[REPO]
    assert REPO not in server.repos  # a dataset repository, not a model one
    assert len(repo.commits) == 2  # the Hub's initial commit, then ONE commit of the three files
    files = repo.commits[commit].files
    assert {DATA_FILE, META_FILE, README_FILE} <= set(files)
    record = json.loads(files[META_FILE])
    assert record["files"][DATA_FILE]["size"] == len(files[DATA_FILE])
    card = front_matter(files[README_FILE], "README")
    assert card["license"] == "mit" and card["task_categories"] == ["reinforcement-learning"]
    assert card["size_categories"] == ["n<1K"] and "mdhub" in card["tags"] and "hopper" in card["tags"]
    assert card["mdhub"] == record["metadata"] and card["mdhub"]["sha256"] == ds.sha256
    assert store.hub_dataset_id("hop-small") == REPO  # the pushed dataset now names where it lives

    use_home(monkeypatch, tmp_path / "other-home")
    assert nothing_stored()
    res = _ok(["pull", REPO, "--id", "hop-copy"])
    assert commit in res.output and "hop-copy" in res.output
    got = store.get_dataset("hop-copy")
    for k in ARRAY_KEYS:
        np.testing.assert_array_equal(getattr(got, k), getattr(ds, k))
        assert getattr(got, k).dtype == getattr(ds, k).dtype
    src = got.metadata["hub_source"]
    assert src == {"backend": "hf", "repo": REPO, "revision": "main", "commit": commit}
    same = {k: v for k, v in got.metadata.items() if k not in ("hub_source", "dataset_id")}
    assert same == {k: v for k, v in ds.metadata.items() if k not in ("hub_source", "dataset_id")}
    assert store.hub_dataset_id("hop-copy") == REPO
    assert store.hub_dataset_id("no-such-dataset") is None

    # a pull at the exact commit, under the dataset's own id; a pull again is 'unchanged'
    _ok(["pull", f"{REPO}@{commit}"])
    assert store.get_dataset("hop-small").sha256 == ds.sha256
    assert "same content" in _ok(["pull", REPO, "--id", "hop-copy"]).output


def test_push_to_a_branch_private_repo(loopback_hub, tmp_path, monkeypatch):  # noqa: F811
    small_dataset()
    _ok(["push", "hop-small", REPO, "--revision", "dev", "--private", "--license", "cc-by-4.0"])
    repo = loopback_hub.dataset_repos[REPO]
    assert repo.private and "dev" in repo.branches and repo.branches["main"] != repo.branches["dev"]
    card = front_matter(loopback_hub.file(REPO, README_FILE, "dev", repo_type="dataset"), "README")
    assert card["license"] == "cc-by-4.0"
    use_home(monkeypatch, tmp_path / "other-home")
    _fails(["pull", REPO], "no metadata.json")  # main holds only the Hub's .gitattributes
    assert nothing_stored()
    _ok(["pull", f"{REPO}@dev"])
    assert store.dataset_info("hop-small")["hub_source"]["revision"] == "dev"


@pytest.mark.parametrize("how", ["tampered", "truncated"])
def test_tampered_or_truncated_data_is_refused(loopback_hub, tmp_path, monkeypatch, how):  # noqa: F811
    small_dataset()
    store.push("hop-small", REPO)
    change = None if how == "tampered" else (lambda b: b[: len(b) // 2])
    loopback_hub.tamper(REPO, DATA_FILE, change=change, repo_type="dataset")
    use_home(monkeypatch, tmp_path / "other-home")
    needle = "sha256 mismatch" if how == "tampered" else "dataset.npz is"
    _fails(["pull", REPO], needle, "refused")
    assert nothing_stored()
    with pytest.raises(RemoteIntegrityError):
        store.pull(REPO)
    assert nothing_stored()


def test_size_declared_smaller_than_the_file_is_never_downloaded(loopback_hub, tmp_path, monkeypatch):  # noqa: F811
    small_dataset()
    store.push("hop-small", REPO)
    record = json.loads(loopback_hub.file(REPO, META_FILE, repo_type="dataset"))
    record["files"][DATA_FILE]["size"] = 100
    loopback_hub.commit(REPO, {META_FILE: json.dumps(record).encode()}, repo_type="dataset")
    use_home(monkeypatch, tmp_path / "other-home")
    before = loopback_hub.count("GET", f"/{DATA_FILE}")
    _fails(["pull", REPO], "over the 100-byte limit")
    assert loopback_hub.count("GET", f"/{DATA_FILE}") == before and nothing_stored()


def test_inconsistent_dataset_card_or_metadata_is_refused(loopback_hub, tmp_path, monkeypatch):  # noqa: F811
    small_dataset()
    store.push("hop-small", REPO)
    readme = loopback_hub.file(REPO, README_FILE, repo_type="dataset").decode()
    head, body = readme[4:].split("\n---", 1)
    front = yaml.safe_load(head)
    front["mdhub"]["size"] = 7
    loopback_hub.commit(REPO, {README_FILE: ("---\n" + yaml.safe_dump(front) + "---" + body).encode()},
                        repo_type="dataset")
    use_home(monkeypatch, tmp_path / "other-home")
    _fails(["pull", REPO], "does not match metadata.json")
    meta = loopback_hub.file(REPO, META_FILE, repo_type="dataset")
    loopback_hub.commit(REPO, {README_FILE: readme.encode(), META_FILE: b"{not json"}, repo_type="dataset")
    _fails(["pull", REPO], "metadata.json is not JSON")
    loopback_hub.commit(REPO, {README_FILE: b"---\na: &x [1]\nb: *x\n---\n", META_FILE: meta}, repo_type="dataset")
    _fails(["pull", REPO], "anchors are not allowed")
    assert nothing_stored()


def test_a_model_repository_is_not_a_dataset(loopback_hub, tmp_path, monkeypatch):  # noqa: F811
    push_module(stored_critic().id, "alice/critic")
    _fails(["pull", "alice/critic"], "is a model repository, not a dataset repository", "mdhub pull")
    assert nothing_stored()
    # module files committed into a dataset repository: named as a module
    loopback_hub.commit("alice/oops", {"card.json": loopback_hub.file("alice/critic", "card.json")},
                        repo_type="dataset")
    _fails(["pull", "alice/oops"], "holds an mdhub module")
    _fails(["pull", "alice/nothing-here"], "no such dataset repository")
    assert nothing_stored()


def test_bad_ids_and_other_data_under_the_same_id(loopback_hub, tmp_path, monkeypatch):  # noqa: F811
    small_dataset()
    store.push("hop-small", REPO)
    use_home(monkeypatch, tmp_path / "other-home")
    for bad in ("Hop Small", "../x", "a/b"):
        _fails(["pull", REPO, "--id", bad], "bad dataset id")
    _fails(["pull", "not a repo"], "is not a repository reference")
    _fails(["push", "Bad Id", REPO], "bad dataset id")
    assert nothing_stored()
    small_dataset("hop-small", seed=1)  # other content under the same id
    _fails(["pull", REPO], "a different dataset 'hop-small' is already in the store", "--force")
    _ok(["pull", REPO, "--force"])
    assert store.dataset_info("hop-small")["hub_source"]["repo"] == REPO


def test_file_remote_round_trip(tmp_path, monkeypatch):
    ds = small_dataset()
    ref = f"file://{tmp_path / 'remote'}::alice/data"
    res = store.push("hop-small", ref)
    assert (tmp_path / "remote" / ".datasets" / "alice" / "data").is_dir()
    assert store.hub_dataset_id("hop-small") is None  # not a Hub dataset id
    use_home(monkeypatch, tmp_path / "other-home")
    out = store.pull(ref)
    assert out.commit == res.commit and store.get_dataset("hop-small").sha256 == ds.sha256
    with pytest.raises(RemoteError, match="no such dataset repository|no such repository"):
        store.pull(f"file://{tmp_path / 'remote'}::alice/missing")


def test_the_guarded_download_serves_datasets_too(loopback_hub, tmp_path, monkeypatch):  # noqa: F811
    """The module pull's machinery, for a dataset repository: a forged commit id never becomes a path, a stalled
    data file ends at the pull's deadline, a dropped connection is resumed; nothing half-written."""
    small_dataset()
    store.push("hop-small", REPO)
    use_home(monkeypatch, tmp_path / "other-home")
    loopback_hub.forge_model_info(sha="../../../etc", n=1)
    _fails(["pull", REPO], "not a commit id")
    cache = tmp_path / "hf-cache"
    assert not (tmp_path / "etc").exists() and not list(cache.rglob("etc"))
    loopback_hub.stall(30, DATA_FILE, after_bytes=10, n=1)
    _fails(["pull", REPO, "--timeout", "1.5"], "deadline", "nothing was stored")
    assert nothing_stored()
    loopback_hub.drop_downloads(1, keep_bytes=100, path_suffix=DATA_FILE)
    res = _ok(["pull", REPO])
    assert store.get_dataset("hop-small").metadata["hub_source"]["commit"] in res.output
    assert (cache / "datasets--alice--hopper-small").is_dir()  # huggingface_hub's cache layout for datasets
