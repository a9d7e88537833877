"""Hub search: modules on the Hugging Face Hub made by this library, and which of them pair with a local module.

`search(query)` lists model repositories whose library is mdhub (the Hub's `library_name`, a tag there) through
huggingface_hub's `HfApi.list_models`. With `compatible_with=ID`, each candidate's **card.json only** (never its
weights) is fetched through the guarded download (commit pinned, size-capped, parsed by the strict card parser) and
judged against the local module by the compatibility check (`hub.compat.check`): a guidance against diffusion
candidates, a diffusion module against guidance candidates, in `mode` (default: resample).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.errors import MdhubError
from hub.remote.hf import HFBackend

LIBRARY = "mdhub"
KINDS = ("guidance", "diffusion", "policy")


@dataclass
class SearchHit:
    """One repository found: what its tags say and, with a compatibility check, the verdict."""

    repo: str
    kind: str | None
    architecture: str | None
    algorithm: str | None
    env: str | None
    tags: list[str]
    downloads: int
    last_modified: str | None
    commit: str | None = None
    verdict: str | None = None  # COMPATIBLE | INCOMPATIBLE | "-" (not a pairing) | ERROR (card unreadable)
    reasons: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "kind": self.kind, "architecture": self.architecture, "algorithm": self.algorithm,
                "env": self.env, "tags": list(self.tags), "downloads": self.downloads,
                "last_modified": self.last_modified, "commit": self.commit, "verdict": self.verdict,
                "reasons": list(self.reasons), "adapters": list(self.adapters)}


def _hit(info: Any) -> SearchHit:
    from hub.registry import registry

    tags = [str(t) for t in (getattr(info, "tags", None) or [])]
    # an mdhub model card's tags: the base tags, then kind, algorithm (lower case), architecture, env id, its own
    kind = next((t for t in tags if t in KINDS), None)
    after = tags[tags.index(kind) + 1:] if kind is not None else []
    algo = after[0].upper() if after else None
    archs = {a.id for a in registry() if a.kind == kind}
    arch = next((t for t in after[1:2] if t in archs), None)
    env = next((t for t in after[2:3] if "-v" in t), None)
    modified: Any = getattr(info, "last_modified", None)
    shown = None if modified is None else (modified.isoformat() if hasattr(modified, "isoformat") else str(modified))
    return SearchHit(repo=str(info.id), kind=kind, architecture=arch, algorithm=algo, env=env, tags=tags,
                     downloads=int(getattr(info, "downloads", 0) or 0), last_modified=shown)


def _remote_card(repo: str, timeout: float) -> tuple[Any, str]:
    """(card, commit) of `repo`'s card.json on main, fetched alone through the guarded download."""
    from cards import card_from_json
    from cards.io import MAX_CARD_BYTES

    snap = HFBackend().download(repo, None, ["card.json"], max_sizes={"card.json": MAX_CARD_BYTES}, deadline=timeout)
    path = snap.folder / "card.json"
    if not path.is_file():
        raise MdhubError(f"{repo}: no card.json (not an mdhub module)")
    return card_from_json(path.read_bytes(), source=f"{repo}/card.json"), snap.commit


def search(query: str | None = None, compatible_with: str | None = None, mode: str | None = None,
           limit: int = 50, timeout: float = 60.0, store: Any = None) -> list[SearchHit]:
    """Modules on the Hub (HF_ENDPOINT, HF_TOKEN) made by mdhub whose repo id contains `query`; with
    `compatible_with` (a local module id), each candidate of the other kind judged against it in `mode`."""
    from hub.modes import DEFAULT_PAIRING

    if limit < 1:
        raise MdhubError(f"limit must be at least 1 (got {limit})")
    local = None
    if compatible_with is not None:
        from hub.store import Store

        local = (store or Store()).card(compatible_with)
        if local.kind not in ("guidance", "diffusion"):
            raise MdhubError(f"'{compatible_with}' is a {local.kind}: compare a guidance or a diffusion module")
    mode = mode or DEFAULT_PAIRING
    from hub.modes import mode_names

    if mode not in mode_names():
        raise MdhubError(f"unknown mode '{mode}'; known: {', '.join(mode_names())}")

    import httpx2
    from huggingface_hub import errors as hf_errors

    backend = HFBackend()
    try:
        infos = list(backend._api().list_models(search=query or None, filter=[LIBRARY], limit=limit))
    except hf_errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        raise MdhubError(f"search on {backend.endpoint} failed: HTTP {status}: "
                         f"{' '.join(str(e).split())[:200]}") from None
    except (httpx2.TransportError, hf_errors.OfflineModeIsEnabled) as e:
        raise MdhubError(f"search on {backend.endpoint} failed: {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]}") from None
    hits = [_hit(i) for i in infos
            if getattr(i, "library_name", None) == LIBRARY or LIBRARY in (getattr(i, "tags", None) or [])]
    if local is None:
        return hits
    from hub.compat import check

    want = "diffusion" if local.kind == "guidance" else "guidance"
    for h in hits:
        if h.kind is not None and h.kind != want:
            h.verdict, h.reasons = "-", [f"a {h.kind} module: {compatible_with} pairs with {want} modules"]
            continue
        try:
            card, h.commit = _remote_card(h.repo, timeout)
        except (MdhubError, ValueError) as e:
            h.verdict, h.reasons = "ERROR", [" ".join(str(e).split())]
            continue
        h.kind, h.architecture, h.algorithm = card.kind, card.architecture, card.origin.algorithm
        h.env = card.interface.env_id or h.env
        if card.kind != want:
            h.verdict, h.reasons = "-", [f"a {card.kind} module: {compatible_with} pairs with {want} modules"]
            continue
        g, d = (local, card) if want == "diffusion" else (card, local)
        report = check(g, d, mode)
        h.verdict = "COMPATIBLE" if report.compatible else "INCOMPATIBLE"
        h.reasons, h.adapters = report.reasons(), list(report.adapters)
    return hits
