"""Exclude ZIP codes: the postback does not fire for a lead whose ZIP is listed.

Seed 001 wants each entry to be exactly five digits, so a bad entry is refused when the
config is saved rather than silently never matching. The lead's ZIP may be ZIP+4; only
its first five digits are compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import field_validator

from .base import Decision, Facts, FilterModel, Skip, is_blank

# Lead fields that may hold the ZIP, first non-blank one wins.
ZIP_FIELDS = ("zip_code", "zip", "zipcode", "postal_code")

_CODE = re.compile(r"[0-9]{5}")
_LEAD_ZIP = re.compile(r"([0-9]{5})(?:[-\s]?[0-9]{4})?")


def lead_zip(fields: Mapping[str, Any]) -> str | None:
    """The lead's five-digit ZIP, or None when it has none we can read.

    "12345-6789", "12345 6789" and "123456789" give "12345". An integer is zero-padded
    (JSON senders turn "02134" into 2134); other strings must already look like a ZIP,
    so a Canadian postal code or "1234" reads as no ZIP.
    """
    for name in ZIP_FIELDS:
        raw = fields.get(name)
        if is_blank(raw):
            continue
        if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 100_000:
            return f"{raw:05d}"
        match = _LEAD_ZIP.fullmatch(str(raw).strip())
        return match.group(1) if match else None
    return None


class ZipFilter(FilterModel):
    """Skip the postback when the lead's ZIP is in `codes`.

    A lead without a readable ZIP passes: the filter excludes listed places, and a lead
    with no place is not in any of them.
    """

    name: ClassVar[str] = "zip"

    enabled: bool = False
    codes: list[str] = []

    @field_validator("codes", mode="before")
    @classmethod
    def _ints_as_text(cls, codes: Any) -> Any:
        if isinstance(codes, list | tuple):
            return [str(c) if isinstance(c, int) and not isinstance(c, bool) else c for c in codes]
        return codes

    @field_validator("codes")
    @classmethod
    def _five_digits(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if not _CODE.fullmatch(code.strip()):
                raise ValueError(f"{code!r} is not a 5-digit ZIP code")
        return list(dict.fromkeys(code.strip() for code in codes))

    def decide(self, facts: Facts, counts: Mapping[str, int] | None = None) -> Decision:
        zip5 = lead_zip(facts.fields)
        if zip5 is None:
            return Decision.allow(self.name, "lead has no readable ZIP; not excluded")
        if zip5 in self.codes:
            return Decision.stop(Skip(self.name, f"ZIP {zip5} excluded", zip5))
        return Decision.allow(self.name, f"ZIP {zip5} not excluded")
