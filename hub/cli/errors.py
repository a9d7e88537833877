"""The CLI's one error policy: a user-facing error becomes `error: <message>` on stderr and exit code 1; the exit codes.

The message is printed literally: ids, paths, repository names, card fields and server messages may contain `[...]`,
which must neither crash rich's markup parser nor render as a style or a link. An OSError (a hub home that is a file,
read-only or full, a path that cannot be read) is a user-facing error too, printed as one line naming the path; any
other exception is a bug and keeps its traceback.

The user-facing errors are caught by their torch-free base classes: hub.errors.MdhubError, cards.CardError and
modules.errors.ModulesError (DatasetError, UnknownEnvError, CheckpointError), so importing this policy imports
neither torch nor the envs.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

import typer
from rich.text import Text

from cards.errors import CardError
from hub.cli.console import err
from hub.errors import MdhubError
from modules.errors import ModulesError

# exit codes (README, "CLI"): 2 is click's usage error (a bad option, a value out of range, a missing argument)
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INCOMPATIBLE: Final = 3  # `mdhub check`: the report says INCOMPATIBLE (the check itself ran fine)

USER_ERRORS: tuple[type[BaseException], ...] = (MdhubError, CardError, ModulesError)


def os_error_message(e: OSError) -> str:
    """One line naming the path(s) and the problem, e.g. `/x/index.lock: Permission denied`."""
    what = e.strerror or str(e) or type(e).__name__
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    if not paths:
        return f"{what} ({type(e).__name__})"
    return f"{' -> '.join(paths)}: {what}"


def print_error(message: str) -> None:
    """`error: <message>` on stderr, the message taken literally (no markup, no highlighting), on one line."""
    line = " ".join(str(message).splitlines())
    line = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in line)  # no terminal escape sequences
    err.print(Text.assemble(("error:", "bold red"), " ", line), highlight=False, soft_wrap=True)


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for CLI commands: print user-facing errors as one line, exit 1, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            print_error(str(e))
            raise typer.Exit(1) from None
        except OSError as e:
            print_error(os_error_message(e))
            raise typer.Exit(1) from None

    return wrapper
