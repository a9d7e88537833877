"""Training recipes as data. One loop (modules.train.loop) runs them all.

A recipe says which updates run each step (a TD update of a critic, a diffusion update), which architectures
(registry ids) the trained parts use, whether a frozen guidance is required, and the hyperparameters.
Defaults follow the references (docs/algorithms.md) except where CPU budgets need smaller settings (steps).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    algorithm: str
    recipe: Literal["policy-free", "joint", "guidance-first", "behaviour-only", "labels"]
    critic_update: Literal["none", "iql", "dql"] = "none"
    critic_arch: str | None = None
    critic_config: dict[str, Any] = Field(default_factory=dict)
    diffusion_update: Literal["none", "bc", "q_loss", "labels"] = "none"
    backbone: str | None = None
    backbone_config: dict[str, Any] = Field(default_factory=dict)
    needs_guidance: bool = False
    reward_transform: Literal["identity", "return-range"] = "return-range"
    obs_normalize: bool = True
    # hyperparameters
    steps: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = 3e-4
    critic_lr: float = 3e-4
    discount: float = 0.99
    expectile: float = 0.7
    tau: float = 0.005
    eta: float = 1.0
    guidance_start: int = Field(default=0, ge=0)  # q_loss: the guidance term is switched on after this many steps
    grad_clip: float | None = None
    ema_decay: float = 0.995
    ema_every: int = 5
    ema_start: int = 1000
    cosine_lr: bool = False
    weight_decay: float = 0.0

    def with_overrides(self, **changes: Any) -> Recipe:
        return self.model_validate({**self.model_dump(), **{k: v for k, v in changes.items() if v is not None}})


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(name="iql", algorithm="IQL", recipe="policy-free", critic_update="iql", critic_arch="iql"),
        Recipe(name="idql", algorithm="IDQL", recipe="policy-free", critic_update="iql", critic_arch="idql"),
        Recipe(name="dql-joint", algorithm="DQL", recipe="joint", critic_update="dql", critic_arch="dql",
               diffusion_update="q_loss", backbone="dql_mlp", grad_clip=9.0),
        Recipe(name="dql-guidance-first", algorithm="DQL", recipe="guidance-first", diffusion_update="q_loss",
               backbone="dql_mlp", needs_guidance=True, grad_clip=9.0),
        Recipe(name="idql-bc", algorithm="IDQL", recipe="behaviour-only", diffusion_update="bc",
               backbone="idql_resnet", ema_decay=0.999, ema_every=1, ema_start=1000, cosine_lr=True,
               weight_decay=1e-4, batch_size=512),
        Recipe(name="dql-bc", algorithm="DQL", recipe="behaviour-only", diffusion_update="bc", backbone="dql_mlp"),
        # labels: a frozen guidance labels the data once (modules.labels), the diffusion model learns with the labels
        Recipe(name="swg", algorithm="SWG", recipe="labels", diffusion_update="labels", backbone="swg_resnet",
               needs_guidance=True, batch_size=1024, lr=3e-4),
        Recipe(name="cfg", algorithm="CFG", recipe="labels", diffusion_update="labels", backbone="cfg_resnet",
               needs_guidance=True, batch_size=512, lr=3e-4),
    ]
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe '{name}'; known: {', '.join(RECIPES)}") from None
