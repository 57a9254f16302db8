"""The shared expenses ledger: expenses and their immutable revisions, payers, splits,
settlements and each participant's running totals (tables), and their API shapes."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

import pydantic
from annotated_types import Ge, Gt, Le
from pydantic import PlainSerializer, Strict, StrictInt, model_validator
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, uuid_primary_key, version_column
from app.core.fields import (
    CLIENT_ID_DESCRIPTION,
    REJECT_UNKNOWN_FIELDS,
    Currency,
    Day,
    Name,
    PartialUpdate,
    Text,
    exact_decimal_schema,
)
from app.expenses.ledger import MAX_AMOUNT_MINOR, SplitMode
from app.fx.models import RateSource

# Rates carry up to 12 integer and 12 fractional digits, stored exactly as NUMERIC(24, 12).
RATE_DIGITS, RATE_PLACES = 24, 12
PERCENT_DIGITS, PERCENT_PLACES = 9, 6
MAX_SHARES = 1_000_000
MAX_PARTICIPANTS_PER_EXPENSE = 200

# JSON integers only: `12.5`, `12.0`, `"12"` and `true` are refused rather than coerced.
MinorAmount = Annotated[int, Strict(), Ge(0), Le(MAX_AMOUNT_MINOR)]
PositiveMinorAmount = Annotated[int, Strict(), Ge(1), Le(MAX_AMOUNT_MINOR)]
Shares = Annotated[int, Strict(), Ge(0), Le(MAX_SHARES)]
# Exact decimals (NaN and infinities are refused by Decimal's validation).
ExchangeRate = Annotated[
    Decimal,
    Gt(0),
    pydantic.Field(max_digits=RATE_DIGITS, decimal_places=RATE_PLACES),
    exact_decimal_schema(RATE_DIGITS - RATE_PLACES, RATE_PLACES, positive=True),
]
Percent = Annotated[
    Decimal,
    Ge(0),
    Le(100),
    pydantic.Field(max_digits=PERCENT_DIGITS, decimal_places=PERCENT_PLACES),
    exact_decimal_schema(2, PERCENT_PLACES, positive=False, maximum=100),
]

_CURRENCY_FORMAT = "~ '^[A-Z]{3}$'"
_SPLIT_MODES = ", ".join(f"'{mode}'" for mode in SplitMode)
_RATE_SOURCES = ", ".join(f"'{source}'" for source in RateSource)


def _rate_checks() -> tuple[CheckConstraint, CheckConstraint]:
    """The rate's source is one of RateSource, and only a looked-up rate has a date."""
    return (
        CheckConstraint(f"rate_source IN ({_RATE_SOURCES})", name="rate_source"),
        CheckConstraint(
            "(rate_source = 'ecb') = (rate_date IS NOT NULL)", name="rate_date_iff_ecb"
        ),
    )


class RevisionAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


def _participant_key(column: str, *, name: str | None = None) -> ForeignKeyConstraint:
    """A reference to a participant of the same trip: (trip_id, column) → trip_participants."""
    return ForeignKeyConstraint(
        ["trip_id", column], ["trip_participants.trip_id", "trip_participants.id"], name=name
    )


# --- tables ----------------------------------------------------------------------------------


class Expense(SQLModel, table=True):
    """An expense's identity; what it says lives in its revisions, never overwritten.

    `current_revision_id` points at the latest revision. Deleting sets `deleted_at` (after a
    last revision recording the deletion): the expense leaves lists and balances, its
    history stays.
    """

    __tablename__ = "trip_expenses"
    __table_args__ = (
        Index("ix_trip_expenses_trip_id_version", "trip_id", "version"),
        # Client-chosen ids are checked across trips (app.sync.client_ids).
        Index("ix_trip_expenses_id", "id"),
        # The revisions table points back here: the pair is created by ALTER (use_alter).
        ForeignKeyConstraint(
            ["trip_id", "current_revision_id"],
            ["trip_expense_revisions.trip_id", "trip_expense_revisions.id"],
            ondelete="CASCADE",
            use_alter=True,
        ),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    # Null only between the expense's insert and its first revision's, in one transaction.
    current_revision_id: uuid.UUID | None = None
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()
    version: int = version_column()
    updated_at: datetime = timestamp_column()
    deleted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ExpenseRevision(SQLModel, table=True):
    """One version of an expense, as entered: immutable once written."""

    __tablename__ = "trip_expense_revisions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["trip_id", "expense_id"],
            ["trip_expenses.trip_id", "trip_expenses.id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("trip_id", "expense_id", "number"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("action IN ('created', 'updated', 'deleted')", name="action"),
        CheckConstraint(f"split_mode IN ({_SPLIT_MODES})", name="split_mode"),
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        CheckConstraint("base_amount_minor >= 0", name="base_amount_non_negative"),
        CheckConstraint("exchange_rate > 0", name="exchange_rate_positive"),
        CheckConstraint(f"currency {_CURRENCY_FORMAT}", name="currency"),
        *_rate_checks(),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    expense_id: uuid.UUID
    number: int
    action: RevisionAction = Field(sa_type=String(16))
    title: str = Field(max_length=200)
    category: str = Field(max_length=64)
    notes: str = Field(max_length=2000)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    # Base-currency units per unit of `currency`, frozen when entered (1 for the base itself).
    exchange_rate: Decimal = Field(sa_type=Numeric(RATE_DIGITS, RATE_PLACES))
    # Where the rate came from, and for a looked-up one the ECB day whose rates it is.
    rate_source: RateSource = Field(sa_type=String(8))
    rate_date: date | None = None
    base_amount_minor: int = Field(sa_type=BigInteger)
    spent_on: date
    split_mode: SplitMode = Field(sa_type=String(16))
    actor_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()


class ExpensePayer(SQLModel, table=True):
    """What one participant paid towards one revision of an expense."""

    __tablename__ = "trip_expense_payers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["trip_id", "revision_id"],
            ["trip_expense_revisions.trip_id", "trip_expense_revisions.id"],
            ondelete="CASCADE",
        ),
        _participant_key("participant_id"),
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        CheckConstraint("base_amount_minor >= 0", name="base_amount_non_negative"),
        Index("ix_trip_expense_payers_participant_id", "participant_id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    revision_id: uuid.UUID = Field(primary_key=True)
    participant_id: uuid.UUID = Field(primary_key=True)
    amount_minor: int = Field(sa_type=BigInteger)
    base_amount_minor: int = Field(sa_type=BigInteger)


class ExpenseSplit(SQLModel, table=True):
    """One participant's share of one revision: the weight entered and the computed amounts."""

    __tablename__ = "trip_expense_splits"
    __table_args__ = (
        ForeignKeyConstraint(
            ["trip_id", "revision_id"],
            ["trip_expense_revisions.trip_id", "trip_expense_revisions.id"],
            ondelete="CASCADE",
        ),
        _participant_key("participant_id"),
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        CheckConstraint("base_amount_minor >= 0", name="base_amount_non_negative"),
        CheckConstraint("shares IS NULL OR shares >= 0", name="shares_non_negative"),
        CheckConstraint("percent IS NULL OR percent BETWEEN 0 AND 100", name="percent_range"),
        Index("ix_trip_expense_splits_participant_id", "participant_id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    revision_id: uuid.UUID = Field(primary_key=True)
    participant_id: uuid.UUID = Field(primary_key=True)
    shares: int | None = None
    percent: Decimal | None = Field(default=None, sa_type=Numeric(PERCENT_DIGITS, PERCENT_PLACES))
    amount_minor: int = Field(sa_type=BigInteger)
    base_amount_minor: int = Field(sa_type=BigInteger)


class Settlement(SQLModel, table=True):
    """A payment from one participant to another that evens the ledger out."""

    __tablename__ = "trip_settlements"
    __table_args__ = (
        Index("ix_trip_settlements_trip_id_version", "trip_id", "version"),
        Index("ix_trip_settlements_id", "id"),
        # Two references to the same table: named by hand, the convention would repeat itself.
        _participant_key("from_participant_id", name="fk_trip_settlements_from_participant"),
        _participant_key("to_participant_id", name="fk_trip_settlements_to_participant"),
        CheckConstraint("from_participant_id <> to_participant_id", name="distinct_participants"),
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        CheckConstraint("base_amount_minor >= 0", name="base_amount_non_negative"),
        CheckConstraint("exchange_rate > 0", name="exchange_rate_positive"),
        CheckConstraint(f"currency {_CURRENCY_FORMAT}", name="currency"),
        *_rate_checks(),
        Index("ix_trip_settlements_trip_id_settled_on_id", "trip_id", "settled_on", "id"),
        Index("ix_trip_settlements_from_participant_id", "from_participant_id"),
        Index("ix_trip_settlements_to_participant_id", "to_participant_id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    from_participant_id: uuid.UUID
    to_participant_id: uuid.UUID
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    exchange_rate: Decimal = Field(sa_type=Numeric(RATE_DIGITS, RATE_PLACES))
    # Where the rate came from, and for a looked-up one the ECB day whose rates it is.
    rate_source: RateSource = Field(sa_type=String(8))
    rate_date: date | None = None
    base_amount_minor: int = Field(sa_type=BigInteger)
    settled_on: date
    note: str = Field(max_length=500)
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()
    version: int = version_column()
    deleted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ParticipantTotals(SQLModel, table=True):
    """One participant's sums over the trip's live ledger entries, in base minor units.

    Internal (neither an API resource nor synced): every ledger write adds its difference in
    the same transaction, so balances read one row per participant instead of summing the
    whole ledger. No row means all zeros. `net_balance` of the four is the balance.
    """

    __tablename__ = "trip_participant_totals"
    # No CHECK (amounts >= 0): writes add negative differences through INSERT ... ON CONFLICT,
    # and PostgreSQL checks the proposed row (the difference) before it sees the conflict.
    __table_args__ = (_participant_key("participant_id"),)

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    participant_id: uuid.UUID = Field(primary_key=True)
    paid_minor: int = Field(default=0, sa_type=BigInteger)
    owed_minor: int = Field(default=0, sa_type=BigInteger)
    settlements_paid_minor: int = Field(default=0, sa_type=BigInteger)
    settlements_received_minor: int = Field(default=0, sa_type=BigInteger)


# --- input shapes ----------------------------------------------------------------------------


class PayerIn(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    participant_id: uuid.UUID
    amount_minor: MinorAmount


class SplitIn(SQLModel):
    """Give the field that matches the split mode: none (equal), shares, percent or amount_minor."""

    model_config = REJECT_UNKNOWN_FIELDS

    participant_id: uuid.UUID
    shares: Shares | None = None
    percent: Percent | None = None
    amount_minor: MinorAmount | None = None


class ExpenseCreate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    id: uuid.UUID | None = Field(default=None, description=CLIENT_ID_DESCRIPTION)
    title: Name = Field(max_length=200)
    category: Text = Field(default="", max_length=64)
    notes: Text = Field(default="", max_length=2000)
    amount_minor: PositiveMinorAmount
    currency: Currency
    # Base units per 1 `currency`. Omitted for a foreign currency: the ECB reference rate of
    # `spent_on` (or of the last day before it that has one; see docs/api.md, "Money").
    exchange_rate: ExchangeRate | None = None
    spent_on: Day
    payers: list[PayerIn] = Field(min_length=1, max_length=MAX_PARTICIPANTS_PER_EXPENSE)
    split_mode: SplitMode
    splits: list[SplitIn] = Field(min_length=1, max_length=MAX_PARTICIPANTS_PER_EXPENSE)


class ExpenseUpdate(PartialUpdate):
    """Fields to change; the rest keep their values and the result is checked as a whole.

    `split_mode` and `splits` go together. A new `currency` takes the `exchange_rate` sent
    with it, else the reference rate of `spent_on`; `exchange_rate` alone corrects the rate
    (null: take the reference rate). Otherwise the rate stays as it is, even when `spent_on`
    changes. The change needs If-Match (the expense's ETag); the older `expected_revision`, when
    given, must also be the expense's current revision (else 409) but is deprecated.
    """

    CLEARABLE = frozenset({"exchange_rate", "expected_revision"})

    title: Name | None = Field(default=None, max_length=200)
    category: Text | None = Field(default=None, max_length=64)
    notes: Text | None = Field(default=None, max_length=2000)
    amount_minor: PositiveMinorAmount | None = None
    currency: Currency | None = None
    exchange_rate: ExchangeRate | None = None
    spent_on: Day | None = None
    payers: list[PayerIn] | None = Field(
        default=None, min_length=1, max_length=MAX_PARTICIPANTS_PER_EXPENSE
    )
    split_mode: SplitMode | None = None
    splits: list[SplitIn] | None = Field(
        default=None, min_length=1, max_length=MAX_PARTICIPANTS_PER_EXPENSE
    )
    expected_revision: StrictInt | None = Field(
        default=None,
        ge=1,
        description="Deprecated: send If-Match instead.",
        schema_extra={"json_schema_extra": {"deprecated": True}},
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if ("split_mode" in self.model_fields_set) != ("splits" in self.model_fields_set):
            raise ValueError("split_mode and splits are changed together")
        return self


class SettlementCreate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    id: uuid.UUID | None = Field(default=None, description=CLIENT_ID_DESCRIPTION)
    from_participant_id: uuid.UUID
    to_participant_id: uuid.UUID
    amount_minor: PositiveMinorAmount
    currency: Currency
    exchange_rate: ExchangeRate | None = None
    settled_on: Day
    note: Text = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _two_people(self) -> Self:
        if self.from_participant_id == self.to_participant_id:
            raise ValueError("a settlement is paid by one participant to another")
        return self


# --- what the service returns ----------------------------------------------------------------


@dataclass(frozen=True)
class RevisionRecord:
    revision: ExpenseRevision
    payers: list[ExpensePayer]
    splits: list[ExpenseSplit]


@dataclass(frozen=True)
class ExpenseRecord:
    expense: Expense
    current: RevisionRecord


# --- output shapes ---------------------------------------------------------------------------


# Decimals leave as JSON strings in positional notation: "0.000000000001", never "1E-12".
PlainDecimal = Annotated[
    Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str)
]


def plain_decimal(value: Decimal) -> Decimal:
    """1.083700000000 → 1.0837 and 100.000000 → 100: the value, without padding zeros."""
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    return (
        normalized.quantize(Decimal(1))
        if isinstance(exponent, int) and exponent > 0
        else normalized
    )


def _amount(value: int, hidden: bool) -> int | None:
    return None if hidden else value


class PayerPublic(SQLModel):
    participant_id: uuid.UUID
    amount_minor: int | None
    base_amount_minor: int | None


class SplitPublic(SQLModel):
    participant_id: uuid.UUID
    shares: int | None
    percent: PlainDecimal | None
    amount_minor: int | None
    base_amount_minor: int | None


class ExpenseContent(SQLModel):
    """What an expense says; amounts are null for viewers when the trip hides them."""

    title: str
    category: str
    notes: str
    amount_minor: int | None
    currency: str
    exchange_rate: PlainDecimal
    rate_source: RateSource
    rate_date: date | None
    base_currency: str
    base_amount_minor: int | None
    spent_on: date
    split_mode: SplitMode
    payers: list[PayerPublic]
    splits: list[SplitPublic]

    @staticmethod
    def fields_of(record: RevisionRecord, *, base_currency: str, hidden: bool) -> dict[str, Any]:
        revision = record.revision
        return {
            "title": revision.title,
            "category": revision.category,
            "notes": revision.notes,
            "amount_minor": _amount(revision.amount_minor, hidden),
            "currency": revision.currency,
            "exchange_rate": plain_decimal(revision.exchange_rate),
            "rate_source": revision.rate_source,
            "rate_date": revision.rate_date,
            "base_currency": base_currency,
            "base_amount_minor": _amount(revision.base_amount_minor, hidden),
            "spent_on": revision.spent_on,
            "split_mode": revision.split_mode,
            "payers": [
                PayerPublic(
                    participant_id=payer.participant_id,
                    amount_minor=_amount(payer.amount_minor, hidden),
                    base_amount_minor=_amount(payer.base_amount_minor, hidden),
                )
                for payer in record.payers
            ],
            "splits": [
                SplitPublic(
                    participant_id=split.participant_id,
                    shares=split.shares,
                    percent=None if split.percent is None else plain_decimal(split.percent),
                    amount_minor=_amount(split.amount_minor, hidden),
                    base_amount_minor=_amount(split.base_amount_minor, hidden),
                )
                for split in record.splits
            ],
        }


class ExpensePublic(ExpenseContent):
    id: uuid.UUID
    revision: int
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, record: ExpenseRecord, *, base_currency: str, hidden: bool) -> "ExpensePublic":
        expense = record.expense
        return cls(
            id=expense.id,
            revision=record.current.revision.number,
            created_by=expense.created_by,
            created_at=expense.created_at,
            updated_at=expense.updated_at,
            version=expense.version,
            **ExpenseContent.fields_of(record.current, base_currency=base_currency, hidden=hidden),
        )


class ExpenseRevisionPublic(ExpenseContent):
    id: uuid.UUID
    expense_id: uuid.UUID
    number: int
    action: RevisionAction
    actor_id: uuid.UUID | None
    created_at: datetime

    @classmethod
    def of(
        cls, record: RevisionRecord, *, base_currency: str, hidden: bool
    ) -> "ExpenseRevisionPublic":
        revision = record.revision
        return cls(
            id=revision.id,
            expense_id=revision.expense_id,
            number=revision.number,
            action=revision.action,
            actor_id=revision.actor_id,
            created_at=revision.created_at,
            **ExpenseContent.fields_of(record, base_currency=base_currency, hidden=hidden),
        )


class SettlementPublic(SQLModel):
    id: uuid.UUID
    from_participant_id: uuid.UUID
    to_participant_id: uuid.UUID
    amount_minor: int | None
    currency: str
    exchange_rate: PlainDecimal
    rate_source: RateSource
    rate_date: date | None
    base_currency: str
    base_amount_minor: int | None
    settled_on: date
    note: str
    created_by: uuid.UUID | None
    created_at: datetime
    version: int

    @classmethod
    def of(cls, settlement: Settlement, *, base_currency: str, hidden: bool) -> "SettlementPublic":
        return cls(
            id=settlement.id,
            from_participant_id=settlement.from_participant_id,
            to_participant_id=settlement.to_participant_id,
            amount_minor=_amount(settlement.amount_minor, hidden),
            currency=settlement.currency,
            exchange_rate=plain_decimal(settlement.exchange_rate),
            rate_source=settlement.rate_source,
            rate_date=settlement.rate_date,
            base_currency=base_currency,
            base_amount_minor=_amount(settlement.base_amount_minor, hidden),
            settled_on=settlement.settled_on,
            note=settlement.note,
            created_by=settlement.created_by,
            created_at=settlement.created_at,
            version=settlement.version,
        )


class ParticipantBalance(SQLModel):
    """Amounts in the trip's base currency, minor units; balance > 0: the group owes them."""

    participant_id: uuid.UUID
    name: str
    paid_minor: int
    owed_minor: int
    settlements_paid_minor: int
    settlements_received_minor: int
    balance_minor: int


class TransferPublic(SQLModel):
    from_participant_id: uuid.UUID
    to_participant_id: uuid.UUID
    amount_minor: int


class BalancesPublic(SQLModel):
    currency: str
    balances: list[ParticipantBalance]
    settle_up: list[TransferPublic]


# --- the account export ----------------------------------------------------------------------


class ExpenseShareExported(SQLModel):
    """An expense the account pays or shares in (its current revision), in its export: what
    it is and the account's own part; nothing of the other participants. Amounts are null
    when the trip hides them from viewers and the account is a viewer, or no longer a member.
    """

    trip_id: uuid.UUID
    expense_id: uuid.UUID
    participant_id: uuid.UUID
    title: str
    category: str
    spent_on: date
    currency: str
    amount_minor: int | None
    paid_minor: int | None
    share_minor: int | None
    deleted: bool


class SettlementExported(SQLModel):
    """A settlement the account paid or received, in its export (amounts hidden as above)."""

    trip_id: uuid.UUID
    id: uuid.UUID
    participant_id: uuid.UUID
    direction: str = Field(description="paid: the account paid it; received: it was paid")
    counterpart_participant_id: uuid.UUID
    amount_minor: int | None
    currency: str
    settled_on: date
    deleted: bool
