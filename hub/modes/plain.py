"""The plain mode `none`: no guidance. Training: behaviour cloning. Sampling: one draw of the reverse chain."""
from __future__ import annotations

from typing import Any

from hub.modes.base import Mode, NoiseSettings, TrainingContext


def build_none(d: Any, g: Any, settings: NoiseSettings) -> Any:
    from modules.policy import GuidedPolicy

    return GuidedPolicy(d.net, n_candidates=1, temperature=settings.temperature)


def prepare_none(ctx: TrainingContext) -> tuple[Any, Any]:
    from modules.train.updates import default_targets

    return None, default_targets


MODES = [
    Mode(name="none", phases=("training", "sampling"), params=NoiseSettings, recipe_update="bc",
         build=build_none, prepare=prepare_none,
         description="No guidance: behaviour cloning in training, one plain sample at inference."),
]
