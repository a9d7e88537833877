"""The DQL critic: twin Q (3 x 256 Mish), no V. Trained jointly with a DQL actor, or exported as a guidance."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from modules.guidance.iql import CriticConfig, IQLCritic


class DQLCriticConfig(CriticConfig):
    layers: int = Field(default=3, ge=1, le=64)
    activation: Literal["relu", "mish", "swish", "tanh"] = "mish"
    with_v: bool = False


class DQLCritic(IQLCritic):
    """Q-only critic (provides q). A V can be fitted to it afterwards by expectile regression."""

    Config = DQLCriticConfig
