"""Training into the store: a recipe (modules.train) + networks built through the registry + carded results.

    hub.train_guidance("iql", "hopper-bullet-medium", steps=20_000)        -> [guidance]
    hub.train_guidance("dql", ...)                                            -> [guidance (critic), diffusion (actor)]
    hub.train_diffusion("dql", "hopper-bullet-medium", guidance="my-iql")    -> [diffusion]   (guidance-first)
    hub.train_diffusion("swg", "hopper-bullet-medium", guidance="my-iql")    -> [diffusion]   (labels: SWG / CFG)
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cards import (
    DatasetRef,
    DiffusionSpec,
    GuidanceSpec,
    Interface,
    ModuleCard,
    Origin,
    RewardTransform,
    ValueStats,
)
from hub.algos import DIFFUSION_ALGOS, GUIDANCE_ALGOS
from hub.datasets import resolve_dataset
from hub.errors import MdhubError, StoreError
from hub.modes import DEFAULT_PAIRING, Mode, TrainingContext, training_mode_for
from hub.modes.base import Phase
from hub.module_folder import versions
from hub.paths import run_dir
from hub.registry import registry
from hub.store import Store, StoredModule
from modules.data.dataset import OfflineDataset
from modules.device import Precision, check_precision, device_name, resolve_device
from modules.train.batches import RewardScale, reward_scale_for
from modules.train.loop import EvalFn, TrainResult, run
from modules.train.recipes import Recipe, get_recipe

# (dataset, frozen guidance or None) -> a learning-curve evaluation for the loop, or None (hub.evaluation)
EvalFnFactory = Callable[[OfflineDataset, StoredModule | None], EvalFn | None]


@dataclass
class Budget:
    """Sizes for CPU-sized runs (None: the recipe's / architecture's defaults)."""

    steps: int | None = None
    batch_size: int | None = None
    hidden: int | None = None
    eval_every: int = 0
    eval_episodes: int = 0
    checkpoint_every: int = 1000
    log_every: int = 100  # scalars (losses, learning rates, steps/s) are read and written every this many steps


def dataset_interface(ds: OfflineDataset) -> Interface:
    meta = ds.metadata
    rel = meta.get("relabelled")
    relabelled: dict[str, Any] = rel if isinstance(rel, dict) else {}
    src = relabelled.get("source")
    source: dict[str, Any] = src if isinstance(src, dict) else {}
    return Interface(
        obs_dim=ds.obs_dim, act_dim=ds.act_dim, obs_normalised=True,
        env_id=meta.get("gym_id") or meta.get("env"),
        dataset=DatasetRef(id=str(meta.get("dataset_id") or "unnamed"), sha256=ds.sha256,
                           reward=relabelled.get("reward"), source_id=source.get("id"),
                           source_sha256=source.get("sha256")),
    )


@torch.no_grad()
def value_stats(critic: Any, ds: OfflineDataset, reward: RewardScale | None = None,
                max_rows: int = 100_000) -> ValueStats:
    """Statistics of Q(s, a) over the dataset's own pairs (up to max_rows, evenly spaced)."""
    n = len(ds.observations)
    idx = torch.linspace(0, n - 1, min(n, max_rows)).long()
    obs = torch.as_tensor(ds.observations)[idx]
    act = torch.as_tensor(ds.actions)[idx].clamp(-1, 1)
    q = torch.cat([critic.q(o, a) for o, a in zip(obs.split(8192), act.split(8192), strict=True)])
    return ValueStats(mean=float(q.mean()), std=float(q.std()) if len(q) > 1 else 0.0, min=float(q.min()),
                      max=float(q.max()))


def _arch_config(arch_id: str, ds: OfflineDataset, extra: dict[str, Any], hidden: int | None) -> dict[str, Any]:
    cfg = {"obs_dim": ds.obs_dim, "act_dim": ds.act_dim, **extra}
    if hidden:
        cfg["hidden"] = hidden
    return cfg


def build(arch_id: str, kind: str, config: dict[str, Any]) -> Any:
    return registry().get(arch_id, kind=kind).make(config, source=f"recipe config for '{arch_id}'")


def _reward_transform(r: RewardScale) -> RewardTransform:
    # RewardScale.kind is a plain str in modules/; the card validates it against its Literal
    return RewardTransform(kind=r.kind, scale=r.scale, shift=r.shift)  # type: ignore[arg-type]


@dataclass
class RunInfo:
    """How a module was trained, beyond its recipe: the device and precision, and for a checkpoint saved during the
    run its step and the id the run stores its final module under."""

    device: str | None = None
    precision: str | None = None
    step: int | None = None  # None: the final module (result.steps)
    checkpoint_of: str | None = None


def _origin(recipe: Recipe, seed: int, result: TrainResult, info: RunInfo | None,
            trained_with: ModuleCard | None = None) -> Origin:
    info = info or RunInfo()
    return Origin(algorithm=recipe.algorithm, recipe=recipe.recipe, seed=seed,
                  steps=info.step if info.step is not None else result.steps, versions=versions(),
                  trained_with_guidance=trained_with.ref() if trained_with else None, device=info.device,
                  precision=info.precision, checkpoint_of=info.checkpoint_of)  # type: ignore[arg-type]


def guidance_card(module_id: str, arch_id: str, critic: Any, ds: OfflineDataset, recipe: Recipe, seed: int,
                  result: TrainResult, stats: ValueStats, description: str = "",
                  info: RunInfo | None = None, metrics: dict[str, Any] | None = None) -> ModuleCard:
    return ModuleCard(
        id=module_id, kind="guidance", architecture=arch_id, config=critic.cfg.model_dump(mode="json"),
        interface=dataset_interface(ds),
        origin=_origin(recipe, seed, result, info),
        guidance=GuidanceSpec(provides=list(critic.provides), q_heads=critic.cfg.q_heads,
                              reduction=critic.cfg.reduction, discount=recipe.discount,
                              expectile=recipe.expectile if recipe.critic_update == "iql" else None,
                              reward_transform=_reward_transform(result.reward), value_stats=stats),
        metrics={**(result.metrics if metrics is None else metrics)},
        description=description,
    )


def diffusion_card(module_id: str, arch_id: str, model: Any, ds: OfflineDataset, recipe: Recipe, seed: int,
                   result: TrainResult, trained_with: StoredModule | ModuleCard | None,
                   description: str = "", info: RunInfo | None = None,
                   metrics: dict[str, Any] | None = None) -> ModuleCard:
    arch = registry().get(arch_id, kind="diffusion")
    g_card = trained_with.card if isinstance(trained_with, StoredModule) else trained_with
    cfg = model.cfg
    return ModuleCard(
        id=module_id, kind="diffusion", architecture=arch_id, config=cfg.model_dump(mode="json"),
        interface=dataset_interface(ds),
        origin=_origin(recipe, seed, result, info, g_card),
        diffusion=DiffusionSpec(schedule=cfg.schedule, T=cfg.T, prediction="eps", x_dim=model.x_dim,
                                train_guidance=list(arch.train_guidance), sample_guidance=list(arch.sample_guidance),
                                condition="label" if cfg.cond_dim else "none"),
        metrics={**(result.metrics if metrics is None else metrics)}, description=description,
    )


def write_curve(run_dir: Path, result: TrainResult, title: str, stem: str = "curve") -> Path | None:
    """Learning curve as data (STEM.json) and as a plot (STEM.png) in run_dir."""
    if not result.curve:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{stem}.json").write_text(json.dumps(result.curve, indent=1))
    from hub.plots import plot_curve

    return plot_curve(result.curve, run_dir / f"{stem}.png", title)


@contextmanager
def exclusive_run(run_folder: Path) -> Iterator[None]:
    """One process trains a run at a time. A second one (a rerun started while the first still runs, or a sweep
    worker left running by a killed sweep) is refused in one line instead of interleaving its checkpoints with the
    first's; the lock (`.train.lock` in the run folder) goes with the process that holds it, even on kill -9."""
    from filelock import FileLock, Timeout

    run_folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_folder / ".train.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise MdhubError(f"run '{run_folder.name}' is being trained by another process right now (it holds "
                         f"{run_folder / '.train.lock'}): wait for it, or stop it and rerun to continue from its "
                         "checkpoint") from None
    try:
        yield
    finally:
        lock.release()


def _run_dir(module_id: str) -> Path:
    return run_dir(module_id)


def algorithm_for(backbone: str, mode: Mode | None = None) -> str | None:
    """The --algo that trains `backbone` (in training mode `mode`, if given): the recipe built for that backbone when
    there is one, else a recipe of that mode for another backbone, with this one swapped in. None: no recipe."""
    algos = [a for a, r in DIFFUSION_ALGOS.items()
             if mode is None or get_recipe(r).diffusion_update == mode.recipe_update]
    own = [a for a in algos if get_recipe(DIFFUSION_ALGOS[a]).backbone == backbone]
    return own[0] if own else (algos[0] if algos and mode is not None else None)


def _check_steps(steps: int | None, budget: Budget | None) -> None:
    """None means the recipe's default; 0 or a negative count is refused (it used to mean the default silently)."""
    for name, value in (("steps", steps), ("budget.steps", budget.steps if budget else None)):
        if value is not None and value < 1:
            raise MdhubError(f"{name} must be at least 1 (got {value}); leave it out for the recipe's default")


def default_id(kind: str, algo: str, ds: OfflineDataset, seed: int) -> str:
    """The id a run gets when none is given. Kinds never share one: `ALGO-critic-DATA-sSEED` for a guidance,
    `ALGO-actor-DATA-sSEED` for a diffusion policy, `dql-joint-actor-DATA-sSEED` for a joint run's actor."""
    role = {"guidance": "critic", "diffusion": "actor", "joint-actor": "joint-actor"}[kind]
    return f"{algo}-{role}-{ds.metadata.get('dataset_id') or 'data'}-s{seed}"


def refuse_existing(store: Store, module_ids: list[str], overwrite: bool) -> bool:
    """Refuse to train into ids the store already has (unless `overwrite`). Returns whether one exists. (The
    training functions decide with `plan_rerun`, which also recognises a finished run and offers --resume.)"""
    existing = [m for m in module_ids if store.contains(m)]
    if existing and not overwrite:
        card = store.card(existing[0])
        raise StoreError(f"'{existing[0]}' is already stored (a {card.kind} module, {card.origin.algorithm}, "
                         f"{card.origin.steps} steps); train under another --id, or replace it with --force "
                         "(API: overwrite=True)")
    return bool(existing)


# recipe fields that say WHAT a recipe is (its updates, architectures, guidance needs), not how it is tuned
STRUCTURAL_FIELDS = frozenset({"name", "algorithm", "recipe", "critic_update", "critic_arch", "diffusion_update",
                               "backbone", "needs_guidance"})


def overridable_fields() -> list[str]:
    """The recipe fields `--config FILE` and `recipe_overrides` may set."""
    return sorted(set(Recipe.model_fields) - STRUCTURAL_FIELDS)


def apply_overrides(recipe: Recipe, overrides: dict[str, Any], source: str = "recipe_overrides") -> Recipe:
    """`recipe` with `overrides` applied (None values ignored), validated against the recipe's fields: an unknown
    key, a key that names the recipe rather than tunes it, or a bad value is one MdhubError line naming the key."""
    import difflib

    from pydantic import ValidationError

    allowed = overridable_fields()
    for key in overrides:
        if key in STRUCTURAL_FIELDS:
            raise MdhubError(f"{source}: key '{key}' defines the recipe, it is not a setting (choose --algo instead); "
                             f"settings: {', '.join(allowed)}")
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise MdhubError(f"{source}: unknown key '{key}'{hint}; recipe settings: {', '.join(allowed)}")
    try:
        return recipe.with_overrides(**overrides)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(x) for x in first.get("loc", ())) or "?"
        raise MdhubError(f"{source}: key '{key}': {first.get('msg', 'invalid')} (got {first.get('input')!r})") from None


CONFIG_MAX_BYTES = 1 << 20


def load_recipe_config(path: str | Path) -> dict[str, Any]:
    """Recipe overrides from a YAML or JSON file (a mapping of recipe settings, e.g. `eta: 0.1`, `lr: 1e-4`).
    Keys are checked by `apply_overrides` when the recipe is known; unreadable, oversized or non-mapping files are one
    MdhubError line naming the file."""
    from hub.yaml_file import read_yaml_file

    p = Path(path)
    data = read_yaml_file(p, CONFIG_MAX_BYTES, "recipe config", MdhubError)
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise MdhubError(f"{p}: must be a mapping of recipe settings (e.g. 'eta: 0.1'), got a {type(data).__name__}")
    return data


Report = Callable[[str], None]


def plan_rerun(store: Store, module_ids: list[str], run_folder: Path, recipe: Recipe, ds: OfflineDataset, seed: int,
               run_tag: str, overwrite: bool, fresh: bool, resume: bool,
               report: Report | None) -> tuple[bool, bool, list[StoredModule] | None]:
    """Decide what a training call does with the ids and the run folder it targets, before any work.

    Returns (fresh, replace, done): `fresh` starts over (the old checkpoint moved aside), `replace` lets the result
    replace the stored module(s), `done` is the stored modules when this exact run already finished (nothing to do).

    - nothing stored under the ids: train (an interrupted run resumes from its checkpoint);
    - stored, the same run finished with the same steps: "already trained", kept as stored (metrics and all);
    - stored, the same run at fewer steps: refused, offering `resume` (continue to the new total) or fresh + overwrite;
    - stored, other settings (or no checkpoint here): refused, naming what differs, offering fresh + overwrite;
    - `overwrite` without `resume`: start over and replace (the old checkpoint moved aside, never deleted).
    """
    from modules.train.loop import CHECKPOINT_DIR, run_status

    if resume and fresh:
        raise MdhubError("--resume continues the run's checkpoint and --fresh starts over: give one of them")
    existing = [m for m in module_ids if store.contains(m)]
    ckpt = run_folder / CHECKPOINT_DIR
    if not existing:
        if resume:
            status = run_status(run_folder, recipe, ds.sha256, seed, run_tag)
            if status.checkpoint_step is None:
                raise MdhubError(f"nothing to resume: no checkpoint in {ckpt}; train without --resume")
            if status.difference:
                raise MdhubError(f"cannot resume: the checkpoint in {ckpt} was written by a run with other settings "
                                 f"({status.difference}); train with --fresh to start over")
        return fresh, False, None
    if overwrite and not resume:
        return True, True, None
    mid = existing[0]
    card = store.card(mid)
    what = f"'{mid}' is already stored (a {card.kind} module, {card.origin.algorithm}, {card.origin.steps} steps)"
    if fresh:
        raise StoreError(f"{what}; --fresh retrains it from step 0 and replaces the stored module only with --force "
                         "(or train under another --id)")
    status = run_status(run_folder, recipe, ds.sha256, seed, run_tag)
    if status.checkpoint_step is None:
        raise StoreError(f"{what} and no training checkpoint of it is here ({ckpt}); retrain it with --fresh --force, "
                         "or train under another --id")
    if status.difference:
        raise StoreError(f"{what}, trained with other settings ({status.difference}); retrain it with these with "
                         "--fresh --force, or train under another --id")
    at = status.checkpoint_step
    if at == recipe.steps and all(store.card(m).origin.steps == recipe.steps for m in existing):
        if report is not None:
            report(f"'{mid}' is already trained with these settings ({recipe.steps} steps): kept as stored "
                   "(--fresh --force retrains it)")
        return False, False, [store.load(m) for m in module_ids if store.contains(m)]
    if at is not None and recipe.steps < at:
        raise StoreError(f"{what}; its checkpoint is at step {at} and this run asks for {recipe.steps}: a run "
                         "continues, never goes back; --fresh --force starts over, or train under another --id")
    if not resume:
        raise StoreError(f"{what}; this run asks for {recipe.steps} steps: --resume continues its checkpoint (step "
                         f"{at}) to {recipe.steps}, --fresh --force starts over, or train under another --id")
    users = sorted({u for m in existing for u in store.referencing_policies(m)})
    if users and not overwrite:
        raise StoreError(f"{what} and stored policies reference it ({', '.join(users)}): --resume changes its "
                         "weights; add --force to replace it anyway")
    if report is not None:
        report(f"resuming '{mid}' from its checkpoint at step {at} to {recipe.steps} steps")
    return False, True, None


def train_guidance(algo: str, dataset: str | OfflineDataset, steps: int | None = None, seed: int = 0,
                   module_id: str | None = None, store: Store | None = None, budget: Budget | None = None,
                   progress: bool = True, eval_fn_factory: EvalFnFactory | None = None,
                   recipe_overrides: dict[str, Any] | None = None, overwrite: bool = False,
                   fresh: bool = False, resume: bool = False, report: Report | None = None,
                   seeds: list[int] | None = None, device: str = "auto", precision: str = "fp32",
                   compile: bool = False, save_every: int = 0) -> list[StoredModule]:
    """Train a guidance module by TD learning. `dql` runs joint DQL and stores its critic AND its actor.

    An id already in the store is decided before training starts (`plan_rerun`): the same finished run is kept as
    stored ("already trained", reported through `report`); the same run at fewer steps continues with `resume`;
    anything else is refused unless `overwrite` (then the run starts over). An interrupted run resumes from its
    checkpoint; `fresh` moves the checkpoint aside and starts over.

    `seeds`: train K seeds of the recipe in one process as one batched computation; each member is stored as
    `ID-s<seed>` (or the default id of its seed) with its own card. `device` ("auto" picks CUDA when present),
    `precision` ("bf16": bfloat16 autocast), `compile` (torch.compile the losses). `save_every` N also stores the
    networks every N steps as `<id>-step<N>` (card: origin.steps, origin.checkpoint_of), for evaluating the run
    afterwards (`mdhub eval-run`)."""
    if algo not in GUIDANCE_ALGOS:
        raise MdhubError(f"unknown guidance algorithm '{algo}'; known: {', '.join(GUIDANCE_ALGOS)}")
    _check_steps(steps, budget)
    dev, precision, members, ensemble = _compute(device, precision, seed, seeds, save_every)
    store = store or Store()
    budget = budget or Budget()
    ds = resolve_dataset(dataset)
    recipe = apply_overrides(get_recipe(GUIDANCE_ALGOS[algo]), dict(recipe_overrides or {}))
    recipe = recipe.with_overrides(steps=steps or budget.steps, batch_size=budget.batch_size)
    if ds.metadata.get("gym_id") is None:
        recipe = recipe.with_overrides(reward_transform="identity")
    critic_arch, backbone = recipe.critic_arch, recipe.backbone
    if critic_arch is None:
        raise MdhubError(f"recipe '{recipe.name}' trains no critic")
    ids = member_ids(module_id, "guidance", algo, ds, members, ensemble)
    actor_ids = ([f"{module_id}-s{s}-actor" if ensemble else f"{module_id}-actor" for s in members] if module_id
                 else [default_id("joint-actor", algo, ds, s) for s in members])
    critics, models = [], []
    for s in members:
        torch.manual_seed(s)  # the initial weights follow the member's seed, whatever ran before in this process
        critics.append(build(critic_arch, "guidance", _arch_config(critic_arch, ds, recipe.critic_config,
                                                                  budget.hidden)))
        if backbone:
            models.append(build(backbone, "diffusion", _arch_config(backbone, ds, recipe.backbone_config,
                                                                   budget.hidden)))
    run_tag = f"{critics[0].cfg.model_dump_json()}|{models[0].cfg.model_dump_json() if models else ''}"
    run_tag += f"|seeds={members}" if ensemble else ""
    run_folder = _run_dir(run_name(ids, ensemble))
    with exclusive_run(run_folder):
        fresh, replace, done = plan_rerun(store, ids + (actor_ids if backbone else []), run_folder, recipe, ds,
                                          members[0], run_tag, overwrite, fresh, resume, report)
        if done is not None:
            return done
        info = RunInfo(device=device_name(dev), precision=precision)
        reward = reward_scale_for(recipe.reward_transform, np.asarray(ds.episode_returns()))

        def store_members(step: int | None, cs: list[Any] | None, ms: list[Any] | None,
                          result: TrainResult) -> list[StoredModule]:
            out: list[StoredModule] = []
            for k, s in enumerate(members):
                assert cs is not None
                at = RunInfo(info.device, info.precision, step, ids[k] if step is not None else None)
                suffix = f"-step{step}" if step is not None else ""
                critic = _to_cpu(cs[k], copy_it=step is not None)
                metrics = _member_metrics(result, k, step)
                g = _save(store, critic, guidance_card(ids[k] + suffix, critic_arch, critic, ds, recipe, s, result,
                                                       value_stats(critic, ds), info=at, metrics=metrics),
                          overwrite or replace, ids[k] if step is not None else None)
                out.append(g)
                if backbone and ms is not None:
                    model = _to_cpu(ms[k], copy_it=step is not None)
                    at_actor = RunInfo(at.device, at.precision, step, actor_ids[k] if step is not None else None)
                    out.append(_save(store, model, diffusion_card(actor_ids[k] + suffix, backbone, model, ds, recipe, s,
                                                                  result, g, "The actor of a joint DQL run.",
                                                                  info=at_actor, metrics=metrics),
                                     overwrite or replace, actor_ids[k] if step is not None else None))
            return out

        def on_save(step: int, cs: list[Any] | None, ms: list[Any] | None) -> None:
            store_members(step, cs, ms, TrainResult(critic=None, model=None, reward=reward, steps=step))

        eval_fn = eval_fn_factory(ds, None) if (eval_fn_factory and backbone) else None
        result = run(recipe, ds, critic=critics if ensemble else critics[0],
                     model=(models if ensemble else models[0]) if models else None, seed=members[0], eval_fn=eval_fn,
                     eval_every=budget.eval_every, run_dir=run_folder, checkpoint_every=budget.checkpoint_every,
                     progress=progress, run_tag=run_tag, fresh=fresh, log_every=budget.log_every,
                     seeds=members if ensemble else None, device=dev, precision=precision, compile=compile,
                     save_every=save_every, on_save=on_save if save_every else None)
        _write_curves(run_folder, result, members, ensemble, recipe.name, ids)
        return store_members(None, result.critics, result.models, result)


def train_diffusion(algo: str, dataset: str | OfflineDataset,
                    guidance: str | StoredModule | list[str | StoredModule] | None = None,
                    joint: bool = False, steps: int | None = None, seed: int = 0, module_id: str | None = None,
                    store: Store | None = None, budget: Budget | None = None, progress: bool = True,
                    backbone: str | None = None, eval_fn_factory: EvalFnFactory | None = None,
                    recipe_overrides: dict[str, Any] | None = None, overwrite: bool = False,
                    fresh: bool = False, resume: bool = False, report: Report | None = None,
                    seeds: list[int] | None = None, device: str = "auto", precision: str = "fp32",
                    compile: bool = False, save_every: int = 0) -> list[StoredModule]:
    """Train a diffusion policy: under a frozen guidance (guidance-first), jointly (`joint`, DQL), or BC-only.
    Re-runs into a stored id are decided as for `train_guidance` (`plan_rerun`: already trained, `resume`, `fresh`).

    `backbone` swaps the architecture (e.g. an IDQL-recipe guidance driving a DQL backbone is the default pairing;
    a DQL q_loss on the LN-ResNet backbone is another). Returns the stored modules.
    """
    if algo not in DIFFUSION_ALGOS:
        raise MdhubError(f"unknown diffusion algorithm '{algo}'; known: {', '.join(DIFFUSION_ALGOS)}")
    _check_steps(steps, budget)
    if joint:
        if algo != "dql":
            raise MdhubError("--joint trains a DQL actor with its critic; use --algo dql")
        if guidance is not None:
            raise MdhubError("--joint trains its own critic: give either --guidance or --joint, not both")
        return train_guidance("dql", dataset, steps=steps, seed=seed, module_id=module_id, store=store, budget=budget,
                              progress=progress, eval_fn_factory=eval_fn_factory, recipe_overrides=recipe_overrides,
                              overwrite=overwrite, fresh=fresh, resume=resume, report=report, seeds=seeds,
                              device=device, precision=precision, compile=compile, save_every=save_every)
    dev, precision, members, ensemble = _compute(device, precision, seed, seeds, save_every)
    store = store or Store()
    budget = budget or Budget()
    ds = resolve_dataset(dataset)
    recipe = apply_overrides(get_recipe(DIFFUSION_ALGOS[algo]), dict(recipe_overrides or {}))
    recipe = recipe.with_overrides(steps=steps or budget.steps, batch_size=budget.batch_size, backbone=backbone)
    if ds.metadata.get("gym_id") is None:
        recipe = recipe.with_overrides(reward_transform="identity")
    train_mode = training_mode_for(recipe.diffusion_update)
    backbone = recipe.backbone
    if train_mode is None or backbone is None:
        raise MdhubError(f"recipe '{recipe.name}' trains no diffusion model")
    prepare = train_mode.prepare
    assert prepare is not None  # the mode table refuses a training mode without `prepare`
    arch = registry().get(backbone, kind="diffusion")
    if train_mode.name not in arch.train_guidance:
        own = algorithm_for(arch.id)
        raise MdhubError(f"backbone '{arch.id}' does not train in mode '{train_mode.name}' (it accepts: "
                         f"{', '.join(arch.train_guidance)})" + (f"; train it with --algo {own}" if own else ""))
    per_member = isinstance(guidance, list)
    if per_member:  # one frozen guidance per seed (a guidance arm's seeds paired with the diffusion seeds)
        assert isinstance(guidance, list)
        if not ensemble or len(guidance) != len(members):
            raise MdhubError(f"{len(guidance)} guidance ids for {len(members) if ensemble else 1} seed(s): give one "
                             "guidance per seed of `seeds`, or one guidance for all")
        if train_mode.name != "q_loss":
            raise MdhubError(f"one guidance per seed is for q_loss training (--algo dql); --algo {algo} trains in "
                             f"mode '{train_mode.name}': give one guidance")
    gs: list[StoredModule] = []
    for ref in (guidance if isinstance(guidance, list) else [guidance] if guidance is not None else []):
        g: StoredModule = ref if isinstance(ref, StoredModule) else store.load(ref)
        from hub.compat import check

        # a mode that uses no guidance in training (BC) is paired with it at sampling: check that pairing
        phase: Phase
        mode, phase = (train_mode.name, "training") if train_mode.needs else (DEFAULT_PAIRING, "sampling")
        pairing = check(g.card, backbone, mode, dataset_card=dataset_interface(ds), phase=phase)
        pairing.raise_if_incompatible()
        if phase == "training" and "fit-v" in pairing.adapters:
            from hub.adapters import fit_v

            g = fit_v(g, store=store, dataset=ds, progress=progress, device=dev)  # the card names the fitted V
        gs.append(g)
    g0 = gs[0] if gs else None
    if g0 is None and recipe.needs_guidance:
        hint = " (or --joint)" if train_mode.name == "q_loss" else ""
        raise MdhubError(f"--algo {algo} trains under a frozen guidance: give --guidance ID{hint}")
    ids = member_ids(module_id, "diffusion", algo, ds, members, ensemble)
    extra = dict(recipe.backbone_config)
    if recipe.algorithm == "SWG" and extra.get("weight_tau") is None:
        extra["weight_tau"] = (g0.card.guidance.expectile if g0 is not None and g0.card.guidance else None) or 0.7
    models = []
    for s in members:
        torch.manual_seed(s)  # the initial weights follow the member's seed, whatever ran before in this process
        models.append(build(backbone, "diffusion", _arch_config(backbone, ds, extra, budget.hidden)))
    run_tag = f"{','.join(str(x.card.ref().sha256) for x in gs)}|{models[0].cfg.model_dump_json()}"
    run_tag += f"|seeds={members}" if ensemble else ""
    run_folder = _run_dir(run_name(ids, ensemble))
    with exclusive_run(run_folder):
        fresh, replace, done = plan_rerun(store, ids, run_folder, recipe, ds, members[0], run_tag, overwrite, fresh,
                                          resume, report)
        if done is not None:
            return done
        loop_guidance, targets = prepare(TrainingContext(recipe=recipe, model=models[0], guidance=g0, dataset=ds,
                                                         store=store, progress=progress))
        if per_member:
            loop_guidance = [x.net for x in gs]  # q_loss: member k trains under guidance k (stacked, frozen)
        info = RunInfo(device=device_name(dev), precision=precision)
        reward = reward_scale_for(recipe.reward_transform, np.asarray(ds.episode_returns()))

        def store_members(step: int | None, ms: list[Any] | None, result: TrainResult) -> list[StoredModule]:
            assert ms is not None
            out: list[StoredModule] = []
            for k, s in enumerate(members):
                at = RunInfo(info.device, info.precision, step, ids[k] if step is not None else None)
                model = _to_cpu(ms[k], copy_it=step is not None)
                card = diffusion_card(ids[k] + (f"-step{step}" if step is not None else ""), backbone, model, ds,
                                      recipe, s, result, gs[k] if per_member else g0, info=at,
                                      metrics=_member_metrics(result, k, step))
                out.append(_save(store, model, card, overwrite or replace, ids[k] if step is not None else None))
            return out

        def on_save(step: int, cs: list[Any] | None, ms: list[Any] | None) -> None:
            store_members(step, ms, TrainResult(critic=None, model=None, reward=reward, steps=step))

        eval_fn = eval_fn_factory(ds, g0) if eval_fn_factory else None
        result = run(recipe, ds, model=models if ensemble else models[0], guidance=loop_guidance, seed=members[0],
                     eval_fn=eval_fn, eval_every=budget.eval_every, run_dir=run_folder,
                     checkpoint_every=budget.checkpoint_every, progress=progress, targets=targets, run_tag=run_tag,
                     fresh=fresh, log_every=budget.log_every, seeds=members if ensemble else None, device=dev,
                     precision=precision, compile=compile, save_every=save_every,
                     on_save=on_save if save_every else None)
        _write_curves(run_folder, result, members, ensemble, recipe.name, ids)
        return store_members(None, result.models, result)


# ----------------------------------------------------------------------------------------------- runs of many seeds
def _compute(device: str, precision: str, seed: int, seeds: list[int] | None,
             save_every: int) -> tuple[torch.device, Precision, list[int], bool]:
    """Validate where and how a run computes: (device, precision, the members' seeds, whether an ensemble)."""
    dev = resolve_device(device)
    prec = check_precision(precision, dev)
    if save_every < 0:
        raise MdhubError(f"save_every must be 0 (no checkpoint modules) or a step count, got {save_every}")
    if seeds is None:
        return dev, prec, [seed], False
    members = [int(s) for s in seeds]
    if not members:
        raise MdhubError("seeds: give at least one seed")
    if any(s < 0 for s in members) or len(set(members)) != len(members):
        raise MdhubError(f"seeds must be distinct non-negative integers, got {members}")
    return dev, prec, members, True


def member_ids(module_id: str | None, kind: str, algo: str, ds: OfflineDataset, seeds: list[int],
               ensemble: bool) -> list[str]:
    """The ids a run stores: one (a single seed: ID, or the default id) or `ID-s<seed>` per member."""
    if not ensemble:
        return [module_id or default_id(kind, algo, ds, seeds[0])]
    return [f"{module_id}-s{s}" if module_id else default_id(kind, algo, ds, s) for s in seeds]


def run_name(ids: list[str], ensemble: bool) -> str:
    """The run folder's name (under $MDHUB_HOME/runs): the module id, or `<first member's id>-ensemble<K>`."""
    return f"{ids[0]}-ensemble{len(ids)}" if ensemble else ids[0]


def _to_cpu(net: Any, copy_it: bool) -> Any:
    """A network on the CPU for storing (a copy when training goes on: checkpoints)."""
    import copy

    out = copy.deepcopy(net) if copy_it else net
    return out.to("cpu").eval()


def _member_metrics(result: TrainResult, k: int, step: int | None) -> dict[str, Any]:
    """Member k's card metrics: the run's shared figures and its own last learning-curve point."""
    if step is not None:
        return {"checkpoint_step": step}
    metrics = {key: v for key, v in result.metrics.items() if not key.startswith("curve_")}
    curve = result.member_curve(k)
    if curve:
        metrics.update({f"curve_{key}": v for key, v in curve[-1].items() if key not in ("step", "wall_time_s")})
    return metrics


def _save(store: Store, net: Any, card: ModuleCard, overwrite: bool, checkpoint_of: str | None) -> StoredModule:
    """Store a module; a checkpoint module of the same run (same `checkpoint_of`) is replaced without --force."""
    if checkpoint_of is not None and store.contains(card.id):
        overwrite = overwrite or store.card(card.id).origin.checkpoint_of == checkpoint_of
    return store.save(net, card, overwrite=overwrite)


def _write_curves(run_folder: Path, result: TrainResult, members: list[int], ensemble: bool, recipe: str,
                  ids: list[str]) -> None:
    if not ensemble:
        write_curve(run_folder, result, f"{ids[0]} ({recipe})")
        return
    for k, s in enumerate(members):
        curve = result.member_curve(k)
        if curve:
            write_curve(run_folder, TrainResult(critic=None, model=None, reward=result.reward, curve=curve),
                        f"{ids[k]} ({recipe}, seed {s})", stem=f"curve-s{s}")
