"""Where tensors live and in which precision they are computed: one parser for every `--device` / `device=`.

    resolve_device("auto")   -> cuda when present, else mps when present, else cpu
    resolve_device("cuda:1") -> torch.device("cuda:1"), or DeviceError (one line) where there is no such device
    autocast(device, "bf16") -> a context computing matmuls in bfloat16 (weights and optimizer state stay float32)
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal, get_args

import torch

from modules.errors import ModulesError

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEVICE_CHOICES = "auto|cpu|cuda[:N]|mps"


class DeviceError(ModulesError):
    """A device or precision that this machine cannot provide (one line)."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' (or a torch.device) -> a device this machine has."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps' asked for, but this machine has no Apple-silicon GPU (MPS); "
                              "use --device cpu or auto")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text[5:] if text.startswith("cuda:") else "0"
        if not index_text.isdigit():
            raise DeviceError(f"device '{spec}': expected cuda or cuda:N with N a GPU index")
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{spec}' asked for, but this machine has no CUDA GPU (torch "
                              f"{torch.__version__}); use --device cpu or auto")
        index, count = int(index_text), torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device '{spec}' asked for, but this machine has {count} CUDA GPU(s) "
                              f"(cuda:0..cuda:{count - 1})")
        return torch.device("cuda", index)
    raise DeviceError(f"unknown device '{spec}'; expected {DEVICE_CHOICES}")


def device_name(device: torch.device) -> str:
    """What a card records: 'cpu', 'cuda', 'cuda:1', 'mps' (cuda:0 is written 'cuda')."""
    if device.type == "cuda" and (device.index or 0) == 0:
        return "cuda"
    return str(device)


def check_precision(precision: str, device: torch.device) -> Precision:
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision '{precision}'; known: {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "mps":
        raise DeviceError("precision bf16 is not supported on mps here; use fp32")
    return precision  # type: ignore[return-value]


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Compute in `precision` inside the block: bf16 autocast (matmuls and linear layers in bfloat16, reductions and
    losses in float32) or nothing for fp32."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
