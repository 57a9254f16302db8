"""Expenses and settlements in the sync feed: deleted ones are deletions, and amounts are
null for readers they are hidden from (Trip.hides_amounts_from)."""

from typing import Any

from sqlalchemy import Select
from sqlmodel import col, select

from app.core.json_sql import json_array, json_object
from app.expenses.models import (
    Expense,
    ExpensePayer,
    ExpensePublic,
    ExpenseRevision,
    ExpenseSplit,
    PayerPublic,
    Settlement,
    SettlementPublic,
    SplitPublic,
)
from app.sync.feed_sql import (
    amount,
    base_currency_param,
    feed_rows,
    trip_id_param,
    upsert_unless,
    with_deletions,
)
from app.sync.registry import SyncedEntity, Versions, register


def _shares(
    shape: type[PayerPublic] | type[SplitPublic],
    table: type[ExpensePayer] | type[ExpenseSplit],
    revision: type[ExpenseRevision],
    hidden: bool,
) -> Any:
    """A revision's payers or splits as one JSON array, in participant order."""
    share = json_object(
        shape,
        table,
        amount_minor=amount(hidden, table.amount_minor),
        base_amount_minor=amount(hidden, table.base_amount_minor),
    )
    return (
        select(json_array(share, order_by=[table.participant_id]))
        # The trip parameter, not the revision's: Citus routes the subquery by it.
        .where(col(table.trip_id) == trip_id_param(), col(table.revision_id) == revision.id)
        .scalar_subquery()
    )


def _expenses(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    expense, revision = Expense, ExpenseRevision
    payers = _shares(PayerPublic, ExpensePayer, revision, hidden)
    splits = _shares(SplitPublic, ExpenseSplit, revision, hidden)
    data = json_object(
        ExpensePublic,
        revision,
        amount_minor=amount(hidden, revision.amount_minor),
        base_currency=base_currency_param(),
        base_amount_minor=amount(hidden, revision.base_amount_minor),
        payers=payers,
        splits=splits,
        id=expense.id,
        revision=revision.number,
        created_by=expense.created_by,
        created_at=expense.created_at,
        updated_at=expense.updated_at,
        version=expense.version,
    )
    deleted = col(expense.deleted_at).is_not(None)
    change = upsert_unless(deleted, "expense", expense.id, expense.version, data)
    # The trip parameter on the outer join's side too: Citus routes each table by it.
    current = (col(revision.trip_id) == trip_id_param()) & (
        col(revision.id) == expense.current_revision_id
    )
    # A live expense whose revision is missing (never so once committed) is left out, as ever.
    rows = (
        feed_rows("expense", expense.id, expense.version, change)
        .outerjoin(revision, current)
        .where(
            col(expense.trip_id) == trip_id_param(),
            versions(expense.version),
            deleted | col(revision.id).is_not(None),
        )
    )
    return with_deletions(rows, deleted, deletions)


def _settlements(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    settlement = Settlement
    data = json_object(
        SettlementPublic,
        settlement,
        amount_minor=amount(hidden, settlement.amount_minor),
        base_currency=base_currency_param(),
        base_amount_minor=amount(hidden, settlement.base_amount_minor),
    )
    deleted = col(settlement.deleted_at).is_not(None)
    change = upsert_unless(deleted, "settlement", settlement.id, settlement.version, data)
    rows = feed_rows("settlement", settlement.id, settlement.version, change).where(
        col(settlement.trip_id) == trip_id_param(), versions(settlement.version)
    )
    return with_deletions(rows, deleted, deletions)


register(SyncedEntity("expense", Expense, position=6, reader=_expenses))
register(SyncedEntity("settlement", Settlement, position=7, reader=_settlements))
