"""`mdhub search`: modules on the Hub made by mdhub (library_name / tags, through HfApi.list_models over HTTP to the
loopback Hub's model listing), and with --compatible-with the compatibility verdict from each candidate's card.json
alone (no weights fetched)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

import hub
from hub.cli import app
from hub.store import Store
from hub.training import Budget, train_diffusion, train_guidance
from tests.test_sharing import hub_server  # noqa: F401  (the loopback Hub fixture)

runner = CliRunner()
DATA = "toy-8gaussians"
TINY = Budget(hidden=8, batch_size=16, checkpoint_every=0)


def test_listing_endpoint_speaks_list_models(hub_server):  # noqa: F811
    from huggingface_hub import HfApi

    readme = b"---\nlibrary_name: mdhub\ntags:\n- guidance\n- iql\nlicense: mit\n---\n# x\n"
    hub_server.commit("alice/critic", {"README.md": readme})
    hub_server.commit("bob/bert", {"README.md": b"---\nlibrary_name: transformers\ntags: [text]\n---\n"})
    hub_server.commit("carol/secret", {"README.md": readme}, private=True)
    api = HfApi(endpoint=hub_server.url)
    assert [m.id for m in api.list_models(filter=["mdhub"])] == ["alice/critic"]  # the private one is not listed
    assert [m.id for m in api.list_models(search="BERT")] == ["bob/bert"]
    assert [m.id for m in api.list_models(filter=["mdhub", "iql"])] == ["alice/critic"]
    assert [m.id for m in api.list_models(filter=["mdhub", "dql"])] == []
    (info,) = api.list_models(author="alice")
    assert info.library_name == "mdhub" and {"mdhub", "guidance", "iql", "license:mit"} <= set(info.tags)
    assert len(list(api.list_models(limit=1))) == 1
    import urllib.request

    with urllib.request.urlopen(f"{hub_server.url}/api/models?library=transformers") as response:  # noqa: S310
        assert [m["id"] for m in json.loads(response.read())] == ["bob/bert"]


def test_search_lists_mdhub_modules_and_judges_them_from_their_cards(hub_server):  # noqa: F811
    from hub.datasets import make_and_store

    make_and_store(DATA, transitions=256, progress=False)
    store = Store()
    train_guidance("iql", DATA, steps=2, module_id="sg", store=store, budget=TINY, progress=False)
    train_diffusion("idql", DATA, steps=2, module_id="sd", store=store, budget=TINY, progress=False)
    hub.push("sg", "alice/sg")
    hub.push("sd", "alice/sd")
    hub_server.commit("bob/bert", {"README.md": b"---\nlibrary_name: transformers\n---\n"})

    r = runner.invoke(app, ["search", "--json"])
    assert r.exit_code == 0, r.output
    hits = {h["repo"]: h for h in json.loads(r.stdout)}
    assert set(hits) == {"alice/sd", "alice/sg"}
    assert hits["alice/sd"]["kind"] == "diffusion" and hits["alice/sd"]["architecture"] == "idql_resnet"
    assert hits["alice/sg"]["kind"] == "guidance" and hits["alice/sg"]["algorithm"] == "IQL"
    assert hits["alice/sd"]["verdict"] is None
    r = runner.invoke(app, ["search", "SD", "--json"])
    assert [h["repo"] for h in json.loads(r.stdout)] == ["alice/sd"]

    weights_before = hub_server.count("GET", "model.safetensors")
    r = runner.invoke(app, ["search", "--compatible-with", "sg", "--json"])
    assert r.exit_code == 0, r.output
    hits = {h["repo"]: h for h in json.loads(r.stdout)}
    assert hits["alice/sd"]["verdict"] == "COMPATIBLE" and len(hits["alice/sd"]["commit"]) == 40
    assert hits["alice/sg"]["verdict"] == "-"  # a guidance does not pair with a guidance
    assert hub_server.count("GET", "model.safetensors") == weights_before  # card.json only
    assert hub_server.count("GET", "/alice/sd/resolve/") >= 1 and hub_server.count("GET", "/alice/sg/resolve/") == 0

    r = runner.invoke(app, ["search", "--compatible-with", "sg", "--mode", "cfg", "--json"])
    (d,) = [h for h in json.loads(r.stdout) if h["repo"] == "alice/sd"]
    assert d["verdict"] == "INCOMPATIBLE" and any("does not accept 'cfg'" in why for why in d["reasons"])

    r = runner.invoke(app, ["search", "--compatible-with", "sd"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "alice/sg" in r.output and "COMPATIBLE" in r.output and "mdhub pull alice/sg" in r.output
    r = runner.invoke(app, ["search", "--compatible-with", "nope"])
    assert r.exit_code == 1 and "error:" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["search", "--compatible-with", "sg", "--mode", "telepathy"])
    assert r.exit_code == 1 and "unknown mode 'telepathy'" in r.output
    r = runner.invoke(app, ["search", "zzz"])
    assert r.exit_code == 0 and "No mdhub modules found matching 'zzz'" in r.output
