"""Evaluation: run a diffusion module or a combined policy in its pybullet task; write the result to its card."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from cards import EvalRecord
from hub.combine import CombinedPolicy, build_runtime, load_policy
from hub.errors import MdhubError
from hub.modes import DEFAULT_PAIRING, SamplingConfig
from hub.store import Store, StoredModule
from modules.envs import UnknownEnvError, env_spec, normalized_score, rollout
from modules.policy import GuidedPolicy
from modules.scores import q_score

if TYPE_CHECKING:
    from hub.training import EvalFnFactory
    from modules.data.dataset import OfflineDataset
    from modules.train.loop import EvalFn

DEFAULT_SAMPLING = {  # the references' action selection, by algorithm
    # Diffusion-QL draws 50 candidates and samples softmax(Q) over its raw target-critic Q: with Q in the hundreds,
    # that is the argmax; a softmax over standardised Q at temperature 1 would be nearly uniform among 50
    "DQL": SamplingConfig("resample", n_candidates=50, rule="argmax"),
    "IDQL": SamplingConfig("resample", n_candidates=64, rule="argmax"),
    # label-trained policies steer themselves: SWG-R (self guidance, best of N by predicted weight), CFG (good label)
    "SWG": SamplingConfig("self", rho=5.0, n_candidates=16, rule="argmax"),
    "CFG": SamplingConfig("cfg", w=1.2, n_candidates=1),
}


def default_sampling(d: StoredModule, store: Store) -> tuple[SamplingConfig, StoredModule | None]:
    """How a diffusion module on its own is sampled: resampled by the guidance it was trained with when that is in
    the store (with its algorithm's own selection rule), else one plain sample; models that steer themselves (SWG,
    CFG) use their own mode."""
    own = DEFAULT_SAMPLING.get(d.card.origin.algorithm)
    spec = d.card.diffusion
    assert spec is not None  # a diffusion card has its diffusion section (the card validates it)
    if own is not None and own.spec.steers_itself and own.mode in spec.sample_guidance:
        return own, None
    ref = d.card.origin.trained_with_guidance
    if ref is not None and store.contains(ref.id):
        g = store.load(ref.id)
        if not ref.sha256 or g.card.ref().sha256 == ref.sha256:
            cfg = own if own is not None and own.mode == DEFAULT_PAIRING else SamplingConfig(DEFAULT_PAIRING)
            return cfg, g
    return SamplingConfig("none"), None


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


def runtime_for(ref: str | StoredModule | CombinedPolicy, store: Store) -> tuple[Any, Any, SamplingConfig, str | None]:
    """(card, runtime, sampling config, id of the guidance that scores) for a diffusion module, a policy card, or a
    combined policy in memory."""
    if isinstance(ref, CombinedPolicy):
        p = ref
    else:
        m = ref if isinstance(ref, StoredModule) else store.load(ref)
        if m.card.kind == "diffusion":
            cfg, g = default_sampling(m, store)
            return m.card, build_runtime(cfg, m, g), cfg, g.id if g else None
        if m.card.kind != "policy":
            raise MdhubError(f"'{m.card.id}' is a guidance module: evaluate a diffusion module or a policy that "
                             "uses it")
        p = load_policy(m, store)
    spec = p.card.policy
    assert spec is not None  # a policy card has its policy section (the card validates it)
    cfg = SamplingConfig.from_card(spec.mode, dict(spec.params), f"policy '{p.card.id}'")
    g_id = spec.infer_guidance.id if spec.infer_guidance else None
    return p.card, p.runtime, cfg, g_id


def run_episodes(runtime: GuidedPolicy, env_id: str, episodes: int, seed: int = 0,
                 max_steps: int | None = None, progress: bool = False, desc: str = "eval",
                 leave: bool = True) -> dict[str, float]:
    """Roll out `episodes` episodes (all env copies in lockstep, one batched policy call per step). `progress`: a
    bar on stderr counting finished episodes, with the running mean return and normalised score."""
    try:
        spec = env_spec(env_id)
    except UnknownEnvError as err:
        raise MdhubError(str(err)) from None
    from tqdm.auto import tqdm

    done: list[float] = []
    bar = tqdm(total=episodes, desc=desc, unit="episode", disable=not progress, leave=leave, dynamic_ncols=True)

    def on_episode(_: int, ret: float) -> None:
        done.append(ret)
        mean = float(np.mean(done))
        score = float(np.mean(normalized_score(spec, np.asarray(done))))
        bar.set_postfix({"mean return": f"{mean:.1f}", "score": f"{score:.1f}"}, refresh=False)
        bar.update(1)

    # no inference_mode here: guides that need gradients (gradient, self) enable them inside the policy, which
    # chooses inference_mode itself for everything else
    try:
        returns = rollout(runtime.act, spec, episodes, seed=seed, max_steps=max_steps, on_episode=on_episode)
    finally:
        bar.close()
    scores = np.asarray(normalized_score(spec, returns))
    return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "normalized_score": float(scores.mean()), "normalized_score_std": float(scores.std()),
            "episodes": int(episodes)}


def evaluate(ref: str | StoredModule | CombinedPolicy, episodes: int = 10, seed: int = 0, store: Store | None = None,
             write: bool = True, max_steps: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Evaluate in the module's own task; with `write`, add the result to its card's `evaluations` (labelled; an
    evaluation over fewer episodes never replaces another). Returns the result: return and normalised score (mean,
    std), episodes, seed, env_id, sampling (mode and settings, e.g. `resample(n_candidates=50, rule=argmax)`),
    mode, settings, guidance, written. `progress`: episodes done and the running mean on stderr."""
    if episodes < 1:
        raise MdhubError(f"episodes must be at least 1 (got {episodes})")
    store = store or Store()
    card, runtime, cfg, guidance = runtime_for(ref, store)
    if not card.interface.env_id:
        raise MdhubError(f"'{card.id}' records no environment (env_id) to evaluate in")
    result: dict[str, Any] = dict(run_episodes(runtime, card.interface.env_id, episodes, seed, max_steps,
                                               progress=progress, desc=f"eval {card.id}"))
    record = eval_record(result, card.interface.env_id, cfg, guidance, seed, max_steps)
    written = write and store.contains(card.id)
    if written:  # merged into the card's evaluations under the store's lock
        store.update_card(card.id, evaluations=[record])
    return {**result, "seed": seed, "env_id": record.env_id, "sampling": record.sampling(), "mode": record.mode,
            "settings": dict(record.settings), "guidance": guidance, "written": written}


def curve_evaluator(episodes: int = 3, n_candidates: int = 50, progress: bool = False) -> EvalFnFactory:
    """eval_fn factory for learning curves (hub.training): the EMA model, resampled by the frozen guidance or the
    run's own critic when there is one, over a few episodes of the dataset's task. `progress`: a transient bar of
    the curve point's episodes (the training loop prints each point's result)."""

    def factory(ds: OfflineDataset, g: StoredModule | None) -> EvalFn | None:
        env_id = ds.metadata.get("gym_id")
        if not env_id:
            return None

        def eval_fn(critic: Any, model: Any) -> dict[str, float]:
            scorer_net = g.net if g is not None else critic
            if scorer_net is None:
                rt = GuidedPolicy(model)
            else:
                rt = GuidedPolicy(model, n_candidates=n_candidates, scorer=q_score(scorer_net, ds.act_dim))
            r = run_episodes(rt, env_id, episodes, seed=1000, progress=progress, desc="curve point", leave=False)
            return {"normalized_score": r["normalized_score"], "return_mean": r["return_mean"]}

        return eval_fn

    return factory
