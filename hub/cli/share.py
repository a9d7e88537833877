"""`mdhub push`, `mdhub pull` and `mdhub search`: share and find modules on the Hugging Face Hub or in a plain folder.

hub/cli/__init__.py adds them with `register(app)`; errors become `error: ...` and exit code 1 (hub/cli/errors.py).
hub.remote.sharing (huggingface_hub, torch) is imported inside the commands only.
"""
from __future__ import annotations

import typer

from hub.cli.console import emit_json
from hub.cli.errors import handles_errors

JSON_HELP = "Print one JSON document on stdout instead of text (schema: README, 'Scripting')."

REPO_HELP = (
    "NAMESPACE/NAME on the Hugging Face Hub (HF_ENDPOINT, token from HF_TOKEN), hf://NAMESPACE/NAME, "
    "or file:///ABS/ROOT::NAMESPACE/NAME for a plain folder."
)

PUSH_HELP = (
    "Push a module in ONE commit: model.safetensors, card.json and README.md (the Hub model card). "
    "The module is verified first (card, registry, sha256); an invalid one is never pushed. "
    "A policy is pushed with references to its parts' repos: push its parts first. "
    "Creates the repository (and the branch) if needed."
)
PULL_HELP = (
    "Pull a module into the local store, verified, recording the exact commit it came from. "
    "Downloads through the Hugging Face cache (with HF_HUB_OFFLINE=1, from the cache only). "
    "The card must validate and match its README, every sha256 must match, and the network is built from the "
    "local registry only: nothing downloaded can run code. Pulling a policy pulls its parts."
)


@handles_errors
def push_cmd(
    module: str = typer.Argument(..., metavar="ID", help="A store id (see `mdhub list`) or a module folder path."),
    repo: str = typer.Argument(..., metavar="REPO_ID", help=REPO_HELP),
    revision: str | None = typer.Option(
        None, "--revision", "-r", help="Branch to push to (default main; created from main if new)."),
    private: bool = typer.Option(False, "--private", help="Create the repository private (if it is new)."),
    message: str | None = typer.Option(None, "--message", "-m", help="Commit message."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Push a module to a repository in one commit."""
    from hub.remote.sharing import push

    result = push(module, repo, revision=revision, private=private, message=message)
    if as_json:
        emit_json({"id": result.module_id, "repo": result.repo, "revision": result.revision, "commit": result.commit,
                   "url": result.url, "files": list(result.files)})
        return
    typer.echo(f"pushed '{result.module_id}' to {repo} (branch {result.revision}): commit {result.commit}")
    typer.echo(f"  files: {', '.join(result.files)}")
    typer.echo(f"  pull exactly this with: mdhub pull {result.repo}")
    typer.echo(f"  {result.url}")


@handles_errors
def pull_cmd(
    repo: str = typer.Argument(..., metavar="REPO_ID[@REVISION]",
                               help=REPO_HELP + " REVISION: a branch or a full commit id (default main)."),
    local_id: str | None = typer.Option(None, "--id", help="Store the module under this id (default: its own)."),
    force: bool = typer.Option(False, "--force", help="Replace a different module already stored under that id."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds the whole pull may take, parts included "
                                         "(default $MDHUB_PULL_TIMEOUT, else 600)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Pull a module (and a policy's parts) into the local store."""
    from hub.remote.sharing import pull

    stored = pull(repo, local_id=local_id, force=force, timeout=timeout)
    card = stored.card
    src = card.hub_source
    commit = src.commit if src else "?"
    if as_json:
        parts = {}
        if card.policy is not None:
            for role in ("diffusion", "train_guidance", "infer_guidance"):
                ref = getattr(card.policy, role)
                parts[role] = None if ref is None else {"id": ref.id, "repo": ref.repo, "revision": ref.revision}
        emit_json({"id": card.id, "kind": card.kind, "architecture": card.architecture, "repo": repo,
                   "commit": src.commit if src else None, "path": str(stored.path), "parts": parts})
        return
    typer.echo(f"pulled {repo} (commit {commit}) as '{card.id}' ({card.kind}, {card.architecture})")
    if card.policy is not None:
        for role in ("diffusion", "train_guidance", "infer_guidance"):
            ref = getattr(card.policy, role)
            if ref is not None:
                typer.echo(f"  {role}: '{ref.id}' from {ref.repo or 'the local store'}"
                           + (f"@{ref.revision}" if ref.repo and ref.revision else ""))
    typer.echo(f"  stored at {stored.path}")


@handles_errors
def search_cmd(
    query: str | None = typer.Argument(None, help="Text the repository id contains (any case); all mdhub modules "
                                       "when left out."),
    compatible_with: str | None = typer.Option(None, "--compatible-with", "-c", help="A local guidance or diffusion "
                                               "module id: judge each candidate of the other kind against it (its "
                                               "card.json only is fetched, never weights)."),
    mode: str | None = typer.Option(None, "--mode", help="The mode the pairing is judged in (default resample; "
                                    "`mdhub registry` lists the modes)."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many repositories."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Find modules on the Hub made by mdhub (HF_ENDPOINT; HF_TOKEN sees private ones) and, with --compatible-with,
    which of them pair with a local module."""
    from rich.markup import escape
    from rich.table import Table

    from hub.cli.console import out
    from hub.remote.search import search

    hits = search(query, compatible_with=compatible_with, mode=mode, limit=limit)
    if as_json:
        emit_json([h.as_dict() for h in hits])
        return
    if not hits:
        out.print("No mdhub modules found" + (f" matching '{escape(query)}'" if query else "") + ".")
        return
    table = Table(title=f"{len(hits)} module(s) on the Hub" + (f", judged against '{escape(compatible_with)}' "
                                                                f"in mode {escape(mode or 'resample')}"
                                                                if compatible_with else ""))
    table.add_column("repo", no_wrap=True)
    for col in ("kind", "architecture", "algorithm", "env"):
        table.add_column(col, overflow="fold")
    if compatible_with:
        table.add_column("verdict")
        table.add_column("why", overflow="fold")
    for h in hits:
        row = [h.repo, h.kind or "-", h.architecture or "-", h.algorithm or "-", h.env or "-"]
        if compatible_with:
            row += [h.verdict or "-", "; ".join(h.reasons) or ("adapters: " + ", ".join(h.adapters) if h.adapters
                                                                else "")]
        table.add_row(*map(escape, row))
    out.print(table)
    if compatible_with and any(h.verdict == "COMPATIBLE" for h in hits):
        first = next(h for h in hits if h.verdict == "COMPATIBLE")
        out.print(f"pull one with: mdhub pull {escape(first.repo)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add push, pull and search to `app`."""
    app.command("push", help=PUSH_HELP,
                short_help="Push a module to a Hub repository (or a folder) in one commit.")(push_cmd)
    app.command("pull", help=PULL_HELP, short_help="Pull a module (and a policy's parts) into the store, verified, "
                "pinned to a commit.")(pull_cmd)
    app.command("search")(search_cmd)
