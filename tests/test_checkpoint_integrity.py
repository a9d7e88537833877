"""Training checkpoints are verified before a resume: checksums (tensors file, JSON metadata via LATEST), the run that
wrote them, and tensor shapes against the run's networks and optimizers. Every failure is one `CheckpointError` line
naming the file and offering --fresh, which moves the old checkpoint aside (never deletes it) and starts over."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from modules.data.toy import make_toy_dataset
from modules.guidance.iql import CriticConfig, IQLCritic
from modules.train import checkpoint as ck
from modules.train.checkpoint import CheckpointError, CheckpointMismatch, load_checkpoint, save_checkpoint
from modules.train.loop import run
from modules.train.recipes import get_recipe

STEPS = 20


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset("8gaussians", n=400, seed=0)


def recipe(steps: int = STEPS):
    return get_recipe("iql").with_overrides(steps=steps, reward_transform="identity", batch_size=16)


def fresh_critic(hidden: int = 8) -> IQLCritic:
    torch.manual_seed(0)
    return IQLCritic(CriticConfig(obs_dim=1, act_dim=2, hidden=hidden))


def train(toy, run_dir, **kw):
    hidden = kw.pop("hidden", 8)
    return run(kw.pop("recipe", recipe()), toy, critic=fresh_critic(hidden), seed=kw.pop("seed", 3), run_dir=run_dir,
               progress=False, **kw)


@pytest.fixture(scope="module")
def whole(toy):
    """Weights of an uninterrupted run without checkpoints."""
    return train(toy, None).critic.state_dict()


def latest(run_dir: Path) -> Path:
    folder = run_dir / "checkpoint"
    return folder / json.loads((folder / "LATEST").read_text())["checkpoint"]


def rewrite_pointer(run_dir: Path, **changes) -> None:
    pointer = run_dir / "checkpoint" / "LATEST"
    data = json.loads(pointer.read_text())
    data.update(changes)
    pointer.write_text(json.dumps(data))


def flip_bit(run_dir):
    path = latest(run_dir) / ck.STATE
    raw = bytearray(path.read_bytes())
    raw[len(raw) - 7] ^= 0x04  # inside the tensor data, past the header
    path.write_bytes(bytes(raw))
    return r"state\.safetensors: sha256 .* differs"


def truncate(run_dir):
    path = latest(run_dir) / ck.STATE
    path.write_bytes(path.read_bytes()[:-100])
    return r"state\.safetensors: \d+ bytes, \d+ recorded in .*state\.json \(truncated\)"


def remove_state(run_dir):
    (latest(run_dir) / ck.STATE).unlink()
    return r"state\.safetensors: missing or unreadable"


def remove_meta(run_dir):
    (latest(run_dir) / ck.META).unlink()
    return r"state\.json: missing or unreadable"


def garbage_meta(run_dir):
    (latest(run_dir) / ck.META).write_text('{"tree": garbage')
    return r"state\.json: sha256 .* differs from .* recorded in .*LATEST"


def garbage_meta_consistent_pointer(run_dir):
    raw = b'{"tree": garbage'
    (latest(run_dir) / ck.META).write_bytes(raw)
    rewrite_pointer(run_dir, meta_sha256=hashlib.sha256(raw).hexdigest())
    return r"state\.json: not valid JSON"


def meta_without_checksum(run_dir):
    path = latest(run_dir) / ck.META
    meta = json.loads(path.read_text())
    del meta["state"]
    raw = json.dumps(meta).encode()
    path.write_bytes(raw)
    rewrite_pointer(run_dir, meta_sha256=hashlib.sha256(raw).hexdigest())
    return r"state\.json: not checkpoint metadata"


def pointer_to_missing_folder(run_dir):
    rewrite_pointer(run_dir, checkpoint="ckpt-000000000000")
    return r"LATEST: names .*ckpt-000000000000, which does not exist"


def pointer_with_dotdot(run_dir):
    rewrite_pointer(run_dir, checkpoint="../../elsewhere/ckpt-000000000000")
    return r"LATEST: names '\.\./\.\./elsewhere/ckpt-000000000000', not a checkpoint folder"


def garbage_pointer(run_dir):
    (run_dir / "checkpoint" / "LATEST").write_bytes(b"\x00\xffnot json")
    return r"LATEST: not a checkpoint pointer"


CORRUPTIONS = [flip_bit, truncate, remove_state, remove_meta, garbage_meta, garbage_meta_consistent_pointer,
               meta_without_checksum, pointer_to_missing_folder, pointer_with_dotdot, garbage_pointer]


def assert_impossible(err: CheckpointError, pattern: str, run_dir: Path) -> Path:
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith("resume is impossible: ")
    assert re.search(pattern, msg), msg
    m = re.search(r"rerun with --fresh to start over \(the old checkpoint is moved aside to (.+)\)$", msg)
    assert m, msg
    aside = Path(m.group(1))
    assert aside.parent == run_dir and aside.name.startswith("checkpoint.old-")
    return aside


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_a_corrupted_checkpoint_is_refused_with_one_line(toy, tmp_path, corrupt):
    train(toy, tmp_path)
    pattern = corrupt(tmp_path)
    with pytest.raises(CheckpointError) as e:
        train(toy, tmp_path)
    assert_impossible(e.value, pattern, tmp_path)


def test_fresh_moves_the_bad_checkpoint_aside_and_starts_over(toy, tmp_path, whole):
    train(toy, tmp_path, recipe=recipe(10))
    flip_bit(tmp_path)
    with pytest.raises(CheckpointError) as e:
        train(toy, tmp_path)
    aside = assert_impossible(e.value, "", tmp_path)
    result = train(toy, tmp_path, fresh=True)
    assert result.checkpoint_moved_to == aside and (aside / "LATEST").is_file()  # kept, not deleted
    for k, v in result.critic.state_dict().items():
        assert torch.equal(v, whole[k]), k  # from step 0, not from the old checkpoint
    assert train(toy, tmp_path).steps == STEPS  # the new checkpoint resumes cleanly
    assert train(toy, tmp_path, fresh=True).checkpoint_moved_to not in (None, aside)  # a second one: its own name


def test_a_checkpoint_of_another_run_is_a_mismatch(toy, tmp_path):
    train(toy, tmp_path)
    with pytest.raises(CheckpointMismatch, match=r"state\.json: written by a different run \(seed 3 there, 4 here\)"):
        train(toy, tmp_path, seed=4)
    with pytest.raises(CheckpointMismatch, match=r"recipe batch_size 16 there, 8 here"):
        train(toy, tmp_path, recipe=recipe().with_overrides(batch_size=8))
    with pytest.raises(CheckpointMismatch, match=r"at step 20, beyond the 19 steps asked"):
        train(toy, tmp_path, recipe=recipe(19))  # the step count is not part of the run, but a run never goes back
    with pytest.raises(CheckpointMismatch, match=r"run tag differs"):
        train(toy, tmp_path, run_tag="other-guidance")
    assert issubclass(CheckpointMismatch, CheckpointError) and issubclass(CheckpointError, ValueError)


def test_a_finished_run_continues_to_more_steps_like_a_longer_run(toy, tmp_path, whole):
    longer = train(toy, None, recipe=recipe(STEPS + 10)).critic.state_dict()
    first = train(toy, tmp_path)
    assert first.metrics["steps_per_s"] > 0
    again = train(toy, tmp_path)  # the same finished run: restored, nothing trained, the metrics kept
    assert again.metrics["steps_per_s"] == first.metrics["steps_per_s"]
    assert again.metrics["final_q_loss"] == first.metrics["final_q_loss"] if "final_q_loss" in first.metrics else True
    for k, v in again.critic.state_dict().items():
        assert torch.equal(v, whole[k]), k
    continued = train(toy, tmp_path, recipe=recipe(STEPS + 10))
    assert continued.steps == STEPS + 10
    for k, v in continued.critic.state_dict().items():
        assert torch.equal(v, longer[k]), k


def test_wrong_shapes_are_caught_before_loading(toy, tmp_path):
    train(toy, tmp_path)  # run_tag "" does not name the architecture: the shapes must still be compared
    net = fresh_critic(16)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    with pytest.raises(CheckpointError, match=r"tensor critic\.critic\.\S+ has shape \([\d, ]+\) torch.float32, "
                                              r"the run's network has \([\d, ]+\)"):
        run(recipe(), toy, critic=net, seed=3, run_dir=tmp_path, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in net.named_parameters())  # nothing half-loaded

    # an optimizer moment of the wrong shape, in a checkpoint with valid checksums
    folder = tmp_path / "checkpoint"
    info = ck.read_checkpoint_info(folder)
    state = load_checkpoint(folder)
    opt = state["parts"]["critic"]["opt"]
    first = next(iter(opt["state"]))
    opt["state"][first]["exp_avg"] = torch.zeros(3, 3, 3)
    save_checkpoint(folder, state, info=info)
    with pytest.raises(CheckpointError, match=r"tensor critic\.opt\.state\.\d+\.exp_avg has shape \(3, 3, 3\)"):
        train(toy, tmp_path)


def test_a_crashed_write_leaves_the_previous_checkpoint_usable(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, {"w": torch.arange(4.0), "step": 1}, info={"k": 1})
    real_replace = ck.os.replace

    def crash(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(ck.os, "replace", crash)  # dies just before switching LATEST
    with pytest.raises(OSError):
        save_checkpoint(folder, {"w": torch.zeros(4), "step": 2})
    monkeypatch.setattr(ck, "save_file", lambda *a, **kw: crash())  # dies writing the tensors
    with pytest.raises(OSError):
        save_checkpoint(folder, {"w": torch.zeros(4), "step": 3})
    monkeypatch.setattr(ck.os, "replace", real_replace)
    loaded = load_checkpoint(folder)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], torch.arange(4.0))
    assert len(list(folder.glob("ckpt-*"))) == 3  # two stray, incomplete folders ...
    monkeypatch.undo()
    save_checkpoint(folder, {"w": torch.ones(4), "step": 4})
    assert len(list(folder.glob("ckpt-*"))) == 1 and not list(folder.glob(".LATEST.*"))  # ... cleaned by the next
    assert load_checkpoint(folder)["step"] == 4


def test_a_checkpoint_without_checksums_is_refused_then_moved_aside(toy, tmp_path):
    (tmp_path / "ckpt-abcdef012345").mkdir()
    (tmp_path / "LATEST").write_text("ckpt-abcdef012345")  # the layout before checksums, directly in run_dir
    with pytest.raises(CheckpointError) as e:
        train(toy, tmp_path)
    aside = assert_impossible(e.value, r"LATEST: a checkpoint written before checkpoints had checksums", tmp_path)
    result = train(toy, tmp_path, fresh=True)
    assert result.checkpoint_moved_to == aside
    assert (aside / "LATEST").is_file() and (aside / "ckpt-abcdef012345").is_dir()
    assert not (tmp_path / "LATEST").exists()
