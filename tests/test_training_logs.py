"""Training that shows itself: per-step scalars beside every run (CSV, JSONL; TensorBoard events when the optional
tensorboard package is installed), `mdhub plot`, Ctrl-C naming the last checkpoint and the command that resumes."""
from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch
from typer.testing import CliRunner

from hub.cli import app
from modules.data.toy import make_toy_dataset
from modules.guidance.iql import CriticConfig, IQLCritic
from modules.train import logs as scalar_logs
from modules.train.batches import Batches
from modules.train.loop import TrainingInterrupted, run
from modules.train.recipes import get_recipe

runner = CliRunner()
DATA = "toy-8gaussians"
_real_sample = Batches.sample


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset("8gaussians", n=400, seed=0)


def critic() -> IQLCritic:
    torch.manual_seed(0)
    return IQLCritic(CriticConfig(obs_dim=1, act_dim=2, hidden=8))


def recipe(steps: int = 20):
    return get_recipe("iql").with_overrides(steps=steps, reward_transform="identity", batch_size=16, critic_lr=1e-3)


def interrupt_at(monkeypatch, call: int):
    """Make the loop's batch sampler raise KeyboardInterrupt on its `call`-th call (Ctrl-C at that step); returns
    the real sampler (monkeypatch.undo would also undo the isolated MDHUB_HOME)."""
    real = Batches.sample
    calls = {"n": 0}

    def sample(self, n):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(self, n)

    monkeypatch.setattr(Batches, "sample", sample)
    return real


def test_scalars_are_written_every_k_steps_as_jsonl_and_csv(toy, tmp_path):
    result = run(recipe(), toy, critic=critic(), seed=1, run_dir=tmp_path, progress=False, log_every=5,
                 eval_fn=lambda c, m: {"normalized_score": 42.0}, eval_every=10)
    records = scalar_logs.read_scalars(tmp_path)
    loss_steps = [r["step"] for r in records if "loss/q_loss" in r]
    assert loss_steps == [5, 10, 15, 20]
    first = next(r for r in records if "loss/q_loss" in r)
    assert {"loss/v_loss", "lr/critic", "speed/steps_per_s", "wall_time_s"} <= set(first)
    assert first["lr/critic"] == pytest.approx(1e-3) and first["speed/steps_per_s"] > 0
    assert [r["step"] for r in records if "eval/normalized_score" in r] == [10, 20]
    with open(tmp_path / "scalars.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "wall_time_s", "tag", "value"]
    q20 = [float(r[3]) for r in rows[1:] if r[0] == "20" and r[2] == "loss/q_loss"]
    assert q20 == [pytest.approx(records[-2]["loss/q_loss"])]
    assert {r[2] for r in rows[1:]} == {"loss/q_loss", "loss/v_loss", "lr/critic", "speed/steps_per_s",
                                         "eval/normalized_score"}
    assert result.metrics["final_q_loss"] == pytest.approx(q20[0])


def test_an_interrupted_run_names_its_last_checkpoint_and_resumes_with_one_log(toy, tmp_path, monkeypatch):
    real = interrupt_at(monkeypatch, 14)
    with pytest.raises(TrainingInterrupted) as info:
        run(recipe(), toy, critic=critic(), seed=1, run_dir=tmp_path, progress=False, log_every=5,
            checkpoint_every=10)
    e = info.value
    assert e.step == 14 and e.checkpoint_step == 10 and e.checkpoint_dir == tmp_path / "checkpoint"
    assert str(e) == f"interrupted at step 14; last checkpoint: step 10 in {tmp_path / 'checkpoint'}"
    assert [r["step"] for r in scalar_logs.read_scalars(tmp_path)] == [5, 10]
    monkeypatch.setattr(Batches, "sample", real)
    whole = run(recipe(), toy, critic=critic(), seed=1, progress=False).critic.state_dict()
    resumed = run(recipe(), toy, critic=critic(), seed=1, run_dir=tmp_path, progress=False, log_every=5,
                  checkpoint_every=10)
    assert all(torch.equal(v, whole[k]) for k, v in resumed.critic.state_dict().items())
    steps = [r["step"] for r in scalar_logs.read_scalars(tmp_path)]
    assert steps == [5, 10, 15, 20]  # the rows the interrupted run wrote after its checkpoint are not repeated
    with open(tmp_path / "scalars.csv", newline="") as f:
        assert sorted({int(r[0]) for r in list(csv.reader(f))[1:]}) == [5, 10, 15, 20]


def test_tensorboard_events_when_installed_else_none(toy, tmp_path):
    """The tensorboard extra is optional: with it, event files under runs/ID/tb carry the same tags; without it,
    the run writes CSV/JSONL only and no tb folder."""
    installed = importlib.util.find_spec("tensorboard") is not None
    assert scalar_logs.tensorboard_available() is installed
    run(recipe(), toy, critic=critic(), seed=1, run_dir=tmp_path, progress=False, log_every=5)
    log = scalar_logs.ScalarLog(tmp_path / "probe")
    try:
        assert (log.tb is not None) is installed
        assert (tmp_path / "probe" / "tb" in log.paths) is installed
    finally:
        log.close()
    if not installed:
        assert not (tmp_path / "tb").exists()
        assert (tmp_path / "scalars.jsonl").exists() and (tmp_path / "scalars.csv").exists()
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/q_loss", "loss/v_loss", "lr/critic", "speed/steps_per_s"} <= tags
    assert [e.step for e in acc.Scalars("loss/q_loss")] == [5, 10, 15, 20]


def test_a_resumed_run_purges_the_tensorboard_events_after_its_checkpoint(toy, tmp_path, monkeypatch):
    installed = importlib.util.find_spec("tensorboard") is not None
    interrupt_at(monkeypatch, 17)  # step 15 is logged, the checkpoint is at 10
    with pytest.raises(TrainingInterrupted):
        run(recipe(), toy, critic=critic(), seed=1, run_dir=tmp_path, progress=False, log_every=5,
            checkpoint_every=10)
    monkeypatch.setattr(Batches, "sample", _real_sample)
    run(recipe(), toy, critic=critic(), seed=1, run_dir=tmp_path, progress=False, log_every=5, checkpoint_every=10)
    assert [r["step"] for r in scalar_logs.read_scalars(tmp_path)] == [5, 10, 15, 20]
    if not installed:
        assert not (tmp_path / "tb").exists()
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/q_loss")] == [5, 10, 15, 20]


@pytest.fixture
def toy_store():
    from hub.datasets import make_and_store

    make_and_store(DATA, transitions=256, progress=False)


ARGS = ["train", "guidance", "--algo", "iql", "--dataset", DATA, "--hidden", "8", "--batch-size", "16", "--id", "g"]


def test_ctrl_c_during_training_is_one_line_with_the_resume_command(toy_store, hub_home, monkeypatch):
    real = interrupt_at(monkeypatch, 8)
    r = runner.invoke(app, ARGS + ["--steps", "12", "--checkpoint-every", "5"])
    assert r.exit_code == 130, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip() and not ln.startswith("iql:")]  # progress bars aside
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    line = lines[0]
    assert line.startswith(f"interrupted at step 8; last checkpoint: step 5 in {hub_home / 'runs' / 'g'}")
    command = line.split("resume with: ", 1)[1]
    assert command == ("mdhub train guidance --algo iql --dataset toy-8gaussians --steps 12 --id g --hidden 8 "
                       "--batch-size 16 --checkpoint-every 5")
    monkeypatch.setattr(Batches, "sample", real)
    r = runner.invoke(app, command.split()[1:])
    assert r.exit_code == 0, r.output
    assert "run logs: " in r.output and "mdhub plot g" in r.output
    from hub.store import Store

    assert Store().card("g").origin.steps == 12


def test_ctrl_c_before_the_first_checkpoint_says_a_rerun_starts_over(toy_store, monkeypatch):
    interrupt_at(monkeypatch, 3)
    r = runner.invoke(app, ARGS + ["--steps", "12", "--checkpoint-every", "5"])
    assert r.exit_code == 130
    assert "no checkpoint written yet: a rerun starts from step 0; rerun: mdhub train guidance" in r.output


def test_plot_draws_several_runs_overlaid(toy_store, hub_home, tmp_path):
    for mid in ("p1", "p2"):
        r = runner.invoke(app, ["train", "guidance", "--algo", "iql", "--dataset", DATA, "--hidden", "8", "--steps",
                                "4", "--batch-size", "16", "--log-every", "2", "--id", mid])
        assert r.exit_code == 0, r.output
    out = tmp_path / "both.png"
    r = runner.invoke(app, ["plot", "p1", "p2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "2 run(s): p1, p2" in r.output
    r = runner.invoke(app, ["plot", "p1"])
    assert r.exit_code == 0 and (hub_home / "runs" / "p1" / "plot.png").is_file()
    r = runner.invoke(app, ["plot", "nope"])
    assert r.exit_code == 1 and "no training run 'nope'" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["train", "guidance", "--algo", "iql", "--dataset", DATA, "--hidden", "8", "--steps", "2",
                            "--id", "p3", "--json"])
    assert json.loads(r.stdout)["run"] == str(hub_home / "runs" / "p3")


def test_evaluation_reports_episodes_done_and_the_running_mean(capsys):
    import numpy as np

    from hub.evaluation import run_episodes

    class Still:
        def act(self, obs):
            return np.zeros((len(obs), 3), dtype=np.float32)

    seen = []
    from modules.envs import rollout

    returns = rollout(Still().act, "hopper", 3, max_steps=4, n_envs=2, on_episode=lambda i, r: seen.append((i, r)))
    assert sorted(i for i, _ in seen) == [0, 1, 2] and all(returns[i] == r for i, r in seen)
    result = run_episodes(Still(), "HopperBulletEnv-v0", 3, max_steps=4, progress=True, desc="eval probe")
    err = capsys.readouterr().err
    assert "eval probe" in err and "3/3" in err and "mean return" in err and "score" in err
    assert result["episodes"] == 3
