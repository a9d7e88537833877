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
    """The main job on an embedded default: make a small dataset, train two guidance modules and two diffusion
    backbones, recombine them (guided, double guidance, unguided), evaluate each on the same episodes, print guided
    vs unguided side by side, and register everything in the local hub."""
    from hub.demo import DemoConfig, run_demo

    cfg = DemoConfig(prefix=prefix)
    if quick:
        cfg = DemoConfig(prefix=prefix, transitions=5000, guidance_steps=300, diffusion_steps=200, hidden=64,
                         episodes=2, max_episode_steps=200, n_candidates=16)
    if episodes:
        cfg = cfg.model_copy(update={"episodes": episodes})
    rows = run_demo(cfg, say=lambda m: out.print(m, highlight=False, markup=False))
    from hub.demo import side_by_side

    env_id = rows[0].env_id if rows else ""
    table = Table(title=f"demo: recombinations evaluated on {env_id}")
    for col in ("policy", "diffusion", "guidance (train / infer)", "mode", "return", "score"):
        table.add_column(col)
    for r in rows:
        table.add_row(*map(escape, (r.policy, r.diffusion, f"{r.train_guidance} / {r.infer_guidance}", r.mode,
                                    f"{r.return_mean:.0f} +- {r.return_std:.0f}", f"{r.normalized_score:.1f}")))
    out.print(table)
    pairs = Table(title="guided vs unguided: normalised score of each backbone (the same episodes)")
    for col in ("backbone", "unguided (one sample)", f"guided (N={cfg.n_candidates}, its guidance)",
                "double guidance (another seed's)", "guided - unguided"):
        pairs.add_column(col, justify="right" if col != "backbone" else "left")
    for backbone, cells in side_by_side(rows).items():
        pairs.add_row(escape(backbone), *(f"{cells[k]:.1f}" if k in cells else "-"
                                          for k in ("unguided", "native", "double")),
                      f"{cells['native'] - cells['unguided']:+.1f}" if {"native", "unguided"} <= set(cells) else "-")
    out.print(pairs)
    out.print("stored (policy cards reference their parts):")
    for r in rows:
        out.print(f"  {r.policy}: {r.path}", highlight=False, soft_wrap=True, markup=False)
    out.print(f"These are CPU-sized runs ({cfg.guidance_steps} guidance / {cfg.diffusion_steps} diffusion steps, "
              f"{cfg.episodes} episodes per score): scores move by several points between seeds and episodes. Over "
              "5 demo seeds (benchmarks/demo_seeds.py, README, Results) guidance lifts the IDQL backbone on every "
              "seed; see there what it does not do at this budget.", highlight=False)
    # ids the demo stored under its prefix (hub/demo.py), so each hint is a command that works as printed
    out.print(f"Next: `mdhub list`, `mdhub show {prefix}-dql-double`, `mdhub check {prefix}-iql-s1 {prefix}-dql-gf`.",
              highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add demo to `app`."""
    app.command("demo")(demo_cmd)
