"""Reusable validated field types for API input shapes."""

import re
from datetime import date
from typing import TYPE_CHECKING, Annotated, cast

from babel.core import get_global
from babel.numbers import get_territory_currencies
from pydantic import AfterValidator, EmailStr, StringConstraints

if TYPE_CHECKING:
    from sqlmodel._compat import SQLModelConfig

# Input shapes reject fields they do not know (no mass assignment, typos are reported).
REJECT_UNKNOWN_FIELDS = cast("SQLModelConfig", {"extra": "forbid"})

# C0 controls other than tab, newline and carriage return, and NUL (which PostgreSQL refuses).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _reject_control_characters(value: str) -> str:
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("control characters (such as NUL) are not allowed")
    return value


def _known_currency(value: str) -> str:
    if value not in _CURRENCIES:
        raise ValueError("must be an ISO 4217 currency code such as 'EUR' or 'JPY'")
    return value


def _currencies_in_use() -> frozenset[str]:
    """Legal tender somewhere today (CLDR): no withdrawn codes (DEM), no XXX/XTS/XAU."""
    today = date.today()
    return frozenset(
        code
        for territory in get_global("territory_currencies")
        for code in get_territory_currencies(territory, start_date=today, tender=True)
    )


_CURRENCIES = _currencies_in_use()


def _lower(value: str) -> str:
    return value.lower()


# A one-line name: trimmed, non-empty, no control characters.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1),
    AfterValidator(_reject_control_characters),
]
# Free text: may be empty, keeps line breaks, no other control characters.
Text = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_reject_control_characters)
]
# The optional `id` of a create body: chosen by the client so it can refer to the new row at
# once; sending the same create again is a replay (see app.sync.client_ids).
CLIENT_ID_DESCRIPTION = (
    "Optional id chosen by the client (a UUID). The same create sent again answers 200 with "
    "the existing resource; the id with other content is 409 id_conflict, a deleted one 410."
)

# Email addresses compare case-insensitively, so they are stored lower-cased.
Email = Annotated[EmailStr, AfterValidator(_lower)]
# An ISO 4217 code (upper-case, three letters), as known to CLDR through Babel.
Currency = Annotated[str, AfterValidator(_known_currency)]
