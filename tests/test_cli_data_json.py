"""`--json` on the data commands that report: one JSON document on stdout with what was done (and the dataset's
summary under "summary")."""
from __future__ import annotations

import json

from tests.cli_checks import data_ok
from tests.test_dataset_hub import REPO, small_dataset, use_home
from tests.test_sharing import hub_server as loopback_hub  # noqa: F401  (a fixture, requested by this name)


def _doc(args: list[str]) -> dict:
    return json.loads(data_ok(args).stdout)


def test_make_and_relabel_print_json():
    made = _doc(["make", "toy-8gaussians", "--transitions", "300", "--quiet", "--json"])
    assert made["action"] == "made" and made["path"].endswith("toy-8gaussians.npz") and made["new_sha256"]
    assert made["summary"]["episodes"] >= 1 and "return_mean" in made["summary"]
    kept = _doc(["make", "toy-8gaussians", "--json"])
    assert kept["action"] == "kept" and kept["trained_on"] == []
    relabelled = _doc(["relabel", "toy-8gaussians", "--reward", "energy", "--id", "toy-energy", "--json"])
    assert relabelled["dataset_id"] == "toy-energy" and relabelled["source"] == "toy-8gaussians"
    assert relabelled["reward"] == "energy" and relabelled["summary"]["reward"] == "energy"


def test_push_and_pull_print_json(loopback_hub, tmp_path, monkeypatch):  # noqa: F811
    small_dataset()
    pushed = _doc(["push", "hop-small", REPO, "--json"])
    assert pushed["dataset_id"] == "hop-small" and len(pushed["commit"]) == 40 and "dataset.npz" in pushed["files"]
    use_home(monkeypatch, tmp_path / "other-home")
    pulled = _doc(["pull", REPO, "--json"])
    assert pulled["action"] == "stored" and pulled["commit"] == pushed["commit"]
    assert pulled["summary"]["episodes"] == 4
