"""SWG's backbone: the IDQL LN-ResNet over z = (action, weight), x_dim = act_dim + 1, T = 15, posterior reverse step.

The weight dimension is clipped to [extra_low, extra_high] = [1e-4, 1] (actions to [-1, 1]) by the shared reverse step.
How the weights were made (weight function and its parameters) is recorded in the config, hence on the card.
The variant whose weight has its own head off the second residual block is `weight_head: true` in the config.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modules.diffusion.ln_resnet import IDQLDiffusion, LNResNetConfig


class SWGResNetConfig(LNResNetConfig):
    T: int = Field(default=15, ge=1, le=1000)
    reverse: Literal["posterior", "simplified"] = "posterior"
    # how the data were labelled (modules.labels.swg_weights); recorded, not used by the network
    weight_fn: Literal["expectile", "exp", "linex", "given"] = "expectile"
    weight_tau: float | None = Field(default=None, gt=0.0, lt=1.0, description="Expectile weight tau (None: the "
                                     "guidance card's expectile, else 0.7).")
    weight_beta: float = Field(default=3.0, gt=0.0, description="Inverse temperature of 'exp' / 'linex' weights.")

    @model_validator(mode="after")
    def _weight_dim(self) -> SWGResNetConfig:
        if self.x_dim is None:
            self.x_dim = self.act_dim + 1
        if self.x_dim != self.act_dim + 1:
            raise ValueError(f"SWG diffuses (action, weight): x_dim must be act_dim + 1 = {self.act_dim + 1}, "
                             f"got {self.x_dim}")
        if self.cond_dim:
            raise ValueError("SWG is not conditioned on a label: cond_dim must be 0")
        return self


class SWGDiffusion(IDQLDiffusion):
    """LN-ResNet over (action, weight): a shared output layer, or (weight_head) a weight head off block 2."""

    Config = SWGResNetConfig

