"""USPS codes and names of the 50 states, DC, Puerto Rico and the inhabited territories.

Data only, with one lookup: leads and operators write states either way ("CA",
"california", "Washington, D.C."), and filters compare codes.
"""

from __future__ import annotations

import re

STATES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas",
    "CA": "California", "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho",
    "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas",
    "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi",
    "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah",
    "VT": "Vermont", "VA": "Virginia", "WA": "Washington", "WV": "West Virginia",
    "WI": "Wisconsin", "WY": "Wyoming",
    "DC": "District of Columbia", "PR": "Puerto Rico",
    "AS": "American Samoa", "GU": "Guam", "MP": "Northern Mariana Islands",
    "VI": "U.S. Virgin Islands",
}  # fmt: skip

# Other spellings people type; keys are already normalized (see `_key`).
_ALIASES = {
    "washington dc": "DC",
    "washington d c": "DC",
    "virgin islands": "VI",
    "united states virgin islands": "VI",
    "commonwealth of puerto rico": "PR",
}

_PUNCT = re.compile(r"[.,]")
_SPACES = re.compile(r"\s+")


def _key(text: str) -> str:
    """Case-, space- and punctuation-blind form: "U.S. Virgin  Islands" -> "us virgin islands"."""
    return _SPACES.sub(" ", _PUNCT.sub("", text)).strip().casefold()


_BY_NAME = {_key(name): code for code, name in STATES.items()} | _ALIASES


def state_code(text: str) -> str | None:
    """The USPS code for a code or name in any case, or None when it names no state."""
    key = _key(text)
    if len(key) == 2 and key.upper() in STATES:
        return key.upper()
    return _BY_NAME.get(key)
