"""Importing ECB files into fx_rates (service and `python -m app.cli fx-import`) and looking
up the rate between two currencies on a day."""

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlmodel import Session, func, select

from app import cli
from app.fx import service
from app.fx.models import FxRate, RateSource
from app.fx.service import Quote, RateUnavailable, reference_rate
from tests import factories
from tests.fx.support import ecb_xml, hist_csv, zipped


def _stored(session: Session) -> dict[tuple[str, str], Decimal]:
    session.expire_all()
    return {
        (rate.day.isoformat(), rate.currency): rate.per_eur
        for rate in session.exec(select(FxRate)).all()
    }


def _many_days(count: int, currencies: int) -> dict[str, dict[str, str]]:
    """`count` consecutive days from 2000-01-01, each with `currencies` made-up currencies."""
    codes = [f"Q{chr(65 + n // 26)}{chr(65 + n % 26)}" for n in range(currencies)]
    return {
        date.fromordinal(date(2000, 1, 1).toordinal() + n).isoformat(): {
            code: f"{1 + n % 7}.{k:04d}" for k, code in enumerate(codes)
        }
        for n in range(count)
    }


# --- importing --------------------------------------------------------------------------------


def test_an_import_stores_every_rate_and_reports_the_range(session: Session) -> None:
    days = {"2024-01-05": {"USD": "1.0921", "ISK": "N/A"}, "2024-01-04": {"USD": "1.0953"}}
    result = service.import_file(session=session, stream=io.BytesIO(hist_csv(days)))
    assert result == service.ImportResult(
        days=2, rates=2, first_day=date(2024, 1, 4), last_day=date(2024, 1, 5)
    )
    assert _stored(session) == {
        ("2024-01-05", "USD"): Decimal("1.0921"),
        ("2024-01-04", "USD"): Decimal("1.0953"),
    }
    row = session.exec(select(FxRate).where(FxRate.currency == "USD")).first()
    assert row is not None
    assert row.source == RateSource.ECB


def test_a_reimport_is_idempotent_and_updates_a_changed_rate(session: Session) -> None:
    days = {"2024-01-05": {"USD": "1.0921", "JPY": "158.54"}}
    service.import_file(session=session, stream=io.BytesIO(hist_csv(days)))
    service.import_file(session=session, stream=io.BytesIO(ecb_xml(days)))  # same rates
    assert len(_stored(session)) == 2
    corrected = {"2024-01-05": {"USD": "1.0925", "JPY": "158.54"}}
    service.import_file(session=session, stream=io.BytesIO(hist_csv(corrected)))
    assert _stored(session) == {
        ("2024-01-05", "USD"): Decimal("1.0925"),
        ("2024-01-05", "JPY"): Decimal("158.54"),
    }


def test_a_big_file_is_written_in_batches(session: Session) -> None:
    days = _many_days(120, 30)  # 3,600 rates: four batches
    result = service.import_file(session=session, stream=io.BytesIO(hist_csv(days)))
    assert (result.days, result.rates) == (120, 3600)
    count = session.exec(select(func.count()).select_from(FxRate)).one()
    assert count == 3600


# --- the command ------------------------------------------------------------------------------


def test_fx_import_prints_what_it_imported(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "eurofxref-hist.zip"
    days = {"2024-01-05": {"USD": "1.0921", "JPY": "158.54"}, "2024-01-04": {"USD": "1.0953"}}
    file.write_bytes(zipped("eurofxref-hist.csv", hist_csv(days)))
    assert cli.main(["fx-import", str(file)]) == 0
    assert capsys.readouterr().out == "imported 3 rates for 2 days (2024-01-04 to 2024-01-05)\n"
    assert _stored(session)[("2024-01-05", "JPY")] == Decimal("158.54")


def test_fx_import_of_a_bad_file_imports_nothing_and_fails(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error comes after several batches were written: they are undone too."""
    file = tmp_path / "eurofxref-hist.csv"
    text = hist_csv(_many_days(100, 30)).decode()  # newest first: the bad line comes last
    file.write_text(text + "1999-12-31," + ",".join(["1.5"] * 29) + ",oops,\n")
    assert cli.main(["fx-import", str(file)]) == 1
    error = capsys.readouterr().err
    assert "line 102, QBD (column 31): 'oops' is not a decimal rate" in error
    assert "nothing was imported" in error
    assert _stored(session) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file"), (b"Date,USD,\n", "the file holds no rates"), (b"", "'Date'")],
)
def test_fx_import_explains_other_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    file = tmp_path / "rates.csv"
    if content is not None:
        file.write_bytes(content)
    assert cli.main(["fx-import", str(file)]) == 1
    assert message in capsys.readouterr().err


# --- looking up -------------------------------------------------------------------------------

RATES = {
    "2024-01-03": {"USD": "1.0919", "JPY": "155.90", "GBP": "0.86200"},
    "2024-01-04": {"USD": "1.0953", "JPY": "157.38"},  # no GBP that day
    "2024-01-05": {"USD": "1.0921", "JPY": "158.54"},  # a Friday
}


def _quote(session: Session, currency: str, base: str, on: str, **kwargs: int) -> Quote:
    return reference_rate(
        session, currency=currency, base_currency=base, on=date.fromisoformat(on), **kwargs
    )


def test_the_rate_of_the_day_itself(session: Session) -> None:
    factories.add_fx_rates(session, RATES)
    quote = _quote(session, "USD", "EUR", "2024-01-04")
    # Base EUR: 1 USD = 1 / 1.0953 EUR, rounded half even to 12 places.
    assert quote == Quote(Decimal("0.912991874372"), date(2024, 1, 4), RateSource.ECB)


def test_a_weekend_takes_fridays_rate(session: Session) -> None:
    factories.add_fx_rates(session, RATES)
    assert _quote(session, "EUR", "USD", "2024-01-07").day == date(2024, 1, 5)  # Sunday
    # EUR as the currency: the base's own quote, exactly.
    assert _quote(session, "EUR", "USD", "2024-01-06").rate == Decimal("1.0921")


def test_a_cross_rate_goes_through_eur_exactly(session: Session) -> None:
    factories.add_fx_rates(session, RATES)
    quote = _quote(session, "JPY", "USD", "2024-01-05")
    # 1.0921 / 158.54 = 0.0068884824019174971..., rounded once to 12 places.
    assert quote.rate == Decimal("0.006888482402")
    assert quote.rate == service.cross_rate(Decimal("158.54"), Decimal("1.0921"))
    assert _quote(session, "USD", "JPY", "2024-01-05").rate == Decimal("145.169856240271")


def test_a_cross_rate_needs_both_currencies_on_the_same_day(session: Session) -> None:
    factories.add_fx_rates(session, RATES)
    # GBP has no rate on the 4th or 5th: the 3rd is the latest day with both.
    quote = _quote(session, "GBP", "USD", "2024-01-05")
    assert (quote.day, quote.rate) == (date(2024, 1, 3), Decimal("1.266705336427"))


def test_no_rate_within_the_window_is_unavailable(session: Session) -> None:
    factories.add_fx_rates(session, RATES)
    assert _quote(session, "USD", "EUR", "2024-01-12").day == date(2024, 1, 5)  # 7 days later
    with pytest.raises(RateUnavailable) as error:
        _quote(session, "USD", "EUR", "2024-01-13")
    assert str(error.value) == (
        "No reference rate for USD in EUR on 2024-01-13 or in the 7 days before; "
        "send exchange_rate."
    )
    with pytest.raises(RateUnavailable):
        _quote(session, "USD", "EUR", "2024-01-06", max_age_days=0)
    with pytest.raises(RateUnavailable):
        _quote(session, "USD", "EUR", "2024-01-02")  # nothing before the first day
    with pytest.raises(RateUnavailable):
        _quote(session, "CHF", "EUR", "2024-01-05")  # never quoted


def test_a_rate_that_rounds_to_zero_is_unavailable(session: Session) -> None:
    factories.add_fx_rates(session, {"2024-01-05": {"USD": "0.000001", "IDR": "999999999"}})
    with pytest.raises(RateUnavailable):
        _quote(session, "IDR", "USD", "2024-01-05")


def test_a_lookup_is_one_query(session: Session) -> None:
    factories.add_fx_rates(session, RATES)
    statements: list[str] = []
    connection = session.connection()

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(connection, "before_cursor_execute", count)
    try:
        _quote(session, "GBP", "JPY", "2024-01-05")
    finally:
        event.remove(connection, "before_cursor_execute", count)
    assert len(statements) == 1
