"""A module on disk: one folder, read and written atomically and verified.

A module folder holds `model.safetensors` (weights and buffers only), `card.json` (the card) and `README.md` (the card
rendered as a Hugging Face model card). A policy card references its parts and has no weights file.

Saving is atomic: the folder is written under a temporary name and renamed into place; in the store, the index is
then switched to the new folder under a file lock (so concurrent writers cannot corrupt it) and the old folder removed.
Loading validates the card, resolves `architecture` through the local registry only, builds from `config`, verifies
the sha256 and loads the tensors strictly (a missing, extra, mis-shaped or mis-typed tensor is an error).

Hostile folders are refused before anything large is read or allocated: every module file must be a regular file (not
a symlink, directory, FIFO or device) and is read with a size cap; the network is first built on torch's `meta` device
(shapes only, no memory), its size capped, and its tensor names, shapes and dtypes compared with the weights file's
safetensors header; only then is the file read, hashed and the network built for real.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import platform
import secrets
import shutil
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from safetensors import SafetensorError

from cards import CardError, FileEntry, ModuleCard, card_from_json, card_to_json, card_to_readme
from cards.io import MAX_CARD_BYTES, parse_json
from hub.errors import IntegrityError, NotFoundError, RegistryError, StoreError
from hub.registry import Architecture, registry
from modules.atomic import fsync_write

WEIGHTS = "model.safetensors"
CARD = "card.json"
README = "README.md"

MAX_WEIGHTS_BYTES = 16 * 2**30
"""A weights file is never read past the size its card declares, nor past this."""
MAX_HEADER_BYTES = 4_000_000
"""The JSON header of a safetensors file (a few hundred bytes per tensor)."""
MAX_PARAMS = 200_000_000
"""Numbers in a module's state dict (parameters and buffers) that a card's config may ask for (800 MB in float32)."""


def inside(root: Path, child: Path) -> Path:
    """`child` checked to lie strictly inside `root`: no '..' component, no symlink at or below `root` on the way to
    it, and its resolved path under `root`'s resolved path. Returns `root / <relative part>` (not resolved), or
    raises StoreError naming both. `child` may be absolute or relative to `root`; it need not exist.

    Use it for every folder name that comes from data (an index entry, a policy part): a tampered index must not make
    the store read, replace or delete anything outside it."""
    root = Path(root)
    child = Path(child)
    full = child if child.is_absolute() else root / child
    try:
        rel = full.relative_to(root)
    except ValueError:
        rel = None
    if rel is None or not rel.parts or any(part in ("..", ".", "") for part in rel.parts):
        raise StoreError(f"{child}: a module folder must be a folder inside {root}; refused (a tampered index?)")
    here = root
    for part in rel.parts:
        here = here / part
        if here.is_symlink():
            raise StoreError(f"{here}: is a symlink; a module folder in {root} must be a real folder, refused")
    try:
        root_real = root.resolve()
        real = here.resolve()
    except (OSError, RuntimeError) as err:
        raise StoreError(f"{child}: cannot be resolved ({err}); refused") from None
    if real == root_real or root_real not in real.parents:
        raise StoreError(f"{child}: resolves to {real}, outside {root}; refused (a tampered index?)")
    return here


_KIND_NAMES = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symlink"}


def _not_regular(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return _KIND_NAMES.get(stat.S_IFMT(mode), "not a regular file")


def check_regular(path: Path, error: type[StoreError] = StoreError, required: bool = True) -> os.stat_result | None:
    """lstat `path` and refuse anything but a regular file (a symlink, directory, FIFO, device). None if missing and
    not `required`."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if required:
            raise error(f"{path}: missing (a module folder needs it)") from None
        return None
    what = _not_regular(st.st_mode)
    if what is not None:
        raise error(f"{path}: is {what}, not a regular file; a module file must be a plain file inside its folder")
    return st


def _open_regular(path: Path, error: type[StoreError], missing: str) -> tuple[BinaryIO, os.stat_result]:
    """Open a module file for reading: never following a symlink, never blocking on a FIFO, refusing anything but a
    regular file. Returns (binary file object, its fstat)."""
    check_regular(path, error, required=False)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise error(f"{path}: is a symlink, not a regular file; a module file must be a plain file inside its "
                        "folder") from None
        raise
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    what = _not_regular(st.st_mode)
    if what is not None:  # it changed between lstat and open
        f.close()
        raise error(f"{path}: is {what}, not a regular file; a module file must be a plain file inside its folder")
    return f, st


def read_regular(path: Path, limit: int, error: type[StoreError] = StoreError, exact: int | None = None,
                 missing: str = "missing") -> bytes:
    """The bytes of a regular file in a module folder (see _open_regular), never more than `limit`. With `exact`,
    the file must be exactly that many bytes."""
    path = Path(path)
    f, st = _open_regular(path, error, missing)
    with f:
        if exact is not None and st.st_size != exact:
            raise error(f"{path}: {st.st_size} bytes, the card says {exact} (truncated or replaced?)")
        if st.st_size > limit:
            raise error(f"{path}: {st.st_size} bytes is over the {limit}-byte limit")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise error(f"{path}: over the {limit}-byte limit")
    if exact is not None and len(data) != exact:
        raise error(f"{path}: {len(data)} bytes, the card says {exact} (truncated or replaced?)")
    return data


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


def versions() -> dict[str, str]:
    """The versions a module was made with (recorded on its card)."""
    import torch

    from hub import __version__

    return {"mdhub": __version__, "torch": torch.__version__.split("+")[0], "python": platform.python_version()}


def finalize_card(net: Any, card: ModuleCard) -> tuple[ModuleCard, bytes | None]:
    """The card as it will be stored (files and versions filled in) and the weights bytes."""
    if card.kind == "policy":
        if net is not None:
            raise StoreError(f"module '{card.id}': a policy card references its parts; it has no weights to save")
        return card.model_copy(update={"files": []}), None
    if net is None:
        raise StoreError(f"module '{card.id}': a {card.kind} module needs its network to be saved")
    data = weights_bytes(net)
    made_with = {**versions(), **card.origin.versions}
    origin = card.origin.model_copy(update={"versions": made_with})
    files = [FileEntry(name=WEIGHTS, sha256=sha256_bytes(data), size=len(data))]
    # Re-validate the whole card: a card that does not validate is never written.
    final = ModuleCard.model_validate({**card.model_dump(), "origin": origin.model_dump(),
                                       "files": [f.model_dump() for f in files]})
    return final, data


def write_folder(folder: Path, card: ModuleCard, weights: bytes | None) -> None:
    """Write a module folder atomically (temporary sibling, then rename). An existing folder is replaced."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        if weights is not None:
            fsync_write(tmp / WEIGHTS, weights)
        fsync_write(tmp / CARD, card_to_json(card).encode())
        fsync_write(tmp / README, card_to_readme(card).encode())
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
    """Read and validate a folder's card.json (no torch, no weights). card.json must be a regular file of at most
    MAX_CARD_BYTES; README.md, when present, a regular file (not a symlink)."""
    folder = Path(folder)
    if not folder.exists():
        raise NotFoundError(f"{folder}: no such module folder")
    if not folder.is_dir():
        raise NotFoundError(f"{folder}: not a module folder (expected a directory with {CARD})")
    path = folder / CARD
    text = read_regular(path, MAX_CARD_BYTES, missing=f"missing (a module folder needs {CARD})")
    check_regular(folder / README, required=False)
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
    if entry.size > MAX_WEIGHTS_BYTES:
        raise IntegrityError(f"{Path(folder) / CARD}: declares a {entry.size}-byte '{WEIGHTS}', over the "
                             f"{MAX_WEIGHTS_BYTES}-byte limit")
    data = read_regular(path, entry.size, IntegrityError, exact=entry.size, missing="missing (the card lists it)")
    digest = sha256_bytes(data)
    if digest != entry.sha256:
        raise IntegrityError(f"{path}: sha256 mismatch: the card says {entry.sha256[:16]}..., "
                             f"the file has {digest[:16]}...")
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


def _tensor_specs(state: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """(safetensors dtype name, shape) of each tensor of a state dict."""
    import torch

    return {k: (_ST_DTYPES.get(str(t.dtype).replace("torch.", ""), str(t.dtype)), tuple(t.shape))
            for k, t in state.items() if isinstance(t, torch.Tensor)}


def load_state_strict(net: Any, state: dict[str, Any], source: str) -> None:
    """Load tensors into `net`, refusing any missing, unexpected, mis-shaped or mis-typed tensor (the same check
    `check_header` makes on the file's header before anything is built)."""
    check_header(_tensor_specs(net.state_dict()), _tensor_specs(state), source)
    net.load_state_dict(state, strict=True)


# safetensors dtype names of the torch dtypes a state dict may hold
_ST_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
              "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
_TORCH_NAMES = {v: k for k, v in _ST_DTYPES.items()}


def _short(name: Any, limit: int = 80) -> str:
    """repr of a name from a file, cut to `limit` characters (an error message stays one readable line)."""
    text = repr(name)
    return text if len(text) <= limit else text[:limit - 3] + "..."
_ST_ITEMSIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
                "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def weights_header(folder: Path, card: ModuleCard) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The tensors model.safetensors declares, {name: (safetensors dtype, shape)}, from its header alone (at most
    8 + MAX_HEADER_BYTES bytes read). The file must be a regular file of the size the card declares, and the header
    must describe exactly the rest of the file."""
    path = Path(folder) / WEIGHTS
    entry = card.file(WEIGHTS)
    if entry is None:
        raise IntegrityError(f"{Path(folder) / CARD}: the card lists no '{WEIGHTS}' in 'files'")
    if entry.size > MAX_WEIGHTS_BYTES:
        raise IntegrityError(f"{Path(folder) / CARD}: declares a {entry.size}-byte '{WEIGHTS}', over the "
                             f"{MAX_WEIGHTS_BYTES}-byte limit")
    f, st = _open_regular(path, IntegrityError, "missing (the card lists it)")
    with f:
        if st.st_size != entry.size:
            raise IntegrityError(f"{path}: {st.st_size} bytes, the card says {entry.size} (truncated or replaced?)")
        head = f.read(8)
        if len(head) < 8:
            raise IntegrityError(f"{path}: not a valid safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or n > st.st_size - 8:
            raise IntegrityError(f"{path}: not a valid safetensors file (a {n}-byte header in a {st.st_size}-byte "
                                 f"file; at most {MAX_HEADER_BYTES})")
        raw = f.read(n)
    if len(raw) != n:
        raise IntegrityError(f"{path}: not a valid safetensors file (header cut short)")
    try:
        header = parse_json(raw, f"{path}: safetensors header", limit=MAX_HEADER_BYTES)
    except CardError as err:
        raise IntegrityError(f"{err} (not a valid safetensors file)") from None
    if not isinstance(header, dict):
        raise IntegrityError(f"{path}: not a valid safetensors file (its header is not a JSON object)")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, stop) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            ok = (isinstance(dtype, str) and all(isinstance(d, int) and d >= 0 for d in shape)
                  and isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise IntegrityError(f"{path}: not a valid safetensors file (header entry {_short(name)} is malformed)")
        numel = 1
        for d in shape:
            numel *= d
            if numel > st.st_size:  # (also keeps the product small)
                raise IntegrityError(f"{path}: not a valid safetensors file (tensor {_short(name)} declares more "
                                     "numbers than the file has bytes)")
        size = _ST_ITEMSIZE.get(dtype)
        if size is not None and numel * size != stop - start:
            raise IntegrityError(f"{path}: not a valid safetensors file (tensor {_short(name)}: {numel} x "
                                 f"{_short(dtype)} in {stop - start} bytes)")
        end = max(end, stop)
        out[name] = (dtype, shape)
    if 8 + n + end != st.st_size:
        raise IntegrityError(f"{path}: not a valid safetensors file (its header describes {8 + n + end} bytes, the "
                             f"file has {st.st_size})")
    return out


def _meta_scalars_mode() -> Any:
    """A torch function mode for building on the meta device: a builder that reads a number back from a tensor (a
    noise schedule turned into python floats) gets 0 instead of an error. Only the shapes of that build are used."""
    import torch
    from torch.overrides import TorchFunctionMode

    scalar = {torch.Tensor.item: 0.0, torch.Tensor.__float__: 0.0, torch.Tensor.__int__: 0,
              torch.Tensor.__index__: 0, torch.Tensor.__bool__: False}

    class MetaScalars(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: dict[str, Any] | None = None) -> Any:
            if func in scalar and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
                return scalar[func]
            return func(*args, **(kwargs or {}))

    return MetaScalars()


def expected_tensors(arch: Architecture, config: dict[str, Any], source: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The state dict a card's config asks for, {name: (safetensors dtype, shape)}, from a build on torch's meta
    device (no memory is allocated), refusing more than MAX_PARAMS numbers. Config errors are RegistryErrors."""
    import torch

    try:
        with torch.device("meta"), _meta_scalars_mode():
            net = arch.make(config, source=source)
            state = net.state_dict()
    except (RegistryError, StoreError):
        raise
    except (RuntimeError, ValueError, TypeError, NotImplementedError, IndexError) as err:
        raise RegistryError(f"{source}: architecture '{arch.id}' cannot be built from this config ({err})") from None
    out = _tensor_specs(state)
    total = sum(math.prod(shape) for _, shape in out.values())
    if total > MAX_PARAMS:
        raise StoreError(f"{source}: field 'config' asks for a '{arch.id}' network of {total:,} numbers, over the "
                         f"{MAX_PARAMS:,} this hub loads; refused before building it")
    return out


def check_header(expected: dict[str, tuple[str, tuple[int, ...]]], got: dict[str, tuple[str, tuple[int, ...]]],
                 source: str) -> None:
    """Refuse weights whose tensor names, shapes or dtypes differ from what the architecture expects."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        shown = ", ".join(_short(k) for k in extra[:5])
        problems.append(f"unexpected tensors [{shown}]{' ...' if len(extra) > 5 else ''}")
    for k in sorted(set(expected) & set(got)):
        (e_dtype, e_shape), (g_dtype, g_shape) = expected[k], got[k]
        if e_shape != g_shape:
            problems.append(f"tensor '{k}': expected shape {e_shape}, got {_short(g_shape)}")
        elif e_dtype != g_dtype:
            problems.append(f"tensor '{k}': expected dtype {_TORCH_NAMES.get(e_dtype, e_dtype)}, got "
                            f"{_TORCH_NAMES.get(g_dtype, g_dtype)[:40]}")
    if problems:
        raise IntegrityError(f"{source}: weights do not fit the architecture: " + "; ".join(problems))


def load_folder(folder: Path) -> StoredModule:
    """Load a module folder: validate the card, check the config's shapes and size on the meta device against the
    weights file's header, then verify the sha256, build through the registry and load the weights strictly."""
    folder = Path(folder)
    card = read_card(folder)
    if card.kind == "policy":
        return StoredModule(card=card, net=None, path=folder)
    arch = registry().get(card.architecture, kind=card.kind)
    expected = expected_tensors(arch, card.config, str(folder / CARD))
    check_header(expected, weights_header(folder, card), str(folder / WEIGHTS))
    state = read_weights(folder, card)
    net = arch.make(card.config, source=str(folder / CARD))
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
