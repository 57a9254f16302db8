"""Reading ECB's file formats: each one, exact decimals, and malformed files refused clearly."""

import io
from datetime import date
from decimal import Decimal

import pytest

from app.fx.ecb import DayRates, EcbFormatError, read_rates
from tests.fx.support import daily_csv, ecb_xml, hist_csv, zipped

DAYS = {
    "2024-01-05": {"USD": "1.0921", "JPY": "158.54", "ISK": "N/A"},
    "2024-01-04": {"USD": "1.0953", "JPY": "157.38", "ISK": "150.10"},
}
EXPECTED = [
    DayRates(date(2024, 1, 5), {"USD": Decimal("1.0921"), "JPY": Decimal("158.54")}),
    DayRates(
        date(2024, 1, 4),
        {"USD": Decimal("1.0953"), "JPY": Decimal("157.38"), "ISK": Decimal("150.10")},
    ),
]


def _read(data: bytes) -> list[DayRates]:
    return list(read_rates(io.BytesIO(data)))


def test_the_historical_csv_with_trailing_commas_and_missing_rates() -> None:
    data = hist_csv(DAYS)
    assert data.startswith(b"Date,USD,JPY,ISK,\n2024-01-05,1.0921,158.54,N/A,\n")
    assert _read(data) == EXPECTED


def test_rates_are_exact_decimals_from_their_text() -> None:
    (day,) = _read(hist_csv({"2024-01-05": {"USD": "1.10", "IDR": "17042.123456789012"}}))
    # Not through a float: the digits (and the trailing zero) are the file's.
    assert str(day.rates["USD"]) == "1.10"
    assert day.rates["IDR"] == Decimal("17042.123456789012")


def test_the_daily_csv_with_spaces_and_long_dates() -> None:
    data = daily_csv("2024-01-05", {"USD": "1.0921", "JPY": "158.54"})
    assert data.startswith(b"Date, USD, JPY, \n05 January 2024, 1.0921, 158.54, \n")
    assert _read(data) == [EXPECTED[0]]


def test_the_xml_files() -> None:
    assert _read(ecb_xml(DAYS)) == EXPECTED
    daily = ecb_xml({"2024-01-05": DAYS["2024-01-05"]})
    assert _read(daily) == [EXPECTED[0]]


def test_the_zip_of_the_csv() -> None:
    assert _read(zipped("eurofxref-hist.csv", hist_csv(DAYS))) == EXPECTED


def test_a_byte_order_mark_is_accepted() -> None:
    assert _read(b"\xef\xbb\xbf" + hist_csv(DAYS)) == EXPECTED


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Day,USD,\n2024-01-05,1.1,\n", "line 1: the header must start with 'Date'"),
        (b"Date,usd,\n2024-01-05,1.1,\n", "line 1, column 2: 'usd' is not a currency code"),
        (b"Date,EUR,\n2024-01-05,1,\n", "'EUR' is not a currency code other than EUR"),
        (b"Date,USD,USD,\n2024-01-05,1.1,1.2,\n", "a currency appears twice"),
        (b"Date,USD,\n2024-01-05,1.1,\n2024-01-04,1.1.2,\n", "line 3, USD (column 2): '1.1.2'"),
        (b"Date,USD,\n2024-01-05,0,\n", "line 2, USD (column 2): '0' is not a positive rate"),
        (b"Date,USD,\n2024-01-05,1e3,\n", "'1e3' is not a decimal rate"),
        (b"Date,USD,\n2024-01-05,-1,\n", "'-1' is not a decimal rate"),
        (b"Date,USD,\n2024-01-05,1.0000000000001,\n", "12 after"),
        (b"Date,USD,\n2024-02-30,1.1,\n", "line 2: '2024-02-30' is not a date"),
        (b"Date,USD,\n31 Smarch 2024,1.1,\n", "line 2: '31 Smarch 2024' is not a date"),
        (b"Date,USD,\n2024-01-05,1.1,2.2,\n", "line 2: 3 values for 2 columns"),
        (b"Date,USD,\n2024-01-05,1.1,\n2024-01-05,1.2,\n", "2024-01-05 appears twice"),
        (b"Date,USD,\n2024-01-05,\xff,\n", "unreadable CSV"),
    ],
)
def test_a_malformed_csv_names_the_line_and_the_fault(data: bytes, message: str) -> None:
    with pytest.raises(EcbFormatError, match=None) as error:
        _read(data)
    assert message in str(error.value)


XML_DAY = "<Cube time='2024-01-05'><Cube currency='USD' rate='{rate}'/></Cube>"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (XML_DAY.format(rate="abc"), "<Cube time='2024-01-05'>, <Cube currency='USD'>: 'abc'"),
        ("<Cube time='2024-13-01'></Cube>", "<Cube time='2024-13-01'>: '2024-13-01' is not a date"),
        ("<Cube time='2024-01-05'><Cube currency='USD'/></Cube>", "each child is <Cube"),
        (XML_DAY + XML_DAY, "2024-01-05 appears twice"),
        ("<Cube time='2024-01-05'><Cube currency='USD' rate='1'>", "malformed XML"),
    ],
)
def test_a_malformed_xml_names_the_element(body: str, message: str) -> None:
    data = f"<Envelope><Cube>{body.format(rate='1.1')}</Cube></Envelope>".encode()
    if "abc" in body:
        data = f"<Envelope><Cube>{body}</Cube></Envelope>".encode()
    with pytest.raises(EcbFormatError) as error:
        _read(data)
    assert message in str(error.value)


def test_xml_with_another_root_is_refused() -> None:
    with pytest.raises(EcbFormatError, match="the root element must be <Envelope>"):
        _read(b"<html><body>Service unavailable</body></html>")


def test_xml_entities_are_never_resolved() -> None:
    """A DTD (the only way to declare an entity) is refused: no billion laughs, no files."""
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE Envelope [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<Envelope><Cube><Cube time='2024-01-05'><Cube currency='USD' rate='&b;'/></Cube>"
        b"</Cube></Envelope>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<Envelope>&x;</Envelope>"
    )
    for data in (bomb, external):
        with pytest.raises(EcbFormatError, match="refused XML"):
            _read(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (zipped("readme.txt", b"hello"), "must hold one .csv or .xml file, not 0"),
        (b"PK\x03\x04 not really a zip", "unreadable zip file"),
    ],
)
def test_a_bad_zip_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(EcbFormatError, match=message):
        _read(data)


def test_the_reader_streams_one_day_at_a_time() -> None:
    """The first day comes out before the rest of the file is read (a huge file is fine)."""
    head = hist_csv({"2024-01-05": {"USD": "1.1"}})

    class Endless(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            chunk = head if self.sent == 0 else b"2000-01-01,1.1,\n" * 64
            self.sent += 1
            buffer[: len(chunk)] = chunk
            return len(chunk)

    days = read_rates(io.BufferedReader(Endless()))
    assert next(days).day == date(2024, 1, 5)
