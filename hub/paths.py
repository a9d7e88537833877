"""Where the hub keeps its data: MDHUB_HOME, default a per-user folder."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The hub home: $MDHUB_HOME, else $XDG_DATA_HOME/mdhub, else ~/.local/share/mdhub."""
    env = os.environ.get("MDHUB_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "mdhub"


def run_dir(module_id: str) -> Path:
    """The folder of the training run that makes `module_id`: $MDHUB_HOME/runs/<id> (checkpoint/, scalars.csv,
    scalars.jsonl, tb/ with tensorboard, curve.json and curve.png with learning-curve points)."""
    return home() / "runs" / module_id
