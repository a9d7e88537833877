"""`mdhub eval-run`: evaluate a training run's checkpoint modules after training (in parallel) and write its learning
curve; a thin wrapper over hub.evaluation.evaluate_run (imported, with torch, inside the command only)."""
from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from hub.cli.console import emit_json, out
from hub.cli.errors import handles_errors

JSON_HELP = "Print one JSON document on stdout instead of text (id, env_id, episodes, seed, device, points, files)."


@handles_errors
def eval_run_cmd(
    module_id: str = typer.Argument(..., help="The run's final module id: its checkpoints are the stored modules "
                                    "whose card says checkpoint_of ID (ids ID-stepN)."),
    episodes: int = typer.Option(10, "--episodes", "-n", min=1, help="Episodes per checkpoint."),
    seed: int = typer.Option(0, "--seed", help="Episode i of every checkpoint is reset with seed S + i."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Processes rolling out in parallel "
                                       "(default: this machine's CPU cores; 1: in this process)."),
    device: str = typer.Option("cpu", "--device", help="Where the policies compute: auto | cpu | cuda[:N] | mps "
                               "(the simulator always steps on the CPU)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Cap each episode at N steps (default: "
                                         "the task's 1000)."),
    no_write: bool = typer.Option(False, "--no-write", help="Do not record the evaluations on the cards."),
    compile_: bool = typer.Option(False, "--compile", help="Compile each policy's action selection (torch.compile: "
                                  "~20 s, then ~1.2x; float rounding differs, so the episodes differ from eager)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Evaluate every checkpoint of a training run (and its final module, when stored) in parallel, record each
    result on its card, and write the learning curve to the run folder: eval_curve.csv, eval_curve.json and
    eval_curve.png (normalised score and return vs gradient steps)."""
    from hub.evaluation import evaluate_run

    r = evaluate_run(module_id, episodes=episodes, seed=seed, workers=workers, device=device, write=not no_write,
                     max_steps=max_steps, progress=not as_json, compile=compile_)
    if as_json:
        emit_json(r)
        return
    table = Table(title=f"run {module_id}: {episodes} episode(s) per module, seed {seed}, {r['env_id']}")
    for col in ("step", "module", "return", "normalised score"):
        table.add_column(col, justify="left" if col == "module" else "right")
    for p in r["points"]:
        table.add_row("-" if p["step"] is None else str(p["step"]),
                      escape(p["id"]) + (" (final)" if p["final"] else ""),
                      f"{p['return_mean']:.1f} +- {p['return_std']:.1f}",
                      f"{p['normalized_score']:.1f} +- {p['normalized_score_std']:.1f}")
    out.print(table)
    sampling = sorted({p["sampling"] + (f" scored by {p['guidance']}" if p["guidance"] else "") for p in r["points"]})
    out.print(f"sampling: {'; '.join(sampling)}", markup=False, highlight=False, soft_wrap=True)
    files = r["files"]
    out.print(f"learning curve: {files['png']} (data: {files['csv']}, {files['json']})", markup=False,
              highlight=False, soft_wrap=True)
    if any(p["written"] for p in r["points"]):
        out.print("each result added to its module's card evaluations (`mdhub show ID`)", markup=False,
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add eval-run to `app`."""
    app.command("eval-run")(eval_run_cmd)
