"""The macro language of outbound postbacks: `{token}` templates filled from a context.

    {name[:key=value,...,*=fallback][|modifier[:argument]]...}

`name` is a context key or a dotted path (`req.qs.clickid`, `req.sessionData.contact.email`,
`req.session.…` as an alias of `req.sessionData.…`, `req.cookie._fbp`). Any other brace is
literal text, so JSON and XML bodies can be templates as they are. Modifiers run left to
right; the escape for where the text lands (URL, JSON, XML) runs last and never touches the
template's literal text. A token without a value renders empty and is reported in `missing`,
unless `|default` fills it. A modifier that cannot read its input (`|date` on "abc") leaves
the token without a value. Malformed modifiers raise `MacroSyntaxError`; `validate` reports
them without raising, and `unknown_names` lists names a caller does not know.

Each template is compiled once into a plan (literal text and tokens with their lookup paths
and modifier steps, or the token's syntax error, raised on every render), so rendering the
same postback config for every delivery is a tight loop.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

__all__ = [
    "Escape",
    "MacroSyntaxError",
    "Rendered",
    "Token",
    "render",
    "render_value",
    "tokens",
    "unknown_names",
    "validate",
]

Step = Callable[[Any], Any]
Escaper = Callable[[str], str]

_TOKEN_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+)*)((?:[:|][^{}\n]*)?)\}")
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_XML_ENTITIES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
    | {"\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}  # kept exact in attributes too
)
_XML_SPECIAL = re.compile("[&<>\"'\t\n\r]")
_JSON_UNSAFE = re.compile("[\u2028\u2029\ud800-\udfff]")
_URL_UNRESERVED = re.compile(r"[A-Za-z0-9_.~\-]*")
_EXACT_CASE = {("req", "qs"), ("req", "cookie")}  # query and cookie names are case-sensitive
_MISSING = object()
_PLAIN = frozenset({str, int, float, bool})  # JSON-native as they are


class Escape(enum.StrEnum):
    """Where rendered text lands, which decides how each value is escaped."""

    URL = "url"
    JSON = "json"
    XML = "xml"
    RAW = "raw"


class MacroSyntaxError(ValueError):
    """A token's modifiers are malformed; raised by `render`, reported by `validate`."""


@dataclass(frozen=True, slots=True)
class Token:
    """One `{…}` token: the name to look up and its raw modifier text (`:map|pipe…`)."""

    name: str
    modifiers: str = ""

    @property
    def text(self) -> str:
        return "{" + self.name + self.modifiers + "}"


@dataclass(frozen=True, slots=True)
class Rendered:
    """Rendered text and the tokens that had no value, so the delivery can note them."""

    text: str
    missing: tuple[str, ...]


# --- public API -------------------------------------------------------------------------


def render(template: str, context: Mapping[str, Any], escape: Escape = Escape.RAW) -> Rendered:
    """Fill every token of `template`, escaping values (never literal text) for `escape`."""
    missing: list[str] = []
    text = _fill(_plan(template), context, _escaper(escape), missing)
    return Rendered(text, _dedupe(missing))


def render_value(template: Any, context: Mapping[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """Render a JSON-like structure; a string that is exactly one token keeps the value's type."""
    missing: list[str] = []
    return _render_node(template, context, missing), _dedupe(missing)


def tokens(template: str) -> list[Token]:
    """The tokens of a template in order, modifiers unchecked (see `validate`)."""
    return [Token(*match.groups()) for match in _TOKEN_RE.finditer(template)]


def unknown_names(template: str | Any, known: Callable[[str], bool]) -> list[str]:
    """Token names `known` rejects, once each, so config checks can warn about typos."""
    names = (token.name for token in _all_tokens(template))
    return list(dict.fromkeys(name for name in names if not known(name)))


def validate(template: str | Any) -> list[str]:
    """One human message per malformed token (empty when fine), for strings or structures."""
    problems: list[str] = []
    for token in _all_tokens(template):
        try:
            _compile(token)
        except MacroSyntaxError as exc:
            problems.append(str(exc))
    return list(dict.fromkeys(problems))


# --- filling and compiling ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Macro:
    """A token compiled once: how to look it up, its modifier steps, or its syntax error."""

    name: str
    key: str | None  # the name when it is one plain key: a dict context is one `get` away
    path: tuple[tuple[str, bool], ...]  # (key, exact case) per level, req.session aliased
    steps: tuple[Step, ...]
    error: str | None  # raised on every render, as an uncached compile would raise it


@dataclass(frozen=True, slots=True)
class _Plan:
    """A template compiled once: literal text before each token, the text after the last."""

    pieces: tuple[tuple[str, _Macro], ...]
    tail: str
    single: _Macro | None  # the template is exactly this one token (it keeps the value type)


@lru_cache(maxsize=4096)
def _plan(template: str) -> _Plan:
    """Compile a template; configs repeat the same few templates for every delivery."""
    pieces: list[tuple[str, _Macro]] = []
    start = 0
    for match in _TOKEN_RE.finditer(template):
        pieces.append((template[start : match.start()], _macro(*match.groups())))
        start = match.end()
    whole = _TOKEN_RE.fullmatch(template)  # then it was also the one token found above
    return _Plan(tuple(pieces), template[start:], pieces[0][1] if whole else None)


def _macro(name: str, modifiers: str) -> _Macro:
    """Split the name into its lookup path and keep a malformed token's message for later."""
    try:
        steps, error = _compile(Token(name, modifiers)), None
    except MacroSyntaxError as exc:
        steps, error = (), str(exc)
    parts = name.split(".")
    if parts[:2] == ["req", "session"]:
        parts[1] = "sessionData"
    exact = tuple(parts[:2]) in _EXACT_CASE
    path = tuple((part, exact and depth == 2) for depth, part in enumerate(parts))
    return _Macro(name, name if len(parts) == 1 else None, path, steps, error)


def _fill(plan: _Plan, context: Mapping[str, Any], escaper: Escaper, missing: list[str]) -> str:
    """Replace each token by its escaped text; everything between tokens is copied as is."""
    if not plan.pieces:
        return plan.tail
    out: list[str] = []
    for literal, macro in plan.pieces:
        out.append(literal)
        out.append(escaper(_to_text(_evaluate(macro, context, missing))))
    out.append(plan.tail)
    return "".join(out)


def _escaper(escape: Escape | str) -> Escaper:
    """The escaper for `escape`; a plain dict hit spares the enum conversion per render."""
    try:
        return _ESCAPERS[escape]
    except (KeyError, TypeError):
        return _ESCAPERS[Escape(escape)]


@lru_cache(maxsize=2048)
def _compile(token: Token) -> tuple[Step, ...]:
    """Turn a token's modifiers into steps; errors name the token so operators can find it."""
    head, bar, pipes = token.modifiers.partition("|")
    try:
        steps = [_skip_empty(_mapping_step(head[1:]))] if head else []
        steps += [_pipe_step(spec) for spec in pipes.split("|")] if bar else []
    except MacroSyntaxError as exc:
        raise MacroSyntaxError(f"{token.text}: {exc}") from None
    return tuple(steps)


def _mapping_step(spec: str) -> Step:
    """`approved=sale,rejected=void,*=other`: case-insensitive; unmatched values pass through."""
    table: dict[str, str] = {}
    for pair in spec.split(","):
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise MacroSyntaxError(f"bad value mapping {pair!r}, expected key=value")
        table.setdefault(key.strip().casefold(), value.strip())
    fallback = table.pop("*", None)

    def step(value: Any) -> Any:
        found = table.get(_to_text(value).casefold(), fallback)
        return value if found is None else found

    return step


def _pipe_step(spec: str) -> Step:
    """One `|name[:argument]` modifier, checked against the registries below."""
    name, colon, argument = spec.partition(":")
    if name == "default":
        return lambda value: argument if value is None or value == "" else value
    if name in _SIMPLE:
        if colon:
            raise MacroSyntaxError(f"modifier {name!r} takes no argument")
        return _skip_empty(_SIMPLE[name])
    if name in _WITH_ARGUMENT:
        if not argument:
            raise MacroSyntaxError(
                f"modifier {name!r} needs an argument, like |{name}:{_EXAMPLES[name]}"
            )
        return _skip_empty(_WITH_ARGUMENT[name](argument))
    known = ", ".join(sorted(["default", *_SIMPLE, *_WITH_ARGUMENT]))
    raise MacroSyntaxError(f"unknown modifier {name!r} (known: {known})")


def _skip_empty(step: Step) -> Step:
    """Absent and empty values pass modifiers untouched, so a later `|default` still sees them."""
    return lambda value: value if value is None or value == "" else step(value)


# --- modifiers ------------------------------------------------------------------------------


def _date_step(fmt: str) -> Step:
    """strftime in UTC, or in the zone of a preceding `|tz`."""
    try:
        datetime(2000, 1, 2, 3, 4, 5, tzinfo=UTC).strftime(fmt)
    except ValueError as exc:
        raise MacroSyntaxError(f"bad date format {fmt!r}: {exc}") from None
    return lambda value: None if (moment := _as_datetime(value)) is None else moment.strftime(fmt)


def _tz_step(zone_name: str) -> Step:
    """Move a moment into an IANA zone; later `|date` and plain rendering show local time."""
    try:
        zone = ZoneInfo(zone_name)
    except (KeyError, ValueError, OSError):
        raise MacroSyntaxError(f"unknown time zone {zone_name!r}") from None
    return lambda value: (
        None if (moment := _as_datetime(value)) is None else moment.astimezone(zone)
    )


def _quantizer(name: str, argument: str) -> Step:
    """Round half up to N decimals, as money is rounded; non-numbers have no value."""
    quantum = Decimal(1).scaleb(-_count(name, argument))

    def step(value: Any) -> Decimal | None:
        number = _as_decimal(value)
        try:
            return None if number is None else number.quantize(quantum, ROUND_HALF_UP)
        except InvalidOperation:
            return None

    return step


def _fixed_step(argument: str) -> Step:
    """Like `|round`, but keeps trailing zeros (`12.50`) for partners that want fixed decimals."""
    rounded = _quantizer("fixed", argument)
    return lambda value: None if (number := rounded(value)) is None else format(number, "f")


def _first_step(argument: str) -> Step:
    count = _count("first", argument)
    return lambda value: _to_text(value)[:count]


def _count(name: str, argument: str) -> int:
    if not (argument.isascii() and argument.isdigit() and len(argument) <= 4):
        raise MacroSyntaxError(f"modifier {name!r} needs a whole number, got {argument!r}")
    return int(argument)


def _unix(value: Any) -> int | None:
    moment = _as_datetime(value)
    return None if moment is None else math.floor(moment.timestamp())


_SIMPLE: dict[str, Step] = {
    "lower": lambda value: _to_text(value).lower(),
    "upper": lambda value: _to_text(value).upper(),
    "trim": lambda value: _to_text(value).strip(),
    "sha256": lambda value: hashlib.sha256(_utf8(value)).hexdigest(),
    "md5": lambda value: hashlib.md5(_utf8(value), usedforsecurity=False).hexdigest(),
    "urlencode": lambda value: _escape_url(_to_text(value)),
    "digits": lambda value: re.sub(r"[^0-9]", "", _to_text(value)),
    "unix": _unix,
}
_WITH_ARGUMENT: dict[str, Callable[[str], Step]] = {
    "date": _date_step,
    "tz": _tz_step,
    "round": lambda argument: _quantizer("round", argument),
    "fixed": _fixed_step,
    "first": _first_step,
}
_EXAMPLES = {"date": "%Y-%m-%d", "tz": "America/New_York", "round": "2", "fixed": "2", "first": "5"}


# --- resolving and converting values ------------------------------------------------------


def _evaluate(macro: _Macro, context: Mapping[str, Any], missing: list[str]) -> Any:
    """Look a token up and run its modifiers; a final None means "no value" and is noted."""
    if macro.error is not None:
        raise MacroSyntaxError(macro.error) from None
    value = _MISSING
    if macro.key is not None and type(context) is dict:
        value = context.get(macro.key, _MISSING)  # the common case: a plain, exact key
    if value is _MISSING:
        value = _lookup(context, macro.path)
    if isinstance(value, datetime):
        value = _as_utc(value)
    for step in macro.steps:
        value = step(value)
    if value is None:
        missing.append(macro.name)
    return value


def _lookup(context: Mapping[str, Any], path: tuple[tuple[str, bool], ...]) -> Any:
    """Walk a dotted name through nested mappings (and list indexes); None when absent."""
    node: Any = context
    for part, exact in path:
        child = node.get(part, _MISSING) if type(node) is dict else _MISSING
        if child is _MISSING:
            child = _child(node, part, exact=exact)
            if child is _MISSING:
                return None
        node = child
    return node


def _child(node: Any, key: str, *, exact: bool) -> Any:
    """Exact key first, then any-case (operators type `{Email}` for `email`) unless `exact`."""
    if isinstance(node, Mapping):
        if key in node:
            return node[key]
        folded = key.casefold()
        matches = (v for k, v in node.items() if isinstance(k, str) and k.casefold() == folded)
        return _MISSING if exact else next(matches, _MISSING)
    if isinstance(node, list | tuple) and key.isdigit() and int(key) < len(node):
        return node[int(key)]
    return _MISSING


def _to_text(value: Any) -> str:
    """The one text form of a value: what partners expect to see in URLs and bodies."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        return _decimal_text(Decimal(repr(value)) if isinstance(value, float) else value)
    if isinstance(value, date):  # datetimes too; only a UTC offset can spell "+00:00"
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_native)
    return str(value)


def _decimal_text(number: Decimal) -> str:
    """Plain notation without exponent or trailing zeros: 12.50 -> 12.5, 1E+2 -> 100."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _native(value: Any) -> Any:
    """JSON has no decimal or date type: decimals become int/float, dates ISO text."""
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, Decimal):
        whole = value.is_finite() and value == value.to_integral_value()
        return int(value) if whole else float(value)
    if isinstance(value, Mapping | list | tuple):
        return json.loads(_to_text(value))
    if value is None or isinstance(value, str | int | float):
        return value
    return _to_text(value)


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip() if isinstance(value, float | str) else value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return number if number.is_finite() else None


def _as_datetime(value: Any) -> datetime | None:
    """Moments arrive as datetimes, dates, ISO strings or epoch seconds; others have none."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    try:
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), UTC)
        return _as_utc(datetime.fromisoformat(value.strip())) if isinstance(value, str) else None
    except (ValueError, OverflowError, OSError):
        return None


def _as_utc(moment: datetime) -> datetime:
    """Naive moments are UTC by convention; aware ones are converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utf8(value: Any) -> bytes:
    return _to_text(value).encode("utf-8", "replace")


# --- escaping and structures ------------------------------------------------------------


def _escape_url(text: str) -> str:
    """Percent-encode all but RFC 3986 unreserved characters, so a value is one component."""
    if type(text) is str and _URL_UNRESERVED.fullmatch(text):
        return text  # what `quote` returns for it, without its per-call setup
    return quote(text, safe="", errors="replace")


def _escape_json(text: str) -> str:
    """The inside of a JSON string literal; also escapes U+2028/9 and lone surrogates."""
    inner = encode_basestring(text)[1:-1]  # json.dumps(text, ensure_ascii=False), minus setup
    if inner.isascii():
        return inner
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match[0]):04x}", inner)


def _escape_xml(text: str) -> str:
    """Text safe in XML elements and attributes; characters XML 1.0 forbids are dropped."""
    if not (text.isascii() and text.isprintable()):  # printable ASCII is never illegal
        text = _XML_ILLEGAL.sub("", text)
    return text.translate(_XML_ENTITIES) if _XML_SPECIAL.search(text) else text


_ESCAPERS: dict[str, Escaper] = {  # Escape members are str, so plain names hit too
    Escape.URL: _escape_url,
    Escape.JSON: _escape_json,
    Escape.XML: _escape_xml,
    Escape.RAW: str,
}


def _render_node(node: Any, context: Mapping[str, Any], missing: list[str]) -> Any:
    """Strings that are exactly one token keep the value's type; other strings become text."""
    if isinstance(node, str):
        plan = _plan(node)
        if plan.single is not None:
            return _native(_evaluate(plan.single, context, missing))
        return _fill(plan, context, str, missing)
    if isinstance(node, Mapping):
        items = node.items()
        return {
            _render_key(k, context, missing): _render_node(v, context, missing) for k, v in items
        }
    if isinstance(node, list | tuple):
        return [_render_node(item, context, missing) for item in node]
    return node


def _render_key(key: Any, context: Mapping[str, Any], missing: list[str]) -> Any:
    """Keys are rendered as text (JSON keys are strings); other keys are left alone."""
    return _fill(_plan(key), context, str, missing) if isinstance(key, str) else key


def _all_tokens(node: Any) -> Iterator[Token]:
    """Tokens of every string in a JSON-like structure, dict keys included."""
    if isinstance(node, str):
        yield from tokens(node)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _all_tokens(key)
            yield from _all_tokens(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _all_tokens(item)


def _dedupe(names: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names)) if names else ()
