"""What a guidance mode is: one declaration (name, phases, needs, settings, scale sensitivity) plus its wiring.

This file and every mode file import no torch at module level: cards, the compatibility layer and the CLI read the
declarations without loading any network code. A mode's `build` (sampling) or `prepare` (training) imports what it
needs when it runs.

    Mode(name="resample", phases=("sampling",), needs=("q",), params=ResampleParams, build=build_resample)

A third-party package adds a mode through the `mdhub.modes` entry-point group: the entry point names a `Mode` (or a
list of them). See docs/design.md, "Guidance modes".
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Phase = Literal["training", "sampling"]
Need = Literal["q", "v"]
Rule = Literal["argmax", "softmax", "expectile"]


class NoSettings(BaseModel):
    """A mode without settings."""

    model_config = ConfigDict(extra="forbid")


class NoiseSettings(BaseModel):
    """Every sampling mode: the scale of the noise the reverse chain injects."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(default=1.0, ge=0.0, le=100.0, description="Sampling noise scale (0: deterministic).")


class CandidateSettings(NoiseSettings):
    """Modes that draw several candidates per state and keep one (the shared candidate scorer)."""

    n_candidates: int = Field(default=50, ge=1, le=4096, description="Candidates drawn per state.")
    rule: Rule = Field(default="argmax", description="How one candidate is kept: argmax | softmax | expectile.")
    select_temperature: float = Field(default=1.0, gt=0.0, le=1e6,
                                      description="Softmax temperature over standardised Q (rule softmax).")
    expectile: float = Field(default=0.7, gt=0.0, lt=1.0, description="Expectile of the A = Q - V weights "
                             "(rule expectile).")


@dataclass(frozen=True)
class TrainingContext:
    """What a training mode sees when it wires a run: the recipe, the freshly built backbone, the frozen guidance
    (a StoredModule, or None), the dataset, the store and whether to show progress."""

    recipe: Any
    model: Any
    guidance: Any
    dataset: Any
    store: Any
    progress: bool = True


@dataclass(frozen=True)
class Mode:
    """One guidance mode, declared once.

    name: the id cards, registry.yaml and the CLI use.
    phases: when it applies: training (how the guidance shapes the diffusion model's loss) and/or sampling.
    needs: what it needs from a guidance (q: Q(s, a), v: V(s)); () when it uses none.
    needs_for: needs that depend on the settings (e.g. the expectile rule needs V); default: `needs`.
    scale_sensitive: why the scale of Q matters, when it does (Q is then standardised by the card's statistics).
    steers_itself: samples without a guidance (the model's own weight or condition steers it).
    params: the pydantic model of its settings (defaults and validation); stored on a policy card.
    backbones: architectures it works with besides those whose registry entry lists it ("*": every backbone);
        how a plug-in mode reaches backbones that were declared before it existed.
    recipe_update: training: the recipe's `diffusion_update` this mode runs (the loop's loss).
    build: sampling: (diffusion StoredModule, guidance StoredModule | None, settings) -> a policy runtime with
        `act(obs)` and `act_tensor(obs)`.
    prepare: training: (TrainingContext) -> (guidance net for the loop or None, the batch TargetFn).
    """

    name: str
    phases: tuple[Phase, ...]
    description: str
    needs: tuple[Need, ...] = ()
    needs_for: Callable[[BaseModel], tuple[Need, ...]] | None = None
    scale_sensitive: str | None = None
    steers_itself: bool = False
    params: type[BaseModel] = NoSettings
    backbones: tuple[str, ...] = ()
    recipe_update: str | None = None
    build: Callable[..., Any] | None = None
    prepare: Callable[[TrainingContext], tuple[Any, Any]] | None = None
    source: str = field(default="mdhub", compare=False)

    def required(self, settings: BaseModel | None = None) -> tuple[Need, ...]:
        """What this mode needs from a guidance with these settings."""
        if self.needs_for is not None and settings is not None:
            return self.needs_for(settings)
        return self.needs

    def problems(self) -> list[str]:
        """What is wrong with this declaration (empty when it is sound)."""
        out = []
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name) or not self.name[0].isalpha():
            out.append(f"name {self.name!r} must be a letter followed by letters, digits, '_' or '-'")
        if not self.phases or any(p not in ("training", "sampling") for p in self.phases):
            out.append(f"phases {self.phases!r} must be training and/or sampling")
        if "sampling" in self.phases and self.build is None:
            out.append("a sampling mode needs `build`")
        if "training" in self.phases and (self.prepare is None or not self.recipe_update):
            out.append("a training mode needs `prepare` and `recipe_update`")
        if any(n not in ("q", "v") for n in self.needs):
            out.append(f"needs {self.needs!r} must name q and/or v")
        if not (isinstance(self.params, type) and issubclass(self.params, BaseModel)):
            out.append("params must be a pydantic model class")
        return out
