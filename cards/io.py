"""Parsing cards from JSON and dicts, with format migration and errors that name the field."""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from cards.card import FORMAT_VERSION, ModuleCard
from cards.errors import CardError

# Migrations from an older format_version to the next one: {old_version: function(dict) -> dict}.
# Format 1 is the first published format, so there is nothing to migrate yet; add entries here when it changes.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

# Limits on what a parser is asked to build from a card's text (card.json or README.md front matter), checked before
# any validation: a hostile card must be refused with a CardError, never a RecursionError, a ValueError from int(),
# a hang or gigabytes of memory.
MAX_CARD_BYTES = 1_000_000
MAX_DEPTH = 32
"""Nesting of objects/arrays in a card (a real card nests 4 deep; config values a few more)."""
MAX_NUMBER_CHARS = 40
"""Characters of one number literal (an int64 has 20; a float repr at most 24)."""
MAX_INT = 2**64
"""Integers in a card are below this in magnitude (they fit in 64 bits)."""


class _NumberRefused(ValueError):
    """A number literal a card parser refuses (too long or not finite); the caller names the source."""


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _NumberRefused(f"an integer of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _NumberRefused(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise _NumberRefused(f"the number {text} is out of range (not a finite float)")
    return value


def _parse_constant(text: str) -> float:
    raise _NumberRefused(f"{text} is not allowed (numbers must be finite)")


def _field(node: Any) -> str:
    """`field 'a.b.0': ` from a (parent, key) chain, or '' at the top (built only for an error message)."""
    keys: list[str] = []
    while node is not None:
        node, key = node
        keys.append(str(key))
    where = ".".join(reversed(keys))
    if len(where) > 120:
        where = where[:117] + "..."
    return f"field '{where}': " if where else ""


def check_plain(data: Any, source: str = "card") -> None:
    """Refuse a parsed card nested deeper than MAX_DEPTH or holding an integer that does not fit in 64 bits or a
    non-finite float, naming the field. Iterative (a deep structure cannot exhaust the stack here)."""
    stack: list[tuple[Any, int, Any]] = [(data, 1, None)]
    while stack:
        value, depth, node = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise CardError(f"{source}: nested more than {MAX_DEPTH} levels deep; refused")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, depth + 1, (node, k)) for k, v in items)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not -MAX_INT < value < MAX_INT:
                raise CardError(f"{source}: {_field(node)}an integer of {value.bit_length()} bits (at most 64); "
                                "refused")
        elif isinstance(value, float) and not math.isfinite(value):
            raise CardError(f"{source}: {_field(node)}{value} is not allowed (numbers must be finite)")


def migrate(data: dict[str, Any], source: str = "card") -> dict[str, Any]:
    """Bring a raw card dict to FORMAT_VERSION, or refuse with a message saying what is supported."""
    if "format_version" not in data:
        raise CardError(f"{source}: missing field 'format_version' (this mdhub reads format {FORMAT_VERSION})")
    version = data["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise CardError(f"{source}: field 'format_version' must be an integer, got {version!r}")
    while version < FORMAT_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise CardError(
                f"{source}: card format_version {version} is not supported; this mdhub reads format "
                f"{FORMAT_VERSION} (and migrates {sorted(MIGRATIONS) or 'no older formats'})"
            )
        data = step(dict(data))
        version = data["format_version"]
    if version > FORMAT_VERSION:
        raise CardError(
            f"{source}: card format_version {version} is newer than this mdhub supports "
            f"(format {FORMAT_VERSION}); upgrade modular-diffusion-hub"
        )
    return data


def describe_validation_error(err: ValidationError, source: str) -> str:
    """One readable message per problem: the dotted field path, what is wrong, what was given."""
    lines = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(card)"
        given = e.get("input")
        shown = repr(given)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        if e["type"] == "missing":
            lines.append(f"missing field '{loc}'")
        elif e["type"] == "extra_forbidden":
            lines.append(f"unknown field '{loc}'")
        else:
            lines.append(f"field '{loc}': {e['msg']} (got {shown})")
    return f"{source}: invalid card: " + "; ".join(lines)


def card_from_dict(data: Any, source: str = "card") -> ModuleCard:
    """Validate a raw dict as a card (migrating older formats)."""
    if not isinstance(data, dict):
        raise CardError(f"{source}: a card must be a JSON object, got {type(data).__name__}")
    check_plain(data, source)
    data = migrate(data, source)
    try:
        return ModuleCard.model_validate(data)
    except ValidationError as err:
        raise CardError(describe_validation_error(err, source)) from None


def parse_json(text: str | bytes, source: str, limit: int = MAX_CARD_BYTES) -> Any:
    """JSON text as Python data, with the card parser's limits: size, nesting, number length; finite numbers only."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise CardError(f"{source}: {size} bytes is over the {limit}-byte limit")
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _NumberRefused as err:
        raise CardError(f"{source}: {err}; refused") from None
    except RecursionError:
        raise CardError(f"{source}: nested more than {MAX_DEPTH} levels deep; refused") from None
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise CardError(f"{source}: not valid JSON ({err})") from None
    check_plain(data, source)
    return data


def card_from_json(text: str | bytes, source: str = "card.json") -> ModuleCard:
    """Parse card.json text (at most MAX_CARD_BYTES; see parse_json for the other limits)."""
    return card_from_dict(parse_json(text, source), source)


def card_to_json(card: ModuleCard) -> str:
    """Canonical JSON (sorted keys, 2-space indent, trailing newline): the same card gives the same bytes."""
    return json.dumps(card_data(card), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def card_data(card: ModuleCard) -> dict[str, Any]:
    """The card as JSON-ready data. `evaluations` is left out while empty, so a card that was never evaluated keeps
    the bytes it had before the field existed (and older readers, which forbid unknown fields, still read it)."""
    data = card.model_dump(mode="json")
    if not data.get("evaluations"):
        data.pop("evaluations", None)
    return data


def card_json_schema() -> dict[str, Any]:
    """The JSON Schema of the current card format."""
    return ModuleCard.model_json_schema()
