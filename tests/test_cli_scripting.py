"""A CLI that scripts: --json on the reporting commands, --version, completion, exit codes (0 ok, 1 error, 2 usage,
3 INCOMPATIBLE), choices shown in --help, --steps refused below 1, list's columns, edit-distance hints."""
from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import hub
from hub.cli import app
from hub.store import Store
from hub.training import Budget, train_diffusion, train_guidance
from tests.conftest import critic_card, small_critic
from tests.test_sharing import hub_server  # noqa: F401  (the loopback Hub fixture)

runner = CliRunner()
DATA = "toy-8gaussians"
TINY = Budget(hidden=8, batch_size=32, checkpoint_every=0)


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    """A store with a tiny IQL guidance and an IDQL backbone trained a few steps on the toy."""
    home = tmp_path_factory.mktemp("scripting-home")
    old = os.environ.get("MDHUB_HOME")
    os.environ["MDHUB_HOME"] = str(home)
    try:
        from hub.datasets import make_and_store

        make_and_store(DATA, progress=False)
        store = Store(home)
        train_guidance("iql", DATA, steps=3, module_id="sg", store=store, budget=TINY, progress=False)
        train_diffusion("idql", DATA, steps=3, module_id="sd", store=store, budget=TINY, progress=False)
    finally:
        if old is None:
            os.environ.pop("MDHUB_HOME", None)
        else:
            os.environ["MDHUB_HOME"] = old
    return home


@pytest.fixture
def in_toy(toy_world, monkeypatch):
    monkeypatch.setenv("MDHUB_HOME", str(toy_world))
    return toy_world


def test_version_and_completion():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("mdhub ") and len(r.output.split()) == 2
    help_text = runner.invoke(app, ["--help"]).output
    assert "--install-completion" in help_text and "--show-completion" in help_text
    assert "Exit codes" in help_text


def test_choices_are_shown_in_help_and_enforced():
    r = runner.invoke(app, ["train", "guidance", "--help"], env={"COLUMNS": "200"})
    assert "iql" in r.output and "idql" in r.output and "dql" in r.output
    r = runner.invoke(app, ["train", "diffusion", "--help"], env={"COLUMNS": "200"})
    for algo in ("dql", "idql", "swg", "cfg"):
        assert algo in r.output
    r = runner.invoke(app, ["combine", "--help"], env={"COLUMNS": "200"})
    assert "argmax" in r.output and "softmax" in r.output and "expectile" in r.output
    r = runner.invoke(app, ["train", "guidance", "--algo", "sac", "--dataset", DATA])
    assert r.exit_code == 2 and "sac" in r.output and "iql" in r.output
    r = runner.invoke(app, ["combine", "-g", "x", "-d", "y", "--rule", "best"])
    assert r.exit_code == 2 and "argmax" in r.output


@pytest.mark.parametrize("args", [
    ["train", "guidance", "--algo", "iql", "--dataset", DATA, "--steps", "0"],
    ["train", "guidance", "--algo", "iql", "--dataset", DATA, "--steps", "-5"],
    ["train", "diffusion", "--algo", "idql", "--dataset", DATA, "--steps", "0"],
    ["combine", "-g", "x", "-d", "dql_mlp", "--train", "--dataset", DATA, "--steps", "0"],
    ["eval", "x", "--episodes", "0"],
])
def test_steps_and_episodes_below_one_are_usage_errors(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and ("--steps" in r.output or "--episodes" in r.output)


def test_the_api_refuses_zero_steps_too(in_toy):
    from hub.errors import MdhubError

    with pytest.raises(MdhubError, match="at least 1"):
        train_guidance("iql", DATA, steps=0)
    with pytest.raises(MdhubError, match="at least 1"):
        train_diffusion("idql", DATA, steps=-1)


def test_check_exit_codes_and_json(in_toy):
    r = runner.invoke(app, ["check", "sg", "sd", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["compatible"] is True and report["mode"] == "resample"
    assert {"guidance", "diffusion", "mode", "compatible", "adapters", "checks"} <= set(report)
    assert all({"name", "status", "detail"} == set(c) for c in report["checks"])
    r = runner.invoke(app, ["check", "sg", "sd", "--mode", "cfg", "--json"])  # the backbone does not sample cfg
    assert r.exit_code == 3
    assert json.loads(r.stdout)["compatible"] is False
    r = runner.invoke(app, ["check", "sg", "sd", "--mode", "cfg"])
    assert r.exit_code == 3 and "INCOMPATIBLE" in r.output
    r = runner.invoke(app, ["check", "sg", "nope"])
    assert r.exit_code == 1 and "error:" in r.output


def test_combine_json(in_toy):
    r = runner.invoke(app, ["combine", "-g", "sg", "-d", "sd", "-N", "3", "--rule", "softmax", "--id", "sp",
                            "--force", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["id"] == "sp" and out["mode"] == "resample" and out["settings"]["rule"] == "softmax"
    assert out["parts"]["diffusion"] == "sd" and out["report"]["compatible"] is True
    assert out["evaluation"] is None and out["train_report"] is None
    policy = hub.combine("sg", "sd", n_candidates=3, progress=False)
    text = repr(policy)
    assert "\n" not in text and text.startswith("CombinedPolicy(") and "'sd'" in text


def test_train_json(in_toy):
    r = runner.invoke(app, ["train", "guidance", "--algo", "iql", "--dataset", DATA, "--steps", "2", "--hidden", "8",
                            "--id", "sg2", "--json"])
    assert r.exit_code == 0, r.output
    (m,) = json.loads(r.stdout)["modules"]
    assert m["id"] == "sg2" and m["kind"] == "guidance" and m["architecture"] == "iql" and "wall_time_s" in m["metrics"]
    r = runner.invoke(app, ["train", "diffusion", "--algo", "idql", "--dataset", DATA, "--steps", "2", "--hidden",
                            "8", "--id", "sd2", "--json"])
    assert r.exit_code == 0, r.output
    assert [m["id"] for m in json.loads(r.stdout)["modules"]] == ["sd2"]


def test_list_columns_and_json(in_toy):
    r = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for col in ("env", "dataset", "algorithm", "score", "source"):
        assert col in r.output
    assert DATA in r.output and "IQL" in r.output
    rows = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    row = next(x for x in rows if x["id"] == "sg")
    assert row["dataset"] == DATA and row["algorithm"] == "IQL" and row["source"] == "local" and row["score"] is None
    assert set(row) == {"id", "kind", "architecture", "algorithm", "env", "dataset", "score", "source", "sha256",
                        "folder"}


def test_list_score_is_the_best_founded_evaluation():
    from tests.test_hub_cards import record

    net = small_critic()
    hub.save(net, critic_card(net, "scored"))
    Store().update_card("scored", evaluations=[record(10, score=70.0), record(2, seed=1, score=10.0)])
    (row,) = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    assert row["score"] == 70.0 and row["env"] == "HopperBulletEnv-v0"
    assert "70.0" in runner.invoke(app, ["list"], env={"COLUMNS": "200"}).output
    shown = runner.invoke(app, ["show", "scored"], env={"COLUMNS": "200"}).output
    assert "eval HopperBulletEnv-v0, 10 episodes" in shown and "resample(n_candidates=50, rule=argmax)" in shown


def test_did_you_mean_uses_edit_distance():
    net = small_critic()
    for name in ("iql-critic-hopper-s0", "idql-critic-hopper-s0", "cfg-actor-walker-s3"):
        hub.save(net, critic_card(net, name))
    r = runner.invoke(app, ["show", "iql-critc-hopper-s0"])  # a typo: no substring of anything stored
    assert r.exit_code == 1 and "did you mean iql-critic-hopper-s0" in r.output
    r = runner.invoke(app, ["show", "IQL-CRITIC-HOPPER-S1"])  # case and one character off
    assert "did you mean" in r.output and "iql-critic-hopper-s0" in r.output and "cfg-actor" not in r.output
    r = runner.invoke(app, ["show", "s0"])  # a substring alone is no longer a match
    assert "did you mean" not in r.output and "`mdhub list` shows them" in r.output


def test_push_and_pull_json(hub_server):  # noqa: F811
    net = small_critic()
    hub.save(net, critic_card(net, "pj"))
    r = runner.invoke(app, ["push", "pj", "alice/pj", "--json"])
    assert r.exit_code == 0, r.output
    pushed = json.loads(r.stdout)
    assert pushed["id"] == "pj" and len(pushed["commit"]) == 40 and pushed["revision"] == "main"
    assert sorted(pushed["files"]) == ["README.md", "card.json", "model.safetensors"]
    r = runner.invoke(app, ["pull", pushed["repo"], "--id", "pj-copy", "--json"])
    assert r.exit_code == 0, r.output
    pulled = json.loads(r.stdout)
    assert pulled["id"] == "pj-copy" and pulled["commit"] == pushed["commit"] and pulled["kind"] == "guidance"
    assert pulled["parts"] == {}


def test_every_hint_printed_by_the_demo_names_ids_it_stored():
    """`mdhub demo --prefix P` suggests commands on P's ids (it used to name demo-* whatever the prefix)."""
    import inspect

    from hub.cli import demo

    src = inspect.getsource(demo.demo_cmd)
    assert "demo-dql-double" not in src and "{prefix}-dql-double" in src


def _command_for(words: list[str]):
    """The click command a hint names, and its words after the command path."""
    import typer.main

    cmd = typer.main.get_command(app)
    rest = list(words)
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd = cmd.commands[rest.pop(0)]
    return cmd, rest


def test_every_hint_names_a_real_command_and_real_options():
    """Messages that suggest `mdhub ...` name a command that exists, with options it has (placeholders like ID or
    {prefix} aside)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"`mdhub ([^`\n]*)`|\(mdhub ([a-z][^)\n]*)\)")
    checked = 0
    for path in sorted((root / "hub").rglob("*.py")) + sorted((root / "modules").rglob("*.py")):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            hint = (m.group(1) or m.group(2)).strip()
            alternatives = [a.split() for a in hint.split("|")]  # `mdhub data import | push | pull`
            parent = alternatives[0][:-1] if len(alternatives) > 1 else []
            for i, alt in enumerate(alternatives):
                words = alt if i == 0 else parent + alt
                if not words or words[0] == "...":
                    continue
                cmd, rest = _command_for(words)
                assert not hasattr(cmd, "commands") or not rest or not re.fullmatch(r"[a-z][a-z-]*", rest[0]), \
                    f"{path.name}: `mdhub {hint}` names no command ({rest[0]!r})"
                options = {o for p in cmd.params for o in getattr(p, "opts", [])} | {"--help"}
                for w in rest:
                    if w.startswith("--"):
                        assert w.split("=")[0] in options, f"{path.name}: `mdhub {hint}`: {cmd.name} has no {w}"
                checked += 1
    assert checked >= 10
