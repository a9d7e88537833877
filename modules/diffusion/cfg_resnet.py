"""CFG's backbone: the IDQL LN-ResNet conditioned on a guidance label (cond_dim > 0; zeros = unconditional).

Label encodings (modules.labels.cfg_labels), recorded in the config so sampling knows the "good" condition:
- "sign" (default, CFGRL): o = 1 if Q - V >= 0 else 0, one-hot [1 - o, o] (cond_dim 2); good = [0, 1].
- "sign-scalar": 2 o - 1 in {-1, +1} (cond_dim 1, so 0 stays free for "unconditional"); good = [+1].
- "value": [standardised Q, 1] (cond_dim 2; the second entry marks a present label); good = [good_value, 1].
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from modules.diffusion.ln_resnet import IDQLDiffusion, LNResNetConfig

COND_DIMS = {"sign": 2, "sign-scalar": 1, "value": 2}


class CFGResNetConfig(LNResNetConfig):
    cond_dim: int = Field(default=2, ge=1, le=2, description="Size of the label (set by `label`).")
    label: Literal["sign", "sign-scalar", "value"] = "sign"
    p_uncond: float = Field(default=0.2, ge=0.0, lt=1.0, description="Probability a label is dropped in training.")
    good_value: float = Field(default=1.5, description="The standardised value asked for at sampling ('value').")
    value_clip: float = Field(default=3.0, gt=0.0, description="Standardised values are clipped to +-value_clip.")

    @model_validator(mode="after")
    def _cond(self) -> CFGResNetConfig:
        want = COND_DIMS[self.label]
        if self.cond_dim != want:
            if "cond_dim" in self.model_fields_set:
                raise ValueError(f"label '{self.label}' needs cond_dim {want}, got {self.cond_dim}")
            self.cond_dim = want
        return self


def good_condition(label: str, good_value: float = 1.5) -> torch.Tensor:
    """The condition that asks for good actions. -> (cond_dim,)"""
    if label == "sign":
        return torch.tensor([0.0, 1.0])
    if label == "sign-scalar":
        return torch.tensor([1.0])
    if label == "value":
        return torch.tensor([float(good_value), 1.0])
    raise ValueError(f"unknown label '{label}'; known: {', '.join(COND_DIMS)}")


class CFGDiffusion(IDQLDiffusion):
    """LN-ResNet conditioned on a label; sampled with eps_u + w (eps_c - eps_u) (modules.sampling.CFGGuide)."""

    Config = CFGResNetConfig
    cfg: CFGResNetConfig

    def good_cond(self) -> torch.Tensor:
        """The "good" condition, on the model's device. -> (cond_dim,)"""
        return good_condition(self.cfg.label, self.cfg.good_value).to(self.sqrt_abar.device)
