"""`mdhub demo`: the main job on an embedded default (hub/demo.py), imported when the command runs."""
from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from hub.cli.console import out
from hub.cli.errors import handles_errors


@handles_errors
def demo_cmd(
    quick: bool = typer.Option(False, "--quick", help="A smaller run (about a minute) that checks everything works."),
    episodes: int | None = typer.Option(None, "--episodes", help="Evaluation episodes per recombination."),
    prefix: str = typer.Option("demo", "--prefix", help="Id prefix of the modules the demo stores."),
) -> None:
    """The main job on an embedded default: make a small hopper dataset, train two guidance modules and two diffusion
    backbones, recombine them (crosswise, double guidance), evaluate, and register everything in the local hub."""
    from hub.demo import DemoConfig, run_demo

    cfg = DemoConfig(prefix=prefix)
    if quick:
        cfg = DemoConfig(prefix=prefix, transitions=5000, guidance_steps=300, diffusion_steps=200, hidden=64,
                         episodes=2, max_episode_steps=200, n_candidates=16)
    if episodes:
        cfg = cfg.model_copy(update={"episodes": episodes})
    rows = run_demo(cfg, say=lambda m: out.print(m, highlight=False, markup=False))
    table = Table(title="demo: recombinations evaluated on HopperBulletEnv-v0")
    for col in ("policy", "diffusion", "guidance (train / infer)", "mode", "return", "score"):
        table.add_column(col)
    for r in rows:
        table.add_row(*map(escape, (r.policy, r.diffusion, f"{r.train_guidance} / {r.infer_guidance}", r.mode,
                                    f"{r.return_mean:.0f} +- {r.return_std:.0f}", f"{r.normalized_score:.1f}")))
    out.print(table)
    out.print("stored (policy cards reference their parts):")
    for r in rows:
        out.print(f"  {r.policy}: {r.path}", highlight=False, soft_wrap=True, markup=False)
    out.print(f"These are CPU-sized runs ({cfg.guidance_steps} guidance / {cfg.diffusion_steps} diffusion steps, "
              f"{cfg.episodes} episodes per score): a young critic can pick worse actions than no guidance at all, "
              "and scores move by several points between seeds. Full-budget figures: README, Results.",
              highlight=False)
    # ids the demo stored under its prefix (hub/demo.py), so each hint is a command that works as printed
    out.print(f"Next: `mdhub list`, `mdhub show {prefix}-dql-double`, `mdhub check {prefix}-iql-s1 {prefix}-dql-gf`.",
              highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add demo to `app`."""
    app.command("demo")(demo_cmd)
