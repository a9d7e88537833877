"""`mdhub`: the command line, a thin layer over the Python API (hub.api and friends).

Every command turns the hub's errors into one line on stderr and exit code 1 (no traceback; hub/cli/errors.py).
Exit codes: 0 ok, 1 error, 2 usage (click's), 3 `check`'s INCOMPATIBLE verdict (hub/cli/errors.py: EXIT_*).

One registration pattern: each command module (store, data, train, plot, share, demo) exposes
`register(app: typer.Typer) -> None`, which adds its commands (or mounts its sub-app) on the root app built here.
Command modules never import this package's __init__, and import the heavy parts of the hub (torch, pybullet,
huggingface_hub) inside their command functions only: `mdhub --help`, `mdhub list` and `mdhub show` never import
torch.
"""
from __future__ import annotations

import typer

from hub.cli import data, demo, plot, runs, share, store, sweep, train


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("modular-diffusion-hub")
        except PackageNotFoundError:  # run from a source tree that was never installed
            v = "unknown"
        typer.echo(f"mdhub {v}")
        raise typer.Exit(0)


app = typer.Typer(
    name="mdhub",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """The modular diffusion hub: train, describe, share and recombine guidance modules and diffusion policies for
    offline RL. Modules live in the store under $MDHUB_HOME (default ~/.local/share/mdhub).

    Exit codes: 0 ok, 1 error, 2 usage error, 3 `check` found the pair INCOMPATIBLE. Commands that report take
    --json (one JSON document on stdout)."""


# the order of `mdhub --help`: list, show, registry, reindex, rm, schema, demo, data, train, eval, check, combine,
# plot, push, pull (then search)
for _module in (store, demo, data, train, plot, share):
    _module.register(app)
runs.register(app)  # eval-run: a training run's checkpoints, evaluated after training
sweep.register(app)  # sweep: recombination sweeps (hub.sweeps)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
