"""The registry: architecture id -> builder in `modules` + capabilities.

Sources, merged in order: the packaged `registry.yaml`, then the `mdhub.architectures` entry-point group of
installed packages (each entry point loads a dict shaped like registry.yaml). A card only ever names an id from here;
the code behind an id is whatever this machine's registry says, never something a card or a download chooses.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.resources
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cards.io import describe_validation_error
from hub.errors import RegistryError

if TYPE_CHECKING:
    from hub.modes.base import Phase

ENTRY_POINT_GROUP = "mdhub.architectures"
Mode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]  # checked against hub.modes on load


class Architecture(BaseModel):
    """One registered architecture."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    kind: Literal["guidance", "diffusion", "policy"] = "guidance"
    build: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    description: str = ""
    provides: tuple[Literal["q", "v"], ...] = ()
    train_guidance: tuple[Mode, ...] = ()
    sample_guidance: tuple[Mode, ...] = ()
    reverse: Literal["posterior", "simplified"] | None = Field(
        default=None, description="Diffusion: the reverse step the builder uses by default (the reference's).")
    source: str = "registry.yaml"

    def builder(self) -> Any:
        """Import and return the builder named by `build` (from the local registry only)."""
        module_name, _, attr = self.build.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise RegistryError(
                f"architecture '{self.id}' ({self.source}): cannot import {module_name}: {err}") from None
        try:
            return getattr(module, attr)
        except AttributeError:
            raise RegistryError(f"architecture '{self.id}' ({self.source}): {module_name} has no {attr}") from None

    def make(self, config: dict[str, Any], source: str = "card.json") -> Any:
        """Build the network from a card's `config` (validated by the builder's pydantic Config)."""
        cls = self.builder()
        cfg_model = getattr(cls, "Config", None)
        if cfg_model is None:
            try:
                return cls(**config)
            except TypeError as err:
                raise RegistryError(f"{source}: field 'config' does not fit architecture '{self.id}': {err}") from None
        try:
            cfg = cfg_model.model_validate(config)
        except ValidationError as err:
            raise RegistryError(
                describe_validation_error(err, f"{source}").replace("invalid card", f"invalid config for '{self.id}'")
                .replace("field '", "field 'config.").replace("unknown field '", "unknown field 'config.")
                .replace("missing field '", "missing field 'config.")
            ) from None
        return cls(cfg)


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: Literal[1]
    guidance: dict[str, Architecture] = {}
    diffusion: dict[str, Architecture] = {}
    policy: dict[str, Architecture] = {}


class Registry:
    """All known architectures, by id."""

    def __init__(self, architectures: dict[str, Architecture]):
        self.architectures = architectures

    def get(self, arch_id: str, kind: str | None = None) -> Architecture:
        arch = self.architectures.get(arch_id)
        if arch is None or (kind is not None and arch.kind != kind):
            known = sorted(a.id for a in self.architectures.values() if kind is None or a.kind == kind)
            what = f"{kind} architecture" if kind else "architecture"
            raise RegistryError(f"unknown {what} '{arch_id}'; known: {', '.join(known) or '(none)'}")
        return arch

    def of_kind(self, kind: str) -> list[Architecture]:
        return sorted((a for a in self.architectures.values() if a.kind == kind), key=lambda a: a.id)

    def __iter__(self) -> Iterator[Architecture]:
        return iter(sorted(self.architectures.values(), key=lambda a: (a.kind, a.id)))


def _parse(data: Any, source: str) -> dict[str, Architecture]:
    try:
        parsed = _RegistryFile.model_validate(data)
    except ValidationError as err:
        message = describe_validation_error(err, source).replace("invalid card", "invalid registry")
        raise RegistryError(message) from None
    out: dict[str, Architecture] = {}
    for kind in ("guidance", "diffusion", "policy"):
        for arch_id, arch in getattr(parsed, kind).items():
            _check_modes(arch, arch_id, source)
            out[arch_id] = arch.model_copy(update={"id": arch_id, "kind": kind, "source": source})
    return out


def _check_modes(arch: Architecture, arch_id: str, source: str) -> None:
    """Every mode an architecture lists exists in the mode table, in the phase it is listed for."""
    from hub.modes import mode_names

    fields: tuple[tuple[str, Phase], ...] = (("train_guidance", "training"), ("sample_guidance", "sampling"))
    for field, phase in fields:
        known = mode_names(phase)
        for mode in getattr(arch, field):
            if mode not in known:
                raise RegistryError(f"{source}: architecture '{arch_id}', field '{field}': '{mode}' is not a "
                                    f"{phase} mode (known: {', '.join(known)})")


def _merge(into: dict[str, Architecture], new: dict[str, Architecture]) -> None:
    for arch_id, arch in new.items():
        if arch_id in into:
            raise RegistryError(
                f"architecture '{arch_id}' is declared twice: in {into[arch_id].source} and in {arch.source}"
            )
        into[arch_id] = arch


def default_registry_path() -> Path:
    return Path(str(importlib.resources.files("hub") / "registry.yaml"))


def load_registry(path: Path | None = None, entry_points: bool = True) -> Registry:
    """Read registry.yaml (the packaged one unless `path`) and the entry-point group."""
    path = path or default_registry_path()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except yaml.YAMLError as err:
        raise RegistryError(f"{path}: invalid YAML ({err})") from None
    archs = _parse(data, str(path.name))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                extra = ep.load()
            except Exception as err:  # a broken third-party package must not break the hub
                raise RegistryError(
                    f"entry point '{ep.name}' ({ep.value}) in {ENTRY_POINT_GROUP} failed: {err}") from None
            extra = {"format_version": 1, **(extra() if callable(extra) else extra)}
            _merge(archs, _parse(extra, f"entry point '{ep.name}'"))
    return Registry(archs)


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry (read once)."""
    return load_registry()
