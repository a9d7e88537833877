"""The Python API: everything the CLI does is one call here."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cards import ModuleCard
from hub.store import IndexEntry, Store, StoredModule, save_folder

if TYPE_CHECKING:
    from hub.compat import Report


def load(ref: str | Path, store: Store | None = None) -> StoredModule:
    """Load a module by store id or folder path: validated card, network built via the registry, weights verified."""
    return (store or Store()).load(ref)


def save(net: Any, card: ModuleCard, path: str | Path | None = None, store: Store | None = None,
         overwrite: bool = False) -> StoredModule:
    """Save a module: into the store (default) or, with `path`, as a folder there. Atomic either way.

    In the store, replacing a module of the same id with different weights (or another kind), or one that stored
    policies reference, needs `overwrite=True`; saving the same weights again just replaces the card."""
    if path is not None:
        final = save_folder(net, card, Path(path))
        return StoredModule(card=final, net=net, path=Path(path))
    return (store or Store()).save(net, card, overwrite=overwrite)


def list_modules(kind: str | None = None, store: Store | None = None) -> list[IndexEntry]:
    """Index entries of the stored modules, optionally of one kind."""
    if kind is not None and kind not in ("guidance", "diffusion", "policy"):
        from hub.errors import MdhubError

        raise MdhubError(f"unknown kind '{kind}'; known: guidance, diffusion, policy")
    return (store or Store()).entries(kind)


def show(ref: str | Path, store: Store | None = None) -> ModuleCard:
    """The validated card of a stored module (by id or path), without building it."""
    return (store or Store()).card(ref)


def check(guidance: str | Path | None, diffusion: str | Path, mode: str = "resample",
          store: Store | None = None) -> Report:
    """Compatibility report of a stored guidance with a stored diffusion module (or a backbone architecture id)."""
    from hub.compat import check as check_cards
    from hub.registry import registry

    store = store or Store()
    g = store.card(guidance) if guidance is not None else None
    d: ModuleCard | str
    if isinstance(diffusion, str) and not store.contains(diffusion) and diffusion in registry().architectures:
        d = diffusion
    else:
        d = store.card(diffusion)
    return check_cards(g, d, mode)
