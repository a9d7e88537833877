"""The demo: the hub's main job end to end, on an embedded default, in a few minutes on a CPU, with no network.

1. make a small dataset (halfcheetah's medium-replay: the shipped SAC run's replay buffer, 70k transitions);
2. train a guidance (IQL recipe) and a second one with another seed;
3. train a DQL backbone under the first guidance (guidance-first) and an IDQL backbone (behaviour cloning);
4. recombine them crosswise (each backbone with each guidance) and with double guidance; evaluate each;
5. register everything in the local hub and print the normalised scores, guided vs unguided side by side, and where
   each module lives.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from hub.combine import combine
from hub.store import Store
from hub.training import Budget, train_diffusion, train_guidance

if TYPE_CHECKING:
    from modules.data.dataset import OfflineDataset


class DemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # halfcheetah's medium-replay (the shipped SAC run's replay buffer: random, then ever better sampled actions): a
    # dataset whose actions differ in quality, so a young critic can tell them apart. On medium data (one policy's
    # actions) a critic trained for a few thousand steps is nearly blind to the action and resampling by it does
    # worse than no guidance (benchmarks/demo_seeds.py; README, Results).
    dataset: str = "halfcheetah-bullet-medium-replay"
    transitions: int = Field(default=70_000, ge=100, description="Rows of the dataset (medium-replay: the first "
                             "ones of the buffer; 70,000 is all of halfcheetah's).")
    guidance_steps: int = Field(default=3_000, ge=1)
    diffusion_steps: int = Field(default=3_000, ge=1)
    eta: float = Field(default=0.1, ge=0.0, description="DQL's Q-loss weight. The reference eta = 1 needs a critic "
                       "trained far longer than a CPU demo allows (it collapses here); see benchmarks/.")
    hidden: int = Field(default=128, ge=4)
    episodes: int = Field(default=5, ge=1)
    max_episode_steps: int | None = Field(default=None, ge=1)
    n_candidates: int = Field(default=32, ge=1)
    prefix: str = "demo"
    seed: int = 0


@dataclass
class DemoRow:
    policy: str  # "<backbone>-<native|double|unguided>"
    diffusion: str
    train_guidance: str
    infer_guidance: str
    mode: str
    return_mean: float
    return_std: float
    normalized_score: float
    path: str
    env_id: str = ""


def side_by_side(rows: list[DemoRow]) -> dict[str, dict[str, float]]:
    """{backbone: {"unguided" | "native" | "double": normalised score}} from the demo's rows."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        backbone, _, how = r.policy.rpartition("-")
        out.setdefault(backbone, {})[how] = r.normalized_score
    return out


def _dataset(cfg: DemoConfig, say: Callable[[str], None]) -> OfflineDataset:
    from hub.datasets import dataset_path, get_dataset

    if dataset_path(cfg.dataset).exists():
        say(f"dataset {cfg.dataset}: already in the store")
        return get_dataset(cfg.dataset)
    say(f"dataset {cfg.dataset}: making {cfg.transitions} transitions")
    return get_dataset(cfg.dataset, transitions=cfg.transitions, seed=cfg.seed, make_if_missing=True, progress=True)


def run_demo(cfg: DemoConfig | None = None, store: Store | None = None, say: Callable[[str], None] = print,
             progress: bool = True) -> list[DemoRow]:
    """Run the demo; returns one row per evaluated recombination (also stored as policy cards)."""
    cfg = cfg or DemoConfig()
    store = store or Store()
    t0 = time.perf_counter()
    ds = _dataset(cfg, say)
    data_score = (ds.metadata.get("normalized_scores") or {}).get("mean")
    say(f"  {len(ds.observations)} transitions; behaviour data normalised score {data_score:.1f}"
        if data_score is not None else f"  {len(ds.observations)} transitions")
    p = cfg.prefix
    budget = Budget(hidden=cfg.hidden)
    # the demo owns the ids under its prefix: a rerun replaces its own earlier modules
    say("training two guidance modules (IQL recipe, seeds 0 and 1)")
    g1 = train_guidance("iql", ds, steps=cfg.guidance_steps, seed=cfg.seed, module_id=f"{p}-iql-s0", store=store,
                        budget=budget, progress=progress, overwrite=True)[0]
    g2 = train_guidance("iql", ds, steps=cfg.guidance_steps, seed=cfg.seed + 1, module_id=f"{p}-iql-s1",
                        store=store, budget=budget, progress=progress, overwrite=True)[0]
    say(f"training a DQL backbone under the first guidance (guidance-first, eta {cfg.eta}) and an IDQL backbone (BC)")
    dql = train_diffusion("dql", ds, guidance=g1, steps=cfg.diffusion_steps, seed=cfg.seed, module_id=f"{p}-dql-gf",
                          store=store, budget=budget, progress=progress, recipe_overrides={"eta": cfg.eta},
                          overwrite=True)[0]
    idql = train_diffusion("idql", ds, steps=cfg.diffusion_steps, seed=cfg.seed, module_id=f"{p}-idql-bc",
                           store=store, budget=budget, progress=progress, overwrite=True)[0]
    plan = [
        ("dql-native", dql, g1, None, "resample"),
        ("dql-double", dql, g1, g2, "resample"),
        ("dql-unguided", dql, None, None, "none"),
        ("idql-native", idql, g1, None, "resample"),
        ("idql-double", idql, g1, g2, "resample"),
        ("idql-unguided", idql, None, None, "none"),
    ]
    rows: list[DemoRow] = []
    say(f"recombining and evaluating ({cfg.episodes} episodes each)")
    for name, d, g, g_infer, mode in plan:
        settings: dict[str, Any] = {"n_candidates": cfg.n_candidates} if mode == "resample" else {}
        pol = combine(g, d, mode=mode, infer_guidance=g_infer, module_id=f"{p}-{name}", store=store, save=False,
                      progress=progress, **settings)
        from hub.evaluation import eval_record, run_episodes
        from hub.modes import SamplingConfig

        r = run_episodes(pol.runtime, ds.metadata["gym_id"], cfg.episodes, seed=cfg.seed + 100,
                         max_steps=cfg.max_episode_steps)
        spec = pol.card.policy
        assert spec is not None  # a policy card has its policy section
        sampling = SamplingConfig.from_card(spec.mode, dict(spec.params), f"policy '{pol.card.id}'")
        scorer = spec.infer_guidance.id if spec.infer_guidance else None
        record = eval_record(r, ds.metadata["gym_id"], sampling, scorer, seed=cfg.seed + 100,
                             max_steps=cfg.max_episode_steps)
        pol.card = pol.card.model_copy(update={"evaluations": [record]})
        saved = pol.save(store=store, overwrite=True)
        rows.append(DemoRow(name, d.id, g.id if g else "-", spec.infer_guidance.id if spec.infer_guidance else "-",
                            mode, r["return_mean"], r["return_std"], r["normalized_score"], str(saved.path),
                            ds.metadata["gym_id"]))
        say(f"  {name:14} score {r['normalized_score']:7.1f}  (return {r['return_mean']:.0f} +- {r['return_std']:.0f})")
    say(f"demo done in {time.perf_counter() - t0:.0f} s; modules: {', '.join(m.id for m in (g1, g2, dql, idql))}")
    return rows
