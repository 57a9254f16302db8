"""Readers of the European Central Bank's published reference-rate files, one day at a time.

ECB publishes "1 EUR = x currency" for about 30 currencies each business day, as:

- the historical CSV (eurofxref-hist.csv): `Date,USD,JPY,...,` (a trailing comma on every
  line), ISO dates, `N/A` where a currency has no rate that day;
- the daily CSV (eurofxref.csv): `Date, USD, JPY, ...` with spaces, dates like
  `05 January 2024`;
- the XML (eurofxref-hist.xml, eurofxref-daily.xml): a gesmes Envelope holding
  `<Cube time="2024-01-05"><Cube currency="USD" rate="1.0921"/>...</Cube>`;
- either CSV inside a .zip (how ECB ships it).

Rates are read as exact decimals from their text, never through a float. The readers stream:
one day is in memory at a time, whatever the file's size. XML is parsed with defusedxml,
refusing any DTD (so no entity is ever declared, let alone resolved).
"""

import contextlib
import csv
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import IO, Any, cast
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from app.fx.models import RATE_DIGITS, RATE_PLACES

# A zip member larger than this (uncompressed) is refused: ECB's history is about 2 MB.
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024

_CURRENCY = re.compile(r"[A-Z]{3}")
_MISSING = frozenset({"", "N/A"})
_MONTHS = {
    name: number
    for number, name in enumerate(
        (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        start=1,
    )
}
_LONG_DATE = re.compile(r"(\d{1,2}) ([A-Za-z]+) (\d{4})")


class EcbFormatError(ValueError):
    """The file is not in one of ECB's formats; the message says where and why."""


@dataclass(frozen=True)
class DayRates:
    """The rates of one day: currency → units per 1 EUR."""

    day: date
    rates: dict[str, Decimal]


def read_rates(stream: IO[bytes]) -> Iterator[DayRates]:
    """The days of an ECB file (CSV, XML or a .zip holding one), told apart by their content.

    Raises EcbFormatError (possibly after some days were yielded: import in one transaction).
    """
    return _days_once(_read_any(stream))


def _read_any(stream: IO[bytes]) -> Iterator[DayRates]:
    buffered: Any = stream if hasattr(stream, "peek") else io.BufferedReader(cast(Any, stream))
    head = buffered.peek(64)[:64]
    if head.startswith(b"PK\x03\x04"):
        return _read_zip(buffered)
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return _read_xml(buffered)
    return _read_csv(buffered)


def _days_once(days: Iterator[DayRates]) -> Iterator[DayRates]:
    """Refuse a day given twice: which of its rates would be meant?"""
    seen: set[date] = set()
    for day in days:
        if day.day in seen:
            raise EcbFormatError(f"{day.day.isoformat()} appears twice in the file")
        seen.add(day.day)
        yield day


_DECIMAL = re.compile(rf"\d{{1,{RATE_DIGITS - RATE_PLACES}}}(\.\d{{1,{RATE_PLACES}}})?")


def _rate(text: str, where: str) -> Decimal:
    """A positive plain decimal that NUMERIC(24, 12) holds exactly, read from its text."""
    if not _DECIMAL.fullmatch(text):
        raise EcbFormatError(
            f"{where}: {text!r} is not a decimal rate (at most {RATE_DIGITS - RATE_PLACES} "
            f"digits before the point and {RATE_PLACES} after)"
        )
    value = Decimal(text)
    if value <= 0:
        raise EcbFormatError(f"{where}: {text!r} is not a positive rate")
    return value


def _day(text: str, where: str) -> date:
    """ISO (2024-01-05, the historical files) or long (05 January 2024, the daily CSV)."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        long = _LONG_DATE.fullmatch(text)
        if long and long.group(2).capitalize() in _MONTHS:
            return date(int(long.group(3)), _MONTHS[long.group(2).capitalize()], int(long.group(1)))
    except ValueError:
        pass
    raise EcbFormatError(f"{where}: {text!r} is not a date")


def _currency(text: str, where: str) -> str:
    code = text.strip()
    if not _CURRENCY.fullmatch(code) or code == "EUR":
        raise EcbFormatError(f"{where}: {code!r} is not a currency code other than EUR")
    return code


# --- CSV ---------------------------------------------------------------------------------------


def _without_trailing_blanks(cells: list[str]) -> list[str]:
    while cells and not cells[-1].strip():
        cells = cells[:-1]
    return cells


def _read_csv(stream: IO[bytes]) -> Iterator[DayRates]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    rows = csv.reader(text)
    try:
        header = _without_trailing_blanks(next(rows, []))
        if not header or header[0].strip() != "Date":
            raise EcbFormatError("line 1: the header must start with 'Date'")
        currencies = [
            _currency(cell, f"line 1, column {n}") for n, cell in enumerate(header[1:], 2)
        ]
        if len(set(currencies)) != len(currencies):
            raise EcbFormatError("line 1: a currency appears twice in the header")
        for row in rows:
            line = rows.line_num
            cells = _without_trailing_blanks(row)
            if not cells:
                continue  # a blank line (the daily file ends with one)
            if len(cells) > len(header):
                raise EcbFormatError(f"line {line}: {len(cells)} values for {len(header)} columns")
            rates = {}
            for column, (currency, cell) in enumerate(zip(currencies, cells[1:], strict=False), 2):
                value = cell.strip()
                if value not in _MISSING:
                    rates[currency] = _rate(value, f"line {line}, {currency} (column {column})")
            yield DayRates(_day(cells[0], f"line {line}"), rates)
    except (UnicodeDecodeError, csv.Error) as error:
        raise EcbFormatError(f"line {rows.line_num}: unreadable CSV ({error})") from None
    finally:
        with contextlib.suppress(ValueError):  # already closed: nothing to hand back
            text.detach()  # the caller's stream stays open


# --- XML ---------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_xml(stream: IO[bytes]) -> Iterator[DayRates]:
    # forbid_dtd: ECB's files have none, and without one no entity can be declared.
    events = iterparse(
        stream, events=("start", "end"), forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    parents: list[Element] = []
    root_seen = False
    try:
        for event, element in events:
            name = _local(element.tag)
            if event == "start":
                if not root_seen:
                    if name != "Envelope":
                        raise EcbFormatError(f"<{name}>: the root element must be <Envelope>")
                    root_seen = True
                parents.append(element)
                continue
            parents.pop()
            if name == "Cube" and "time" in element.attrib:
                yield _xml_day(element)
                if parents:
                    parents[-1].remove(element)  # one day in memory at a time
    except ParseError as error:
        raise EcbFormatError(f"malformed XML: {error}") from None
    except DefusedXmlException as error:
        raise EcbFormatError(f"refused XML ({type(error).__name__}): {error}") from None
    if not root_seen:
        raise EcbFormatError("the XML has no root element")


def _xml_day(element: Element) -> DayRates:
    time = element.attrib["time"]
    where = f"<Cube time={time!r}>"
    day = _day(time, where)
    rates: dict[str, Decimal] = {}
    for child in element:
        if _local(child.tag) != "Cube" or set(child.attrib) != {"currency", "rate"}:
            raise EcbFormatError(f"{where}: each child is <Cube currency=... rate=...>")
        currency = _currency(child.attrib["currency"], f"{where}, <Cube currency=...>")
        if currency in rates:
            raise EcbFormatError(f"{where}: {currency} appears twice")
        rates[currency] = _rate(child.attrib["rate"], f"{where}, <Cube currency={currency!r}>")
    return DayRates(day, rates)


# --- zip ---------------------------------------------------------------------------------------


def _read_zip(stream: IO[bytes]) -> Iterator[DayRates]:
    data = io.BytesIO(stream.read(MAX_UNZIPPED_BYTES + 1))
    try:
        archive = zipfile.ZipFile(data)
    except zipfile.BadZipFile as error:
        raise EcbFormatError(f"unreadable zip file: {error}") from None
    with archive:
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir() and info.filename.lower().endswith((".csv", ".xml"))
        ]
        if len(members) != 1:
            raise EcbFormatError(
                f"the zip file must hold one .csv or .xml file, not {len(members)}"
            )
        member = members[0]
        if member.file_size > MAX_UNZIPPED_BYTES:
            raise EcbFormatError(f"{member.filename}: larger than {MAX_UNZIPPED_BYTES} bytes")
        try:
            with archive.open(member) as inner:
                yield from _read_any(inner)
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as error:
            raise EcbFormatError(f"{member.filename}: {error}") from None
