"""`mdhub plot RUN... [--out PNG]`: loss and score curves of training runs, several overlaid (no torch)."""
from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.console import out
from hub.cli.errors import handles_errors
from hub.errors import MdhubError


def resolve_run(ref: str) -> Path:
    """A run by module id (its folder under $MDHUB_HOME/runs) or a run folder path."""
    from hub.paths import run_dir

    by_id = run_dir(ref) if "/" not in ref and ref not in (".", "..") else None
    if by_id is not None and by_id.is_dir():
        return by_id
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    raise MdhubError(f"no training run '{ref}' (neither {by_id or run_dir('<id>')} nor a folder); runs are named by "
                     "the module id they trained (`mdhub list`)")


@handles_errors
def plot_cmd(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="Module ids whose training runs to draw (their "
                                     "folders under $MDHUB_HOME/runs), or run folder paths."),
    out_path: Path | None = typer.Option(None, "--out", "-o", help="PNG to write (default: plot.png in the run's "
                                         "folder for one run, mdhub-plot.png here for several)."),
    title: str = typer.Option("", "--title", help="Figure title."),
) -> None:
    """Draw loss curves and evaluation-score curves of training runs, several runs overlaid, from their
    scalars.jsonl (written beside every run)."""
    from hub.plots import plot_runs
    from modules.train.logs import JSONL, read_scalars

    folders = [resolve_run(r) for r in runs]
    records = {}
    for ref, folder in zip(runs, folders, strict=True):
        recs = read_scalars(folder)
        if not recs:
            raise MdhubError(f"{folder / JSONL}: no scalars logged (a run logs every 100 steps by default; "
                             "runs trained before scalar logs existed have none)")
        records[Path(ref).name if "/" in ref else ref] = recs
    target = out_path or (folders[0] / "plot.png" if len(folders) == 1 else Path("mdhub-plot.png"))
    if target.suffix.lower() != ".png":
        raise MdhubError(f"--out {target}: must be a .png file")
    target.parent.mkdir(parents=True, exist_ok=True)
    plot_runs(records, target, title)
    out.print(f"wrote {target} ({len(records)} run(s): {', '.join(records)})", markup=False, highlight=False,
              soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `plot` to `app`."""
    app.command("plot")(plot_cmd)
