"""Encode a rendered postback body into bytes and a content type.

The body is a JSON-like structure whose leaves are already rendered (macros expanded).
JSON keeps native types; the text formats (XML, form, multipart) render leaves as text:
None -> "", bool -> "true"/"false", numbers as plain decimals (never exponents),
dates as ISO 8601. Mapping keys must be strings in every format.

Documented choices, so partners and tests can rely on them:

* XML: a nested mapping becomes nested elements. A list under key ``k`` repeats ``<k>``
  once per element (an empty list emits nothing); a list with no name of its own (a list
  inside a list, or a top-level list) wraps each element in ``<item>``. Element names are
  sanitized to portable ASCII names: every character outside ``[A-Za-z0-9_.-]`` becomes
  ``_``, a name not starting with a letter or ``_`` gets a ``_`` prefix, and ``""``
  becomes ``_``. Text is escaped (``& < >``, and CR as ``&#13;`` so it survives parsing);
  characters XML 1.0 cannot carry at all (most C0 controls, lone surrogates, U+FFFE/FFFF)
  are replaced by U+FFFD.
* Form and multipart: nested mappings flatten to ``a[b][c]`` keys (the PHP/Rails
  convention); lists repeat their key once per element (no ``[]`` suffix, nested lists
  flatten); empty mappings and lists emit nothing.
* Multipart follows RFC 7578 byte for byte: CRLF line breaks, one
  ``Content-Disposition: form-data; name="..."`` header per part and no part
  Content-Type (so text/plain, UTF-8 values). In names ``"``, CR and LF are escaped as
  ``%22``, ``%0D``, ``%0A`` as browsers do (a literal ``%`` is not escaped, so that
  mapping is not reversible; the HTML standard accepts the same ambiguity).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import re
import secrets
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["BodyFormat", "EncodedBody", "encode", "xml_name"]


class BodyFormat(enum.StrEnum):
    """The body formats a postback can use; values are the seed's names."""

    JSON = "json"
    XML_UTF8 = "xml-8"
    XML_UTF16 = "xml-16"
    FORM = "x-www-form-urlencoded"
    MULTIPART = "form-data"


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """Bytes ready to send and the Content-Type header that describes them."""

    content: bytes
    content_type: str


def encode(
    fmt: BodyFormat, body: Any, *, xml_root: str = "postback", boundary: str | None = None
) -> EncodedBody:
    """Encode ``body`` in ``fmt``; ``boundary`` fixes the multipart boundary (for tests)."""
    fmt = BodyFormat(fmt)
    if fmt is BodyFormat.JSON:
        return EncodedBody(orjson.dumps(body, default=_json_default), "application/json")
    if fmt is BodyFormat.XML_UTF8:
        text = _xml_document(body, xml_root, "UTF-8")
        return EncodedBody(text.encode("utf-8"), "application/xml; charset=utf-8")
    if fmt is BodyFormat.XML_UTF16:
        # An explicit little-endian BOM keeps the bytes identical on every platform.
        text = _xml_document(body, xml_root, "UTF-16")
        return EncodedBody(
            b"\xff\xfe" + text.encode("utf-16-le"), "application/xml; charset=utf-16"
        )
    if fmt is BodyFormat.FORM:
        content = urllib.parse.urlencode(list(_flatten(body)), encoding="utf-8")
        return EncodedBody(content.encode("ascii"), "application/x-www-form-urlencoded")
    return _multipart(body, boundary)


# -- leaves ------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """Serialize what orjson does not know natively: Decimal as a bare number, Mappings."""
    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(_decimal_text(value))
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _text(value: Any) -> str:
    """Render a leaf for the text formats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot encode non-finite number {value!r}")
        # repr() gives the shortest round-tripping digits; Decimal drops the exponent.
        return _decimal_text(decimal.Decimal(repr(value)))
    if isinstance(value, decimal.Decimal):
        return _decimal_text(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as text")


def _decimal_text(value: decimal.Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"cannot encode non-finite number {value!r}")
    return format(value, "f")


def _items(value: Mapping[Any, Any]) -> Iterator[tuple[str, Any]]:
    """Mapping items, refusing non-string keys the way orjson does for JSON."""
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"mapping keys must be str, not {type(key).__name__}")
        yield key, item


# -- XML ---------------------------------------------------------------------------------

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")
_NAME_START = re.compile(r"[A-Za-z_]")
# Characters XML 1.0 cannot carry, not even as character references.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_name(key: str) -> str:
    """Deterministically turn any key into a portable XML element name."""
    name = _NAME_BAD.sub("_", key)
    return name if _NAME_START.match(name) else "_" + name


def _xml_escape(text: str) -> str:
    text = _XML_ILLEGAL.sub("\ufffd", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\r", "&#13;")


def _xml_document(body: Any, root: str, encoding: str) -> str:
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>'
    return declaration + "".join(_xml_wrap(xml_name(root), body))


def _xml_element(name: str, value: Any) -> Iterator[str]:
    """The element(s) for a mapping entry: a list repeats the element once per item."""
    for item in value if isinstance(value, list | tuple) else (value,):
        yield from _xml_wrap(name, item)


def _xml_wrap(name: str, value: Any) -> Iterator[str]:
    yield f"<{name}>"
    yield from _xml_content(value)
    yield f"</{name}>"


def _xml_content(value: Any) -> Iterator[str]:
    """Children of a mapping, ``<item>`` per element of an unnamed list, or escaped text."""
    if isinstance(value, Mapping):
        for key, item in _items(value):
            yield from _xml_element(xml_name(key), item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _xml_wrap("item", item)
    else:
        yield _xml_escape(_text(value))


# -- form and multipart ------------------------------------------------------------------


def _flatten(body: Any, prefix: str | None = None) -> Iterator[tuple[str, str]]:
    """(key, text) pairs: ``a[b]`` for nested mappings, repeated keys for lists."""
    if isinstance(body, Mapping):
        for key, item in _items(body):
            yield from _flatten(item, key if prefix is None else f"{prefix}[{key}]")
    elif prefix is None:
        raise TypeError("form bodies must be a mapping at the top level")
    elif isinstance(body, list | tuple):
        for item in body:
            yield from _flatten(item, prefix)
    else:
        yield prefix, _text(body)


_BOUNDARY_OK = re.compile(r"[0-9A-Za-z'+_.\-]{1,70}")


def _multipart(body: Any, boundary: str | None) -> EncodedBody:
    parts = [_part(name, value) for name, value in _flatten(body)]
    if boundary is None:
        boundary = _fresh_boundary(parts)
    elif not _BOUNDARY_OK.fullmatch(boundary):
        raise ValueError("boundary must be 1-70 characters of [0-9A-Za-z'+_.-]")
    elif _clashes(boundary, parts):
        raise ValueError("boundary occurs inside the body")
    delimiter = b"--" + boundary.encode("ascii")
    chunks = [delimiter + b"\r\n" + part + b"\r\n" for part in parts]
    content = b"".join(chunks) + delimiter + b"--\r\n"
    return EncodedBody(content, f"multipart/form-data; boundary={boundary}")


def _part(name: str, value: str) -> bytes:
    escaped = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    header = f'Content-Disposition: form-data; name="{escaped}"\r\n\r\n'
    return header.encode("utf-8") + value.encode("utf-8")


def _fresh_boundary(parts: list[bytes]) -> str:
    """A random boundary; 128 bits make a clash with the content all but impossible."""
    while True:
        boundary = secrets.token_hex(16)
        if not _clashes(boundary, parts):
            return boundary


def _clashes(boundary: str, parts: list[bytes]) -> bool:
    """True when a delimiter line could appear inside a part (RFC 2046 section 5.1.1)."""
    delimiter = b"--" + boundary.encode("ascii")
    return any(delimiter in part for part in parts)
