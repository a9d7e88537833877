"""Where modules LIVE and how they MEET: store, registry, compatibility, recombination, remotes, API and CLI.

    import hub
    critic = hub.load("my-iql")          # by store id or folder path
    hub.save(net, card)                   # into the store under card.id

`import hub` imports nothing else: each public name is imported from its module on first use (PEP 562), so the
store, the registry and the CLI's `list` / `show` never pay for torch, which only recombination, training,
evaluation and loading weights need.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first use of the name)
_LAZY: dict[str, str] = {
    **dict.fromkeys(("check", "list_modules", "load", "save", "show"), "hub.api"),
    **dict.fromkeys(("CombinedPolicy", "SamplingConfig", "TrainSpec", "combine", "load_policy"), "hub.combine"),
    "evaluate": "hub.evaluation",
    "evaluate_many": "hub.evaluation",
    "evaluate_run": "hub.evaluation",
    **dict.fromkeys(("Budget", "train_diffusion", "train_guidance"), "hub.training"),
    **dict.fromkeys(("PushResult", "pull", "push"), "hub.remote.sharing"),
    **dict.fromkeys(("NotCachedError", "RemoteError", "RemoteIntegrityError", "RepoNotFoundError",
                     "RevisionNotFoundError"), "hub.remote"),
    **dict.fromkeys(("CompatibilityError", "IntegrityError", "MdhubError", "NotFoundError", "RegistryError",
                     "StoreError"), "hub.errors"),
    "registry": "hub.registry",
    **dict.fromkeys(("Store", "StoredModule"), "hub.store"),
    "sweep": "hub.sweeps",
}

__all__ = [
    "CompatibilityError", "IntegrityError", "MdhubError", "NotFoundError", "RegistryError", "Store", "StoreError",
    "StoredModule", "list_modules", "load", "registry", "save", "show", "check", "combine", "load_policy",
    "CombinedPolicy", "SamplingConfig", "TrainSpec", "evaluate", "evaluate_many", "evaluate_run", "train_guidance",
    "train_diffusion", "Budget",
    "PushResult", "pull", "push", "NotCachedError", "RemoteError", "RemoteIntegrityError", "RepoNotFoundError",
    "RevisionNotFoundError", "sweep",
]
assert sorted(__all__) == sorted(_LAZY), "hub.__all__ and hub._LAZY must name the same things"


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name here (later uses are plain attributes)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Hub(types.ModuleType):
    """The `hub` package. Two public names are also the names of submodules: `hub.combine` (the function, in the
    module hub.combine) and `hub.registry` (the function, in the module hub.registry). Importing such a submodule
    binds the module on the package, which would hide the function; the package keeps the function instead, as
    it did when it imported every name eagerly. (`from hub.combine import X` and `import hub.combine` still
    work: they find the module in sys.modules.)"""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == f"{__name__}.{name}":
            return  # `hub.<name>` stays (or becomes, through __getattr__) the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Hub
