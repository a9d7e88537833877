"""Evaluation: run a diffusion module or a combined policy in its pybullet task; write the result to its card.

    evaluate("dql-actor-hopper-bullet-medium-s0", episodes=10, device="auto")        # one policy, in this process
    evaluate_many([id1, id2, id3], episodes=10, workers=4)                           # many, across CPU cores
    evaluate_run("dql-actor-hopper-bullet-medium-s0", episodes=10)                   # a run's checkpoints: its curve

Episodes are rolled out in blocks of BLOCK (16) episodes: a block's env copies step in lockstep with one batched
policy call per step, episode i is reset with seed `seed + i`, and the policy's noise comes from a generator seeded
by (seed, the block's first episode). A result is therefore a function of (policy, episodes, seed) only: the same
whether its blocks run here one after another or in a process pool, in any order, on any number of workers.
Evaluation never imports the simulator before it rolls out, and training never imports this module's simulator side.
"""
from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cards import CardError, EvalRecord, ModuleCard
from hub.combine import CombinedPolicy, build_runtime, load_policy, to_device
from hub.errors import MdhubError, NotFoundError
from hub.modes import DEFAULT_PAIRING, SamplingConfig
from hub.store import Store, StoredModule
from modules.envs import UnknownEnvError, env_spec, normalized_score, rollout_lengths
from modules.errors import ModulesError
from modules.policy import GuidedPolicy
from modules.scores import q_score

if TYPE_CHECKING:
    import torch

    from hub.training import EvalFnFactory
    from modules.data.dataset import OfflineDataset
    from modules.train.loop import EvalFn

_USER_ERRORS = (MdhubError, CardError, ModulesError)  # what the CLI prints as one line (hub.cli.errors)
BLOCK = 16  # episodes per block: the env copies stepped in lockstep, and the unit of work of a process pool

DEFAULT_SAMPLING = {  # the references' action selection, by algorithm
    # Diffusion-QL draws 50 candidates and samples softmax(Q) over its raw target-critic Q: with Q in the hundreds,
    # that is the argmax; a softmax over standardised Q at temperature 1 would be nearly uniform among 50
    "DQL": SamplingConfig("resample", n_candidates=50, rule="argmax"),
    "IDQL": SamplingConfig("resample", n_candidates=64, rule="argmax"),
    # label-trained policies steer themselves: SWG-R (self guidance, best of N by predicted weight), CFG (good label)
    "SWG": SamplingConfig("self", rho=5.0, n_candidates=16, rule="argmax"),
    "CFG": SamplingConfig("cfg", w=1.2, n_candidates=1),
}


def default_sampling_plan(card: ModuleCard, store: Store) -> tuple[SamplingConfig, str | None]:
    """How a diffusion module on its own is sampled, read from cards only (no weights loaded): the sampling config
    and the id of the guidance that scores (None: none). See `default_sampling`."""
    own = DEFAULT_SAMPLING.get(card.origin.algorithm)
    spec = card.diffusion
    assert spec is not None  # a diffusion card has its diffusion section (the card validates it)
    if own is not None and own.spec.steers_itself and own.mode in spec.sample_guidance:
        return own, None
    ref = card.origin.trained_with_guidance
    if ref is not None and store.contains(ref.id):
        if not ref.sha256 or store.card(ref.id).ref().sha256 == ref.sha256:
            cfg = own if own is not None and own.mode == DEFAULT_PAIRING else SamplingConfig(DEFAULT_PAIRING)
            return cfg, ref.id
    return SamplingConfig("none"), None


def default_sampling(d: StoredModule, store: Store) -> tuple[SamplingConfig, StoredModule | None]:
    """How a diffusion module on its own is sampled: resampled by the guidance it was trained with when that is in
    the store (with its algorithm's own selection rule), else one plain sample; models that steer themselves (SWG,
    CFG) use their own mode."""
    cfg, g_id = default_sampling_plan(d.card, store)
    return cfg, (store.load(g_id) if g_id is not None else None)


def eval_record(result: dict[str, float], env_id: str, cfg: SamplingConfig, guidance: str | None, seed: int,
                max_steps: int | None = None) -> EvalRecord:
    """An evaluation as the card records it: labelled by env, episodes, seed, sampling mode and settings (the
    selection rule among them) and the guidance that scored, dated (UTC)."""
    settings = {k: v for k, v in cfg.settings().items() if isinstance(v, int | float | str | bool)}
    return EvalRecord(env_id=env_id, episodes=int(result["episodes"]), seed=seed, max_steps=max_steps, mode=cfg.mode,
                      settings=settings, guidance=guidance, return_mean=result["return_mean"],
                      return_std=result["return_std"], normalized_score=result.get("normalized_score"),
                      normalized_score_std=result.get("normalized_score_std"),
                      date=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def runtime_for(ref: str | StoredModule | CombinedPolicy, store: Store,
                device: str | torch.device | None = None,
                compile: bool = False) -> tuple[Any, Any, SamplingConfig, str | None]:
    """(card, runtime, sampling config, id of the guidance that scores) for a diffusion module, a policy card, or a
    combined policy in memory. `device` ("cpu", "auto", "cuda[:N]", "mps"): where the runtime computes; modules
    loaded here go there once (None: cpu), a combined policy in memory is moved there (None: it stays). `compile`:
    the runtime's action selection compiled (torch.compile; `GuidedPolicy.compile`)."""
    card, runtime, cfg, g_id = _runtime_for(ref, store, device)
    if compile:
        fn = getattr(runtime, "compile", None)
        if not callable(fn):
            raise MdhubError(f"'{card.id}': this policy's runtime ({type(runtime).__name__}) cannot be compiled; "
                             "evaluate it without --compile")
        fn()
    return card, runtime, cfg, g_id


def _runtime_for(ref: str | StoredModule | CombinedPolicy, store: Store,
                 device: str | torch.device | None) -> tuple[Any, Any, SamplingConfig, str | None]:
    if isinstance(ref, CombinedPolicy):
        p = ref
        if device is not None:
            from modules.device import resolve_device

            dev = resolve_device(device)
            for part in p.parts.values():
                to_device(part, dev)
            model = getattr(p.runtime, "model", None)
            if model is not None:
                model.to(dev)
    else:
        m = ref if isinstance(ref, StoredModule) else store.load(ref)
        if m.card.kind == "diffusion":
            cfg, g = default_sampling(m, store)
            return m.card, build_runtime(cfg, m, g, device or "cpu"), cfg, g.id if g else None
        if m.card.kind != "policy":
            raise MdhubError(f"'{m.card.id}' is a guidance module: evaluate a diffusion module or a policy that "
                             "uses it")
        p = load_policy(m, store, device=device or "cpu")
    spec = p.card.policy
    assert spec is not None  # a policy card has its policy section (the card validates it)
    cfg = SamplingConfig.from_card(spec.mode, dict(spec.params), f"policy '{p.card.id}'")
    g_id = spec.infer_guidance.id if spec.infer_guidance else None
    return p.card, p.runtime, cfg, g_id


# --- blocks of episodes: the one way episodes are rolled out -------------------------------------------------------

def blocks(episodes: int) -> list[tuple[int, int]]:
    """(first episode, count) of each block of `episodes` episodes."""
    return [(k, min(BLOCK, episodes - k)) for k in range(0, episodes, BLOCK)]


def block_seed(seed: int, first: int) -> int:
    """The policy-noise seed of the block that starts at episode `first` (a 63-bit mix of the two)."""
    return (int(seed) * 1_000_003 + int(first) * 7_919 + 0x5EED) % (1 << 63)


@contextlib.contextmanager
def _seeded(runtime: Any, seed: int) -> Iterator[None]:
    """The runtime's noise from a generator seeded with `seed` (GuidedPolicy.seeded); a runtime without one (a
    plug-in mode's) gets torch's global generators seeded, their state restored afterwards."""
    seeded = getattr(runtime, "seeded", None)
    if callable(seeded):
        with seeded(seed):
            yield
        return
    import torch

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def run_block(runtime: Any, env_id: str, first: int, count: int, seed: int, max_steps: int | None = None,
              on_episode: Callable[[int, float], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Episodes first..first+count-1 (env seeds seed+first...) -> (returns, lengths). A pure function of its
    arguments for a given policy: the same here and in a worker process."""
    # no inference_mode here: guides that need gradients (gradient, self) enable them inside the policy, which
    # chooses inference_mode itself for everything else
    with _seeded(runtime, block_seed(seed, first)):
        return rollout_lengths(runtime.act, env_id, count, seed=seed + first, max_steps=max_steps,
                               n_envs=BLOCK, on_episode=on_episode, keep_envs=True)


def _spec(env_id: str) -> Any:
    try:
        return env_spec(env_id)
    except UnknownEnvError as err:
        raise MdhubError(str(err)) from None


def summarise(env_id: str, returns: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    """return / normalised score (mean, std), episodes and environment steps of a set of episodes."""
    scores = np.asarray(normalized_score(_spec(env_id), returns))
    return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "normalized_score": float(scores.mean()), "normalized_score_std": float(scores.std()),
            "episodes": int(len(returns)), "env_steps": int(lengths.sum())}


def run_episodes(runtime: GuidedPolicy, env_id: str, episodes: int, seed: int = 0,
                 max_steps: int | None = None, progress: bool = False, desc: str = "eval",
                 leave: bool = True, device: str | torch.device | None = None) -> dict[str, float]:
    """Roll out `episodes` episodes, block after block (each block's env copies in lockstep, one batched policy
    call per step, its noise seeded by (seed, block)). `progress`: a bar on stderr counting finished episodes, with
    the running mean return and normalised score. The runtime computes on its own device (see `runtime_for`);
    `device` moves its diffusion model there first (`runtime.to`; a scorer's critic left elsewhere gets its inputs
    moved to it and gives its scores back: modules.scores)."""
    spec = _spec(env_id)
    if device is not None:
        from modules.device import resolve_device

        dev = resolve_device(device)
        to = getattr(runtime, "to", None)
        if not callable(to):
            raise MdhubError(f"this policy runtime ({type(runtime).__name__}) cannot be moved to {dev}; build it "
                             "there (runtime_for(..., device=...))")
        to(dev)
    from tqdm.auto import tqdm

    done: list[float] = []
    bar = tqdm(total=episodes, desc=desc, unit="episode", disable=not progress, leave=leave, dynamic_ncols=True)

    def on_episode(_: int, ret: float) -> None:
        done.append(ret)
        mean = float(np.mean(done))
        score = float(np.mean(normalized_score(spec, np.asarray(done))))
        bar.set_postfix({"mean return": f"{mean:.1f}", "score": f"{score:.1f}"}, refresh=False)
        bar.update(1)

    parts = []
    try:
        for first, count in blocks(episodes):
            parts.append(run_block(runtime, env_id, first, count, seed, max_steps, on_episode))
    finally:
        bar.close()
    return summarise(env_id, np.concatenate([r for r, _ in parts]), np.concatenate([n for _, n in parts]))


# --- many policies in a process pool ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    """What the parent knows of a policy before rolling it out (from cards only)."""

    ref: str
    card: ModuleCard
    cfg: SamplingConfig
    guidance: str | None

    @property
    def env_id(self) -> str:
        env_id = self.card.interface.env_id
        assert env_id  # checked by _plan
        return env_id


def _plan(ref: str, store: Store) -> _Plan:
    card = store.card(ref)
    if card.kind == "guidance":
        raise MdhubError(f"'{card.id}' is a guidance module: evaluate a diffusion module or a policy that uses it")
    if not card.interface.env_id:
        raise MdhubError(f"'{card.id}' records no environment (env_id) to evaluate in")
    _spec(card.interface.env_id)
    if card.kind == "diffusion":
        cfg, g_id = default_sampling_plan(card, store)
        return _Plan(ref, card, cfg, g_id)
    spec = card.policy
    assert spec is not None  # a policy card has its policy section (the card validates it)
    cfg = SamplingConfig.from_card(spec.mode, dict(spec.params), f"policy '{card.id}'")
    return _Plan(ref, card, cfg, spec.infer_guidance.id if spec.infer_guidance else None)


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_WORKER: dict[str, Any] = {"runtimes": {}}


def _worker_init(home: str, threads: int) -> None:
    """A pool worker: the parent's store, `threads` torch threads (cores / workers)."""
    os.environ["MDHUB_HOME"] = home
    import torch

    torch.set_num_threads(max(1, threads))
    _WORKER["home"] = home


def _worker_block(ref: str, device: str, first: int, count: int, seed: int,
                  max_steps: int | None, compile: bool = False) -> tuple[str, Any, Any]:
    """Roll out one block of one policy in a worker; the policy is loaded from the store once per worker.
    -> ("ok", returns, lengths) or ("error", message, None): user-facing errors travel as one line."""
    try:
        key = f"{ref}\0{device}\0{compile}"
        runtimes: dict[str, tuple[Any, str]] = _WORKER["runtimes"]
        if key not in runtimes:
            card, runtime, _, _ = runtime_for(ref, Store(Path(_WORKER["home"])), device, compile)
            runtimes[key] = (runtime, card.interface.env_id)
        runtime, env_id = runtimes[key]
        returns, lengths = run_block(runtime, env_id, first, count, seed, max_steps)
        return "ok", returns, lengths
    except _USER_ERRORS as e:
        return "error", str(e) or type(e).__name__, None
    except OSError as e:
        paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
        return "error", f"{paths}: {e.strerror or e}" if paths else str(e), None


def _main_importable() -> bool:
    """Whether pool workers can import this program's __main__ as spawn and forkserver do (not so for a script read
    from stdin)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None):
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.exists(path)


def _pool_context() -> Any:
    """forkserver where the platform has it (workers fork from a clean server: cheap starts, no inherited threads or
    CUDA state), else spawn."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # the server imports these once; every worker forks from it with them imported (no simulator among them)
        ctx.set_forkserver_preload(["hub.evaluation"])
    return ctx


def evaluate_many(refs: Sequence[str], episodes: int = 10, seed: int = 0, workers: int | None = None,
                  device: str | torch.device = "cpu", store: Store | None = None, write: bool = True,
                  max_steps: int | None = None, progress: bool = False,
                  compile: bool = False) -> list[dict[str, Any]]:
    """Evaluate many stored policies (diffusion modules or policy cards, by id) over `episodes` episodes each, their
    blocks of episodes spread over `workers` processes (default: this machine's cores; 1: in this process). Each
    worker loads the modules itself from the store, onto `device`. The results, in the order of `refs`, are those
    `evaluate` gives each one (the same numbers, whatever `workers`), with `id`; with `write`, each is recorded on its
    card. `progress`: one bar on stderr counting episodes of all policies. `compile`: each worker compiles its
    policies' action selection once (the same policy, but float rounding differs from eager, so episodes diverge
    and the numbers differ from an eager evaluation's as two seeds' would; ~20 s to compile on this CPU, then about
    1.2x the eager speed on hopper with 32 candidates: pays on long evaluations only)."""
    from modules.device import resolve_device

    if episodes < 1:
        raise MdhubError(f"episodes must be at least 1 (got {episodes})")
    if workers is not None and workers < 1:
        raise MdhubError(f"workers must be at least 1 (got {workers})")
    dev = resolve_device(device)  # one line where there is no such device, before any work
    device_text = str(dev)
    store = store or Store()
    plans = [_plan(r, store) for r in refs]
    tasks = [(i, first, count) for i, _ in enumerate(plans) for first, count in blocks(episodes)]
    n_workers = min(workers or default_workers(), len(tasks))
    if n_workers > 1 and not _main_importable():
        print("mdhub: evaluating in this process: worker processes cannot import this program's __main__ "
              f"({getattr(sys.modules.get('__main__'), '__file__', None)})", file=sys.stderr)
        n_workers = 1
    parts: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=episodes * len(plans), desc=f"eval {len(plans)} polic{'y' if len(plans) == 1 else 'ies'}",
               unit="episode", disable=not progress, dynamic_ncols=True)
    left = {i: len(blocks(episodes)) for i in range(len(plans))}

    def finished(i: int, first: int, count: int, returns: np.ndarray, lengths: np.ndarray) -> None:
        parts[(i, first)] = (returns, lengths)
        left[i] -= 1
        bar.set_postfix({"policies done": f"{sum(1 for v in left.values() if v == 0)}/{len(plans)}"}, refresh=False)
        bar.update(count)

    try:
        if n_workers <= 1:
            runtimes: dict[str, Any] = {}
            for i, first, count in tasks:
                ref = plans[i].ref
                if ref not in runtimes:
                    runtimes[ref] = runtime_for(ref, store, dev, compile)[1]
                finished(i, first, count, *run_block(runtimes[ref], plans[i].env_id, first, count, seed, max_steps))
        else:
            threads = max(1, default_workers() // n_workers)
            pool = ProcessPoolExecutor(n_workers, mp_context=_pool_context(), initializer=_worker_init,
                                       initargs=(str(store.root), threads))
            clean = False
            try:
                futures: dict[Future[tuple[str, Any, Any]], tuple[int, int, int]] = {
                    pool.submit(_worker_block, plans[i].ref, device_text, first, count, seed, max_steps, compile):
                        (i, first, count) for i, first, count in tasks}
                for fut in as_completed(futures):
                    i, first, count = futures[fut]
                    try:
                        status, a, b = fut.result()
                    except BrokenProcessPool as e:
                        raise MdhubError(f"an evaluation worker process died ({e}); rerun with workers=1 "
                                         "(CLI: --workers 1) to see why") from None
                    if status != "ok":
                        raise MdhubError(f"evaluating '{plans[i].ref}': {a}")
                    finished(i, first, count, a, b)
                clean = True
            finally:  # an error or Ctrl-C: pending blocks are dropped, not waited for
                pool.shutdown(wait=clean, cancel_futures=not clean)
    finally:
        bar.close()
    results = []
    for i, plan in enumerate(plans):
        chunks = [parts[(i, first)] for first, _ in blocks(episodes)]
        result = summarise(plan.env_id, np.concatenate([r for r, _ in chunks]), np.concatenate([n for _, n in chunks]))
        results.append({"id": plan.card.id,
                        **_finish(plan.card, result, plan.cfg, plan.guidance, seed, max_steps, store, write)})
    return results


def _finish(card: ModuleCard, result: dict[str, float], cfg: SamplingConfig, guidance: str | None, seed: int,
            max_steps: int | None, store: Store, write: bool) -> dict[str, Any]:
    env_id = card.interface.env_id
    assert env_id
    record = eval_record(result, env_id, cfg, guidance, seed, max_steps)
    written = write and store.contains(card.id)
    if written:  # merged into the card's evaluations under the store's lock
        store.update_card(card.id, evaluations=[record])
    return {**result, "seed": seed, "env_id": record.env_id, "sampling": record.sampling(),
            "mode": record.mode, "settings": dict(record.settings), "guidance": guidance, "written": written}


def evaluate(ref: str | StoredModule | CombinedPolicy, episodes: int = 10, seed: int = 0, store: Store | None = None,
             write: bool = True, max_steps: int | None = None, progress: bool = False,
             device: str | torch.device | None = None, workers: int = 1, compile: bool = False) -> dict[str, Any]:
    """Evaluate in the module's own task; with `write`, add the result to its card's `evaluations` (labelled; an
    evaluation over fewer episodes never replaces another). Returns the result: id, return and normalised score
    (mean, std), episodes, env_steps, seed, env_id, sampling (mode and settings, e.g.
    `resample(n_candidates=50, rule=argmax)`), mode, settings, guidance, written. `progress`: episodes done and the
    running mean on stderr. `device` ("cpu", "auto", "cuda[:N]", "mps"; None: cpu for what is loaded here, a policy
    in memory where it is): where the policy computes. `workers` > 1 (a stored module given by id): its blocks of
    episodes run in that many processes (`evaluate_many`; the same numbers). `compile`: the action selection
    compiled (`GuidedPolicy.compile`; see `evaluate_many`: not the same episodes as an eager evaluation)."""
    if episodes < 1:
        raise MdhubError(f"episodes must be at least 1 (got {episodes})")
    store = store or Store()
    if isinstance(ref, str) and workers > 1:
        return evaluate_many([ref], episodes, seed, workers=workers, device=device or "cpu", store=store,
                             write=write, max_steps=max_steps, progress=progress, compile=compile)[0]
    card, runtime, cfg, guidance = runtime_for(ref, store, device, compile)
    if not card.interface.env_id:
        raise MdhubError(f"'{card.id}' records no environment (env_id) to evaluate in")
    result = run_episodes(runtime, card.interface.env_id, episodes, seed, max_steps, progress=progress,
                          desc=f"eval {card.id}")
    return _finish(card, result, cfg, guidance, seed, max_steps, store, write)


def curve_evaluator(episodes: int = 3, n_candidates: int = 50, progress: bool = False,
                    device: str | torch.device | None = None) -> EvalFnFactory:
    """eval_fn factory for learning curves (hub.training): the EMA model, resampled by the frozen guidance or the
    run's own critic when there is one, over a few episodes of the dataset's task. `progress`: a transient bar of
    the curve point's episodes (the training loop prints each point's result). `device`: where curve points are
    computed (None: where the model trains; another device gets a copy of the model and critic for the point).
    A point's noise is seeded (seed 1000), so evaluating never disturbs the training's random stream."""

    def factory(ds: OfflineDataset, g: StoredModule | None) -> EvalFn | None:
        env_id = ds.metadata.get("gym_id")
        if not env_id:
            return None

        def eval_fn(critic: Any, model: Any) -> dict[str, float]:
            scorer_net = g.net if g is not None else critic
            model, scorer_net = _on_device(device, model, scorer_net)
            if scorer_net is None:
                rt = GuidedPolicy(model)
            else:
                rt = GuidedPolicy(model, n_candidates=n_candidates, scorer=q_score(scorer_net, ds.act_dim))
            r = run_episodes(rt, env_id, episodes, seed=1000, progress=progress, desc="curve point", leave=False)
            return {"normalized_score": r["normalized_score"], "return_mean": r["return_mean"]}

        return eval_fn

    return factory


def _on_device(device: str | torch.device | None, *nets: Any) -> tuple[Any, ...]:
    """The nets on `device`: themselves when they are there already (or device is None), else copies."""
    if device is None:
        return nets
    import copy

    from modules.device import resolve_device
    from modules.policy import module_device

    dev = resolve_device(device)
    return tuple(n if n is None or module_device(n) == dev else copy.deepcopy(n).to(dev) for n in nets)


# --- a run's checkpoints: the learning curve evaluated after training ------------------------------------------------

CURVE_FIELDS = ("step", "id", "return_mean", "return_std", "normalized_score", "normalized_score_std", "episodes",
                "env_steps", "seed")
_STEP_SUFFIX = re.compile(r"-step(\d+)$")


def _step_of(card: ModuleCard) -> int | None:
    if card.origin.steps is not None:
        return int(card.origin.steps)
    m = _STEP_SUFFIX.search(card.id)
    return int(m.group(1)) if m else None


def run_checkpoints(module_id: str, store: Store | None = None) -> list[tuple[int | None, ModuleCard]]:
    """The modules of run `module_id` in the store: its checkpoint modules (cards with `origin.checkpoint_of` equal
    to the id) and the final module itself when stored, as (step, card), by step (unknown steps last)."""
    store = store or Store()
    found: list[tuple[int | None, ModuleCard]] = []
    for e in store.entries():
        try:
            card = store.card(e.id)
        except _USER_ERRORS + (OSError,):  # a damaged module is no checkpoint we can evaluate; `mdhub show` says why
            continue
        if card.id == module_id or card.origin.checkpoint_of == module_id:
            found.append((_step_of(card), card))
    return sorted(found, key=lambda sc: (sc[0] is None, sc[0] or 0, sc[1].id != module_id, sc[1].id))


def _trained_under(guidance_id: str, store: Store, limit: int = 3) -> list[str]:
    """Ids of stored diffusion modules (not checkpoints) trained with guidance `guidance_id`."""
    out = []
    for e in store.entries("diffusion"):
        try:
            card = store.card(e.id)
        except _USER_ERRORS + (OSError,):
            continue
        tg = card.origin.trained_with_guidance
        if tg is not None and tg.id == guidance_id and card.origin.checkpoint_of is None:
            out.append(card.id)
    return sorted(out)[:limit]


def evaluate_run(module_id: str, episodes: int = 10, seed: int = 0, workers: int | None = None,
                 device: str | torch.device = "cpu", store: Store | None = None, write: bool = True,
                 max_steps: int | None = None, progress: bool = False, compile: bool = False) -> dict[str, Any]:
    """Evaluate every checkpoint of a training run (and its final module, when stored) in parallel
    (`evaluate_many`), record each evaluation on its module's card (`write`), and write the learning curve to the
    run folder (hub.paths.run_dir): eval_curve.csv, eval_curve.json (one point per module: step, id, return and
    normalised score mean and std, episodes, env steps, seed) and eval_curve.png. Diffusion modules are sampled as
    `evaluate` samples them (`default_sampling`: resampled by the guidance they were trained with, when stored).
    Returns {"id", "env_id", "episodes", "seed", "device", "points", "files"}."""
    from hub.paths import run_dir

    store = store or Store()
    found = run_checkpoints(module_id, store)
    checkpoints = [c for _, c in found if c.id != module_id]
    if not found:
        try:
            store.card(module_id)
        except NotFoundError as e:
            raise NotFoundError(str(e)) from None
    final = next((c for _, c in found if c.id == module_id), None)
    if final is not None and final.kind == "guidance":
        users = _trained_under(module_id, store)
        hint = f" ({', '.join(users)})" if users else ""
        raise MdhubError(f"'{module_id}' is a guidance module: a run of a guidance has no policy to roll out; "
                         f"evaluate the run of a diffusion module trained with it{hint} (a joint run: its actor)")
    if not checkpoints and final is not None and final.origin.checkpoint_of:
        raise MdhubError(f"'{module_id}' is a checkpoint (step {final.origin.steps}) of run "
                         f"'{final.origin.checkpoint_of}': evaluate the run with mdhub eval-run "
                         f"{final.origin.checkpoint_of}, or this module alone with mdhub eval {module_id}")
    if not checkpoints:
        raise MdhubError(f"run '{module_id}' has no checkpoint modules in the store (cards whose "
                         f"origin.checkpoint_of is '{module_id}'); train with --save-every N to store one every N "
                         f"steps, or evaluate the final module alone: mdhub eval {module_id}")
    envs = sorted({c.interface.env_id or "" for _, c in found})
    if len(envs) != 1 or not envs[0]:
        what = "different environments" if len(envs) > 1 else "no environment"
        raise MdhubError(f"run '{module_id}': its modules record {what} ({', '.join(e or 'none' for e in envs)}); "
                         "a learning curve needs one task")
    results = evaluate_many([c.id for _, c in found], episodes, seed, workers=workers, device=device, store=store,
                            write=write, max_steps=max_steps, progress=progress, compile=compile)
    points = []
    for (step, card), r in zip(found, results, strict=True):
        points.append({"step": step, "id": card.id, "final": card.id == module_id,
                       **{k: r[k] for k in CURVE_FIELDS if k not in ("step", "id")},
                       "sampling": r["sampling"], "guidance": r["guidance"], "written": r["written"]})
    from modules.device import resolve_device

    folder = run_dir(module_id)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"id": module_id, "env_id": envs[0], "episodes": episodes, "seed": seed, "max_steps": max_steps,
           "device": str(resolve_device(device)), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "points": points}
    files = {"csv": folder / "eval_curve.csv", "json": folder / "eval_curve.json", "png": folder / "eval_curve.png"}
    with open(files["csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CURVE_FIELDS)
        for p in points:
            writer.writerow(["" if p[k] is None else p[k] for k in CURVE_FIELDS])
    files["json"].write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    plot_eval_curve(points, files["png"], f"{module_id}: {episodes} episodes per checkpoint, seed {seed}")
    return {**{k: v for k, v in doc.items() if k != "date"}, "run_dir": str(folder),
            "files": {k: str(v) for k, v in files.items()}}


def plot_eval_curve(points: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Normalised score (left) and return (right) of a run's checkpoints vs gradient steps, mean +- std over the
    episodes. Drawn on matplotlib's object API (hub.plots: never pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = [p for p in points if p["step"] is not None]
    fig = Figure(figsize=(9, 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "normalized_score", "normalised score"), (axes[1], "return", "return")):
        mean_key = key if key == "normalized_score" else "return_mean"
        std_key = "normalized_score_std" if key == "normalized_score" else "return_std"
        xs = np.asarray([p["step"] for p in pts], dtype=float)
        ys = np.asarray([p[mean_key] for p in pts], dtype=float)
        sd = np.asarray([p[std_key] for p in pts], dtype=float)
        ax.plot(xs, ys, marker="o")
        if len(xs):
            ax.fill_between(xs, ys - sd, ys + sd, alpha=0.2)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel(f"{label} (mean +- std)")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
