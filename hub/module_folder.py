"""A module on disk: one folder, read and written atomically and verified.

A module folder holds `model.safetensors` (weights and buffers only), `card.json` (the card) and `README.md` (the card
rendered as a Hugging Face model card). A policy card references its parts and has no weights file.

Saving is atomic: the folder is written under a temporary name and renamed into place; in the store, the index is
then switched to the new folder under a file lock (so concurrent writers cannot corrupt it) and the old folder removed.
Loading validates the card, resolves `architecture` through the local registry only, builds from `config`, verifies
the sha256 and loads the tensors strictly (a missing, extra, mis-shaped or mis-typed tensor is an error).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from cards import CardError, FileEntry, ModuleCard, card_from_json, card_to_json, card_to_readme
from hub.errors import IntegrityError, NotFoundError, StoreError
from hub.registry import registry

WEIGHTS = "model.safetensors"
CARD = "card.json"
README = "README.md"


@dataclass
class StoredModule:
    """A loaded module: its validated card, the built network (None for a policy card) and its folder."""

    card: ModuleCard
    net: Any
    path: Path

    @property
    def id(self) -> str:
        return self.card.id


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights_bytes(net: Any) -> bytes:
    """Serialise a module's state dict (parameters and buffers) as safetensors bytes, deterministically."""
    import torch
    from safetensors.torch import save as st_save

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise StoreError(f"state entry '{k}' is not a tensor ({type(v).__name__}); only tensors can be stored")
    return st_save(state)


def _versions() -> dict[str, str]:
    import torch

    from hub import __version__

    return {"mdhub": __version__, "torch": torch.__version__.split("+")[0], "python": platform.python_version()}


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def finalize_card(net: Any, card: ModuleCard) -> tuple[ModuleCard, bytes | None]:
    """The card as it will be stored (files and versions filled in) and the weights bytes."""
    if card.kind == "policy":
        if net is not None:
            raise StoreError(f"module '{card.id}': a policy card references its parts; it has no weights to save")
        return card.model_copy(update={"files": []}), None
    if net is None:
        raise StoreError(f"module '{card.id}': a {card.kind} module needs its network to be saved")
    data = weights_bytes(net)
    versions = {**_versions(), **card.origin.versions}
    origin = card.origin.model_copy(update={"versions": versions})
    files = [FileEntry(name=WEIGHTS, sha256=sha256_bytes(data), size=len(data))]
    # Re-validate the whole card: a card that does not validate is never written.
    final = ModuleCard.model_validate({**card.model_dump(), "origin": origin.model_dump(), "files": [f.model_dump() for f in files]})
    return final, data


def write_folder(folder: Path, card: ModuleCard, weights: bytes | None) -> None:
    """Write a module folder atomically (temporary sibling, then rename). An existing folder is replaced."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        if weights is not None:
            _fsync_write(tmp / WEIGHTS, weights)
        _fsync_write(tmp / CARD, card_to_json(card).encode())
        _fsync_write(tmp / README, card_to_readme(card).encode())
        old = None
        if folder.exists():
            old = folder.parent / f".old-{folder.name}-{secrets.token_hex(4)}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_card(folder: Path) -> ModuleCard:
    """Read and validate a folder's card.json (no torch, no weights)."""
    folder = Path(folder)
    if not folder.exists():
        raise NotFoundError(f"{folder}: no such module folder")
    if not folder.is_dir():
        raise NotFoundError(f"{folder}: not a module folder (expected a directory with {CARD})")
    path = folder / CARD
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path}: missing (a module folder needs {CARD})") from None
    try:
        return card_from_json(text, str(path))
    except CardError as err:
        raise StoreError(str(err)) from None


def verified_weights_bytes(folder: Path, card: ModuleCard) -> bytes:
    """The bytes of model.safetensors, after checking its size and sha256 against the card."""
    entry = card.file(WEIGHTS)
    path = Path(folder) / WEIGHTS
    if entry is None:
        raise IntegrityError(f"{Path(folder) / CARD}: the card lists no '{WEIGHTS}' in 'files'")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{path}: missing (the card lists it)") from None
    if len(data) != entry.size:
        raise IntegrityError(f"{path}: {len(data)} bytes, the card says {entry.size} (truncated or replaced?)")
    digest = sha256_bytes(data)
    if digest != entry.sha256:
        raise IntegrityError(f"{path}: sha256 mismatch: the card says {entry.sha256[:16]}..., the file has {digest[:16]}...")
    return data


def read_weights(folder: Path, card: ModuleCard) -> dict[str, Any]:
    """Read model.safetensors as tensors, verified against the card."""
    path = Path(folder) / WEIGHTS
    from safetensors.torch import load as st_load

    data = verified_weights_bytes(folder, card)
    try:
        return st_load(data)
    except (SafetensorError, Exception) as err:  # safetensors raises several types for malformed data
        raise IntegrityError(f"{path}: not a valid safetensors file ({err})") from None


def load_state_strict(net: Any, state: dict[str, Any], source: str) -> None:
    """Load tensors into `net`, refusing any missing, unexpected, mis-shaped or mis-typed tensor."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        problems.append(f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    for k in sorted(set(expected) & set(state)):
        e, g = expected[k], state[k]
        if tuple(e.shape) != tuple(g.shape):
            problems.append(f"tensor '{k}': expected shape {tuple(e.shape)}, got {tuple(g.shape)}")
        elif e.dtype != g.dtype:
            problems.append(f"tensor '{k}': expected dtype {e.dtype}, got {g.dtype}")
    if problems:
        raise IntegrityError(f"{source}: weights do not fit the architecture: " + "; ".join(problems))
    net.load_state_dict(state, strict=True)


def load_folder(folder: Path) -> StoredModule:
    """Load a module folder: validate the card, build through the registry, verify and load the weights."""
    folder = Path(folder)
    card = read_card(folder)
    if card.kind == "policy":
        return StoredModule(card=card, net=None, path=folder)
    arch = registry().get(card.architecture, kind=card.kind)
    net = arch.make(card.config, source=str(folder / CARD))
    state = read_weights(folder, card)
    load_state_strict(net, state, str(folder / WEIGHTS))
    net.eval()
    return StoredModule(card=card, net=net, path=folder)


def save_folder(net: Any, card: ModuleCard, folder: Path) -> ModuleCard:
    """Save a module as a folder at an explicit path (atomically). Returns the stored card."""
    if card.kind != "policy":
        registry().get(card.architecture, kind=card.kind)  # refuse unknown architectures before writing
    final, data = finalize_card(net, card)
    write_folder(Path(folder), final, data)
    return final
