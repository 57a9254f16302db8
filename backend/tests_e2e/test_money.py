"""The stub's money arithmetic, run in the browser: amounts typed in major units become exact
integers of minor units, with the currency's own number of decimals."""

from collections.abc import Callable

from playwright.sync_api import Page

CONVERT = """async ([text, currency]) => {
  const { toMinor } = await import("./money.js");
  try { return toMinor(text, currency); } catch (error) { return error.message; }
}"""


CASES: list[tuple[str, str, int | str]] = [
    ("0.29", "EUR", 29),  # 0.29 * 100 is 28.999999999999996 in floating point
    ("1.1", "EUR", 110),
    ("12,50", "EUR", 1250),
    ("90", "EUR", 9000),
    ("1234", "JPY", 1234),
    ("1.234", "KWD", 1234),
    ("90071992547409.91", "EUR", 9007199254740991),
    ("90.005", "EUR", "Amount: enter a number with at most 2 decimals for EUR."),
    ("1.5", "JPY", "Amount: enter a number with no decimals for JPY."),
    ("-5", "EUR", "Amount: enter a number with at most 2 decimals for EUR."),
    ("90071992547409.92", "EUR", "Amount: that is too large."),
]


def test_amounts_convert_exactly_to_minor_units(new_page: Callable[[], Page]) -> None:
    page = new_page()
    results = [page.evaluate(CONVERT, [text, currency]) for text, currency, _ in CASES]
    assert results == [minor for _, _, minor in CASES]
