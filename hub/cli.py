"""`mdhub`: the command line, a thin layer over the Python API (hub.api and friends).

Every command turns the hub's errors into one line on stderr and exit code 1 (no traceback).
"""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cards import card_json_schema, card_to_json
from hub import api
from hub.cli_errors import handles_errors

app = typer.Typer(
    name="mdhub",
    help="The modular diffusion hub: train, describe, share and recombine guidance modules and diffusion policies "
    "for offline RL. Modules live in the store under $MDHUB_HOME (default ~/.local/share/mdhub).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()

@app.command("list")
@handles_errors
def list_cmd(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Only this kind: guidance, diffusion or policy."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the modules in the local store."""
    entries = api.list_modules(kind)
    if as_json:
        out.print_json(json.dumps([e.as_dict() for e in entries]))
        return
    if not entries:
        out.print("The store is empty. `mdhub demo` trains a few modules; `mdhub pull REPO` fetches one.")
        return
    table = Table(title=f"{len(entries)} stored module(s)")
    for col in ("id", "kind", "architecture", "sha256", "source"):
        table.add_column(col)
    for e in entries:
        table.add_row(*map(escape, (e.id, e.kind, e.architecture, (e.sha256 or "-")[:12], e.source or "local")))
    out.print(table)


@app.command("show")
@handles_errors
def show_cmd(
    ref: str = typer.Argument(..., help="A store id or a module folder path."),
    as_json: bool = typer.Option(False, "--json", help="Print the card as JSON."),
) -> None:
    """Show a module's card."""
    card = api.show(ref)
    if as_json:
        sys.stdout.write(card_to_json(card))
        return
    i, o = card.interface, card.origin
    table = Table(title=f"{card.id} ({card.kind})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows: list[tuple[str, str]] = [
        ("architecture", card.architecture),
        ("algorithm / recipe", f"{o.algorithm} / {o.recipe}"),
        ("seed / steps", f"{o.seed} / {o.steps}"),
        ("obs_dim / act_dim", f"{i.obs_dim} / {i.act_dim}"),
        ("action bounds", f"[{i.action_low}, {i.action_high}]"),
        ("normalises obs inside", str(i.obs_normalised)),
        ("env", i.env_id or "-"),
        ("dataset", f"{i.dataset.id} ({(i.dataset.sha256 or '-')[:12]})" if i.dataset else "-"),
        ("config", json.dumps(card.config, sort_keys=True)),
    ]
    if o.trained_with_guidance:
        rows.append(("trained with guidance", f"{o.trained_with_guidance.id} ({(o.trained_with_guidance.sha256 or '-')[:12]})"))
    if card.guidance:
        g = card.guidance
        rows += [
            ("provides", ", ".join(g.provides)),
            ("Q heads / reduction", f"{g.q_heads} / {g.reduction}"),
            ("discount / expectile", f"{g.discount} / {g.expectile}"),
            ("reward transform", f"{g.reward_transform.kind}: r' = {g.reward_transform.scale:.4g} r + {g.reward_transform.shift:.4g}"),
        ]
        if g.value_stats:
            v = g.value_stats
            rows.append(("Q statistics", f"mean {v.mean:.4g}, std {v.std:.4g}, [{v.min:.4g}, {v.max:.4g}]"))
    if card.diffusion:
        d = card.diffusion
        rows += [
            ("schedule / T / target", f"{d.schedule} / {d.T} / {d.prediction}"),
            ("train guidance modes", ", ".join(d.train_guidance) or "-"),
            ("sample guidance modes", ", ".join(d.sample_guidance) or "-"),
        ]
    if card.policy:
        p = card.policy
        rows += [("diffusion part", p.diffusion.id), ("mode", p.mode)]
        if p.train_guidance:
            rows.append(("training guidance", p.train_guidance.id))
        if p.infer_guidance:
            rows.append(("inference guidance", p.infer_guidance.id))
        if p.adapters:
            rows.append(("adapters", "; ".join(p.adapters)))
    for f in card.files:
        rows.append((f"file {f.name}", f"{f.size} bytes, sha256 {f.sha256[:16]}..."))
    for k, v in sorted(card.metrics.items()):
        rows.append((f"metric {k}", f"{v:.4g}" if isinstance(v, float) else str(v)))
    if card.hub_source:
        s = card.hub_source
        rows.append(("pulled from", f"{s.backend}://{s.repo} @ {s.commit or s.revision}"))
    for k, v in rows:
        table.add_row(escape(k), escape(v))
    out.print(table)


@app.command("registry")
@handles_errors
def registry_cmd(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Only this kind: guidance, diffusion or policy."),
) -> None:
    """List the architectures this hub can build, and their capabilities."""
    from hub.registry import registry

    table = Table(title="registered architectures")
    for col in ("id", "kind", "provides / train modes", "sample modes", "builder", "description"):
        table.add_column(col)
    for a in registry():
        if kind and a.kind != kind:
            continue
        caps = ", ".join(a.provides) if a.kind == "guidance" else ", ".join(a.train_guidance)
        table.add_row(*map(escape, (a.id, a.kind, caps or "-", ", ".join(a.sample_guidance) or "-", a.build,
                                    a.description)))
    out.print(table)


@app.command("reindex")
@handles_errors
def reindex_cmd() -> None:
    """Rebuild the store's index from its module folders (after a crash or a corrupted index)."""
    from hub.store import Store

    n = Store().reindex()
    out.print(f"indexed {n} module(s)")


@app.command("rm")
@handles_errors
def rm_cmd(
    module_id: str = typer.Argument(..., help="Store id of the module to remove."),
    force: bool = typer.Option(False, "--force", help="Remove it even though stored policies reference it (they "
                               "will no longer load)."),
) -> None:
    """Remove a module from the store. Refused while a stored policy references it, unless --force."""
    from hub.store import Store

    store = Store()
    users = store.referencing_policies(module_id) if force else []
    store.remove(module_id, force=force)
    out.print(f"removed {module_id}", highlight=False, markup=False)
    if users:
        out.print(f"these policies referenced it and will not load: {', '.join(users)}", highlight=False, markup=False)


@app.command("schema")
@handles_errors
def schema_cmd() -> None:
    """Print the JSON Schema of the module card."""
    sys.stdout.write(json.dumps(card_json_schema(), indent=2, sort_keys=True) + "\n")


@app.command("demo")
@handles_errors
def demo_cmd(
    quick: bool = typer.Option(False, "--quick", help="A smaller run (about a minute) that checks everything works."),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="Evaluation episodes per recombination."),
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
    out.print("Next: `mdhub list`, `mdhub show demo-dql-double`, `mdhub check demo-iql-s1 demo-dql-gf`.")


from hub.cli_data import data_app  # noqa: E402

app.add_typer(data_app, name="data")
import hub.cli_train  # noqa: E402,F401  (registers train / eval / check / combine)
from hub.cli_share import register as _register_sharing  # noqa: E402

_register_sharing(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
