"""Reference rates: importing ECB's files into fx_rates, and the rate between two currencies
on a day (a cross rate through EUR, exact)."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from itertools import islice
from typing import IO, Any

from sqlalchemy import and_, func
from sqlalchemy import select as sql_select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.fx.ecb import DayRates, read_rates
from app.fx.models import RATE_DIGITS, RATE_PLACES, FxRate, RateSource

# Rows per INSERT while importing: a big file is written in batches, never held whole.
IMPORT_BATCH_ROWS = 1000
# Division with room to spare, then one rounding to the 12 places the ledger stores.
_DIVISION = Context(prec=60)
_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)
_TOO_LARGE = Decimal(10) ** (RATE_DIGITS - RATE_PLACES)


@dataclass(frozen=True)
class ImportResult:
    days: int
    rates: int
    first_day: date | None
    last_day: date | None


@dataclass(frozen=True)
class Quote:
    """Base-currency units per 1 unit of the currency, from the rates of `day`."""

    rate: Decimal
    day: date
    source: RateSource


class RateUnavailable(LookupError):
    """No usable reference rate for the pair on the day or in the window before it."""

    def __init__(self, *, currency: str, base_currency: str, on: date, max_age_days: int) -> None:
        super().__init__(
            f"No reference rate for {currency} in {base_currency} on {on.isoformat()} "
            f"or in the {max_age_days} days before; send exchange_rate."
        )
        self.currency, self.base_currency, self.on = currency, base_currency, on


def _rows(days: Iterable[DayRates], source: RateSource, counts: dict[str, Any]) -> Iterator[Any]:
    now = utcnow()
    for day in days:
        counts["days"] += 1
        first, last = counts["first_day"], counts["last_day"]
        counts["first_day"] = day.day if first is None else min(first, day.day)
        counts["last_day"] = day.day if last is None else max(last, day.day)
        for currency, per_eur in day.rates.items():
            counts["rates"] += 1
            yield {
                "currency": currency,
                "day": day.day,
                "per_eur": per_eur,
                "source": source.value,
                "imported_at": now,
            }


def import_rates(
    *, session: Session, days: Iterable[DayRates], source: RateSource = RateSource.ECB
) -> ImportResult:
    """Upsert every rate of `days` in batches; a rate already stored with the same value is
    left alone, a changed one is updated. The caller commits (all or nothing)."""
    counts: dict[str, Any] = {"days": 0, "rates": 0, "first_day": None, "last_day": None}
    rows = _rows(days, source, counts)
    while batch := list(islice(rows, IMPORT_BATCH_ROWS)):
        upsert = insert(FxRate).values(batch)
        session.exec(
            upsert.on_conflict_do_update(
                index_elements=[col(FxRate.currency), col(FxRate.day)],
                set_={
                    "per_eur": upsert.excluded.per_eur,
                    "source": upsert.excluded.source,
                    "imported_at": upsert.excluded.imported_at,
                },
                where=(col(FxRate.per_eur) != upsert.excluded.per_eur)
                | (col(FxRate.source) != upsert.excluded.source),
            )
        )
    return ImportResult(**counts)


def import_file(*, session: Session, stream: IO[bytes]) -> ImportResult:
    """Import an ECB file (CSV, XML or zip); raises EcbFormatError, the caller rolls back."""
    return import_rates(session=session, days=read_rates(stream))


def latest_day(*, session: Session) -> date | None:
    """The last day any rate is stored for."""
    return session.exec(select(func.max(FxRate.day))).one()


def cross_rate(per_eur_currency: Decimal, per_eur_base: Decimal) -> Decimal:
    """Base units per 1 unit of the currency, rounded once (half even) to 12 places."""
    exact = _DIVISION.divide(per_eur_base, per_eur_currency)
    return exact.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def reference_rate(
    session: Session,
    *,
    currency: str,
    base_currency: str,
    on: date,
    max_age_days: int | None = None,
) -> Quote:
    """The rate of the latest day on or before `on` (at most `max_age_days` before, default
    FX_MAX_AGE_DAYS) on which both currencies have a rate; EUR is always 1. One query.

    Raises RateUnavailable when there is none, or it rounds to 0 or overflows the column.
    """
    if currency == base_currency:
        raise ValueError("a currency's rate to itself is 1: no lookup")
    max_age = get_settings().FX_MAX_AGE_DAYS if max_age_days is None else max_age_days
    window = (on - timedelta(days=max_age), on)
    unavailable = RateUnavailable(
        currency=currency, base_currency=base_currency, on=on, max_age_days=max_age
    )
    foreign = [code for code in (currency, base_currency) if code != "EUR"]
    first = aliased(FxRate)
    columns: list[Any] = [first.day, first.per_eur]
    statement = sql_select(*columns)
    if len(foreign) == 2:
        second = aliased(FxRate)
        columns.append(second.per_eur)
        statement = sql_select(*columns).join(
            second, and_(col(second.day) == first.day, col(second.currency) == foreign[1])
        )
    row = session.execute(
        statement.where(
            col(first.currency) == foreign[0],
            col(first.day) <= window[1],
            col(first.day) >= window[0],
        )
        .order_by(col(first.day).desc())
        .limit(1)
    ).first()
    if row is None:
        raise unavailable
    per_eur = dict(zip(foreign, row[1:], strict=True))
    rate = cross_rate(per_eur.get(currency, Decimal(1)), per_eur.get(base_currency, Decimal(1)))
    if rate == 0 or rate >= _TOO_LARGE:
        raise unavailable
    return Quote(rate=rate, day=row[0], source=RateSource.ECB)
