"""The CLI's two consoles: `out` (stdout: tables, results) and `err` (stderr: the one-line errors of hub.cli.errors)."""
from __future__ import annotations

from rich.console import Console

out = Console()
err = Console(stderr=True)
