"""`mdhub sweep SPEC.yaml`: a recombination sweep (hub.sweeps, imported inside the command: the CLI starts without
it). Train the spec's guidance and diffusion arms, combine every pairing it names, evaluate, print the leaderboard."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from hub.cli.console import emit_json, err, out
from hub.cli.errors import handles_errors

JSON_HELP = ("Print one JSON document on stdout (name, folder, dry_run, jobs, ran, skipped, failed, blocked, "
             "leaderboard, files); progress lines go to stderr.")


@handles_errors
def sweep_cmd(
    spec: Path = typer.Argument(..., help="The sweep spec (YAML or JSON): datasets, guidance and diffusion arms, "
                                "combinations, evaluation, device (see benchmarks/sweeps/gfdt.yaml)."),
    executor: str = typer.Option("local", "--executor", "-e",
                                 help="local: a process pool on this machine; ray: a Ray cluster."),
    address: str | None = typer.Option(None, "--address", help="The Ray cluster: auto (the running one) or ADDR "
                                       "(default: start a local one). Only with --executor ray."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Jobs at a time on the local executor "
                                       "(default: this machine's cores; 1: in this process)."),
    until: str | None = typer.Option(None, "--until", help="Run the stages up to this one only: guidance, diffusion, "
                                     "combine or evaluate (a later call continues)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the spec and print the job graph; run nothing."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run a recombination sweep: every job is one call of the Python API, stored as modules with cards; finished
    jobs are skipped on a rerun (an interrupted sweep continues, a changed arm reruns only what depends on it). The
    leaderboard (IQM [95% CI] over seeds, mean +- std, AUC, wall time, peak memory) is printed and written with a
    heatmap and learning curves under $MDHUB_HOME/sweeps/NAME/."""
    from hub.errors import MdhubError
    from hub.sweeps import sweep
    from hub.sweeps.executors import EXECUTORS
    from hub.sweeps.spec import STAGES

    if executor not in EXECUTORS:
        raise MdhubError(f"unknown executor '{executor}'; known: {', '.join(EXECUTORS)}")
    if until is not None and until not in STAGES:
        raise MdhubError(f"unknown stage '{until}' for --until; stages: {', '.join(STAGES)}")

    def echo(line: str) -> None:
        err.print(line, markup=False, highlight=False, soft_wrap=True)

    try:
        r = sweep(spec, executor=executor, address=address, workers=workers, dry_run=dry_run,
                  until=until, echo=echo)
    except KeyboardInterrupt:
        err.print(f"interrupted; finished jobs are recorded: rerun `mdhub sweep {spec}` to continue", markup=False,
                  highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if as_json:
        emit_json(r.as_dict())
    elif dry_run:
        out.print(f"sweep {r.name}: {len(r.graph.jobs)} job(s); nothing run (--dry-run)", markup=False,
                  highlight=False)
        for line in r.graph.describe():
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(f"sweep {r.name}: {len(r.ran)} job(s) ran, {len(r.skipped)} already done, {len(r.failed)} failed, "
                  f"{len(r.blocked)} blocked; folder {r.folder}", markup=False, highlight=False, soft_wrap=True)
        if r.leaderboard and r.leaderboard["rows"]:
            from hub.sweeps.leaderboard import table

            out.print(table(r.leaderboard))
            out.print("files: " + ", ".join(f"{k} {escape(v)}" for k, v in sorted(r.files.items())), highlight=False,
                      soft_wrap=True)
    if r.failed or r.blocked:
        first = next(iter(r.failed.items()), None)
        detail = f"; first: {first[0][:8]} {r.graph.jobs[first[0]].name}: {first[1]}" if first else ""
        raise MdhubError(f"sweep {r.name}: {len(r.failed)} job(s) failed, {len(r.blocked)} blocked{detail} "
                         f"(tracebacks in {r.folder / 'failed'}; rerun to retry them)")


def register(app: typer.Typer) -> None:
    """Add sweep to `app`."""
    app.command("sweep")(sweep_cmd)
