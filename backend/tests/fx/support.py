"""Small files in ECB's published formats, built by the tests (this machine has no internet)."""

import io
import zipfile
from datetime import date

# day → currency → rate text ("N/A": no rate that day)
Days = dict[str, dict[str, str]]

XML_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
    'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
    "\t<gesmes:subject>Reference rates</gesmes:subject>\n"
    "\t<gesmes:Sender>\n\t\t<gesmes:name>European Central Bank</gesmes:name>\n"
    "\t</gesmes:Sender>\n\t<Cube>\n"
)


def _currencies(days: Days) -> list[str]:
    seen: list[str] = []
    for rates in days.values():
        seen += [currency for currency in rates if currency not in seen]
    return seen


def hist_csv(days: Days) -> bytes:
    """eurofxref-hist.csv: newest day first, a trailing comma on every line."""
    currencies = _currencies(days)
    lines = [",".join(["Date", *currencies, ""])]
    for day in sorted(days, reverse=True):
        values = [days[day].get(currency, "N/A") for currency in currencies]
        lines.append(",".join([day, *values, ""]))
    return ("\n".join(lines) + "\n").encode()


def daily_csv(day: str, rates: dict[str, str]) -> bytes:
    """eurofxref.csv: `Date, USD, ...` with spaces, the date as `05 January 2024`."""
    long = date.fromisoformat(day).strftime("%d %B %Y")
    header = ", ".join(["Date", *rates, ""])
    row = ", ".join([long, *rates.values(), ""])
    return f"{header}\n{row}\n".encode()


def ecb_xml(days: Days) -> bytes:
    """eurofxref-hist.xml or -daily.xml (one day): the gesmes Envelope."""
    cubes = "".join(
        f"\t\t<Cube time='{day}'>\n"
        + "".join(
            f"\t\t\t<Cube currency='{currency}' rate='{rate}'/>\n"
            for currency, rate in days[day].items()
            if rate != "N/A"  # the XML leaves a currency without a rate out
        )
        + "\t\t</Cube>\n"
        for day in sorted(days, reverse=True)
    )
    return (XML_HEAD + cubes + "\t</Cube>\n</gesmes:Envelope>\n").encode()


def zipped(name: str, data: bytes) -> bytes:
    """ECB ships the historical CSV as eurofxref-hist.zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()
