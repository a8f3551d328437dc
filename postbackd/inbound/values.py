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


def blank(value: Any) -> bool:
    """Absent, null or empty text: URL templates render missing macros as empty strings."""
    return value is None or (isinstance(value, str) and not value.strip())


def text(name: str, value: Any, *, max_len: int = MAX_TEXT) -> str | None:
    if blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise InputError(f"invalid_{name}", f"{name} must be text")
    out = value.strip() if isinstance(value, str) else str(value)
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
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InputError(f"invalid_{name}", f"{name} must be a date YYYY-MM-DD") from None


def conversion_time(date_value: Any, tz_value: Any) -> datetime | None:
    """`YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` in one of the seed's fixed-offset zones (UTC if none)."""
    tz = _conversion_timezone(tz_value)
    if blank(date_value):
        return None
    raw = str(date_value).strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=tz).astimezone(UTC)
        except ValueError:
            continue
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


def field_name(name: str) -> str:
    if not FIELD_NAME.match(name):
        raise InputError("invalid_field_name", f"{name[:64]!r} is not a valid lead field name")
    return name
