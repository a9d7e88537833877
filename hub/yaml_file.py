"""Reading a small YAML (or JSON) file a user hands in: a recipe config, a sweep spec. One line per problem."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def read_yaml_file(path: str | Path, max_bytes: int, what: str, error: type[Exception]) -> Any:
    """The parsed content of `path` (None for an empty file). An unreadable, oversized, non-UTF-8 or malformed file
    raises `error` with one line naming the file ("{path}: a {what} larger than N bytes", ...)."""
    import yaml

    p = Path(path)
    try:
        if p.stat().st_size > max_bytes:
            raise error(f"{p}: a {what} larger than {max_bytes} bytes")
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"{p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise error(f"{p}: not a UTF-8 text file") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as e:
        raise error(f"{p}: not valid YAML or JSON ({' '.join(str(e).split())})") from None
