"""`mdhub list`, `show`, `registry`, `reindex`, `rm`, `schema`: the local store and the registry (no torch)."""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from hub.cli.console import emit_json, out
from hub.cli.errors import USER_ERRORS, handles_errors

if TYPE_CHECKING:
    from cards import ModuleCard


LIST_FIELDS = ("id", "kind", "architecture", "algorithm", "env", "dataset", "score", "source", "sha256", "folder")


def _score(card: ModuleCard) -> float | None:
    """The card's normalised score: its best-founded evaluation's (most episodes), else a legacy metric of record."""
    from cards import best_evaluation

    best = best_evaluation(card.evaluations)
    if best is not None:
        return best.normalized_score
    v = card.metrics.get("normalized_score")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def list_rows(kind: str | None) -> list[dict[str, Any]]:
    """One row per stored module, the `mdhub list --json` schema (LIST_FIELDS): the index entry plus, read from
    the card, its algorithm, env, dataset and normalised score (None where the card lacks them or cannot be read)."""
    from hub import api
    from hub.store import Store

    store = Store()
    rows = []
    for e in api.list_modules(kind, store=store):
        row: dict[str, Any] = {**e.as_dict(), "algorithm": None, "env": None, "dataset": None, "score": None}
        try:
            card = store.card(e.id)
        except USER_ERRORS + (OSError,):  # a damaged module still lists; `mdhub show ID` says what is wrong
            pass
        else:
            row.update(algorithm=card.origin.algorithm, env=card.interface.env_id,
                       dataset=card.interface.dataset.id if card.interface.dataset else None, score=_score(card))
        row["source"] = row["source"] or "local"
        rows.append({k: row[k] for k in LIST_FIELDS})
    return rows


@handles_errors
def list_cmd(
    kind: str | None = typer.Option(None, "--kind", "-k", help="Only this kind: guidance, diffusion or policy."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table (keys: "
                                 + ", ".join(LIST_FIELDS) + ")."),
) -> None:
    """List the modules in the local store: kind, architecture, algorithm, env, dataset, score and source."""
    rows = list_rows(kind)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        out.print("The store is empty. `mdhub demo` trains a few modules; `mdhub pull REPO_ID` fetches one.")
        return
    table = Table(title=f"{len(rows)} stored module(s)")
    # ids are never cut (they are what the user types next); the other columns fold on a narrow terminal
    table.add_column("id", min_width=max(len(r["id"]) for r in rows), no_wrap=True)
    for col in ("kind", "architecture", "algorithm", "env", "dataset", "score", "source"):
        table.add_column(col, justify="right" if col == "score" else "left", overflow="fold")
    for r in rows:
        score = f"{r['score']:.1f}" if r["score"] is not None else "-"
        table.add_row(*map(escape, (r["id"], r["kind"], r["architecture"], r["algorithm"] or "-", r["env"] or "-",
                                    r["dataset"] or "-", score, r["source"])))
    out.print(table)


@handles_errors
def show_cmd(
    ref: str = typer.Argument(..., help="A store id or a module folder path."),
    as_json: bool = typer.Option(False, "--json", help="Print the card as JSON."),
) -> None:
    """Show a module's card."""
    from cards import card_to_json
    from hub import api

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
        tg = o.trained_with_guidance
        rows.append(("trained with guidance", f"{tg.id} ({(tg.sha256 or '-')[:12]})"))
    if card.guidance:
        g = card.guidance
        rows += [
            ("provides", ", ".join(g.provides)),
            ("Q heads / reduction", f"{g.q_heads} / {g.reduction}"),
            ("discount / expectile", f"{g.discount} / {g.expectile}"),
            ("reward transform", f"{g.reward_transform.kind}: r' = {g.reward_transform.scale:.4g} r + "
                                 f"{g.reward_transform.shift:.4g}"),
        ]
        if g.value_stats:
            vs = g.value_stats
            rows.append(("Q statistics", f"mean {vs.mean:.4g}, std {vs.std:.4g}, [{vs.min:.4g}, {vs.max:.4g}]"))
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
    for r in sorted(card.evaluations, key=lambda r: (-r.episodes, r.date or "")):
        score = f"score {r.normalized_score:.1f}, " if r.normalized_score is not None else ""
        rows.append((f"eval {r.env_id}, {r.episodes} episodes, seed {r.seed}",
                     f"{score}return {r.return_mean:.1f} +/- {r.return_std:.1f}; {r.sampling()}"
                     + (f" scored by {r.guidance}" if r.guidance else "") + (f" ({r.date})" if r.date else "")))
    if card.hub_source:
        s = card.hub_source
        rows.append(("pulled from", f"{s.backend}://{s.repo} @ {s.commit or s.revision}"))
    for k, v in rows:
        table.add_row(escape(k), escape(v))
    out.print(table)


@handles_errors
def registry_cmd(
    kind: str | None = typer.Option(None, "--kind", "-k", help="Only this kind: guidance, diffusion or policy."),
) -> None:
    """List the architectures this hub can build, and their capabilities; then the guidance modes (plug-ins
    included) with their phases, what they need from a guidance and their settings."""
    from hub.modes import modes
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
    if kind:
        return
    table = Table(title="guidance modes")
    for col in ("mode", "phases", "needs", "settings (defaults)", "from", "description"):
        table.add_column(col)
    for name, m in sorted(modes().items()):
        settings = ", ".join(f"{k}={f.default}" for k, f in m.params.model_fields.items())
        table.add_row(*map(escape, (name, ", ".join(m.phases), ", ".join(m.needs) or "-", settings or "-",
                                    m.source, m.description)))
    out.print(table)


@handles_errors
def reindex_cmd() -> None:
    """Rebuild the store's index from its module folders (after a crash or a corrupted index)."""
    from hub.store import Store

    n = Store().reindex()
    out.print(f"indexed {n} module(s)")


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


@handles_errors
def schema_cmd() -> None:
    """Print the JSON Schema of the module card."""
    from cards import card_json_schema

    sys.stdout.write(json.dumps(card_json_schema(), indent=2, sort_keys=True) + "\n")


def register(app: typer.Typer) -> None:
    """Add list, show, registry, reindex, rm and schema to `app`."""
    app.command("list")(list_cmd)
    app.command("show")(show_cmd)
    app.command("registry")(registry_cmd)
    app.command("reindex")(reindex_cmd)
    app.command("rm")(rm_cmd)
    app.command("schema")(schema_cmd)
