"""`mdhub`: the command line, a thin layer over the Python API (hub.api and friends).

Every command turns the hub's errors into one line on stderr and exit code 1 (no traceback; hub/cli/errors.py).

One registration pattern: each command module (store, data, train, share, demo) exposes
`register(app: typer.Typer) -> None`, which adds its commands (or mounts its sub-app) on the root app built here.
Command modules never import this package's __init__, and import the heavy parts of the hub (torch, pybullet,
huggingface_hub) inside their command functions only: `mdhub --help`, `mdhub list` and `mdhub show` never import
torch.
"""
from __future__ import annotations

import typer

from hub.cli import data, demo, share, store, train

app = typer.Typer(
    name="mdhub",
    help="The modular diffusion hub: train, describe, share and recombine guidance modules and diffusion policies "
    "for offline RL. Modules live in the store under $MDHUB_HOME (default ~/.local/share/mdhub).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the order of `mdhub --help`: list, show, registry, reindex, rm, schema, demo, data, train, eval, check, combine,
# push, pull
for _module in (store, demo, data, train, share):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
