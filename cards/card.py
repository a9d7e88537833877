"""The module card: what a stored module IS, as validated data (pydantic v2, no torch).

A card is validated on every load. Unknown fields, missing fields and wrong types are errors that name the field.
Ids are plain names (no path separators), strings and collections are bounded, so a hostile card cannot smuggle
a path, a code reference or an oversized payload.
"""
from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

FORMAT_VERSION: Final = 1

ModuleId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"),
]
"""A module id: letters, digits, '.', '_', '-', 1..96 characters, starting with a letter or digit (never a path)."""
ArchitectureId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Json = str | int | float | bool | None | list[Any] | dict[str, Any]

Kind = Literal["guidance", "diffusion", "policy"]
GuidanceMode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
"""A guidance mode's name. Which modes exist is the hub's mode table (hub.modes), not the card format: a card names
a mode, and the hub judges it (an unknown mode is refused by the compatibility check with the known ones listed)."""
Recipe = Literal["joint", "guidance-first", "behaviour-only", "labels", "combined", "policy-free"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


class DatasetRef(_Strict):
    """The offline dataset a module was trained or evaluated on.

    A dataset made by reward relabelling (`mdhub data relabel`) also names the reward and the dataset it was
    relabelled from. These fields are left out of the card's JSON while unset, so older cards keep their bytes."""

    id: ShortText
    sha256: Sha256 | None = None
    reward: ShortText | None = Field(default=None, description="The registered reward the dataset's rewards were "
                                     "relabelled with (e.g. 'target-speed:1.5'); None: the data's own rewards.")
    source_id: ShortText | None = Field(default=None, description="Id of the dataset it was relabelled from.")
    source_sha256: Sha256 | None = Field(default=None, description="Content sha256 of that source dataset.")

    @model_serializer(mode="wrap")
    def _omit_unset_relabelling(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("reward", "source_id", "source_sha256"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class ModuleRef(_Strict):
    """A reference to another module, by id and the sha256 of its weights file (its lineage)."""

    id: ModuleId
    sha256: Sha256 | None = None
    repo: ShortText | None = Field(default=None, description="Hub repo it lives in, when known (e.g. 'user/iql').")
    revision: ShortText | None = None


class Interface(_Strict):
    """What the module speaks: dimensions, action bounds, observation normalisation, task and data."""

    obs_dim: int = Field(gt=0, le=1_000_000)
    act_dim: int = Field(gt=0, le=100_000)
    action_low: float = -1.0
    action_high: float = 1.0
    obs_normalised: bool = Field(
        default=False,
        description="True when the module normalises observations inside (statistics are buffers in its weights).",
    )
    env_id: ShortText | None = None
    dataset: DatasetRef | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Interface:
        if not self.action_low < self.action_high:
            raise ValueError(f"action_low ({self.action_low}) must be below action_high ({self.action_high})")
        return self


class HubSource(_Strict):
    """Where a pulled module came from: the exact commit, so a later pull is reproducible."""

    backend: Literal["hf", "file"] = "hf"
    repo: ShortText
    revision: ShortText | None = None
    commit: ShortText | None = None


class Origin(_Strict):
    """How the module came to be."""

    algorithm: Annotated[str, StringConstraints(max_length=32)] = Field(description="IQL, IDQL, DQL, SWG, CFG, ...")
    recipe: Recipe = "behaviour-only"
    seed: int | None = None
    steps: int | None = Field(default=None, ge=0)
    versions: dict[ShortText, ShortText] = Field(default_factory=dict, max_length=32)
    trained_with_guidance: ModuleRef | None = None
    device: ShortText | None = Field(default=None, description="Where it was trained: cpu, cuda, cuda:N, mps.")
    precision: Literal["fp32", "bf16"] | None = Field(default=None, description="Compute precision of training.")
    checkpoint_of: ModuleId | None = Field(default=None, description="A checkpoint saved during training (at `steps`) "
                                           "of the run that stores its final module under this id.")


class RewardTransform(_Strict):
    """r' = scale * r + shift, as applied to rewards during TD training (it changes the scale of Q)."""

    kind: Literal["identity", "affine", "return-range"] = "identity"
    scale: float = 1.0
    shift: float = 0.0


class ValueStats(_Strict):
    """Statistics of Q on the guidance's dataset (needed to standardise scale-sensitive selection)."""

    mean: float
    std: float = Field(ge=0.0)
    min: float
    max: float


class GuidanceSpec(_Strict):
    """Semantics of a guidance (value estimator) module."""

    provides: list[Literal["q", "v"]] = Field(min_length=1, max_length=2)
    q_heads: int = Field(default=2, ge=1, le=64, description="Ensemble size of Q.")
    reduction: Literal["min", "mean"] = "min"
    discount: float = Field(default=0.99, gt=0.0, le=1.0)
    expectile: float | None = Field(default=None, gt=0.0, lt=1.0)
    reward_transform: RewardTransform = Field(default_factory=RewardTransform)
    value_stats: ValueStats | None = None
    v_fitted: bool = Field(default=False, description="True when V was fitted afterwards to a Q-only critic.")


class DiffusionSpec(_Strict):
    """Semantics of a diffusion (denoiser) module."""

    schedule: Literal["vp", "linear", "cosine"] = "vp"
    T: int = Field(ge=1, le=10_000)
    prediction: Literal["eps", "x0"] = "eps"
    x_dim: int | None = Field(default=None, gt=0, description="Dimension diffused (act_dim, or act_dim+1 for SWG).")
    train_guidance: list[GuidanceMode] = Field(default_factory=list, max_length=8)
    sample_guidance: list[GuidanceMode] = Field(default_factory=list, max_length=8)
    condition: Literal["none", "label"] = "none"


class PolicySpec(_Strict):
    """A combined policy: references to its parts (never copies of their weights) and how they meet."""

    diffusion: ModuleRef
    train_guidance: ModuleRef | None = None
    infer_guidance: ModuleRef | None = None
    mode: GuidanceMode = "resample"
    params: dict[ShortText, float | int | str | bool] = Field(default_factory=dict, max_length=32)
    adapters: list[ShortText] = Field(default_factory=list, max_length=16)


class FileEntry(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    sha256: Sha256
    size: int = Field(ge=0)


MAX_EVALUATIONS: Final = 32


class EvalRecord(_Strict):
    """One evaluation in the module's task (`mdhub eval`), labelled by how it was run. Kept apart from the training
    metrics; a card accumulates them (`merge_evaluations`), so an evaluation over fewer episodes never replaces a
    better-founded one. Rendered in README.md as the Hub's model-index (task reinforcement-learning, dataset = env)."""

    env_id: ShortText
    episodes: int = Field(ge=1, le=1_000_000)
    seed: int = 0
    max_steps: int | None = Field(default=None, ge=1, description="Episode step cap, when shorter than the env's.")
    mode: GuidanceMode = Field(description="Sampling mode of the policy (mode table, e.g. resample).")
    settings: dict[ShortText, float | int | str | bool] = Field(default_factory=dict, max_length=32)
    guidance: ModuleId | None = Field(default=None, description="The guidance that scored candidates, if any.")
    return_mean: float
    return_std: float = Field(ge=0.0)
    normalized_score: float | None = None
    normalized_score_std: float | None = Field(default=None, ge=0.0)
    date: Annotated[str, StringConstraints(max_length=40)] | None = Field(default=None, description="ISO 8601, UTC.")

    def label(self) -> tuple[str, ...]:
        """What makes two evaluations the same experiment (everything but the outcome and the date)."""
        return (self.env_id, str(self.episodes), str(self.seed), str(self.max_steps), self.mode,
                repr(sorted(self.settings.items())), str(self.guidance))

    def sampling(self) -> str:
        """How the policy sampled, e.g. `resample(n_candidates=50, rule=argmax)`."""
        return f"{self.mode}({', '.join(f'{k}={v}' for k, v in sorted(self.settings.items()))})"


def best_evaluation(records: list[EvalRecord]) -> EvalRecord | None:
    """The best-founded evaluation: the most episodes, then the newest."""
    return max(records, key=lambda r: (r.episodes, r.date or ""), default=None)


def merge_evaluations(old: list[EvalRecord], new: list[EvalRecord]) -> list[EvalRecord]:
    """`old` plus `new`: a new record replaces an old one with the same label (a rerun of the same experiment),
    others accumulate. Beyond MAX_EVALUATIONS the least-founded are dropped (fewest episodes, then oldest)."""
    out = list(old)
    for rec in new:
        out = [r for r in out if r.label() != rec.label()] + [rec]
    while len(out) > MAX_EVALUATIONS:
        out.remove(min(out, key=lambda r: (r.episodes, r.date or "")))
    return out


class ModuleCard(_Strict):
    """The card of one module. See docs/design.md: identity, interface, origin, semantics, files, metrics."""

    format_version: Literal[1] = FORMAT_VERSION
    id: ModuleId
    kind: Kind
    architecture: ArchitectureId
    config: dict[ShortText, Json] = Field(default_factory=dict, max_length=128)
    interface: Interface
    origin: Origin
    guidance: GuidanceSpec | None = None
    diffusion: DiffusionSpec | None = None
    policy: PolicySpec | None = None
    files: list[FileEntry] = Field(default_factory=list, max_length=16)
    metrics: dict[ShortText, float | int | str | None] = Field(
        default_factory=dict, max_length=128, description="Training metrics (wall time, final losses, the last "
        "learning-curve point as curve_*); evaluations are in `evaluations`.")
    evaluations: list[EvalRecord] = Field(default_factory=list, max_length=MAX_EVALUATIONS)
    hub_source: HubSource | None = None
    license: Annotated[str, StringConstraints(max_length=64)] = "mit"
    tags: list[Annotated[str, StringConstraints(max_length=64)]] = Field(default_factory=list, max_length=32)
    description: LongText = ""

    @model_validator(mode="after")
    def _kind_sections(self) -> ModuleCard:
        expected = {"guidance": "guidance", "diffusion": "diffusion", "policy": "policy"}[self.kind]
        for section in ("guidance", "diffusion", "policy"):
            present = getattr(self, section) is not None
            if section == expected and not present:
                raise ValueError(f"a {self.kind} card needs its '{section}' section")
            if section != expected and present:
                raise ValueError(f"a {self.kind} card cannot have a '{section}' section")
        return self

    def file(self, name: str) -> FileEntry | None:
        """The file entry called `name`, or None."""
        return next((f for f in self.files if f.name == name), None)

    def ref(self) -> ModuleRef:
        """A lineage reference to this module (id + sha256 of its weights, Hub repo when pulled)."""
        weights = self.file("model.safetensors")
        src = self.hub_source
        return ModuleRef(
            id=self.id,
            sha256=weights.sha256 if weights else None,
            repo=src.repo if src else None,
            revision=(src.commit or src.revision) if src else None,
        )
