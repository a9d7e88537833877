"""The one training loop: sample a batch, run the recipe's updates, evaluate now and then, checkpoint, resume."""
from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from modules.diffusion.model import DiffusionModel
from modules.guidance.iql import IQLCritic
from modules.train.batches import Batches, RewardScale, reward_scale_for
from modules.train.checkpoint import (  # noqa: F401
    CheckpointError,
    CheckpointMismatch,
    aside_path,
    impossible,
    legacy_entries,
    load_checkpoint,
    move_aside,
    move_legacy_aside,
    save_checkpoint,
)
from modules.train.recipes import Recipe
from modules.train.rng import Rng
from modules.train.updates import DiffusionUpdate, DQLCriticUpdate, IQLUpdate, TargetFn, default_targets

EvalFn = Callable[[IQLCritic | None, DiffusionModel | None], dict[str, float]]
SaveFn = Callable[[int, "list[IQLCritic] | None", "list[DiffusionModel] | None"], None]
"""on_save(step, critics, models): the members' networks at `step` (models: the EMA weights)."""


@dataclass
class TrainResult:
    critic: IQLCritic | None
    model: DiffusionModel | None  # the EMA weights
    reward: RewardScale
    curve: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    checkpoint_moved_to: Path | None = None  # where `fresh=True` moved an existing checkpoint (None: there was none)
    critics: list[IQLCritic] | None = None  # every member's critic in seed order (a single run: [critic])
    models: list[DiffusionModel] | None = None  # every member's EMA model in seed order
    seeds: list[int] | None = None  # the ensemble's seeds (None: a single run)

    def member_curve(self, k: int) -> list[dict[str, float]]:
        """Learning-curve points of member k (a single run: the whole curve)."""
        if self.seeds is None:
            return self.curve
        return [{key: v for key, v in p.items() if key != "member"} for p in self.curve if p.get("member") == k]


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA allocator peak if on GPU, else the peak RSS."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CHECKPOINT_DIR = "checkpoint"  # the run's checkpoint folder inside run_dir


def _run_difference(saved: Any, now: dict[str, Any]) -> str:
    """What differs between the run that wrote a checkpoint and this one, briefly."""
    if not isinstance(saved, dict):
        return "it records no run description"
    out = []
    for key, what in (("seed", "seed"), ("data", "dataset sha256")):
        if saved.get(key) != now.get(key):
            a, b = (str(x)[:12] if key == "data" else x for x in (saved.get(key), now.get(key)))
            out.append(f"{what} {a} there, {b} here")
    old_r, new_r = saved.get("recipe") or {}, now.get("recipe") or {}
    for k in sorted(set(old_r) | set(new_r)):
        if k != "steps" and old_r.get(k) != new_r.get(k):  # the step count is not part of a run (it continues)
            out.append(f"recipe {k} {old_r.get(k)!r} there, {new_r.get(k)!r} here")
    if saved.get("tag") != now.get("tag"):
        out.append("run tag differs (network configs or frozen guidance)")
    if not out:
        return "its run key differs"
    return "; ".join(out[:3]) + (f" and {len(out) - 3} more" if len(out) > 3 else "")


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _tensors_problem(where: str, saved: Any, live: dict[str, Any]) -> str | None:
    """A module state dict in a checkpoint against the run's network: same names, shapes and dtypes."""
    if not isinstance(saved, dict):
        return f"{where} is not a state dict"
    missing, extra = sorted(set(live) - set(saved)), sorted(set(saved) - set(live))
    if missing or extra:
        return (f"{where} does not fit the run's network (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in live.items():
        got = saved[k]
        if not isinstance(v, torch.Tensor):
            continue
        if not isinstance(got, torch.Tensor) or got.shape != v.shape or got.dtype != v.dtype:
            dtype = f" {got.dtype}" if isinstance(got, torch.Tensor) else ""
            return (f"tensor {where}.{k} has shape {_shape(got)}{dtype}, the run's network has {tuple(v.shape)} "
                    f"{v.dtype}")
    return None


def _optimizer_problem(where: str, saved: Any, opt: torch.optim.Optimizer) -> str | None:
    """An optimizer state in a checkpoint against the run's optimizer: same groups, moments shaped like the params."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(saved.get("state"), dict):
        return f"{where} is not an optimizer state"
    live = [g["params"] for g in opt.param_groups]
    if [len(g.get("params", [])) for g in groups] != [len(g) for g in live]:
        return (f"{where} has parameter groups of sizes {[len(g.get('params', [])) for g in groups]}, the run's "
                f"optimizer {[len(g) for g in live]}")
    params = {pid: p for g, lg in zip(groups, live, strict=True)
              for pid, p in zip(g["params"], lg, strict=True)}
    for pid, st in saved["state"].items():
        if pid not in params or not isinstance(st, dict):
            return f"{where} has state for an unknown parameter {pid!r}"
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != params[pid].shape:
                return (f"tensor {where}.state.{pid}.{k} has shape {tuple(v.shape)}, its parameter "
                        f"{tuple(params[pid].shape)}")
    return None


def _state_problem(saved: Any, parts: dict[str, Any], order: list[str]) -> str | None:
    """Compare a loaded checkpoint with the run's networks and optimizers before loading anything into them."""
    got = saved.get("parts") if isinstance(saved, dict) else None
    if not isinstance(got, dict) or sorted(got) != sorted(order):
        return f"holds parts {sorted(got) if isinstance(got, dict) else None}, this run trains {sorted(order)}"
    for name in order:
        if not isinstance(got[name], dict):
            return f"part '{name}' is not a state record"
        for key, live in parts[name].state().items():
            where = f"{name}.{key}"
            if key not in got[name]:
                return f"part '{name}' has no '{key}'"
            if key == "sched":
                continue
            why = (_optimizer_problem(where, got[name][key], getattr(parts[name], key)) if key == "opt"
                   else _tensors_problem(where, got[name][key], live))
            if why:
                return why
    for key in ("step", "curve", "wall_time_s", "torch_rng", "batch_rng"):
        if key not in saved:
            return f"has no '{key}'"
    return None


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: where it stopped and the last checkpoint a rerun resumes from (one line as str)."""

    def __init__(self, step: int, checkpoint_step: int | None, checkpoint_dir: Path | None):
        self.step, self.checkpoint_step, self.checkpoint_dir = step, checkpoint_step, checkpoint_dir
        if checkpoint_dir is None:
            where = "no checkpoint is kept for this run (no run folder)"
        elif checkpoint_step is None:
            where = "no checkpoint written yet: a rerun starts from step 0"
        else:
            where = f"last checkpoint: step {checkpoint_step} in {checkpoint_dir}"
        super().__init__(f"interrupted at step {step}; {where}")


def run_identity(recipe: Recipe, data_sha256: str, seed: int, run_tag: str) -> tuple[dict[str, Any], str, str]:
    """What defines a run, as recorded in its checkpoints: (record, key, legacy key). The step count is not part of
    it, so a finished run can be continued to more steps; the legacy key (steps included) is how checkpoints written
    before that were keyed, and still resumes them."""
    full = json.loads(json.dumps({"recipe": recipe.model_dump(), "seed": seed, "data": data_sha256, "tag": run_tag},
                                 sort_keys=True, default=str))
    legacy = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()
    ident = json.loads(json.dumps(full))
    ident["recipe"].pop("steps", None)
    key = hashlib.sha256(json.dumps({"v": 2, **ident}, sort_keys=True).encode()).hexdigest()
    return ident, key, legacy


@dataclass
class RunStatus:
    """What a run folder's checkpoint says about a run (read without loading tensors; see `run_status`)."""

    checkpoint_step: int | None  # None: no checkpoint
    difference: str | None = None  # None: written by this run (steps aside); else what differs, briefly


def run_status(run_dir: Path | None, recipe: Recipe, data_sha256: str, seed: int, run_tag: str = "") -> RunStatus:
    """Compare the checkpoint in `run_dir` (if any) with the run these arguments define. Raises CheckpointError for
    a checkpoint that cannot be read (corrupt, foreign)."""
    from modules.train.checkpoint import read_checkpoint_info

    if run_dir is None:
        return RunStatus(None)
    info = read_checkpoint_info(Path(run_dir) / CHECKPOINT_DIR)
    if info is None:
        return RunStatus(None)
    ident, key, legacy = run_identity(recipe, data_sha256, seed, run_tag)
    step = info.get("step")
    step = int(step) if isinstance(step, int) else None
    if info.get("run_key") in (key, legacy):
        return RunStatus(step)
    return RunStatus(step, _run_difference(info.get("run"), ident))


def run(recipe: Recipe, dataset, critic: IQLCritic | list[IQLCritic] | None = None,
        model: DiffusionModel | list[DiffusionModel] | None = None,
        guidance: IQLCritic | list[IQLCritic] | None = None, seed: int = 0, eval_fn: EvalFn | None = None,
        eval_every: int = 0, run_dir: Path | None = None, checkpoint_every: int = 0, progress: bool = True,
        targets: TargetFn = default_targets, device: str | torch.device = "cpu", run_tag: str = "",
        fresh: bool = False, log_every: int = 100, seeds: list[int] | None = None, precision: str = "fp32",
        compile: bool = False, save_every: int = 0, on_save: SaveFn | None = None) -> TrainResult:
    """Train the parts `recipe` names. critic/model: freshly built networks to train; guidance: a frozen critic.

    Resumes from `run_dir/checkpoint` when it holds a checkpoint of the same run (same recipe, seed, data and
    `run_tag`, which callers set to what else defines the run, e.g. the frozen guidance's sha256). The step count is
    not part of the run: a finished run's checkpoint continues to more steps. The checkpoint is verified (checksums,
    run identity, tensor shapes against the networks and optimizers) before anything is loaded; a corrupted or
    mismatched one raises `CheckpointError` (one line naming the file). `fresh`: move an existing checkpoint aside to
    `run_dir/checkpoint.old-<time>` (never deleted; see `TrainResult.checkpoint_moved_to`) and start from step 0.

    With a `run_dir`, per-step scalars go to `run_dir/scalars.csv`, `scalars.jsonl` (and TensorBoard events in
    `run_dir/tb` when tensorboard is installed; modules/train/logs.py) every `log_every` steps: losses, learning
    rates, steps/s, and the learning-curve points. Ctrl-C raises `TrainingInterrupted` (naming the last checkpoint).

    Many seeds at once: with `seeds` (K seeds), `critic`, `model` (and optionally `guidance`, one frozen critic per
    member) are lists of K networks, each built with its seed; the K runs train as one batched computation
    (modules/train/updates.py) and member k reproduces the single run of seeds[k]. `device` holds the data and the
    networks; `precision` "bf16" computes under bfloat16 autocast; `compile` compiles the losses (torch.compile).
    `save_every` N: `on_save(step, result)` is called every N steps with the networks as they are (the EMA model),
    for storing checkpoints as modules.
    """
    if log_every < 1:
        raise ValueError(f"log_every must be at least 1 (got {log_every})")
    torch.manual_seed(seed)
    np.random.seed(seed)
    members = len(seeds) if seeds is not None else None
    critics = _as_members(critic, members, "critic")
    models = _as_members(model, members, "model")
    guidances = _as_members(guidance, members, "guidance") if isinstance(guidance, list) else None
    reward = reward_scale_for(recipe.reward_transform, np.asarray(dataset.episode_returns()))
    batches = Batches(dataset, reward, device=device, seed=seed, seeds=seeds)
    rng = Rng(seeds if seeds is not None else seed, device)
    nets: list[Any] = [*(critics or []), *(models or [])]
    if recipe.obs_normalize:
        mean, std = batches.obs_stats()
        for net in nets:
            net.obs_norm.set_stats(mean, std)
    for g in guidances or ([guidance] if isinstance(guidance, torch.nn.Module) else []):
        g.requires_grad_(False).eval().to(device)
    for net in nets:
        net.to(device).train()
    c_arg = critics if members is not None else critic
    m_arg = models if members is not None else model

    parts: dict[str, Any] = {}
    if recipe.diffusion_update != "none":
        if m_arg is None:
            raise ValueError(f"recipe '{recipe.name}' trains a diffusion model: pass `model`")
        q_guide = guidance if recipe.diffusion_update == "q_loss" else None
        if recipe.critic_update == "dql":
            q_guide = critics[0] if critics else None  # bound to the live critic below
        if recipe.diffusion_update == "q_loss" and q_guide is None:
            raise ValueError(f"recipe '{recipe.name}' needs a guidance (a critic providing q)")
        parts["diffusion"] = DiffusionUpdate(
            m_arg, lr=recipe.lr, guidance=q_guide, eta=recipe.eta if recipe.diffusion_update == "q_loss" else 0.0,
            grad_clip=recipe.grad_clip, ema_decay=recipe.ema_decay, ema_every=recipe.ema_every,
            ema_start=recipe.ema_start, targets=targets, total_steps=recipe.steps, cosine_lr=recipe.cosine_lr,
            weight_decay=recipe.weight_decay, guidance_start=recipe.guidance_start, rng=rng, precision=precision)
    if recipe.critic_update != "none" and c_arg is None:
        raise ValueError(f"recipe '{recipe.name}' trains a critic: pass `critic`")
    if recipe.critic_update == "iql" and c_arg is not None:
        parts["critic"] = IQLUpdate(c_arg, lr=recipe.critic_lr, discount=recipe.discount,
                                    expectile=recipe.expectile, tau=recipe.tau, rng=rng, precision=precision)
    elif recipe.critic_update == "dql" and c_arg is not None:
        parts["critic"] = DQLCriticUpdate(c_arg, parts["diffusion"], lr=recipe.critic_lr, discount=recipe.discount,
                                          tau=recipe.tau, grad_clip=recipe.grad_clip, precision=precision)
        parts["diffusion"].bind_guidance(parts["critic"])
    order: list[str] = [p for p in ("critic", "diffusion") if p in parts]
    for name in order:
        parts[name].log_every = log_every
        if compile:
            parts[name].compile()

    run_id, run_key, legacy_key = run_identity(recipe, dataset.sha256, seed, run_tag)
    start, curve, wall_before, train_before = 0, [], 0.0, 0.0
    logs: dict[str, float] = {}
    moved_to: Path | None = None
    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt_dir = run_dir / CHECKPOINT_DIR if run_dir is not None else None
    if run_dir is not None and ckpt_dir is not None and fresh:
        moved_to = move_aside(ckpt_dir)
        moved_to = move_legacy_aside(run_dir, ckpt_dir) or moved_to
    if run_dir is not None and ckpt_dir is not None and not ckpt_dir.exists() and legacy_entries(run_dir):
        raise impossible(ckpt_dir, f"{Path(run_dir) / 'LATEST'}: a checkpoint written before checkpoints had "
                                   "checksums (cannot be verified)", aside=aside_path(ckpt_dir, entries_in=run_dir))

    def check_info(info: dict[str, Any]) -> str | None:
        if info.get("run_key") not in (run_key, legacy_key):
            return _run_difference(info.get("run"), run_id)
        step = info.get("step")
        if isinstance(step, int) and step > recipe.steps:
            return f"it is at step {step}, beyond the {recipe.steps} steps asked (a run continues, never goes back)"
        return None

    last_ckpt: int | None = None
    if ckpt_dir is not None:
        saved = load_checkpoint(ckpt_dir, check_info=check_info,
                                check_state=lambda state: _state_problem(state, parts, order))
        if saved is not None:
            try:
                for name in order:
                    parts[name].load(saved["parts"][name])
                start, curve, wall_before = int(saved["step"]), list(saved["curve"]), float(saved["wall_time_s"])
                train_before = float(saved.get("train_time_s", 0.0))
                logs = {str(k): float(v) for k, v in dict(saved.get("logs") or {}).items()}
                torch.set_rng_state(saved["torch_rng"])
                batches.set_state(saved["batch_rng"])
                if "noise_rng" in saved:
                    rng.set_state(saved["noise_rng"])
            except (RuntimeError, KeyError, ValueError, TypeError) as e:
                raise impossible(ckpt_dir, f"{ckpt_dir}: the checkpoint does not load into this run "
                                           f"({type(e).__name__}: {e})") from None
            last_ckpt = start
            sched = getattr(parts.get("diffusion"), "sched", None)
            if sched is not None and start < recipe.steps:
                sched.T_max = recipe.steps  # continued to more steps: the cosine schedule now ends at the new total

    scalar_log = None
    if run_dir is not None:
        from modules.train.logs import ScalarLog

        scalar_log = ScalarLog(run_dir, start_step=start, moved_to=moved_to)

    train_time = 0.0

    def checkpoint(step: int, wall: float) -> None:
        nonlocal last_ckpt
        assert ckpt_dir is not None  # called only with a run_dir
        save_checkpoint(ckpt_dir, {"step": step, "curve": curve, "wall_time_s": wall,
                                   "train_time_s": train_before + train_time, "logs": dict(logs),
                                   "parts": {n: parts[n].state() for n in order},
                                   "torch_rng": torch.get_rng_state(), "batch_rng": batches.get_state(),
                                   "noise_rng": rng.get_state()},
                        info={"run_key": run_key, "run": run_id, "step": step, "steps": recipe.steps})
        last_ckpt = step

    def networks(k: int) -> tuple[Any, Any]:
        """Member k's critic and EMA model as plain modules (a single run: the live ones)."""
        c = parts["critic"].member("critic", k) if "critic" in parts else None
        m = parts["diffusion"].member("ema", k) if "diffusion" in parts else None
        return c, m

    def evaluate(step: int, wall: float) -> None:
        assert eval_fn is not None  # called only with an eval_fn
        for k in range(members or 1):
            c, ema = networks(k)
            for net in (c, ema):
                if net is not None:
                    net.eval()
            result = eval_fn(c, ema)
            if c is not None:
                c.train()
            point = {"step": step, "wall_time_s": round(wall, 3), **result}
            if members is not None:
                point["member"] = k
            curve.append(point)
            if scalar_log is not None:
                tag = f"eval/{k}/" if members is not None else "eval/"
                scalar_log.write(step, wall, {f"{tag}{key}": v for key, v in result.items()})
            if progress:
                shown = ", ".join(f"{key} {v:.4g}" for key, v in result.items() if isinstance(v, int | float))
                who = f" seed {seeds[k]}" if seeds is not None else ""
                tqdm.write(f"{recipe.name}{who} step {step}: curve point {len(curve)}: {shown}", file=sys.stderr)

    def save_modules(step: int) -> None:
        assert on_save is not None
        pairs = [networks(k) for k in range(members or 1)]
        on_save(step, [c for c, _ in pairs] if "critic" in parts else None,
                [m for _, m in pairs] if "diffusion" in parts else None)

    t0 = time.perf_counter() - wall_before
    last_log_step, last_log_time = start, 0.0
    bar = tqdm(total=recipe.steps, initial=start, desc=recipe.name, disable=not progress, dynamic_ncols=True)
    step = start
    try:
        for step in range(start + 1, recipe.steps + 1):
            ts = time.perf_counter()
            b = batches.sample(recipe.batch_size)
            new: dict[str, float] = {}
            for name in order:
                new.update(parts[name].step(b, step))
            train_time += time.perf_counter() - ts
            if new:  # a logged step (every log_every): the losses were read from the device once
                logs.update(new)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
                if scalar_log is not None:
                    rate = (step - last_log_step) / max(train_time - last_log_time, 1e-9)
                    scalars: dict[str, float] = {f"loss/{k}": v for k, v in new.items()}
                    scalars.update({f"lr/{n}": float(parts[n].opt.param_groups[0]["lr"]) for n in order})
                    scalars["speed/steps_per_s"] = rate
                    scalar_log.write(step, time.perf_counter() - t0, scalars)
                last_log_step, last_log_time = step, train_time
            bar.update(1)
            if eval_fn is not None and eval_every and (step % eval_every == 0 or step == recipe.steps):
                bar.set_description_str(f"{recipe.name} (evaluating)", refresh=progress)
                evaluate(step, time.perf_counter() - t0)
                bar.set_description_str(recipe.name, refresh=False)
            if on_save is not None and save_every and step % save_every == 0 and step < recipe.steps:
                save_modules(step)
            if run_dir is not None and checkpoint_every and step % checkpoint_every == 0:
                checkpoint(step, time.perf_counter() - t0)
        bar.close()
        wall = time.perf_counter() - t0
        finished_before = start == recipe.steps  # a finished run's checkpoint, restored: nothing to add
        if eval_fn is not None and not eval_every and not finished_before:
            evaluate(recipe.steps, wall)
        if run_dir is not None and not finished_before:
            checkpoint(recipe.steps, wall)
    except KeyboardInterrupt:
        bar.close()
        raise TrainingInterrupted(step, last_ckpt, ckpt_dir) from None
    finally:
        if scalar_log is not None:
            scalar_log.close()
    finals = [networks(k) for k in range(members or 1)]
    for c, m in finals:
        for net in (c, m):
            if net is not None:
                net.eval()
    total_train = train_before + train_time
    seed_steps = recipe.steps * (members or 1)
    metrics = {"wall_time_s": round(wall, 2), "peak_memory_mb": round(peak_memory_mb(), 1),
               "steps_per_s": round(recipe.steps / total_train, 2) if total_train > 0 else 0.0}
    if members is not None:
        metrics["seed_steps_per_s"] = round(seed_steps / total_train, 2) if total_train > 0 else 0.0
        metrics["members"] = members
    metrics.update({f"final_{k}": float(v) for k, v in logs.items()})
    if curve:
        # the last learning-curve point, named apart from a real evaluation's results (the card's `evaluations`)
        metrics.update({f"curve_{k}": v for k, v in curve[-1].items() if k not in ("step", "wall_time_s", "member")})
    critic_out = [c for c, _ in finals] if "critic" in parts else None
    model_out = [m for _, m in finals] if "diffusion" in parts else None
    return TrainResult(critic=critic_out[0] if critic_out else critic if not isinstance(critic, list) else None,
                       model=model_out[0] if model_out else None, reward=reward, curve=curve, metrics=metrics,
                       steps=recipe.steps, checkpoint_moved_to=moved_to, critics=critic_out, models=model_out,
                       seeds=seeds)


def _as_members(x: Any, members: int | None, what: str) -> list[Any] | None:
    """The networks of a run as a list (None when not given); with `members`, a list of exactly that many."""
    if x is None:
        return None
    xs = list(x) if isinstance(x, list | tuple) else [x]
    if members is None and len(xs) != 1:
        raise ValueError(f"{len(xs)} {what} networks given for a single-seed run: pass `seeds` for an ensemble")
    if members is not None and len(xs) != members:
        raise ValueError(f"{len(xs)} {what} networks for {members} seeds")
    return xs
