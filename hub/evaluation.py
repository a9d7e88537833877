"""Evaluation: run a diffusion module or a combined policy in its pybullet task; write the result to its card."""
from __future__ import annotations

from typing import Any

import numpy as np

from hub.combine import MODE_BUILDERS, CombinedPolicy, SamplingConfig, load_policy
from hub.errors import MdhubError
from hub.store import Store, StoredModule
from modules.envs import UnknownEnvError, env_spec, normalized_score, rollout
from modules.policy import GuidedPolicy
from modules.scores import q_score

DEFAULT_SAMPLING = {  # the references' action selection, by algorithm
    "DQL": SamplingConfig(mode="resample", n_candidates=50, rule="softmax"),
    "IDQL": SamplingConfig(mode="resample", n_candidates=64, rule="argmax"),
    # label-trained policies steer themselves: SWG-R (self guidance, best of N by predicted weight), CFG (good label)
    "SWG": SamplingConfig(mode="self", rho=5.0, n_candidates=16, rule="argmax"),
    "CFG": SamplingConfig(mode="cfg", w=1.2, n_candidates=1),
}
SELF_STEERED = ("self", "cfg")  # modes that need no guidance at sampling


def default_runtime(d: StoredModule, store: Store) -> GuidedPolicy:
    """A diffusion module on its own: resampled by the guidance it was trained with when that is in the store
    (with the algorithm's own selection rule), else plain sampling. SWG and CFG use their own modes (no guidance)."""
    own = DEFAULT_SAMPLING.get(d.card.origin.algorithm)
    if own is not None and own.mode in SELF_STEERED and own.mode in d.card.diffusion.sample_guidance:
        return MODE_BUILDERS[own.mode](d, None, own, [])
    ref = d.card.origin.trained_with_guidance
    if ref is not None and store.contains(ref.id):
        g = store.load(ref.id)
        if not ref.sha256 or g.card.file("model.safetensors").sha256 == ref.sha256:
            cfg = DEFAULT_SAMPLING.get(d.card.origin.algorithm, SamplingConfig(mode="resample"))
            return MODE_BUILDERS["resample"](d, g, cfg, [])
    return MODE_BUILDERS["none"](d, None, SamplingConfig(mode="none"), [])


def runtime_for(ref: str | StoredModule | CombinedPolicy, store: Store) -> tuple[Any, Any]:
    """(card, act function) for a diffusion module, a policy card, or a combined policy in memory."""
    if isinstance(ref, CombinedPolicy):
        return ref.card, ref.runtime
    m = ref if isinstance(ref, StoredModule) else store.load(ref)
    if m.card.kind == "policy":
        p = load_policy(m, store)
        return p.card, p.runtime
    if m.card.kind == "diffusion":
        return m.card, default_runtime(m, store)
    raise MdhubError(f"'{m.card.id}' is a guidance module: evaluate a diffusion module or a policy that uses it")


def run_episodes(runtime: GuidedPolicy, env_id: str, episodes: int, seed: int = 0,
                 max_steps: int | None = None) -> dict[str, float]:
    """Roll out `episodes` episodes (all env copies in lockstep, one batched policy call per step)."""
    try:
        spec = env_spec(env_id)
    except UnknownEnvError as err:
        raise MdhubError(str(err)) from None
    # no inference_mode here: guides that need gradients (gradient, self) enable them inside the policy, which
    # chooses inference_mode itself for everything else
    returns = rollout(runtime.act, spec, episodes, seed=seed, max_steps=max_steps)
    scores = np.asarray(normalized_score(spec, returns))
    return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "normalized_score": float(scores.mean()), "normalized_score_std": float(scores.std()),
            "episodes": int(episodes)}


def evaluate(ref: str | StoredModule | CombinedPolicy, episodes: int = 10, seed: int = 0, store: Store | None = None,
             write: bool = True, max_steps: int | None = None) -> dict[str, float]:
    """Evaluate in the module's own task; with `write`, record the result in its card's metrics."""
    store = store or Store()
    card, runtime = runtime_for(ref, store)
    if not card.interface.env_id:
        raise MdhubError(f"'{card.id}' records no environment (env_id) to evaluate in")
    result = run_episodes(runtime, card.interface.env_id, episodes, seed, max_steps)
    if write and store.contains(card.id):  # merged key by key into the card's metrics, under the store's lock
        store.update_card(card.id, metrics={f"eval_{k}" if k != "normalized_score" else k: v
                                            for k, v in result.items()})
    return result


def curve_evaluator(episodes: int = 3, n_candidates: int = 50):
    """eval_fn factory for learning curves (hub.training): the EMA model, resampled by the frozen guidance or the
    run's own critic when there is one, over a few episodes of the dataset's task."""

    def factory(ds, g: StoredModule | None):
        env_id = ds.metadata.get("gym_id")
        if not env_id:
            return None

        def eval_fn(critic, model) -> dict[str, float]:
            scorer_net = g.net if g is not None else critic
            if scorer_net is None:
                rt = GuidedPolicy(model)
            else:
                rt = GuidedPolicy(model, n_candidates=n_candidates, scorer=q_score(scorer_net, ds.act_dim))
            r = run_episodes(rt, env_id, episodes, seed=1000)
            return {"normalized_score": r["normalized_score"], "return_mean": r["return_mean"]}

        return eval_fn

    return factory
