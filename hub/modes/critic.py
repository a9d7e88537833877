"""Modes where a critic's Q steers: `q_loss` (training, DQL), `resample` and `gradient` (sampling).

- q_loss: BC + eta * (-Q(s, a_hat) / mean |Q|), the gradient through the reverse chain (the loop's DQL update).
- resample: N candidates from the reverse chain, one kept by the shared scorer: argmax / softmax over Q standardised
  by the guidance card's statistics, or IDQL's expectile weights of A = Q - V.
- gradient: classifier guidance, rho * grad_a Q (standardised) added at each reverse step.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.modes.base import CandidateSettings, Mode, Need, NoiseSettings, NoSettings, TrainingContext


class GradientSettings(NoiseSettings):
    rho: float = Field(default=1.0, ge=0.0, le=1e6, description="Guidance scale: rho * grad_a Q (standardised).")


def standardised_q(g: Any, act_dim: int) -> Any:
    """Q of the guidance standardised by its card's value statistics when it has them (scale-free selection and
    gradient scales); argmax is unaffected, softmax and rho become independent of the reward scale."""
    from modules.scores import q_score

    vs = g.card.guidance.value_stats
    mean, std = (vs.mean, vs.std) if vs is not None and vs.std > 0 else (0.0, 1.0)
    return q_score(g.net, act_dim, mean, std)


def critic_scorer(g: Any, act_dim: int, rule: str) -> Any:
    """The candidate scorer a guidance gives every mode: A = Q - V for the expectile rule, else standardised Q."""
    from hub.errors import CompatibilityError
    from modules.scores import advantage_score

    if rule == "expectile":
        if "v" not in g.card.guidance.provides:
            raise CompatibilityError(f"rule 'expectile' needs A = Q - V and '{g.id}' provides q only")
        return advantage_score(g.net, act_dim)
    return standardised_q(g, act_dim)


def build_resample(d: Any, g: Any, settings: CandidateSettings) -> Any:
    from modules.policy import GuidedPolicy

    scorer = critic_scorer(g, d.card.interface.act_dim, settings.rule)
    return GuidedPolicy(d.net, n_candidates=settings.n_candidates, scorer=scorer, rule=settings.rule,
                        temperature=settings.temperature, select_temperature=settings.select_temperature,
                        expectile=settings.expectile)


def build_gradient(d: Any, g: Any, settings: GradientSettings) -> Any:
    from modules.policy import GuidedPolicy
    from modules.sampling import GradientGuide

    act_dim = d.card.interface.act_dim
    guide = GradientGuide(standardised_q(g, act_dim), rho=settings.rho, act_dim=act_dim)
    return GuidedPolicy(d.net, n_candidates=1, guide=guide, temperature=settings.temperature)


def prepare_q_loss(ctx: TrainingContext) -> tuple[Any, Any]:
    from modules.train.updates import default_targets

    return ctx.guidance.net, default_targets


def resample_needs(settings: Any) -> tuple[Need, ...]:
    return ("q", "v") if getattr(settings, "rule", None) == "expectile" else ("q",)


MODES = [
    Mode(name="q_loss", phases=("training",), needs=("q",), params=NoSettings, recipe_update="q_loss",
         prepare=prepare_q_loss,
         description="BC + eta * (-Q(s, a_hat) / mean |Q|), gradient through the reverse chain (DQL)."),
    Mode(name="resample", phases=("sampling",), needs=("q",), needs_for=resample_needs, params=CandidateSettings,
         scale_sensitive="softmax selection", build=build_resample,
         description="N candidates, one kept by argmax / softmax over standardised Q, or IDQL's expectile rule."),
    Mode(name="gradient", phases=("sampling",), needs=("q",), params=GradientSettings,
         scale_sensitive="the gradient scale rho", build=build_gradient,
         description="rho * grad_a Q added at each reverse step (classifier guidance)."),
]
