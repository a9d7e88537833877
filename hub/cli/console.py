"""The CLI's two consoles: `out` (stdout: tables, results) and `err` (stderr: the one-line errors of hub.cli.errors),
and `emit_json`, the one way a command prints its `--json` result (plain JSON on stdout, nothing else there)."""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

out = Console()
err = Console(stderr=True)


def emit_json(data: Any) -> None:
    """Write `data` as JSON on stdout: sorted keys, 2-space indent, one trailing newline, no markup or wrapping."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
    sys.stdout.flush()
