"""Modes of the label-trained policies: `labels` (training), `self` (SWG) and `cfg` (CFG) at sampling.

- labels: the frozen guidance labels every dataset row once (modules.labels): SWG's weights (the model then learns
  (action, weight) jointly) or CFG's advantage labels (the model learns to condition on them).
- self (SWG): the model's own predicted weight steers the shared reverse chain (SelfWeightGuide(rho)); with
  n_candidates > 1 it is SWG-R: the candidate with the highest predicted weight is kept, or, when a guidance is
  given, the one the guidance's Q prefers.
- cfg (CFG): eps_u + w (eps_c - eps_u) with the "good" label as the condition (CFGGuide(w)); with a guidance and
  n_candidates > 1 the CFG samples are resampled by its Q as well.
All of them use the one reverse chain and the one candidate scorer: no loop of their own.
"""
from __future__ import annotations

from typing import Any, cast

from pydantic import Field

from hub.modes.base import CandidateSettings, Mode, NoSettings, TrainingContext
from hub.modes.critic import critic_scorer


class SelfSettings(CandidateSettings):
    rho: float = Field(default=1.0, ge=0.0, le=1e6, description="Self-guidance scale on the predicted weight.")


class CFGSettings(CandidateSettings):
    w: float = Field(default=1.2, ge=0.0, le=1e6, description="CFG weight: eps_u + w (eps_c - eps_u).")


def prepare_labels(ctx: TrainingContext) -> tuple[Any, Any]:
    """The TargetFn looks up labels by the batch's row indices; which labels is read from the backbone's config."""
    from hub.errors import MdhubError
    from modules import labels as L

    model, g, ds, recipe = ctx.model, ctx.guidance, ctx.dataset, ctx.recipe
    cfg = model.cfg
    if recipe.algorithm == "SWG" or model.x_dim > cfg.act_dim:
        w = L.label_swg(g.net, ds.observations, ds.actions, fn=getattr(cfg, "weight_fn", "expectile"),
                        tau=getattr(cfg, "weight_tau", None) or 0.7, beta=getattr(cfg, "weight_beta", 3.0))
        return None, L.swg_targets(w)
    if cfg.cond_dim:
        kind = cast("L.LabelKind", getattr(cfg, "label", "sign"))  # the backbone's config validated it
        lab = L.label_cfg(g.net, ds.observations, ds.actions, kind=kind, clip=getattr(cfg, "value_clip", 3.0))
        if lab.shape[1] != cfg.cond_dim:
            raise MdhubError(f"label '{kind}' has size {lab.shape[1]} but the backbone's cond_dim is {cfg.cond_dim}")
        return None, L.cfg_targets(lab, p_uncond=getattr(cfg, "p_uncond", 0.2))
    raise MdhubError(f"backbone '{recipe.backbone}' has neither a weight dimension nor a condition: "
                     "it cannot learn from labels")


def build_self(d: Any, g: Any, settings: SelfSettings) -> Any:
    from hub.errors import CompatibilityError
    from modules.policy import GuidedPolicy
    from modules.sampling import SelfWeightGuide
    from modules.scores import weight_score

    net = d.net
    if net.x_dim <= net.cfg.act_dim:
        raise CompatibilityError(f"mode 'self' needs a model over (action, weight) (SWG); '{d.id}' diffuses "
                                 "actions only")
    guide = SelfWeightGuide(rho=settings.rho, w_min=float(net.cfg.extra_low))
    scorer, rule = None, settings.rule
    if settings.n_candidates > 1:
        if g is not None:
            scorer = critic_scorer(g, d.card.interface.act_dim, settings.rule)
        else:  # SWG-R by predicted weight (all weights are positive: 'expectile' would be uniform; take the best)
            scorer, rule = weight_score, ("softmax" if settings.rule == "softmax" else "argmax")
    return GuidedPolicy(net, n_candidates=settings.n_candidates, guide=guide, scorer=scorer, rule=rule,
                        temperature=settings.temperature, select_temperature=settings.select_temperature,
                        expectile=settings.expectile)


def good_condition(net: Any) -> Any:
    """The condition that asks for good actions: the backbone's own (CFGDiffusion.good_cond), else the last
    one-hot class. -> (cond_dim,)"""
    import torch

    if hasattr(net, "good_cond"):
        return net.good_cond()
    c = torch.zeros(net.cfg.cond_dim)
    c[-1] = 1.0
    return c


def build_cfg(d: Any, g: Any, settings: CFGSettings) -> Any:
    from hub.errors import CompatibilityError
    from modules.policy import GuidedPolicy
    from modules.sampling import CFGGuide

    net = d.net
    if not net.cfg.cond_dim:
        raise CompatibilityError(f"mode 'cfg' needs a label-conditioned model (CFG); '{d.id}' has no condition")
    good = good_condition(net)

    def cond_fn(obs: Any) -> Any:
        return good.to(obs.device, obs.dtype).expand(obs.shape[0], -1)

    scorer, n = None, 1
    if g is not None and settings.n_candidates > 1:
        scorer = critic_scorer(g, d.card.interface.act_dim, settings.rule)
        n = settings.n_candidates
    return GuidedPolicy(net, n_candidates=n, guide=CFGGuide(settings.w), scorer=scorer, rule=settings.rule,
                        temperature=settings.temperature, select_temperature=settings.select_temperature,
                        expectile=settings.expectile, cond_fn=cond_fn)


MODES = [
    Mode(name="labels", phases=("training",), needs=("q", "v"), params=NoSettings, recipe_update="labels",
         prepare=prepare_labels,
         description="The guidance labels the data once: SWG weights or CFG advantage labels."),
    Mode(name="self", phases=("sampling",), steers_itself=True, params=SelfSettings, build=build_self,
         description="SWG: the model's own predicted weight steers it; n_candidates > 1 is SWG-R."),
    Mode(name="cfg", phases=("sampling",), steers_itself=True, params=CFGSettings, build=build_cfg,
         description="Classifier-free guidance toward the 'good' label: eps_u + w (eps_c - eps_u)."),
]
