"""Reusable validated field types for API input shapes."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, cast
from zoneinfo import available_timezones

import email_validator
from babel.core import get_global
from babel.numbers import get_territory_currencies
from pydantic import (
    AfterValidator,
    BeforeValidator,
    GetJsonSchemaHandler,
    NaiveDatetime,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from sqlmodel import SQLModel

if TYPE_CHECKING:
    from sqlmodel._compat import SQLModelConfig

# Input shapes reject fields they do not know (no mass assignment, typos are reported).
REJECT_UNKNOWN_FIELDS = cast("SQLModelConfig", {"extra": "forbid"})


@dataclass(frozen=True, eq=False)  # hashable by identity: typing hashes Annotated metadata
class InSchema:
    """Annotated metadata: declare in the OpenAPI document a rule a validator enforces.

    `mode="validation"` documents request bodies only, leaving responses as they were (a
    stored value must stay readable when a list of allowed values changes).
    """

    keywords: dict[str, Any]
    mode: Literal["validation", "serialization"] | None = None

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if self.mode is None or handler.mode == self.mode:
            for keyword, value in self.keywords.items():
                if value is None:
                    schema.pop(keyword, None)  # a keyword the generated schema gets wrong
                else:
                    schema[keyword] = value
        return schema


# The vendor key marking a schema to be written once, as a component (app.api.openapi).
COMPONENT_KEY = "x-component"
# Each shared schema by its component name, as `SharedSchema` declared it.
SHARED_SCHEMAS: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True, eq=False)
class SharedSchema:
    """Annotated metadata: a type's OpenAPI schema is the component `name`, written once and
    referenced by every field of the type (a 597-value enum is not copied into each model).

    Pydantic writes the schema inline, marked with `x-component`; the app's OpenAPI document
    moves it to `#/components/schemas/{name}` (app.api.openapi). `mode="validation"`: request
    bodies only, as for `InSchema`.
    """

    name: str
    schema: dict[str, Any]
    mode: Literal["validation", "serialization"] | None = None

    def __post_init__(self) -> None:
        if SHARED_SCHEMAS.setdefault(self.name, self.schema) != self.schema:
            raise ValueError(f"two shared schemas named {self.name}")

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if self.mode is None or handler.mode == self.mode:
            return {**self.schema, COMPONENT_KEY: self.name}
        return schema


# C0 controls other than tab, newline and carriage return, and NUL (which PostgreSQL refuses).
_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
_CONTROL_CHARACTERS = re.compile(f"[{_CONTROL}]")
# What trimming removes (Unicode White_Space): a name needs one character besides these.
_BLANK = r"\t\n\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# What shows nothing either, and so counts as blank: Unicode's default-ignorable code points
# (format characters such as zero-width spaces and joiners, bidi controls, the BOM, soft
# hyphens, variation selectors, tags) and the blank-looking fillers (Hangul, braille blank).
# Astral ones are written as characters: Python's and pydantic's regexes read them alike.
_INVISIBLE = (
    r"\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_VISIBLE = re.compile(f"[^{_CONTROL}{_BLANK}{_INVISIBLE}]")
TEXT_PATTERN = f"^[^{_CONTROL}]*$"
NAME_PATTERN = f"^[^{_CONTROL}]*[^{_CONTROL}{_BLANK}{_INVISIBLE}][^{_CONTROL}]*$"


def _reject_control_characters(value: str) -> str:
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("control characters (such as NUL) are not allowed")
    return value


def _require_visible_character(value: str) -> str:
    if not _VISIBLE.search(value):
        raise ValueError("must contain a visible character (not only spaces or invisible ones)")
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


# Calendar dates as RFC 3339 writes them (years 0001-9999, as Python's `date`), exactly: the
# pattern knows month lengths and leap years, so a date it allows is a date.
_YEAR = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
DATE_PATTERN = f"^{_DATE}$"
LOCAL_DATETIME_PATTERN = f"^{_DATE}T{_TIME}$"


def _text_matching(pattern: str, what: str) -> Callable[[Any], Any]:
    """A before-validator: JSON carries dates as text, so refuse numbers (which pydantic would
    read as Unix times) and any other spelling than the pattern's."""
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if isinstance(value, str) and not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        if isinstance(value, int | float):
            raise ValueError(f"must be {what}, as a string")
        return value

    return check


# A calendar date, "2027-05-01".
Day = Annotated[
    date,
    BeforeValidator(_text_matching(DATE_PATTERN, "a date such as 2027-05-01")),
    SharedSchema(
        "Day",
        {
            "type": "string",
            "format": "date",
            "pattern": DATE_PATTERN,
            "description": "A calendar date, YYYY-MM-DD, e.g. 2027-05-01.",
        },
    ),
]
# A wall-clock time without offset, "2027-05-01T10:00" (its zone is a separate field). Not
# `format: date-time`, which is RFC 3339's and requires an offset: responses carry none.
LocalDateTime = Annotated[
    NaiveDatetime,
    BeforeValidator(
        _text_matching(LOCAL_DATETIME_PATTERN, "a local date and time such as 2027-05-01T10:00")
    ),
    SharedSchema(
        "LocalDateTime",
        {
            "type": "string",
            "pattern": LOCAL_DATETIME_PATTERN,
            "description": "A local wall-clock time without offset, YYYY-MM-DDTHH:MM[:SS[.ffffff]] "
            "(responses always carry the seconds), e.g. 2027-05-01T10:00:00. Its time zone is "
            "a separate field.",
        },
    ),
]


def exact_decimal_schema(
    integer_digits: int, places: int, *, positive: bool, maximum: int | None = None
) -> InSchema:
    """The OpenAPI description of an exact decimal sent as a JSON number or a string, with at
    most `integer_digits` digits before the point and `places` after it (more are refused,
    never rounded away). `maximum`, when given, is an integer the value may reach."""
    fraction = rf"(?:\.[0-9]{{0,{places}}})?"
    if positive:
        # A non-zero digit before the point, or within the places after it.
        after_zero = "|".join(
            f"0{{{zeros}}}[1-9][0-9]{{0,{places - 1 - zeros}}}" for zeros in range(places)
        )
        text = rf"0*[1-9][0-9]{{0,{integer_digits - 1}}}{fraction}|0*\.(?:{after_zero})"
    else:
        text = rf"0*[0-9]{{1,{integer_digits}}}{fraction}|0*\.[0-9]{{1,{places}}}"
    number: dict[str, Any] = {"type": "number", "multipleOf": float(f"1e-{places}")}
    if positive:
        number["exclusiveMinimum"] = 0
    else:
        number["minimum"] = 0
    if maximum is None:
        number["exclusiveMaximum"] = 10**integer_digits
    else:
        number["maximum"] = maximum
        text = rf"{text}|0*{maximum}(?:\.0{{0,{places}}})?"
    return InSchema(
        {"anyOf": [number, {"type": "string", "pattern": f"^(?:{text})$"}]}, mode="validation"
    )


def _email_address(value: str) -> str:
    """Syntax only (no DNS), compared case-insensitively, so stored lower-cased.

    Domains reserved for testing (`.test`, like example.com for documentation) are accepted;
    those that can never exist (`.invalid`, `.localhost`, `.local`, `.onion`, `.arpa`) are not.
    """
    try:
        address = email_validator.validate_email(
            value, check_deliverability=False, test_environment=True
        )
    except email_validator.EmailNotValidError as error:
        raise ValueError(f"value is not a valid email address: {error}") from None
    return address.normalized.lower()


# A one-line name: trimmed, with a visible character, no control characters.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1),
    AfterValidator(_reject_control_characters),
    AfterValidator(_require_visible_character),
    InSchema({"pattern": NAME_PATTERN}),
]
# Free text: may be empty, keeps line breaks, no other control characters.
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_reject_control_characters),
    InSchema({"pattern": TEXT_PATTERN}),
]
# The optional `id` of a create body: chosen by the client so it can refer to the new row at
# once; sending the same create again is a replay (see app.sync.client_ids).
CLIENT_ID_DESCRIPTION = (
    "Optional id chosen by the client (a UUID). The same create sent again answers 200 with "
    "the existing resource; the id with other content is 409 id_conflict, a deleted one 410."
)

Email = Annotated[
    str,
    AfterValidator(_email_address),
    InSchema(
        {
            "format": "email",
            "description": "An email address. Domains that cannot exist (.invalid, "
            ".localhost, .local, .onion, .arpa) are refused.",
        }
    ),
]
# An ISO 4217 code (upper-case, three letters), as known to CLDR through Babel.
Currency = Annotated[
    str,
    AfterValidator(_known_currency),
    SharedSchema(
        "Currency",
        {
            "type": "string",
            "enum": sorted(_CURRENCIES),
            "description": "An ISO 4217 currency code in use today, e.g. EUR or JPY.",
        },
        mode="validation",
    ),
]

# Names that exist in the tz database but are not places: the server's own zone and test data.
_NOT_PLACES = frozenset({"localtime", "Factory", "posixrules"})


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_PLACES


def _known_time_zone(value: str) -> str:
    if value not in _time_zones():
        raise ValueError("must be an IANA time zone such as 'Europe/Paris' or 'UTC'")
    return value


def enum_member_name(zone: str) -> str:
    """A code generator's name for a zone: "Etc/GMT+1" → ETC_GMT_PLUS_1, "GMT-0" → GMT_MINUS_0.

    Generators that derive names from values by dropping punctuation make GMT+0, GMT-0 and
    GMT0 all GMT0; the OpenAPI document gives these names instead (`x-enum-varnames`).
    """
    signed = re.sub(r"-(?=[0-9])", "_MINUS_", re.sub(r"\+(?=[0-9])", "_PLUS_", zone))
    return re.sub(r"[^A-Za-z0-9]+", "_", signed).strip("_").upper()


def _time_zone_schema() -> dict[str, Any]:
    zones = sorted(_time_zones())
    names = [enum_member_name(zone) for zone in zones]
    if len(set(names)) != len(names):
        raise ValueError("two time zones share an enum member name")
    return {
        "type": "string",
        "enum": zones,
        "x-enum-varnames": names,
        "description": "An IANA time zone name, e.g. Europe/Paris or UTC.",
    }


# An IANA time zone, as the server's tz database knows it.
TimeZone = Annotated[
    str,
    AfterValidator(_known_time_zone),
    SharedSchema("TimeZone", _time_zone_schema(), mode="validation"),
]


class PartialUpdate(SQLModel):
    """An update body: a field left out stays as it is; null clears only the `CLEARABLE` ones.

    The OpenAPI document says the same: the other fields are not nullable there.
    """

    model_config = cast(
        "SQLModelConfig",
        {
            **REJECT_UNKNOWN_FIELDS,
            "json_schema_extra": lambda schema, model: _not_nullable(schema, model),
        },
    )

    CLEARABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _reject_nulls(self) -> Self:
        for name in sorted(self.model_fields_set - self.CLEARABLE):
            if getattr(self, name) is None:
                raise ValueError(f"{name} may be omitted but not null")
        return self


def _not_nullable(schema: dict[str, Any], model: type[PartialUpdate]) -> None:
    for name, field_schema in schema.get("properties", {}).items():
        branches = field_schema.get("anyOf")
        if name in model.CLEARABLE or not branches:
            continue
        kept = [branch for branch in branches if branch != {"type": "null"}]
        del field_schema["anyOf"]
        if field_schema.get("default", "") is None:
            del field_schema["default"]
        if len(kept) == 1:
            field_schema.update(kept[0])
        else:
            field_schema["anyOf"] = kept
