"""A card as a Hugging Face model card (README.md: YAML front matter + prose) and back.

The front matter carries the Hub's own keys (`library_name`, `license`, `pipeline_tag`, `tags`, `datasets`,
`model-index` with the evaluations) for search, display and leaderboards,
and the whole card under the `mdhub` key, so that parsing the README gives back an equal card.
Parsing is defensive: size-capped, YAML aliases refused (no "billion laughs"), nesting depth and number literals
capped (the limits of `cards.io`), then full card validation.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import yaml

from cards.card import ModuleCard
from cards.errors import CardError
from cards.io import MAX_DEPTH, MAX_NUMBER_CHARS, card_data, card_from_dict

_T = TypeVar("_T")

LIBRARY_NAME = "mdhub"
MAX_README_BYTES = 1_000_000


class _Refused(CardError):
    """Raised inside the YAML loader; card_from_readme prefixes the source."""


class _NoAliasSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases (they allow exponential expansion), over-long number literals (an int
    of thousands of digits is slow to convert, and over 4300 digits int() raises) and nesting deeper than MAX_DEPTH."""

    def fetch_alias(self) -> None:
        raise _Refused("YAML aliases are not allowed in a model card's front matter")

    def fetch_anchor(self) -> None:
        raise _Refused("YAML anchors are not allowed in a model card's front matter")

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        depth = getattr(self, "_mdhub_depth", 0)
        if depth > MAX_DEPTH:
            raise _Refused(f"the front matter is nested more than {MAX_DEPTH} levels deep")
        self._mdhub_depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._mdhub_depth = depth

    def _number(self, node: yaml.ScalarNode, construct: Callable[[yaml.SafeLoader, yaml.ScalarNode], _T]) -> _T:
        if len(str(node.value)) > MAX_NUMBER_CHARS:
            raise _Refused(f"a number of {len(str(node.value))} characters (at most {MAX_NUMBER_CHARS}) at line "
                           f"{node.start_mark.line + 1}")
        return construct(self, node)

    def _int(self, node: yaml.ScalarNode) -> int:
        return self._number(node, yaml.SafeLoader.construct_yaml_int)

    def _float(self, node: yaml.ScalarNode) -> float:
        return self._number(node, yaml.SafeLoader.construct_yaml_float)


_NoAliasSafeLoader.add_constructor("tag:yaml.org,2002:int", _NoAliasSafeLoader._int)
_NoAliasSafeLoader.add_constructor("tag:yaml.org,2002:float", _NoAliasSafeLoader._float)


PIPELINE_TAG = "reinforcement-learning"
BASE_TAGS = ("reinforcement-learning", "offline-reinforcement-learning", "diffusion-policy", LIBRARY_NAME)


def hub_tags(card: ModuleCard) -> list[str]:
    """Tags for Hub search: the task, offline RL, diffusion policy, the library, then kind, algorithm, architecture,
    env, and the card's own tags (no duplicates, in that order)."""
    tags = [*BASE_TAGS, card.kind, card.origin.algorithm.lower(), card.architecture]
    if card.interface.env_id:
        tags.append(card.interface.env_id)
    tags += card.tags
    return list(dict.fromkeys(tags))


def model_index(card: ModuleCard) -> list[dict[str, Any]] | None:
    """The card's evaluations as the Hub's model-index, in the shape huggingface_hub's ModelCardData writes for
    EvalResults (one result per env, as huggingface_sb3 does): metric `mean_reward` "m +/- s" and
    `normalized_score`, each labelled by its config (sampling, episodes, seed) and args (everything it ran with)."""
    if not card.evaluations:
        return None
    results: dict[str, list[dict[str, Any]]] = {}
    for r in card.evaluations:
        config = f"{r.sampling()}, {r.episodes} episodes, seed {r.seed}" + (
            f", max {r.max_steps} steps" if r.max_steps else "")
        args: dict[str, Any] = {"episodes": r.episodes, "seed": r.seed, "mode": r.mode,
                                "settings": dict(sorted(r.settings.items())), "guidance": r.guidance or "none"}
        if "rule" in r.settings:
            args["rule"] = r.settings["rule"]
        if r.max_steps:
            args["max_steps"] = r.max_steps
        if r.date:
            args["date"] = r.date
        metrics = [{"type": "mean_reward", "value": f"{r.return_mean:.2f} +/- {r.return_std:.2f}",
                    "name": "mean_reward", "config": config, "args": copy.deepcopy(args), "verified": False}]
        if r.normalized_score is not None:
            metrics.append({"type": "normalized_score", "value": round(r.normalized_score, 2),
                            "name": "normalized score", "config": config, "args": copy.deepcopy(args),
                            "verified": False})
        results.setdefault(r.env_id, []).extend(metrics)
    return [{"name": card.id, "results": [
        {"task": {"type": PIPELINE_TAG, "name": "reinforcement-learning"},
         "dataset": {"name": env, "type": env}, "metrics": metrics}
        for env, metrics in results.items()]}]


def front_matter(card: ModuleCard, hub_datasets: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML front matter: the keys huggingface_hub's ModelCardData writes (library_name, license, pipeline_tag,
    tags, datasets, model-index; tests/test_hub_cards.py checks the equivalence) plus the whole card under `mdhub`.
    Built here rather than through ModelCardData so that cards/ stays light (no huggingface_hub import).

    `datasets:` lists `hub_datasets`, the Hub dataset ids of the card's data when they live on the Hub (the caller
    knows: a push asks the dataset store, hub.datasets.hub_dataset_id); a local dataset id is never listed, since it
    names nothing on the Hub."""
    meta: dict[str, Any] = {
        "library_name": LIBRARY_NAME,
        "license": card.license,
        "pipeline_tag": PIPELINE_TAG,
        "tags": hub_tags(card),
    }
    if hub_datasets:
        meta["datasets"] = list(dict.fromkeys(hub_datasets))
    index = model_index(card)
    if index:
        meta["model-index"] = index
    meta["mdhub"] = card_data(card)
    return meta


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _prose(card: ModuleCard) -> str:
    i, o = card.interface, card.origin
    out = [f"# {card.id}", ""]
    out.append(
        f"A **{card.kind}** module of the modular diffusion hub (`mdhub`): architecture `{card.architecture}`, "
        f"trained by **{o.algorithm}** ({o.recipe})."
    )
    if card.description:
        out += ["", card.description]
    out += ["", "## Interface", "", "| field | value |", "|---|---|"]
    out.append(f"| observation dim | {i.obs_dim} |")
    out.append(f"| action dim | {i.act_dim} (bounds [{_fmt(i.action_low)}, {_fmt(i.action_high)}]) |")
    out.append(f"| normalises observations inside | {i.obs_normalised} |")
    if i.env_id:
        out.append(f"| environment | `{i.env_id}` |")
    if i.dataset:
        out.append(f"| dataset | `{i.dataset.id}` (sha256 `{(i.dataset.sha256 or '?')[:12]}`) |")
        if i.dataset.reward:
            out.append(f"| dataset rewards | relabelled with the reward `{i.dataset.reward}` from "
                       f"`{i.dataset.source_id or '?'}` (sha256 `{(i.dataset.source_sha256 or '?')[:12]}`) |")
    if card.guidance:
        g = card.guidance
        out += ["", "## Guidance", "", f"Provides {', '.join(g.provides)}; {g.q_heads} Q heads reduced by "
                f"{g.reduction}; discount {g.discount}" + (f"; expectile {g.expectile}" if g.expectile else "") + "."]
        rt = g.reward_transform
        out.append(f"Rewards were transformed ({rt.kind}): r' = {_fmt(rt.scale)} r + {_fmt(rt.shift)}.")
        if g.value_stats:
            v = g.value_stats
            out.append(f"Q on its dataset: mean {_fmt(v.mean)}, std {_fmt(v.std)}, "
                       f"range [{_fmt(v.min)}, {_fmt(v.max)}].")
    if card.diffusion:
        d = card.diffusion
        out += ["", "## Diffusion", "", f"Schedule {d.schedule}, T = {d.T}, predicts {d.prediction}.",
                f"Guidance modes accepted in training: {', '.join(d.train_guidance) or 'none'}; "
                f"at sampling: {', '.join(d.sample_guidance) or 'none'}."]
    if card.policy:
        p = card.policy
        out += ["", "## Parts", "", f"- diffusion: `{p.diffusion.id}`"]
        if p.train_guidance:
            out.append(f"- training guidance: `{p.train_guidance.id}`")
        if p.infer_guidance:
            out.append(f"- inference guidance: `{p.infer_guidance.id}` (mode `{p.mode}`)")
    if o.trained_with_guidance:
        out += ["", f"Trained under the frozen guidance `{o.trained_with_guidance.id}`."]
    if card.evaluations:
        out += ["", "## Evaluation", "", "| env | sampling | guidance | episodes | seed | return | normalised score "
                "| date |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(card.evaluations, key=lambda r: (-r.episodes, r.date or "")):
            score = (f"{r.normalized_score:.1f} +/- {r.normalized_score_std or 0.0:.1f}"
                     if r.normalized_score is not None else "-")
            out.append(f"| `{r.env_id}` | `{r.sampling()}` | {r.guidance or '-'} | {r.episodes} | {r.seed} | "
                       f"{r.return_mean:.2f} +/- {r.return_std:.2f} | {score} | {r.date or '-'} |")
    if card.metrics:
        out += ["", "## Training metrics", "", "| metric | value |", "|---|---|"]
        out += [f"| {k} | {_fmt(v)} |" for k, v in sorted(card.metrics.items())]
    out += ["", "## Use", "", "```python", "import hub", f'module = hub.load("{card.id}")', "```", ""]
    return "\n".join(out)


def card_to_readme(card: ModuleCard, hub_datasets: Sequence[str] = ()) -> str:
    """Render a Hugging Face model card (deterministic: the same card and datasets give the same text).
    `hub_datasets`: the Hub dataset ids of the card's data, for `datasets:` (see `front_matter`)."""
    meta = yaml.safe_dump(front_matter(card, hub_datasets), sort_keys=True, allow_unicode=True, width=120)
    return f"---\n{meta}---\n\n{_prose(card)}"


def card_from_readme(text: str | bytes, source: str = "README.md") -> ModuleCard:
    """Parse a model card back into a validated ModuleCard."""
    if isinstance(text, bytes):
        if len(text) > MAX_README_BYTES:
            raise CardError(f"{source}: {len(text)} bytes is over the {MAX_README_BYTES}-byte limit for a model card")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CardError(f"{source}: not UTF-8 ({err})") from None
    if len(text.encode("utf-8")) > MAX_README_BYTES:
        raise CardError(f"{source}: over the {MAX_README_BYTES}-byte limit for a model card")
    if not text.startswith("---\n"):
        raise CardError(f"{source}: no YAML front matter (the file must start with '---')")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise CardError(f"{source}: the YAML front matter is not closed by a '---' line")
    try:
        meta = yaml.load(text[4:end + 1], Loader=_NoAliasSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as err:
        raise CardError(f"{source}: {err}; refused") from None
    except RecursionError:
        raise CardError(f"{source}: the front matter is nested more than {MAX_DEPTH} levels deep; refused") from None
    except (yaml.YAMLError, ValueError) as err:  # ValueError: a number yaml cannot convert
        raise CardError(f"{source}: invalid YAML front matter ({err})") from None
    if not isinstance(meta, dict):
        raise CardError(f"{source}: the front matter must be a mapping")
    if meta.get("library_name") != LIBRARY_NAME:
        raise CardError(f"{source}: library_name is {meta.get('library_name')!r}, expected {LIBRARY_NAME!r}")
    if "mdhub" not in meta:
        raise CardError(f"{source}: the front matter has no 'mdhub' card")
    return card_from_dict(meta["mdhub"], f"{source} (front matter 'mdhub')")
