"""The mode table: every guidance mode the hub knows, declared once (hub/modes/<family>.py) or plugged in.

    from hub.modes import get_mode, mode_names, SamplingConfig
    mode_names("sampling")                       # ['cfg', 'gradient', 'none', 'resample', 'self', ...]
    cfg = SamplingConfig("resample", n_candidates=32, rule="argmax")   # settings validated by the mode's own model
    policy_runtime = get_mode("resample").build(diffusion, guidance, cfg.params)

Built-in families: plain (none), critic (q_loss, resample, gradient), labels (labels, self, cfg). Third-party
packages add modes through the `mdhub.modes` entry-point group; a plug-in that fails to load or declares a broken
mode is reported in one line (on stderr, and by `plugin_problems()` / `mdhub registry`) and left out: the hub works
on. The compatibility layer, SamplingConfig, TrainSpec, evaluation and the CLI's choices all read this table.
No torch is imported here.
"""
from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from hub.errors import MdhubError
from hub.modes import critic, labels, plain
from hub.modes.base import CandidateSettings, Mode, NoiseSettings, NoSettings, Phase, TrainingContext

ENTRY_POINT_GROUP = "mdhub.modes"
DEFAULT_PAIRING = "resample"  # how a guidance meets a behaviour-cloned model when nothing else is said (IDQL)
BUILTIN: tuple[Mode, ...] = (*plain.MODES, *critic.MODES, *labels.MODES)
# Settings that policy cards written before the mode table stored for every mode (one flat model); a stored card's
# settings that its mode does not declare and that are in this list are dropped on load, anything else is an error.
LEGACY_SETTINGS = frozenset({"n_candidates", "rule", "temperature", "select_temperature", "rho", "w", "expectile"})

__all__ = ["DEFAULT_PAIRING", "ENTRY_POINT_GROUP", "CandidateSettings", "Mode", "NoiseSettings", "NoSettings", "Phase",
           "SamplingConfig", "TrainingContext", "get_mode", "mode_names", "modes", "plugin_problems",
           "training_mode_for"]


def _as_modes(obj: Any) -> list[Any]:
    obj = obj() if callable(obj) and not isinstance(obj, Mode) else obj
    return list(obj) if isinstance(obj, (list, tuple)) else [obj]


@functools.lru_cache(maxsize=1)
def _table() -> tuple[dict[str, Mode], tuple[str, ...]]:
    table = {m.name: m for m in BUILTIN}
    problems: list[str] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = ep.dist.name if ep.dist is not None else ep.value.partition(":")[0]
        where = f"mode plug-in '{ep.name}' of package '{package}' ({ep.value})"
        try:
            declared = _as_modes(ep.load())
        except Exception as err:  # a broken third-party package must not break the hub
            problems.append(f"{where} failed to load: {type(err).__name__}: {err}")
            continue
        for mode in declared:
            if not isinstance(mode, Mode):
                problems.append(f"{where}: expected hub.modes.Mode objects, got {type(mode).__name__}")
                continue
            issues = mode.problems()
            if mode.name in table:
                issues.append(f"the name '{mode.name}' is taken (by {table[mode.name].source})")
            if issues:
                problems.append(f"{where}: mode '{mode.name}': " + "; ".join(issues))
                continue
            table[mode.name] = Mode(**{**mode.__dict__, "source": package})
    for line in problems:
        print(f"mdhub: warning: {line}; ignored", file=sys.stderr)
    return table, tuple(problems)


def modes() -> dict[str, Mode]:
    """Every known mode by name (built-in and plug-ins), read once per process."""
    return dict(_table()[0])


def plugin_problems() -> tuple[str, ...]:
    """One line per mode plug-in that could not be used."""
    return _table()[1]


def mode_names(phase: Phase | None = None) -> list[str]:
    """Mode names, optionally only those that apply in one phase, sorted."""
    return sorted(name for name, m in modes().items() if phase is None or phase in m.phases)


def get_mode(name: str, phase: Phase | None = None) -> Mode:
    """The mode called `name` (in `phase`, if given), or an error listing the known ones."""
    table = modes()
    mode = table.get(name)
    if mode is None:
        raise MdhubError(f"unknown mode '{name}'; known: {', '.join(mode_names(phase))}")
    if phase is not None and phase not in mode.phases:
        other = mode.phases[0]
        raise MdhubError(f"'{name}' is a {other} mode, not a {phase} mode; {phase} modes: "
                         f"{', '.join(mode_names(phase))}")
    return mode


def training_mode_for(diffusion_update: str) -> Mode | None:
    """The training mode a recipe's `diffusion_update` runs (None for recipes that train no diffusion model)."""
    return next((m for m in modes().values() if "training" in m.phases and m.recipe_update == diffusion_update), None)


def _describe(err: ValidationError, source: str) -> str:
    from cards.io import describe_validation_error

    return describe_validation_error(err, source).replace("invalid card", "invalid")


class SamplingConfig:
    """How a policy samples: a sampling mode and its settings, validated by the mode's own settings model.

        SamplingConfig("resample", n_candidates=32)          # unset settings take the mode's defaults
        cfg.n_candidates, cfg.settings()                      # read as attributes, or as a dict for a card
    """

    __slots__ = ("mode", "params")
    mode: str
    params: BaseModel

    def __init__(self, mode: str = "resample", **settings: Any):
        m = get_mode(mode, "sampling")
        unknown = sorted(set(settings) - set(m.params.model_fields))
        if unknown:
            raise MdhubError(f"mode '{mode}' has no setting {', '.join(repr(u) for u in unknown)} (its settings: "
                             f"{', '.join(m.params.model_fields) or 'none'})")
        try:
            params = m.params(**settings)
        except ValidationError as err:
            raise MdhubError(_describe(err, f"settings of mode '{mode}'")) from None
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "params", params)

    @classmethod
    def from_card(cls, mode: str, settings: dict[str, Any], source: str = "policy card") -> SamplingConfig:
        """From a stored policy card's `mode` and `params` (settings older cards stored for every mode dropped)."""
        m = get_mode(mode, "sampling")
        declared = set(m.params.model_fields)
        kept = {k: v for k, v in settings.items() if k in declared or k not in LEGACY_SETTINGS}
        try:
            return cls(mode, **kept)
        except MdhubError as err:
            raise MdhubError(f"{source}: {err}") from None

    @property
    def spec(self) -> Mode:
        return get_mode(self.mode)

    def settings(self) -> dict[str, Any]:
        """The settings as plain JSON values (what a policy card stores)."""
        return self.params.model_dump(mode="json")

    def __getattr__(self, name: str) -> Any:
        params = object.__getattribute__(self, "params")
        try:
            return getattr(params, name)
        except AttributeError:
            raise AttributeError(f"mode '{object.__getattribute__(self, 'mode')}' has no setting '{name}' "
                                 f"(its settings: {', '.join(type(params).model_fields) or 'none'})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SamplingConfig is immutable: make a new one")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SamplingConfig) and (self.mode, self.settings()) == (other.mode, other.settings())

    def __hash__(self) -> int:
        return hash((self.mode, tuple(sorted(self.settings().items()))))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"SamplingConfig({self.mode!r}{', ' if body else ''}{body})"


def settings_help(names: Iterable[str] | None = None) -> str:
    """One line per mode: its settings with defaults (for --help texts and docs)."""
    lines = []
    for name in names or mode_names():
        m = get_mode(name)
        fields = ", ".join(f"{k}={f.default}" for k, f in m.params.model_fields.items())
        lines.append(f"{name}: {fields or 'no settings'}")
    return "; ".join(lines)
