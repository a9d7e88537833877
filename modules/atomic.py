"""Durable writes shared by the store, module folders, the file remote, datasets and checkpoints (no torch)."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it (callers rename it into place or journal it)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """fsync a folder, so the renames in it survive a power loss (best effort where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
