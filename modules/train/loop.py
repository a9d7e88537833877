"""The one training loop: sample a batch, run the recipe's updates, evaluate now and then, checkpoint, resume."""
from __future__ import annotations

import hashlib
import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from modules.diffusion.model import DiffusionModel
from modules.guidance.iql import IQLCritic
from modules.train.batches import Batches, RewardScale, reward_scale_for
from modules.train.checkpoint import load_checkpoint, save_checkpoint
from modules.train.recipes import Recipe
from modules.train.updates import DiffusionUpdate, DQLCriticUpdate, IQLUpdate, TargetFn, default_targets

EvalFn = Callable[[IQLCritic | None, DiffusionModel | None], dict[str, float]]


@dataclass
class TrainResult:
    critic: IQLCritic | None
    model: DiffusionModel | None  # the EMA weights
    reward: RewardScale
    curve: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA allocator peak if on GPU, else the peak RSS."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class CheckpointMismatch(ValueError):
    pass


def run(recipe: Recipe, dataset, critic: IQLCritic | None = None, model: DiffusionModel | None = None,
        guidance: IQLCritic | None = None, seed: int = 0, eval_fn: EvalFn | None = None, eval_every: int = 0,
        run_dir: Path | None = None, checkpoint_every: int = 0, progress: bool = True,
        targets: TargetFn = default_targets, device: str = "cpu", run_tag: str = "") -> TrainResult:
    """Train the parts `recipe` names. critic/model: freshly built networks to train; guidance: a frozen critic.

    Resumes from `run_dir` when it holds a checkpoint of the same run (same recipe, seed, data and `run_tag`, which
    callers set to what else defines the run, e.g. the frozen guidance's sha256).
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    reward = reward_scale_for(recipe.reward_transform, np.asarray(dataset.episode_returns()))
    batches = Batches(dataset, reward, device=device, seed=seed)
    if recipe.obs_normalize:
        mean, std = batches.obs_stats()
        for net in (critic, model):
            if net is not None:
                net.obs_norm.set_stats(mean, std)
    if guidance is not None:
        guidance.requires_grad_(False).eval()

    parts: dict[str, Any] = {}
    if recipe.diffusion_update != "none":
        if model is None:
            raise ValueError(f"recipe '{recipe.name}' trains a diffusion model: pass `model`")
        q_guide = guidance if recipe.diffusion_update == "q_loss" else None
        if recipe.critic_update == "dql":
            q_guide = critic
        if recipe.diffusion_update == "q_loss" and q_guide is None:
            raise ValueError(f"recipe '{recipe.name}' needs a guidance (a critic providing q)")
        parts["diffusion"] = DiffusionUpdate(
            model, lr=recipe.lr, guidance=q_guide, eta=recipe.eta if recipe.diffusion_update == "q_loss" else 0.0,
            grad_clip=recipe.grad_clip, ema_decay=recipe.ema_decay, ema_every=recipe.ema_every,
            ema_start=recipe.ema_start, targets=targets, total_steps=recipe.steps, cosine_lr=recipe.cosine_lr,
            weight_decay=recipe.weight_decay, guidance_start=recipe.guidance_start)
    if recipe.critic_update == "iql":
        parts["critic"] = IQLUpdate(critic, lr=recipe.critic_lr, discount=recipe.discount,
                                    expectile=recipe.expectile, tau=recipe.tau)
    elif recipe.critic_update == "dql":
        actor = parts["diffusion"].act
        parts["critic"] = DQLCriticUpdate(critic, actor, lr=recipe.critic_lr, discount=recipe.discount,
                                          tau=recipe.tau, grad_clip=recipe.grad_clip)
    order = [p for p in ("critic", "diffusion") if p in parts]
    for net in (critic, model):
        if net is not None:
            net.to(device).train()

    run_key = hashlib.sha256(json.dumps({"recipe": recipe.model_dump(), "seed": seed,
                                         "data": dataset.sha256, "tag": run_tag}, sort_keys=True, default=str).encode()).hexdigest()
    start, curve, wall_before = 0, [], 0.0
    if run_dir is not None:
        saved = load_checkpoint(run_dir)
        if saved is not None:
            if saved["run_key"] != run_key:
                raise CheckpointMismatch(f"{run_dir}: holds a checkpoint of a different run (recipe, seed or data "
                                         "differ); remove it or use another run folder")
            for name in order:
                parts[name].load(saved["parts"][name])
            start, curve, wall_before = saved["step"], saved["curve"], saved["wall_time_s"]
            torch.set_rng_state(saved["torch_rng"])
            batches.gen.set_state(saved["batch_rng"])

    def checkpoint(step: int, wall: float) -> None:
        save_checkpoint(run_dir, {"run_key": run_key, "step": step, "curve": curve, "wall_time_s": wall,
                                  "parts": {n: parts[n].state() for n in order},
                                  "torch_rng": torch.get_rng_state(), "batch_rng": batches.gen.get_state()})

    def evaluate(step: int, wall: float) -> None:
        ema = parts["diffusion"].ema if "diffusion" in parts else None
        for net in (critic, ema):
            if net is not None:
                net.eval()
        result = eval_fn(critic, ema)
        if critic is not None:
            critic.train()
        curve.append({"step": step, "wall_time_s": round(wall, 3), **result})

    t0 = time.perf_counter() - wall_before
    train_time = 0.0
    logs: dict[str, float] = {}
    bar = tqdm(total=recipe.steps, initial=start, desc=recipe.name, disable=not progress, dynamic_ncols=True)
    for step in range(start + 1, recipe.steps + 1):
        ts = time.perf_counter()
        b = batches.sample(recipe.batch_size)
        for name in order:
            logs.update(parts[name].step(b, step))
        train_time += time.perf_counter() - ts
        if step % 100 == 0:
            bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
        bar.update(1)
        if eval_fn is not None and eval_every and (step % eval_every == 0 or step == recipe.steps):
            evaluate(step, time.perf_counter() - t0)
        if run_dir is not None and checkpoint_every and step % checkpoint_every == 0:
            checkpoint(step, time.perf_counter() - t0)
    bar.close()
    wall = time.perf_counter() - t0
    if eval_fn is not None and not eval_every:
        evaluate(recipe.steps, wall)
    if run_dir is not None:
        checkpoint(recipe.steps, wall)
    for net in (critic, model):
        if net is not None:
            net.eval()
    done = recipe.steps - start
    metrics = {"wall_time_s": round(wall, 2), "peak_memory_mb": round(peak_memory_mb(), 1),
               "steps_per_s": round(done / train_time, 2) if train_time > 0 else 0.0}
    metrics.update({f"final_{k}": float(v) for k, v in logs.items()})
    if curve:
        metrics.update({k: v for k, v in curve[-1].items() if k not in ("step", "wall_time_s")})
    ema_model = parts["diffusion"].ema if "diffusion" in parts else None
    return TrainResult(critic=critic, model=ema_model, reward=reward, curve=curve, metrics=metrics, steps=recipe.steps)
