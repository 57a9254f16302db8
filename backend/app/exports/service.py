"""A trip's ledger as CSV, written row by row as the expenses service reads it.

One row per live expense, then one per live settlement; deleted ones are left out. Each
participant has two columns in the trip's base currency, "paid" and "owed", so that a
participant's balance (as `GET /trips/{id}/balances` reports it) is the sum of their paid
column minus the sum of their owed column. The columns are described in docs/api.md
("Ledger export").
"""

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from sqlmodel import Session

from app.expenses import service as expense_service
from app.expenses.ledger import minor_unit_exponent
from app.expenses.models import ExpenseRecord, Settlement
from app.trips.models import Trip

CHUNK_CHARS = 64 * 1024
FIXED_COLUMNS = (
    "kind",
    "id",
    "date",
    "title",
    "category",
    "currency",
    "amount",
    "exchange_rate",
    "rate_source",
    "rate_date",
    "base_currency",
    "base_amount",
)


def major_units(amount_minor: int, currency: str) -> str:
    """An amount in minor units as a plain decimal in the currency's units ("12.34")."""
    return format(Decimal(amount_minor).scaleb(-minor_unit_exponent(currency)), "f")


def _day(value: date | None) -> str:
    return "" if value is None else value.isoformat()


def participant_columns(participants: list[tuple[uuid.UUID, str]]) -> list[str]:
    """Two column names per participant; a name two participants share gets their id too."""
    names = [name for _, name in participants]
    labels = [
        f"{name} ({participant_id})" if names.count(name) > 1 else name
        for participant_id, name in participants
    ]
    return [f"{kind}: {label}" for label in labels for kind in ("paid", "owed")]


def _row(
    entry: ExpenseRecord | Settlement, base: str, position: dict[uuid.UUID, int], width: int
) -> list[str]:
    cells = [""] * width

    def put(participant_id: uuid.UUID, owed: bool, base_amount_minor: int) -> None:
        cells[position[participant_id] * 2 + owed] = major_units(base_amount_minor, base)

    if isinstance(entry, Settlement):
        # The payer's balance rises by what they paid, the payee's falls by what they got.
        put(entry.from_participant_id, False, entry.base_amount_minor)
        put(entry.to_participant_id, True, entry.base_amount_minor)
        fixed = [
            "settlement",
            str(entry.id),
            entry.settled_on.isoformat(),
            entry.note,
            "",
            entry.currency,
            major_units(entry.amount_minor, entry.currency),
            format(entry.exchange_rate.normalize(), "f"),
            entry.rate_source,
            _day(entry.rate_date),
            base,
            major_units(entry.base_amount_minor, base),
        ]
        return fixed + cells
    revision = entry.current.revision
    for payer in entry.current.payers:
        put(payer.participant_id, False, payer.base_amount_minor)
    for split in entry.current.splits:
        put(split.participant_id, True, split.base_amount_minor)
    fixed = [
        "expense",
        str(entry.expense.id),
        revision.spent_on.isoformat(),
        revision.title,
        revision.category,
        revision.currency,
        major_units(revision.amount_minor, revision.currency),
        format(revision.exchange_rate.normalize(), "f"),
        revision.rate_source,
        _day(revision.rate_date),
        base,
        major_units(revision.base_amount_minor, base),
    ]
    return fixed + cells


def ledger_csv(session: Session, trip: Trip) -> Iterator[bytes]:
    """The trip's ledger as UTF-8 CSV (RFC 4180 quoting, CRLF), in chunks of about
    CHUNK_CHARS, read as it is sent. The caller has checked the reader may see amounts."""
    participants = expense_service.ledger_participants(session=session, trip_id=trip.id)
    position = {participant_id: index for index, (participant_id, _) in enumerate(participants)}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*FIXED_COLUMNS, *participant_columns(participants)])
    for entry in expense_service.streamed_ledger(session=session, trip_id=trip.id):
        writer.writerow(_row(entry, trip.base_currency, position, 2 * len(participants)))
        if buffer.tell() >= CHUNK_CHARS:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
