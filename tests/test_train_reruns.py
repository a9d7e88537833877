"""Re-runs and the flags users look for on `mdhub train`: an identical finished run is "already trained" (card and
metrics kept); other steps offer --resume (continue the checkpoint) or --fresh --force; other settings name what
differs; --eta, --lr, --checkpoint-every, --config FILE (validated, one-line errors naming the key)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.store import Store
from modules.train.logs import read_scalars

runner = CliRunner()
DATA = "toy-8gaussians"
BASE = ["train", "guidance", "--algo", "iql", "--dataset", DATA, "--hidden", "8", "--batch-size", "16", "--id", "g"]


@pytest.fixture(autouse=True)
def toy_store(hub_home):
    from hub.datasets import make_and_store

    make_and_store(DATA, transitions=256, progress=False)


def train(*extra: str):
    return runner.invoke(app, BASE + list(extra))


def one_error_line(r) -> str:
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 1 and len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def test_an_identical_finished_run_is_already_trained_and_keeps_its_metrics():
    assert train("--steps", "6").exit_code == 0
    before = Store().card("g")
    assert before.metrics["steps_per_s"] > 0
    r = train("--steps", "6", "--json")
    assert r.exit_code == 0, r.output
    assert "'g' is already trained with these settings (6 steps): kept as stored" in r.stderr
    (m,) = json.loads(r.stdout)["modules"]
    assert m["metrics"] == dict(before.metrics)
    assert Store().card("g") == before


def test_more_steps_offer_resume_which_continues_the_checkpoint(hub_home):
    assert train("--steps", "6", "--log-every", "2").exit_code == 0
    line = one_error_line(train("--steps", "10"))
    assert "'g' is already stored" in line and "this run asks for 10 steps" in line
    assert "--resume continues its checkpoint (step 6) to 10" in line and "--fresh --force" in line
    r = train("--steps", "10", "--log-every", "2", "--resume")
    assert r.exit_code == 0, r.output
    assert "resuming 'g' from its checkpoint at step 6 to 10 steps" in r.output
    card = Store().card("g")
    assert card.origin.steps == 10 and card.metrics["steps_per_s"] > 0
    assert [x["step"] for x in read_scalars(hub_home / "runs" / "g")] == [2, 4, 6, 8, 10]
    line = one_error_line(train("--steps", "8", "--resume"))
    assert "never goes back" in line


def test_other_settings_name_the_difference_and_fresh_replaces_only_with_force():
    assert train("--steps", "4").exit_code == 0
    line = one_error_line(train("--steps", "4", "--seed", "1"))
    assert "trained with other settings (seed 0 there, 1 here)" in line and "--fresh --force" in line
    line = one_error_line(train("--steps", "4", "--lr", "0.001"))
    assert "recipe critic_lr 0.0003 there, 0.001 here" in line
    line = one_error_line(train("--steps", "4", "--seed", "1", "--fresh"))
    assert "replaces the stored module only with --force" in line
    line = one_error_line(train("--steps", "4", "--fresh", "--resume"))
    assert "give one of them" in line
    old = Store().card("g").files
    r = train("--steps", "4", "--seed", "1", "--fresh", "--force")
    assert r.exit_code == 0, r.output
    assert Store().card("g").origin.seed == 1 and Store().card("g").files != old


def test_lr_eta_checkpoint_every_and_config(hub_home, tmp_path):
    cfg = tmp_path / "over.yaml"
    cfg.write_text("critic_lr: 0.002\nexpectile: 0.8\n")
    r = train("--steps", "4", "--log-every", "2", "--checkpoint-every", "2", "--config", str(cfg))
    assert r.exit_code == 0, r.output
    assert read_scalars(hub_home / "runs" / "g")[0]["lr/critic"] == pytest.approx(0.002)
    assert Store().card("g").guidance.expectile == pytest.approx(0.8)
    r = runner.invoke(app, BASE[:-1] + ["g2", "--steps", "2", "--log-every", "1", "--config", str(cfg), "--lr",
                                         "0.005"])
    assert r.exit_code == 0, r.output
    assert read_scalars(hub_home / "runs" / "g2")[0]["lr/critic"] == pytest.approx(0.005)  # the flag wins
    for text, needle in [("etta: 0.1\n", "unknown key 'etta' (did you mean 'eta'?)"),
                         ("eta: lots\n", "key 'eta': Input should be a valid number"),
                         ("backbone: dql_mlp\n", "key 'backbone' defines the recipe"),
                         ("- eta\n", "must be a mapping of recipe settings"),
                         ("eta: [1\n", "not valid YAML or JSON")]:
        cfg.write_text(text)
        line = one_error_line(runner.invoke(app, BASE[:-1] + ["g3", "--config", str(cfg)]))
        assert str(cfg) in line and needle in line, line
    cfg = tmp_path / "over.json"
    cfg.write_text(json.dumps({"steps": 0}))
    assert "key 'steps'" in one_error_line(runner.invoke(app, BASE[:-1] + ["g3", "--config", str(cfg)]))
    line = one_error_line(train("--eta", "0.1"))
    assert "--eta" in line and "--algo iql trains no actor" in line
    r = runner.invoke(app, ["train", "diffusion", "--algo", "idql", "--dataset", DATA, "--eta", "0.1"])
    assert "recipe 'idql-bc' trains by bc" in one_error_line(r)
    r = runner.invoke(app, ["train", "diffusion", "--help"], env={"COLUMNS": "200"})
    for flag in ("--eta", "--lr", "--batch-size", "--checkpoint-every", "--config", "--resume", "--fresh"):
        assert flag in r.output


def test_a_run_another_process_is_training_is_refused_and_the_checkpoint_is_left_alone(hub_home):
    """Two processes on one run would interleave checkpoints (a rerun started while a killed sweep's worker still
    trains it): the second is refused in one line while the first holds the run's lock, and goes ahead after."""
    from filelock import FileLock

    from hub.paths import run_dir

    folder = run_dir("g")
    folder.mkdir(parents=True, exist_ok=True)
    holder = FileLock(str(folder / ".train.lock"))
    with holder:  # what a training process holds while it trains
        line = one_error_line(train("--steps", "4"))
        assert "run 'g' is being trained by another process right now" in line and ".train.lock" in line
        assert not Store().contains("g") and not (folder / "checkpoint").exists()
    assert train("--steps", "4").exit_code == 0
    assert Store().card("g").origin.steps == 4
