"""A sweep spec: what to train, how to recombine it, how to evaluate it (pydantic models, validated at the edge).

    name: gfdt-tiny
    datasets: [{id: hopper-bullet-tiny, make: true}]
    guidance:                                   # guidance arms: one job per arm trains all its seeds at once
      - {name: iql, algo: iql, seeds: [0, 1], steps: 200}
    diffusion:                                  # diffusion arms and their training guidance
      - {name: gf, algo: dql, seeds: [0, 1], steps: 200, guidance: iql}             # frozen, seed s under iql seed s
      - {name: jt, algo: dql, seeds: [0, 1], steps: 200, guidance: joint}           # DQL's joint run
      - {name: bc, algo: idql, seeds: [0], steps: 200, guidance: none}              # behaviour cloning
    combinations:                               # sampling: training guidance x inference guidance x mode
      - {diffusion: gf, infer_guidance: same, mode: resample, settings: {n_candidates: 16}}
      - {diffusion: gf, infer_guidance: {arm: iql, seed: other}, mode: resample}   # double guidance
    evaluation: {episodes: 5, seeds: [100]}

A reference to an arm is its name: `guidance: iql` (seed s of the diffusion arm under seed s of `iql`), or
`{arm: iql, seed: 0}` (every seed under seed 0), `joint` (DQL's own critic) or `none`. An inference guidance is
`same` (the training guidance), `none`, an arm name, or `{arm: NAME, seed: same|other|N}` (`other`: the next seed of
that arm, a second independently trained guidance). A joint diffusion arm's critic is a guidance too: name the arm.
Cross-references (unknown arms, cycles, seeds an arm lacks) and the compatibility check of every pairing are
judged when the spec is expanded into jobs (hub.sweeps.graph), each error one line naming the spec path.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.algos import DIFFUSION_ALGOS, GUIDANCE_ALGOS
from hub.errors import MdhubError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*\Z")
NAME_MAX = 24  # module ids are <sweep>-<arm>-<hash>-s<seed>[-step<N>][-actor]: at most 96 characters
SPEC_MAX_BYTES = 1 << 20
Scalar = float | int | str | bool
Stage = Literal["guidance", "diffusion", "combine", "evaluate"]
STAGES: tuple[Stage, ...] = ("guidance", "diffusion", "combine", "evaluate")


class SpecError(MdhubError):
    """A sweep spec that cannot run: one line naming the spec file and the path inside it (`diffusion[1].guidance`)."""


def _name(value: str, what: str = "name") -> str:
    if len(value) > NAME_MAX or not NAME.match(value):
        raise ValueError(f"{what} {value!r} must be letters, digits, '_' and single '-' between them, at most "
                         f"{NAME_MAX} characters")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """What one job asks of a Ray cluster (the local executor runs one job per worker process, `num_cpus` threads)."""

    num_cpus: float = Field(default=1.0, gt=0, le=256)
    num_gpus: float = Field(default=0.0, ge=0, le=16, description="Fractions share a GPU among small networks.")


class DatasetSpec(_Strict):
    id: str
    make: bool = Field(default=False, description="Make it (`mdhub data make ID`) when it is not in the store.")
    transitions: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)


class GuidanceRef(_Strict):
    """The guidance a diffusion arm trains under: a frozen arm (which seed), DQL's joint critic, or none."""

    kind: Literal["frozen", "joint", "none"] = "frozen"
    arm: str | None = None
    seed: int | Literal["same"] = "same"

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"kind": v} if v in ("joint", "none") else {"kind": "frozen", "arm": v}
        if isinstance(v, dict) and "kind" not in v and "arm" in v:
            return {"kind": "frozen", **v}
        return v

    @model_validator(mode="after")
    def _arm_iff_frozen(self) -> GuidanceRef:
        if (self.kind == "frozen") != (self.arm is not None):
            raise ValueError("name a guidance arm ({arm: NAME, seed: same|N}), or joint, or none")
        return self

    def label(self) -> str:
        return self.kind if self.arm is None else self.arm + ("" if self.seed == "same" else f"@s{self.seed}")


class InferRef(_Strict):
    """The guidance that scores candidates at sampling: the training guidance (same), none, or an arm's seed."""

    kind: Literal["same", "none", "arm"] = "same"
    arm: str | None = None
    seed: int | Literal["same", "other"] = "same"

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"kind": v} if v in ("same", "none") else {"kind": "arm", "arm": v}
        if isinstance(v, dict) and "kind" not in v:
            return {"kind": "arm" if "arm" in v else "same", **v}
        return v

    @model_validator(mode="after")
    def _arm_iff_arm(self) -> InferRef:
        if (self.kind == "arm") != (self.arm is not None):
            raise ValueError("name an arm ({arm: NAME, seed: same|other|N}), or same, or none")
        return self


class _Arm(_Strict):
    name: str
    dataset: str | None = Field(default=None, description="A dataset id of `datasets` (default: the first).")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=64)
    steps: int = Field(ge=1)
    overrides: dict[str, Any] = Field(default_factory=dict, description="Recipe settings (eta, lr, guidance_start...)")
    hidden: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    save_every: int = Field(default=0, ge=0, description="Store checkpoint modules every N steps (learning curves).")
    resources: Resources | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _name(v)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError(f"seeds must be distinct non-negative integers, got {v}")
        return v


class GuidanceArm(_Arm):
    algo: str

    @field_validator("algo")
    @classmethod
    def _algo(cls, v: str) -> str:
        if v not in GUIDANCE_ALGOS:
            raise ValueError(f"unknown guidance algorithm '{v}'; known: {', '.join(GUIDANCE_ALGOS)}")
        return v


class DiffusionArm(_Arm):
    algo: str
    guidance: GuidanceRef = Field(description="ARM (frozen, seed s under the arm's seed s), {arm: ARM, seed: N}, "
                                  "joint or none")
    backbone: str | None = Field(default=None, description="Another diffusion architecture for the recipe.")

    @field_validator("algo")
    @classmethod
    def _algo(cls, v: str) -> str:
        if v not in DIFFUSION_ALGOS:
            raise ValueError(f"unknown diffusion algorithm '{v}'; known: {', '.join(DIFFUSION_ALGOS)}")
        return v


class Combination(_Strict):
    """A policy to evaluate: a diffusion arm (with its training guidance), an inference guidance, a mode and its
    settings. One policy card per seed of the diffusion arm."""

    name: str | None = None
    diffusion: str
    infer_guidance: InferRef = Field(default_factory=InferRef)
    mode: str = "resample"
    settings: dict[str, Scalar] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        return None if v is None else _name(v)

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        from hub.modes import mode_names

        known = mode_names("sampling")
        if v not in known:
            raise ValueError(f"unknown sampling mode '{v}'; known: {', '.join(known)}")
        return v


class Evaluation(_Strict):
    episodes: int = Field(default=10, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=32)
    max_steps: int | None = Field(default=None, ge=1, description="Cap each episode at this many steps.")
    curve_episodes: int | None = Field(default=None, ge=1, description="Episodes per checkpoint module of a learning "
                                       "curve (arms with save_every); default: episodes.")


class SweepSpec(_Strict):
    name: str
    datasets: list[DatasetSpec] = Field(min_length=1, max_length=16)
    guidance: list[GuidanceArm] = Field(default_factory=list, max_length=64)
    diffusion: list[DiffusionArm] = Field(default_factory=list, max_length=64)
    combinations: list[Combination] = Field(default_factory=list, max_length=256)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    device: str = Field(default="cpu", description="Where jobs train and evaluate: auto | cpu | cuda[:N] | mps.")
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    resources: dict[Stage, Resources] = Field(default_factory=dict, description="Per-stage requests of each job.")
    remote: str | None = Field(default=None, description="Where nodes without a shared filesystem exchange modules: "
                               "file:///ABS/ROOT::NAMESPACE or hf://NAMESPACE (pushed by exact commit).")

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _name(v, "sweep name")

    @field_validator("remote")
    @classmethod
    def _remote(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not (v.startswith("hf://") or (v.startswith("file:///") and "::" in v)):
            raise ValueError("a remote is file:///ABS/ROOT::NAMESPACE or hf://NAMESPACE")
        return v.rstrip("/")

    def resources_for(self, stage: Stage, arm: _Arm | None = None) -> Resources:
        if arm is not None and arm.resources is not None:
            return arm.resources
        return self.resources.get(stage) or Resources()


_TYPE_TAGS = frozenset({"int", "float", "str", "bool", "none", "dict", "list"})


def error_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a spec path: ('diffusion', 1, 'guidance') -> diffusion[1].guidance."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and not part[0].isupper() and part not in _TYPE_TAGS and not part.startswith(("function-",
                                                                                                   "literal[")):
            out += ("." if out else "") + part
    return out or "(top level)"


def parse_spec(data: Any, source: str = "spec") -> SweepSpec:
    """A validated SweepSpec from a mapping; the first problem is one SpecError line naming `source` and the path."""
    if isinstance(data, SweepSpec):
        return data
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a sweep spec is a mapping (name, datasets, guidance, diffusion, combinations, "
                        f"evaluation), got a {type(data).__name__}")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        got = first.get("input")
        shown = "" if first.get("type") in ("missing", "value_error") or isinstance(got, dict) else f" (got {got!r})"
        raise SpecError(f"{source}: {error_path(tuple(first.get('loc', ())))}: {msg}{shown}") from None


def load_spec(spec: str | Path | dict[str, Any] | SweepSpec) -> tuple[SweepSpec, str]:
    """(the spec, the name its errors are reported under) from a YAML/JSON file, a mapping or a SweepSpec."""
    if isinstance(spec, SweepSpec):
        return spec, f"sweep '{spec.name}'"
    if isinstance(spec, dict):
        return parse_spec(spec, "spec"), "spec"
    from hub.yaml_file import read_yaml_file

    p = Path(spec)
    data = read_yaml_file(p, SPEC_MAX_BYTES, "sweep spec", SpecError)
    return parse_spec(data, str(p)), str(p)
