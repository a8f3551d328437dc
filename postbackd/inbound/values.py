"""Parsing of single inbound values; each failure is an InputError named after the field."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from postbackd.errors import InputError
from postbackd.model import CONVERSION_TIMEZONES

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_TEXT = 2000
MAX_AMOUNT = Decimal("1e12")
MIN_YEAR, MAX_YEAR = 1970, 2100  # dates outside are typos, and would overflow time zones


def blank(value: Any) -> bool:
    """Absent, null or empty text: URL templates render missing macros as empty strings."""
    return value is None or (isinstance(value, str) and not value.strip())


def text(name: str, value: Any, *, max_len: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if type(value) is not str:  # plain str, a dozen per event, skips the checks
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
            raise InputError(f"invalid_{name}", f"{name} must be text")
        value = str(value)
    out = value.strip()
    if not out:
        return None
    if len(out) > max_len:
        raise InputError(f"invalid_{name}", f"{name} is longer than {max_len} characters")
    if "\x00" in out:
        raise InputError(f"invalid_{name}", f"{name} contains a NUL character")
    return out


def amount(name: str, value: Any) -> Decimal | None:
    """A finite decimal number, given as a JSON number or as text ("12.50")."""
    if blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise InputError(f"invalid_{name}", f"{name} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"invalid_{name}", f"{name} must be a finite number")
    try:
        out = Decimal(str(value).strip())
    except InvalidOperation:
        raise InputError(
            f"invalid_{name}", f"{name} must be a number, got {str(value)[:40]!r}"
        ) from None
    if not out.is_finite() or abs(out) >= MAX_AMOUNT:
        raise InputError(f"invalid_{name}", f"{name} must be a finite number below 1e12")
    return out.quantize(Decimal("0.0001")) if out.as_tuple().exponent < -4 else out


def flag(name: str, value: Any) -> bool | None:
    """0/1 as the seed says; true/false accepted too."""
    if blank(value):
        return None
    raw = str(value).strip().lower()
    if raw in {"1", "true", "yes"}:
        return True
    if raw in {"0", "false", "no"}:
        return False
    raise InputError(f"invalid_{name}", f"{name} must be 0 or 1")


def day(name: str, value: Any) -> date | None:
    if blank(value):
        return None
    try:
        parsed = date.fromisoformat(str(value).strip())
    except ValueError:
        raise InputError(f"invalid_{name}", f"{name} must be a date YYYY-MM-DD") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise InputError(f"invalid_{name}", f"{name} must lie in {MIN_YEAR}-{MAX_YEAR}")
    return parsed


def conversion_time(date_value: Any, tz_value: Any) -> datetime | None:
    """`YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` in one of the seed's fixed-offset zones (UTC if none)."""
    tz = _conversion_timezone(tz_value)
    if blank(date_value):
        return None
    raw = str(date_value).strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(raw, fmt)
        except ValueError:
            continue
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            raise InputError(
                "invalid_conversion_date", f"conversion_date must lie in {MIN_YEAR}-{MAX_YEAR}"
            )
        return parsed.replace(tzinfo=tz).astimezone(UTC)
    raise InputError(
        "invalid_conversion_date", "conversion_date must be 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"
    )


def _conversion_timezone(value: Any) -> timezone:
    if blank(value):
        return UTC
    name = str(value).strip().upper()
    if name not in CONVERSION_TIMEZONES:
        allowed = ", ".join(CONVERSION_TIMEZONES)
        raise InputError(
            "invalid_conversion_timezone", f"conversion_timezone must be one of {allowed}"
        )
    return timezone(timedelta(hours=CONVERSION_TIMEZONES[name]), name)


def json_value(name: str, value: Any, *, max_depth: int = 16, max_items: int = 1000) -> Any:
    """Nested data (session data) within sane bounds, without NUL characters."""
    budget = [max_items]

    def walk(node: Any, depth: int) -> None:
        budget[0] -= 1
        if depth > max_depth or budget[0] < 0:
            raise InputError(
                f"invalid_{name}", f"{name} is nested too deeply or has too many items"
            )
        if isinstance(node, str) and "\x00" in node:
            raise InputError(f"invalid_{name}", f"{name} contains a NUL character")
        if isinstance(node, dict):
            for key, child in node.items():
                walk(key, depth + 1)
                walk(child, depth + 1)
        elif isinstance(node, list):
            for child in node:
                walk(child, depth + 1)

    walk(value, 0)
    return value


def field_name(name: str) -> str:
    if not FIELD_NAME.match(name):
        raise InputError("invalid_field_name", f"{name[:64]!r} is not a valid lead field name")
    return name
