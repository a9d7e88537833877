"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON; written atomically, verified.

A nested state (dicts / lists of tensors, numbers, strings, None) is flattened: each tensor becomes an entry
`path/to/it` in the safetensors file and a {"__tensor__": "path/to/it"} marker in the JSON tree.

On disk (`folder`, the run's ``checkpoint/`` folder)::

    LATEST                       {"format", "checkpoint": "ckpt-<12 hex>", "meta_sha256": sha256 of its state.json}
    ckpt-<12 hex>/state.json     {"format", "state": {"file", "sha256", "bytes"}, "info": {...}, "tree": {...}}
    ckpt-<12 hex>/state.safetensors

The chain of trust runs from LATEST (switched atomically, the only file ever replaced in place) to the JSON metadata
(its sha256 is in LATEST) to the tensors (their file's sha256 and size are in the metadata). Loading checks every link
and every failure is one `CheckpointError` line naming the file, what is wrong and what to do: rerun with ``--fresh``
(``fresh=True``), which moves the old checkpoint aside (`move_aside`), never deletes it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import fsync_dir
from ..errors import ModulesError

STATE, META, LATEST = "state.safetensors", "state.json", "LATEST"
FORMAT, POINTER_FORMAT = "mdhub-checkpoint/2", "mdhub-checkpoint-pointer/1"
_TAG_RE = re.compile(r"^ckpt-[0-9a-f]{12}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(ModulesError):
    """A checkpoint that cannot be resumed (corrupted, incomplete, foreign or of a different run). The message is one
    line: 'resume is impossible: <file>: <reason>; rerun with --fresh ... (moved aside to <path>)'."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint is intact but was written by a different run (recipe, seed, data or run tag differ)."""


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[flatten(k, f"{prefix}/k{i}", tensors), flatten(v, f"{prefix}/{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} at '{prefix}'")


def unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__dict__" in node:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in node["__dict__"]}
        if "__list__" in node:
            items = [unflatten(v, tensors) for v in node["__list__"]]
            return tuple(items) if node.get("tuple") else items
    return node


# ---------------------------------------------------------------------------------------------------- files
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def file_sha256(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _entries(folder: Path) -> list[Path]:
    """What belongs to a checkpoint in `folder`: LATEST, its temp files and the ckpt-* folders."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name == LATEST or p.name.startswith(f".{LATEST}.") or p.name.startswith("ckpt-"))


# ---------------------------------------------------------------------------------------------------- aside
def aside_path(folder: Path, entries_in: Path | None = None) -> Path:
    """Where `move_aside` puts `folder`: ``<folder>.old-<time of its last write>`` beside it (a number appended when
    taken). The same answer before and after the error message that names it, as long as nothing is written.
    `entries_in`: date by the checkpoint entries of that folder instead (see `move_legacy_aside`)."""
    folder = Path(folder)
    src = Path(entries_in) if entries_in is not None else folder
    stamps = [p.stat().st_mtime for p in _entries(src)] or ([src.stat().st_mtime] if src.exists() else [])
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(stamps) if stamps else time.time()))
    base = folder.with_name(f"{folder.name}.old-{stamp}")
    out, i = base, 1
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


def move_aside(folder: Path) -> Path | None:
    """Rename the checkpoint folder `folder` to `aside_path(folder)` (nothing is deleted); None when there is none."""
    folder = Path(folder)
    if not folder.exists():
        return None
    target = aside_path(folder)
    os.replace(folder, target)
    fsync_dir(folder.parent)
    return target


def legacy_entries(run_dir: Path) -> list[Path]:
    """Checkpoint files of the layout before checksums (LATEST and ckpt-* directly in the run folder)."""
    return _entries(Path(run_dir))


def move_legacy_aside(run_dir: Path, folder: Path) -> Path | None:
    """Move `legacy_entries(run_dir)` into a new ``<folder>.old-<time>`` folder; None when there are none."""
    entries = legacy_entries(run_dir)
    if not entries:
        return None
    target = aside_path(folder, entries_in=run_dir)
    target.mkdir(parents=True)
    for p in entries:
        os.replace(p, target / p.name)
    fsync_dir(target)
    fsync_dir(Path(run_dir))
    return target


def impossible(folder: Path, reason: str, cls: type[CheckpointError] = CheckpointError,
               aside: Path | None = None) -> CheckpointError:
    """The one-line error for a checkpoint in `folder` that cannot be resumed."""
    reason = " ".join(str(reason).split())
    return cls(f"resume is impossible: {reason}; rerun with --fresh to start over (the old checkpoint is moved "
               f"aside to {aside or aside_path(Path(folder))})")


# ---------------------------------------------------------------------------------------------------- save
def save_checkpoint(folder: Path, state: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Write a new checkpoint folder (files fsynced), then switch the LATEST pointer to it atomically (fsynced, folder
    fsynced), then drop older ones. A crash at any point leaves the previous complete checkpoint in force.

    `info`: a JSON-able record kept in the metadata and readable without the tensors (e.g. what defines the run).
    Returns the new checkpoint's folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = flatten(state, "s", tensors)
    tag = f"ckpt-{secrets.token_hex(6)}"
    ckpt = folder / tag
    ckpt.mkdir()
    save_file(tensors, str(ckpt / STATE))
    _fsync_file(ckpt / STATE)
    sha, size = file_sha256(ckpt / STATE)
    meta = json.dumps({"format": FORMAT, "state": {"file": STATE, "sha256": sha, "bytes": size},
                       "info": info or {}, "tree": tree}, sort_keys=True).encode()
    _write_synced(ckpt / META, meta)
    fsync_dir(ckpt)
    fsync_dir(folder)
    pointer = folder / f".{LATEST}.{tag}"
    _write_synced(pointer, json.dumps({"format": POINTER_FORMAT, "checkpoint": tag,
                                       "meta_sha256": hashlib.sha256(meta).hexdigest()}).encode())
    os.replace(pointer, folder / LATEST)
    fsync_dir(folder)
    for old in _entries(folder):
        if old.name not in (tag, LATEST):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return ckpt


# ---------------------------------------------------------------------------------------------------- load
def _read_pointer(folder: Path) -> tuple[Path, str]:
    pointer = folder / LATEST
    try:
        data = json.loads(pointer.read_bytes())
    except (OSError, ValueError) as e:
        raise impossible(folder, f"{pointer}: not a checkpoint pointer (unreadable or not JSON: {e})") from None
    if not isinstance(data, dict) or data.get("format") != POINTER_FORMAT:
        raise impossible(folder, f"{pointer}: not a checkpoint pointer of format {POINTER_FORMAT!r} (written by "
                                 "another version, or damaged)")
    tag, meta_sha = data.get("checkpoint"), data.get("meta_sha256")
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise impossible(folder, f"{pointer}: names {tag!r}, not a checkpoint folder of the form ckpt-<12 hex>")
    if not isinstance(meta_sha, str) or not _SHA_RE.match(meta_sha):
        raise impossible(folder, f"{pointer}: has no valid 'meta_sha256'")
    ckpt = folder / tag
    if not ckpt.is_dir():
        raise impossible(folder, f"{pointer}: names {ckpt}, which does not exist")
    return ckpt, meta_sha


def _read_meta(folder: Path, ckpt: Path, meta_sha: str) -> dict[str, Any]:
    path = ckpt / META
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise impossible(folder, f"{path}: missing or unreadable ({e.strerror or e})") from None
    got = hashlib.sha256(raw).hexdigest()
    if got != meta_sha:
        raise impossible(folder, f"{path}: sha256 {got[:12]}... differs from {meta_sha[:12]}... recorded in "
                                 f"{folder / LATEST} (modified or corrupted)")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise impossible(folder, f"{path}: not valid JSON ({e})") from None
    state = meta.get("state") if isinstance(meta, dict) else None
    if (not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(state, dict)
            or state.get("file") != STATE or not isinstance(state.get("sha256"), str)
            or not isinstance(state.get("bytes"), int) or "tree" not in meta or not isinstance(meta.get("info"), dict)):
        raise impossible(folder, f"{path}: not checkpoint metadata of format {FORMAT!r} (missing 'state', 'info' or "
                                 "'tree')")
    return meta


def read_checkpoint_info(folder: Path) -> dict[str, Any] | None:
    """The `info` record of the checkpoint in `folder` (pointer and metadata verified, tensors not read), or None when
    there is no checkpoint. Raises `CheckpointError`."""
    folder = Path(folder)
    if not (folder / LATEST).exists():
        return None
    ckpt, meta_sha = _read_pointer(folder)
    return _read_meta(folder, ckpt, meta_sha)["info"]


def load_checkpoint(folder: Path, check_info: Callable[[dict[str, Any]], str | None] | None = None,
                    check_state: Callable[[dict[str, Any]], str | None] | None = None) -> dict[str, Any] | None:
    """The last complete checkpoint in `folder`, verified, or None when there is none (no LATEST).

    `check_info(info)` runs on the metadata's `info` before any tensor is read, `check_state(state)` on the loaded
    state before it is returned; each returns None when content, else a reason: a `CheckpointMismatch` for
    `check_info`, a `CheckpointError` for `check_state`. Every other failure (pointer, metadata, tensor file missing,
    truncated or with a different sha256, unreadable tensors) is a `CheckpointError` naming the file."""
    folder = Path(folder)
    if not (folder / LATEST).exists():
        return None
    ckpt, meta_sha = _read_pointer(folder)
    meta = _read_meta(folder, ckpt, meta_sha)
    meta_path = ckpt / META
    if check_info is not None:
        why = check_info(meta["info"])
        if why:
            raise impossible(folder, f"{meta_path}: written by a different run ({why})", CheckpointMismatch)
    path = ckpt / STATE
    want_sha, want_bytes = meta["state"]["sha256"], meta["state"]["bytes"]
    try:
        sha, size = file_sha256(path)
    except OSError as e:
        raise impossible(folder, f"{path}: missing or unreadable ({e.strerror or e})") from None
    if size != want_bytes:
        raise impossible(folder, f"{path}: {size} bytes, {want_bytes} recorded in {meta_path} "
                                 f"({'truncated' if size < want_bytes else 'modified'})")
    if sha != want_sha:
        raise impossible(folder, f"{path}: sha256 {sha[:12]}... differs from {want_sha[:12]}... recorded in "
                                 f"{meta_path} (modified or corrupted)")
    try:
        tensors = load_file(str(path))
        state = unflatten(meta["tree"], tensors)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise impossible(folder, f"{path}: tensors do not match {meta_path} ({type(e).__name__}: {e})") from None
    if check_state is not None:
        why = check_state(state)
        if why:
            raise impossible(folder, f"{path}: {why}")
    return state
