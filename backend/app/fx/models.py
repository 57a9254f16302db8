"""Reference exchange rates: the European Central Bank's daily euro rates (one row per
currency and day), and where the rate of a ledger entry came from."""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, Numeric, String
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column

# As the ledger stores its rates: up to 12 integer and 12 fractional digits, exactly.
RATE_DIGITS, RATE_PLACES = 24, 12


class RateSource(StrEnum):
    """Where a ledger entry's exchange rate came from."""

    BASE = "base"  # the trip's base currency itself: rate 1
    CLIENT = "client"  # sent by the client
    ECB = "ecb"  # looked up in fx_rates (the ECB reference rate of `rate_date`)


class FxRate(SQLModel, table=True):
    """One ECB reference rate: 1 EUR = `per_eur` units of `currency` on `day`."""

    __tablename__ = "fx_rates"
    __table_args__ = (
        CheckConstraint("per_eur > 0", name="per_eur_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        CheckConstraint("source IN ('ecb')", name="source"),
    )

    currency: str = Field(primary_key=True, sa_type=String(3))
    day: date = Field(primary_key=True)
    per_eur: Decimal = Field(sa_type=Numeric(RATE_DIGITS, RATE_PLACES))
    source: str = Field(max_length=16)
    imported_at: datetime = timestamp_column()
