"""The ledger's queries and rules: expenses with revisions, settlements, balances."""

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    and_,
    cast,
    exists,
    func,
    literal,
    union_all,
)
from sqlalchemy import select as sql_select
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from app.activity.service import record_activity
from app.core.columns import utcnow
from app.core.errors import BadRequest, Conflict, NotFound, Unprocessable
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.core.preconditions import ExpectedVersion, ensure_version
from app.expenses import ledger
from app.expenses.ledger import (
    Allocation,
    LedgerError,
    Payment,
    PricedExpense,
    SplitEntry,
    SplitMode,
)
from app.expenses.models import (
    BalancesPublic,
    CategoryTotal,
    DayTotal,
    Expense,
    ExpenseCategory,
    ExpenseCreate,
    ExpensePayer,
    ExpensePublic,
    ExpenseRecord,
    ExpenseRevision,
    ExpenseShareExported,
    ExpenseSplit,
    ExpenseUpdate,
    ParticipantBalance,
    ParticipantSpending,
    ParticipantTotals,
    RevisionAction,
    RevisionRecord,
    Settlement,
    SettlementCreate,
    SettlementExported,
    SettlementPublic,
    TransferPublic,
    TripSummary,
)
from app.fx import service as fx_service
from app.fx.models import RateSource
from app.participants.models import Participant
from app.sync.client_ids import Created, find_existing, replay
from app.trips import hooks as trip_hooks
from app.trips.models import Role, Trip, TripMember
from app.users import export
from app.users.models import User


def _expense_not_found() -> NotFound:
    return NotFound("Expense not found.", code="expense_not_found")


def _refused(error: LedgerError) -> Unprocessable:
    return Unprocessable(str(error), code=error.code)


def _rate_unavailable(error: fx_service.RateUnavailable) -> Unprocessable:
    problem = Unprocessable(str(error), code="exchange_rate_unavailable")
    problem.extensions = {
        "currency": error.currency,
        "base_currency": error.base_currency,
        "date": error.on.isoformat(),
    }
    return problem


def _rated(
    session: Session, *, currency: str, base_currency: str, on: date, rate: Decimal | None
) -> tuple[Decimal | None, RateSource, date | None]:
    """A rate for an entry and where it comes from: the base currency's (1, checked when
    priced), the client's, or else the reference rate of `on` (422 when there is none)."""
    if currency == base_currency:
        return rate, RateSource.BASE, None
    if rate is not None:
        return rate, RateSource.CLIENT, None
    try:
        quote = fx_service.reference_rate(
            session, currency=currency, base_currency=base_currency, on=on
        )
    except fx_service.RateUnavailable as error:
        raise _rate_unavailable(error) from None
    return quote.rate, quote.source, quote.day


def _invalid_cursor() -> BadRequest:
    return BadRequest(
        "The cursor is malformed or was not issued by this server.", code="invalid_cursor"
    )


def _lock_base_currency(session: Session, trip_id: uuid.UUID) -> str:
    """The trip's base currency, locked (shared) so it cannot change until this commits."""
    return session.exec(
        select(Trip.base_currency).where(Trip.id == trip_id).with_for_update(read=True)
    ).one()


def _base_currency(session: Session, trip_id: uuid.UUID) -> str:
    return session.exec(select(Trip.base_currency).where(Trip.id == trip_id)).one()


# Only owners and editors write, and amounts are hidden from viewers only: the representations
# a writer is shown (on 412 and 409) carry every amount.
def _expense_public(session: Session, record: ExpenseRecord) -> ExpensePublic:
    base_currency = _base_currency(session, record.expense.trip_id)
    return ExpensePublic.of(record, base_currency=base_currency, hidden=False)


def _settlement_public(session: Session, settlement: Settlement) -> SettlementPublic:
    base_currency = _base_currency(session, settlement.trip_id)
    return SettlementPublic.of(settlement, base_currency=base_currency, hidden=False)


def _ensure_participants(
    session: Session, trip_id: uuid.UUID, participant_ids: set[uuid.UUID]
) -> None:
    found = set(
        session.exec(
            select(Participant.id).where(
                Participant.trip_id == trip_id, col(Participant.id).in_(participant_ids)
            )
        ).all()
    )
    if found != participant_ids:
        raise Unprocessable(
            "Every payer and split must be a participant of this trip.",
            code="unknown_participant",
        )


def ensure_base_currency_can_change(*, session: Session, trip_id: uuid.UUID) -> None:
    """Refuse once the ledger has entries (even deleted ones): their base amounts are frozen.

    The caller holds the trip's row lock, so no entry can appear before it commits.
    """
    has_entries = session.exec(
        select(
            exists().where(col(Expense.trip_id) == trip_id)
            | exists().where(col(Settlement.trip_id) == trip_id)
        )
    ).one()
    if has_entries:
        raise Conflict(
            "The base currency cannot change once the trip has expenses or settlements.",
            code="base_currency_locked",
        )


# --- expenses --------------------------------------------------------------------------------


def _replay_keeps_looked_up_rate(
    given: Decimal | None, stored_source: str, stored: tuple[str, date], sent: tuple[str, date]
) -> bool:
    """A create sent again without a rate keeps the reference rate its first sending looked
    up (same currency and day), so the replay compares equal whatever was imported since."""
    return given is None and stored_source == RateSource.ECB and stored == sent


@dataclass(frozen=True)
class _Draft:
    """An expense's full content, before pricing: what a revision is made from."""

    title: str
    category: ExpenseCategory
    notes: str
    amount_minor: int
    currency: str
    exchange_rate: Decimal | None
    spent_on: date
    payers: tuple[Payment, ...]
    split_mode: SplitMode
    splits: tuple[SplitEntry, ...]
    # Set once the rate is settled (`with_rate`): kept from a revision, the rate is frozen.
    rate_source: RateSource | None = None
    rate_date: date | None = None

    @classmethod
    def of_create(cls, data: ExpenseCreate) -> "_Draft":
        return cls(
            title=data.title,
            category=data.category,
            notes=data.notes,
            amount_minor=data.amount_minor,
            currency=data.currency,
            exchange_rate=data.exchange_rate,
            spent_on=data.spent_on,
            payers=tuple(Payment(p.participant_id, p.amount_minor) for p in data.payers),
            split_mode=data.split_mode,
            splits=tuple(SplitEntry(**split.model_dump()) for split in data.splits),
        )

    @classmethod
    def of_revision(cls, record: RevisionRecord) -> "_Draft":
        revision = record.revision
        mode = SplitMode(revision.split_mode)
        return cls(
            title=revision.title,
            category=ExpenseCategory(revision.category),
            notes=revision.notes,
            amount_minor=revision.amount_minor,
            currency=revision.currency,
            exchange_rate=revision.exchange_rate,
            rate_source=RateSource(revision.rate_source),
            rate_date=revision.rate_date,
            spent_on=revision.spent_on,
            payers=tuple(Payment(p.participant_id, p.amount_minor) for p in record.payers),
            split_mode=mode,
            splits=tuple(
                SplitEntry(
                    participant_id=split.participant_id,
                    shares=split.shares,
                    percent=split.percent,
                    amount_minor=split.amount_minor if mode is SplitMode.EXACT else None,
                )
                for split in record.splits
            ),
        )

    def patched(self, data: ExpenseUpdate) -> "_Draft":
        changes = data.model_dump(exclude_unset=True, exclude={"expected_revision"})
        draft = replace(
            self,
            **{
                name: value
                for name, value in changes.items()
                if name not in ("payers", "splits", "split_mode")
            },
        )
        if changes.get("currency", self.currency) != self.currency:
            # A new currency brings its own rate, or takes the reference rate.
            draft = replace(
                draft, exchange_rate=data.exchange_rate, rate_source=None, rate_date=None
            )
        elif "exchange_rate" in changes:  # a corrected rate (null: the reference rate)
            draft = replace(draft, rate_source=None, rate_date=None)
        if data.payers is not None:
            payers = tuple(Payment(p.participant_id, p.amount_minor) for p in data.payers)
            draft = replace(draft, payers=payers)
        if data.split_mode is not None and data.splits is not None:
            splits = tuple(SplitEntry(**split.model_dump()) for split in data.splits)
            draft = replace(draft, split_mode=data.split_mode, splits=splits)
        return draft

    def with_rate(
        self, session: Session, base_currency: str, stored: ExpenseRevision | None = None
    ) -> "_Draft":
        """The draft with its rate settled: kept if it has a source already, else as
        `_rated` finds it. `stored` (a create's replay) lends its looked-up rate to the same
        currency and day, so a replay compares equal whatever was imported since."""
        if self.rate_source is not None and self.currency != base_currency:
            return self
        if stored is not None and _replay_keeps_looked_up_rate(
            self.exchange_rate,
            stored.rate_source,
            (stored.currency, stored.spent_on),
            (self.currency, self.spent_on),
        ):
            return replace(
                self,
                exchange_rate=stored.exchange_rate,
                rate_source=RateSource.ECB,
                rate_date=stored.rate_date,
            )
        rate, source, day = _rated(
            session,
            currency=self.currency,
            base_currency=base_currency,
            on=self.spent_on,
            rate=self.exchange_rate,
        )
        return replace(self, exchange_rate=rate, rate_source=source, rate_date=day)

    def priced(self, base_currency: str) -> PricedExpense:
        try:
            return ledger.price_expense(
                amount_minor=self.amount_minor,
                currency=self.currency,
                base_currency=base_currency,
                exchange_rate=self.exchange_rate,
                payers=self.payers,
                split_mode=self.split_mode,
                splits=self.splits,
            )
        except LedgerError as error:
            raise _refused(error) from None

    def canonical(self, applied_rate: Decimal) -> "_Draft":
        """The same content in one form: rows ordered by participant, the rate as applied."""
        return replace(
            self,
            exchange_rate=applied_rate,
            payers=tuple(sorted(self.payers, key=lambda payer: payer.participant_id)),
            splits=tuple(sorted(self.splits, key=lambda split: split.participant_id)),
        )

    def participant_ids(self) -> set[uuid.UUID]:
        return {p.participant_id for p in self.payers} | {s.participant_id for s in self.splits}


def _write_revision(
    session: Session,
    expense: Expense,
    *,
    number: int,
    action: RevisionAction,
    draft: _Draft,
    priced: PricedExpense,
    actor_id: uuid.UUID,
) -> RevisionRecord:
    assert draft.rate_source is not None, "the rate is settled before pricing (with_rate)"
    revision = ExpenseRevision(
        trip_id=expense.trip_id,
        expense_id=expense.id,
        number=number,
        action=action,
        title=draft.title,
        category=draft.category,
        notes=draft.notes,
        amount_minor=draft.amount_minor,
        currency=draft.currency,
        exchange_rate=priced.exchange_rate,
        rate_source=draft.rate_source,
        rate_date=draft.rate_date,
        base_amount_minor=priced.base_amount_minor,
        spent_on=draft.spent_on,
        split_mode=draft.split_mode,
        actor_id=actor_id,
    )
    session.add(revision)
    session.flush()  # payers and splits refer to the revision
    entered = {split.participant_id: split for split in draft.splits}
    payers = [
        ExpensePayer(
            trip_id=expense.trip_id,
            revision_id=revision.id,
            participant_id=payer.participant_id,
            amount_minor=payer.amount_minor,
            base_amount_minor=payer.base_amount_minor,
        )
        for payer in priced.payers
    ]
    splits = [
        ExpenseSplit(
            trip_id=expense.trip_id,
            revision_id=revision.id,
            participant_id=split.participant_id,
            shares=entered[split.participant_id].shares,
            percent=entered[split.participant_id].percent,
            amount_minor=split.amount_minor,
            base_amount_minor=split.base_amount_minor,
        )
        for split in priced.splits
    ]
    session.add_all([*payers, *splits])
    expense.current_revision_id = revision.id
    session.add(expense)
    session.flush()
    return RevisionRecord(revision, payers, splits)


def create_expense(
    *, session: Session, trip_id: uuid.UUID, data: ExpenseCreate, actor_id: uuid.UUID
) -> Created[ExpenseRecord]:
    """A new expense (revision 1); with a client-chosen id seen before, a replay or a conflict.

    A replay must match the expense's current revision: one edited since is a conflict.
    """
    base_currency = _lock_base_currency(session, trip_id)
    existing = (
        find_existing(session, Expense, trip_id=trip_id, row_id=data.id)
        if data.id is not None
        else None
    )
    stored = _current_record(session, existing) if existing is not None else None
    draft = _Draft.of_create(data).with_rate(
        session, base_currency, stored.revision if stored is not None else None
    )
    priced = draft.priced(base_currency)
    if existing is not None and stored is not None:
        record = ExpenseRecord(existing, stored)
        same = draft.canonical(priced.exchange_rate) == _Draft.of_revision(stored).canonical(
            stored.revision.exchange_rate
        )
        return replay(
            record,
            version=existing.version,
            same_content=same,
            current=lambda: _expense_public(session, record),
        )
    _ensure_participants(session, trip_id, draft.participant_ids())
    expense = Expense(trip_id=trip_id, created_by=actor_id)
    if data.id is not None:
        expense.id = data.id
    session.add(expense)
    session.flush()  # the revision refers to the expense
    current = _write_revision(
        session,
        expense,
        number=1,
        action=RevisionAction.CREATED,
        draft=draft,
        priced=priced,
        actor_id=actor_id,
    )
    _update_totals(session, trip_id, added=_expense_entries(current))
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="expense.created",
        object_type="expense",
        object_id=expense.id,
        summary=draft.title,  # never an amount: viewers may not be allowed to see those
    )
    session.flush()
    return Created(ExpenseRecord(expense, current))


def _revision_records(
    session: Session, trip_id: uuid.UUID, revisions: Sequence[ExpenseRevision]
) -> list[RevisionRecord]:
    """Payers and splits of many revisions in two queries, whatever their number."""
    ids = [revision.id for revision in revisions]
    payers: dict[uuid.UUID, list[ExpensePayer]] = defaultdict(list)
    splits: dict[uuid.UUID, list[ExpenseSplit]] = defaultdict(list)
    if ids:
        for payer in session.exec(
            select(ExpensePayer)
            .where(ExpensePayer.trip_id == trip_id, col(ExpensePayer.revision_id).in_(ids))
            .order_by(col(ExpensePayer.participant_id))
        ):
            payers[payer.revision_id].append(payer)
        for split in session.exec(
            select(ExpenseSplit)
            .where(ExpenseSplit.trip_id == trip_id, col(ExpenseSplit.revision_id).in_(ids))
            .order_by(col(ExpenseSplit.participant_id))
        ):
            splits[split.revision_id].append(split)
    return [RevisionRecord(r, payers[r.id], splits[r.id]) for r in revisions]


def _current_expenses(trip_id: uuid.UUID) -> Select[Expense, ExpenseRevision]:
    return (
        select(Expense, ExpenseRevision)
        .join(
            ExpenseRevision,
            and_(
                col(ExpenseRevision.trip_id) == Expense.trip_id,
                col(ExpenseRevision.id) == Expense.current_revision_id,
            ),
        )
        .where(Expense.trip_id == trip_id, col(Expense.deleted_at).is_(None))
    )


def _records(
    session: Session, trip_id: uuid.UUID, rows: Sequence[tuple[Expense, ExpenseRevision]]
) -> list[ExpenseRecord]:
    revisions = _revision_records(session, trip_id, [revision for _, revision in rows])
    return [
        ExpenseRecord(expense, record) for (expense, _), record in zip(rows, revisions, strict=True)
    ]


def expense_records(
    *, session: Session, trip_id: uuid.UUID, expenses: Sequence[Expense]
) -> list[ExpenseRecord]:
    """Many expenses with their current revision, payers and splits, in three queries."""
    revision_ids = [expense.current_revision_id for expense in expenses]
    revisions = {
        revision.id: revision
        for revision in session.exec(
            select(ExpenseRevision).where(
                ExpenseRevision.trip_id == trip_id, col(ExpenseRevision.id).in_(revision_ids)
            )
        )
    }
    rows = [
        (expense, revisions[expense.current_revision_id])
        for expense in expenses
        if expense.current_revision_id in revisions
    ]
    return _records(session, trip_id, rows)


def list_expenses(
    *, session: Session, trip_id: uuid.UUID, page: PageRequest
) -> tuple[list[ExpenseRecord], Position | None]:
    """Live expenses, latest date first, by keyset on (spent_on, id); three queries per page."""
    statement = keyset_page(
        _current_expenses(trip_id), page, ExpenseRevision.spent_on, Expense.id, descending=True
    )
    rows = session.exec(statement).all()
    paged, last = split_page(rows, page.limit, lambda row: Position(row[1].spent_on, row[0].id))
    return _records(session, trip_id, paged), last


def get_expense(*, session: Session, trip_id: uuid.UUID, expense_id: uuid.UUID) -> ExpenseRecord:
    row = session.exec(_current_expenses(trip_id).where(Expense.id == expense_id)).first()
    if row is None:
        raise _expense_not_found()
    return _records(session, trip_id, [row])[0]


def _locked_expense(
    session: Session, trip_id: uuid.UUID, expense_id: uuid.UUID, expected: ExpectedVersion
) -> tuple[Expense, RevisionRecord]:
    """The live expense, locked, and its current revision, if it is at the version expected.

    Concurrent edits apply one after the other, each a revision.
    """
    expense = session.exec(
        select(Expense)
        .where(
            Expense.trip_id == trip_id,
            Expense.id == expense_id,
            col(Expense.deleted_at).is_(None),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if expense is None:
        raise _expense_not_found()
    current = _current_record(session, expense)
    ensure_version(
        expense, expected, lambda: _expense_public(session, ExpenseRecord(expense, current))
    )
    return expense, current


def _current_record(session: Session, expense: Expense) -> RevisionRecord:
    revision = session.get_one(ExpenseRevision, (expense.trip_id, expense.current_revision_id))
    return _revision_records(session, expense.trip_id, [revision])[0]


def _as_stored(record: RevisionRecord) -> PricedExpense:
    return PricedExpense(
        exchange_rate=record.revision.exchange_rate,
        base_amount_minor=record.revision.base_amount_minor,
        payers=[
            Allocation(p.participant_id, p.amount_minor, p.base_amount_minor) for p in record.payers
        ],
        splits=[
            Allocation(s.participant_id, s.amount_minor, s.base_amount_minor) for s in record.splits
        ],
    )


def _check_expected(current: RevisionRecord, expected_revision: int | None) -> None:
    if expected_revision is not None and expected_revision != current.revision.number:
        raise Conflict(
            f"The expense is at revision {current.revision.number}, not {expected_revision}: "
            "reload it and apply your change again.",
            code="revision_conflict",
        )


def update_expense(
    *,
    session: Session,
    trip_id: uuid.UUID,
    expense_id: uuid.UUID,
    data: ExpenseUpdate,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> ExpenseRecord:
    """A new revision with the changes applied; the previous ones stay as they were.

    A change that leaves the content as it is records nothing.
    """
    base_currency = _lock_base_currency(session, trip_id)
    expense, current = _locked_expense(session, trip_id, expense_id, expected)
    _check_expected(current, data.expected_revision)
    before = _Draft.of_revision(current)
    draft = before.patched(data).with_rate(session, base_currency)
    priced = draft.priced(base_currency)
    if draft.canonical(priced.exchange_rate) == before.canonical(current.revision.exchange_rate):
        return ExpenseRecord(expense, current)  # nothing changes: no revision to record
    _ensure_participants(session, trip_id, draft.participant_ids())
    expense.updated_at = utcnow()
    record = _write_revision(
        session,
        expense,
        number=current.revision.number + 1,
        action=RevisionAction.UPDATED,
        draft=draft,
        priced=priced,
        actor_id=actor_id,
    )
    _update_totals(
        session, trip_id, added=_expense_entries(record), removed=_expense_entries(current)
    )
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="expense.updated",
        object_type="expense",
        object_id=expense.id,
        summary=draft.title,
    )
    session.flush()
    return ExpenseRecord(expense, record)


def delete_expense(
    *,
    session: Session,
    trip_id: uuid.UUID,
    expense_id: uuid.UUID,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
    expected_revision: int | None = None,
) -> None:
    """Hide the expense from lists and balances; a last revision records the deletion.

    The deletion revision repeats the last content exactly as stored (nothing is recomputed),
    so the history shows what was deleted.
    """
    expense, current = _locked_expense(session, trip_id, expense_id, expected)
    _check_expected(current, expected_revision)
    draft = _Draft.of_revision(current)
    now = utcnow()
    expense.updated_at = now
    expense.deleted_at = now
    _write_revision(
        session,
        expense,
        number=current.revision.number + 1,
        action=RevisionAction.DELETED,
        draft=draft,
        priced=_as_stored(current),
        actor_id=actor_id,
    )
    _update_totals(session, trip_id, removed=_expense_entries(current))
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="expense.deleted",
        object_type="expense",
        object_id=expense.id,
        summary=draft.title,
    )
    session.flush()


def list_revisions(
    *, session: Session, trip_id: uuid.UUID, expense_id: uuid.UUID, page: PageRequest
) -> tuple[list[RevisionRecord], Position | None]:
    """Every version of an expense, deleted or not, oldest first, by keyset on number."""
    found = session.exec(
        select(Expense.id).where(Expense.trip_id == trip_id, Expense.id == expense_id)
    ).first()
    if found is None:
        raise _expense_not_found()
    statement = (
        select(ExpenseRevision)
        .where(ExpenseRevision.trip_id == trip_id, ExpenseRevision.expense_id == expense_id)
        .order_by(col(ExpenseRevision.number))
        .limit(page.limit + 1)
    )
    if page.after is not None:
        if not isinstance(page.after.sort_key, int):
            raise _invalid_cursor()
        statement = statement.where(col(ExpenseRevision.number) > page.after.sort_key)
    revisions, last = split_page(
        session.exec(statement).all(),
        page.limit,
        lambda revision: Position(revision.number, revision.id),
    )
    return _revision_records(session, trip_id, revisions), last


# --- settlements -----------------------------------------------------------------------------


def create_settlement(
    *, session: Session, trip_id: uuid.UUID, data: SettlementCreate, actor_id: uuid.UUID
) -> Created[Settlement]:
    """A new settlement; with a client-chosen id seen before, a replay (or a conflict)."""
    base_currency = _lock_base_currency(session, trip_id)
    existing = (
        find_existing(session, Settlement, trip_id=trip_id, row_id=data.id)
        if data.id is not None
        else None
    )
    if existing is not None and _replay_keeps_looked_up_rate(
        data.exchange_rate,
        existing.rate_source,
        (existing.currency, existing.settled_on),
        (data.currency, data.settled_on),
    ):
        # A replay keeps the rate looked up the first time, whatever was imported since.
        given: Decimal | None = existing.exchange_rate
        source, rate_date = RateSource.ECB, existing.rate_date
    else:
        given, source, rate_date = _rated(
            session,
            currency=data.currency,
            base_currency=base_currency,
            on=data.settled_on,
            rate=data.exchange_rate,
        )
    try:
        rate = ledger.resolve_rate(data.currency, base_currency, given)
        base_amount_minor = ledger.to_base_minor(
            data.amount_minor, data.currency, base_currency, rate
        )
    except LedgerError as error:
        raise _refused(error) from None
    if base_amount_minor > ledger.MAX_AMOUNT_MINOR:
        raise Unprocessable(
            "The amount converted to the base currency is too large.",
            code="amount_out_of_range",
        )
    if existing is not None:
        content = (
            data.from_participant_id,
            data.to_participant_id,
            data.amount_minor,
            data.currency,
            rate,
            source,
            rate_date,
            data.settled_on,
            data.note,
        )
        same = content == (
            existing.from_participant_id,
            existing.to_participant_id,
            existing.amount_minor,
            existing.currency,
            existing.exchange_rate,
            existing.rate_source,
            existing.rate_date,
            existing.settled_on,
            existing.note,
        )
        return replay(
            existing,
            version=existing.version,
            same_content=same,
            current=lambda: _settlement_public(session, existing),
        )
    _ensure_participants(session, trip_id, {data.from_participant_id, data.to_participant_id})
    settlement = Settlement(
        trip_id=trip_id,
        from_participant_id=data.from_participant_id,
        to_participant_id=data.to_participant_id,
        amount_minor=data.amount_minor,
        currency=data.currency,
        exchange_rate=rate,
        rate_source=source,
        rate_date=rate_date,
        base_amount_minor=base_amount_minor,
        settled_on=data.settled_on,
        note=data.note,
        created_by=actor_id,
    )
    if data.id is not None:
        settlement.id = data.id
    session.add(settlement)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="settlement.created",
        object_type="settlement",
        object_id=settlement.id,
    )
    session.flush()
    _update_totals(session, trip_id, added=_settlement_entries(settlement))
    return Created(settlement)


def list_settlements(
    *, session: Session, trip_id: uuid.UUID, page: PageRequest
) -> tuple[list[Settlement], Position | None]:
    """Live settlements, latest date first, by keyset on (settled_on, id)."""
    statement = select(Settlement).where(
        Settlement.trip_id == trip_id, col(Settlement.deleted_at).is_(None)
    )
    statement = keyset_page(statement, page, Settlement.settled_on, Settlement.id, descending=True)
    return split_page(
        session.exec(statement).all(),
        page.limit,
        lambda settlement: Position(settlement.settled_on, settlement.id),
    )


def delete_settlement(
    *,
    session: Session,
    trip_id: uuid.UUID,
    settlement_id: uuid.UUID,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> None:
    """Soft delete: the row stays for the record, balances stop counting it."""
    settlement = session.exec(
        select(Settlement)
        .where(
            Settlement.trip_id == trip_id,
            Settlement.id == settlement_id,
            col(Settlement.deleted_at).is_(None),
        )
        .with_for_update()
    ).first()
    if settlement is None:
        raise NotFound("Settlement not found.", code="settlement_not_found")
    ensure_version(settlement, expected, lambda: _settlement_public(session, settlement))
    settlement.deleted_at = utcnow()
    session.add(settlement)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="settlement.deleted",
        object_type="settlement",
        object_id=settlement.id,
    )
    session.flush()
    _update_totals(session, trip_id, removed=_settlement_entries(settlement))


# --- balances --------------------------------------------------------------------------------
#
# Balances read each participant's running totals (trip_participant_totals), which every
# ledger write adjusts in its own transaction: O(participants) per read, whatever the ledger's
# size. `recomputed_totals` is the same figures summed from the entries, the reference.

_Entry = tuple[uuid.UUID, str, int]  # participant, totals column, base amount


def _expense_entries(record: RevisionRecord) -> Iterator[_Entry]:
    for payer in record.payers:
        yield payer.participant_id, "paid_minor", payer.base_amount_minor
    for split in record.splits:
        yield split.participant_id, "owed_minor", split.base_amount_minor


def _settlement_entries(settlement: Settlement) -> Iterator[_Entry]:
    yield settlement.from_participant_id, "settlements_paid_minor", settlement.base_amount_minor
    yield settlement.to_participant_id, "settlements_received_minor", settlement.base_amount_minor


_TOTAL_COLUMNS = (
    "paid_minor",
    "owed_minor",
    "settlements_paid_minor",
    "settlements_received_minor",
)


def _update_totals(
    session: Session,
    trip_id: uuid.UUID,
    *,
    added: Iterable[_Entry] = (),
    removed: Iterable[_Entry] = (),
) -> None:
    """Add the entries a write brings into the live ledger, take away those it takes out.

    One upsert of the participants whose totals change, none if nothing does. Every ledger
    write holds the trip's row lock (claim_version), so a trip's updates apply one at a time.
    """
    changes: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_TOTAL_COLUMNS, 0))
    for participant_id, column, amount in added:
        changes[participant_id][column] += amount
    for participant_id, column, amount in removed:
        changes[participant_id][column] -= amount
    rows = [
        {"trip_id": trip_id, "participant_id": participant_id, **amounts}
        for participant_id, amounts in sorted(changes.items())  # one lock order for the rows
        if any(amounts.values())
    ]
    if not rows:
        return
    upsert = insert(ParticipantTotals).values(rows)
    session.exec(
        upsert.on_conflict_do_update(
            index_elements=[col(ParticipantTotals.trip_id), col(ParticipantTotals.participant_id)],
            set_={
                "paid_minor": col(ParticipantTotals.paid_minor) + upsert.excluded.paid_minor,
                "owed_minor": col(ParticipantTotals.owed_minor) + upsert.excluded.owed_minor,
                "settlements_paid_minor": col(ParticipantTotals.settlements_paid_minor)
                + upsert.excluded.settlements_paid_minor,
                "settlements_received_minor": col(ParticipantTotals.settlements_received_minor)
                + upsert.excluded.settlements_received_minor,
            },
        )
    )


def _live_expense(table: type[ExpensePayer] | type[ExpenseSplit]) -> ColumnElement[bool]:
    """Join condition: the payer or split row belongs to a live expense's current revision."""
    return and_(
        col(Expense.trip_id) == table.trip_id,
        col(Expense.current_revision_id) == table.revision_id,
        col(Expense.deleted_at).is_(None),
    )


def recomputed_totals(
    trip_id: uuid.UUID | None = None,
) -> Select[uuid.UUID, uuid.UUID, int, int, int, int]:
    """Per trip and participant, the sums of the live entries, from scratch (every trip's if
    `trip_id` is None): the reference the running totals must equal, and their backfill.

    Rows: trip_id, participant_id and the four totals columns, for participants with entries.
    """

    def in_trip(column: Any) -> list[ColumnElement[bool]]:
        return [] if trip_id is None else [column == trip_id]

    live_settlement = and_(*in_trip(Settlement.trip_id), col(Settlement.deleted_at).is_(None))
    entries = union_all(
        select(
            col(ExpensePayer.trip_id).label("trip_id"),
            col(ExpensePayer.participant_id).label("participant_id"),
            literal("paid_minor").label("kind"),
            col(ExpensePayer.base_amount_minor).label("amount"),
        )
        .join(Expense, _live_expense(ExpensePayer))
        .where(*in_trip(ExpensePayer.trip_id)),
        select(
            col(ExpenseSplit.trip_id),
            col(ExpenseSplit.participant_id),
            literal("owed_minor"),
            col(ExpenseSplit.base_amount_minor),
        )
        .join(Expense, _live_expense(ExpenseSplit))
        .where(*in_trip(ExpenseSplit.trip_id)),
        select(
            col(Settlement.trip_id),
            col(Settlement.from_participant_id),
            literal("settlements_paid_minor"),
            col(Settlement.base_amount_minor),
        ).where(live_settlement),
        select(
            col(Settlement.trip_id),
            col(Settlement.to_participant_id),
            literal("settlements_received_minor"),
            col(Settlement.base_amount_minor),
        ).where(live_settlement),
    ).subquery()
    return select(
        entries.c.trip_id,
        entries.c.participant_id,
        *(
            # SUM of BIGINT is NUMERIC: back to the column's type (the old aggregate's int()).
            cast(
                func.coalesce(func.sum(entries.c.amount).filter(entries.c.kind == column), 0),
                BigInteger,
            ).label(column)
            for column in _TOTAL_COLUMNS
        ),
    ).group_by(entries.c.trip_id, entries.c.participant_id)


def backfill_totals() -> Insert:
    """Fill an empty totals table from the ledger of every trip (for data loaded with COPY)."""
    return insert(ParticipantTotals).from_select(
        ["trip_id", "participant_id", *_TOTAL_COLUMNS], recomputed_totals()
    )


def compute_balances(*, session: Session, trip_id: uuid.UUID) -> BalancesPublic:
    """Everyone's balance in the base currency (they sum to zero) and a settle-up plan."""
    base_currency = session.exec(select(Trip.base_currency).where(Trip.id == trip_id)).one()
    participants = session.exec(
        select(Participant.id, Participant.name, User.full_name, ParticipantTotals)
        .outerjoin(User, col(User.id) == Participant.user_id)
        .outerjoin(
            ParticipantTotals,
            and_(
                col(ParticipantTotals.trip_id) == Participant.trip_id,
                col(ParticipantTotals.participant_id) == Participant.id,
            ),
        )
        .where(Participant.trip_id == trip_id)
        .order_by(col(Participant.created_at), col(Participant.id))
        # Upserts change the totals behind the session's back: never serve a stale copy.
        .execution_options(populate_existing=True)
    ).all()
    balances = []
    for participant_id, guest_name, member_name, totals in participants:
        if totals is None:  # nothing recorded for them yet
            totals = ParticipantTotals(trip_id=trip_id, participant_id=participant_id)
        balances.append(
            ParticipantBalance(
                participant_id=participant_id,
                name=member_name if member_name is not None else guest_name,
                paid_minor=totals.paid_minor,
                owed_minor=totals.owed_minor,
                settlements_paid_minor=totals.settlements_paid_minor,
                settlements_received_minor=totals.settlements_received_minor,
                balance_minor=ledger.net_balance(
                    paid=totals.paid_minor,
                    owed=totals.owed_minor,
                    settlements_paid=totals.settlements_paid_minor,
                    settlements_received=totals.settlements_received_minor,
                ),
            )
        )
    plan = ledger.settle_up({b.participant_id: b.balance_minor for b in balances})
    return BalancesPublic(
        currency=base_currency,
        balances=balances,
        settle_up=[
            TransferPublic(
                from_participant_id=transfer.from_participant_id,
                to_participant_id=transfer.to_participant_id,
                amount_minor=transfer.amount_minor,
            )
            for transfer in plan
        ],
    )


# --- the summary -----------------------------------------------------------------------------


def compute_summary(*, session: Session, trip_id: uuid.UUID) -> TripSummary:
    """The live expenses' base amounts summed per category, per participant and per day.

    One statement for the three sums, so they are of one snapshot and agree with each other
    even while others write (three statements could each see a different set of expenses).
    Settlements move money between participants; they are not spending, so not counted.
    """
    base_currency = _base_currency(session, trip_id)
    live = _current_expenses(trip_id)
    # SUM of BIGINT is NUMERIC, read as an exact Decimal: no cast that could overflow.
    base_amount = func.sum(ExpenseRevision.base_amount_minor)
    zero = literal(0)
    shares = union_all(
        select(
            col(ExpensePayer.participant_id).label("participant_id"),
            col(ExpensePayer.base_amount_minor).label("paid"),
            zero.label("consumed"),
        )
        .join(Expense, _live_expense(ExpensePayer))
        .where(col(ExpensePayer.trip_id) == trip_id),
        select(col(ExpenseSplit.participant_id), zero, col(ExpenseSplit.base_amount_minor))
        .join(Expense, _live_expense(ExpenseSplit))
        .where(col(ExpenseSplit.trip_id) == trip_id),
    ).subquery()
    # (kind, key as text, first sum, second sum): one row per category, day and participant.
    rows = session.execute(
        union_all(
            live.with_only_columns(
                literal("category"), col(ExpenseRevision.category), base_amount, zero
            ).group_by(col(ExpenseRevision.category)),
            live.with_only_columns(
                literal("day"), cast(col(ExpenseRevision.spent_on), String), base_amount, zero
            ).group_by(col(ExpenseRevision.spent_on)),
            sql_select(
                literal("participant"),
                cast(shares.c.participant_id, String),
                func.sum(shares.c.paid),
                func.sum(shares.c.consumed),
            ).group_by(shares.c.participant_id),
        )
    ).all()
    by_category = {key: int(total) for kind, key, total, _ in rows if kind == "category"}
    by_day = sorted(
        (date.fromisoformat(key), int(total)) for kind, key, total, _ in rows if kind == "day"
    )
    per_participant = {
        uuid.UUID(key): (int(paid), int(consumed))
        for kind, key, paid, consumed in rows
        if kind == "participant"
    }
    by_participant = []
    for participant_id, name in ledger_participants(session=session, trip_id=trip_id):
        paid, consumed = per_participant.get(participant_id, (0, 0))
        by_participant.append(
            ParticipantSpending(
                participant_id=participant_id, name=name, paid_minor=paid, consumed_minor=consumed
            )
        )
    categories = [
        CategoryTotal(category=category, total_minor=by_category[category])
        for category in ExpenseCategory
        if category in by_category
    ]
    return TripSummary(
        currency=base_currency,
        total_minor=sum(total.total_minor for total in categories),
        by_category=categories,
        by_participant=by_participant,
        by_day=[DayTotal(day=day, total_minor=total) for day, total in by_day],
    )


# --- the ledger export ----------------------------------------------------------------------


def ledger_participants(*, session: Session, trip_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    """The trip's participants (id, name), in the balances' order: the export's columns."""
    rows = session.exec(
        select(Participant.id, Participant.name, User.full_name)
        .outerjoin(User, col(User.id) == Participant.user_id)
        .where(Participant.trip_id == trip_id)
        .order_by(col(Participant.created_at), col(Participant.id))
    ).all()
    return [(pid, member if member is not None else guest) for pid, guest, member in rows]


def streamed_ledger(
    *, session: Session, trip_id: uuid.UUID
) -> Iterator[ExpenseRecord | Settlement]:
    """Live expenses (by date, then id) with their payers and splits, then live settlements
    (likewise), read through server-side cursors EXPORT_BATCH_ROWS rows at a time: three
    queries a batch, and one batch in memory."""
    expenses = session.exec(
        export.streamed(
            _current_expenses(trip_id).order_by(col(ExpenseRevision.spent_on), col(Expense.id))
        )
    )
    for batch in expenses.partitions():
        yield from _records(session, trip_id, [(expense, revision) for expense, revision in batch])
    yield from session.exec(
        export.streamed(
            select(Settlement)
            .where(Settlement.trip_id == trip_id, col(Settlement.deleted_at).is_(None))
            .order_by(col(Settlement.settled_on), col(Settlement.id))
        )
    )


# --- the account export ----------------------------------------------------------------------


def _hidden_from_account(trip: Trip, role: str | None) -> bool:
    # The one rule for amounts (Trip.hides_amounts_from); a former member sees as a viewer.
    return trip.hides_amounts_from(Role(role) if role is not None else Role.VIEWER)


def _own_participant_in(trip_id: Any, user: User) -> Any:
    return and_(col(Participant.trip_id) == trip_id, col(Participant.user_id) == user.id)


def _own_membership_in(trip_id: Any, user: User) -> Any:
    return and_(col(TripMember.trip_id) == trip_id, col(TripMember.user_id) == user.id)


def exported_expense_shares(session: Session, user: User) -> Iterator[ExpenseShareExported]:
    """Every expense (its current revision) one of the account's participants pays or
    shares in, with the account's own amounts, for its export."""

    def own(table: type[ExpensePayer] | type[ExpenseSplit]) -> Any:
        return (
            select(table.amount_minor)
            .where(
                col(table.trip_id) == ExpenseRevision.trip_id,
                col(table.revision_id) == ExpenseRevision.id,
                col(table.participant_id) == Participant.id,
            )
            .scalar_subquery()
        )

    paid, share = own(ExpensePayer), own(ExpenseSplit)
    # SQLAlchemy's own select: sqlmodel's is typed for at most four columns.
    rows = session.execute(
        export.streamed(
            sql_select(
                Expense,
                ExpenseRevision,
                col(Participant.id),
                paid,
                share,
                Trip,
                col(TripMember.role),
            )
            .join(
                ExpenseRevision,
                and_(
                    col(ExpenseRevision.trip_id) == Expense.trip_id,
                    col(ExpenseRevision.id) == Expense.current_revision_id,
                ),
            )
            .join(Participant, _own_participant_in(Expense.trip_id, user))
            .join(Trip, col(Trip.id) == Expense.trip_id)
            .outerjoin(TripMember, _own_membership_in(Expense.trip_id, user))
            .where(paid.is_not(None) | share.is_not(None))
            .order_by(col(Expense.trip_id), col(ExpenseRevision.spent_on), col(Expense.id))
        )
    )
    for expense, revision, participant_id, paid_minor, share_minor, trip, role in rows:
        hidden = _hidden_from_account(trip, role)
        yield ExpenseShareExported(
            trip_id=expense.trip_id,
            expense_id=expense.id,
            participant_id=participant_id,
            title=revision.title,
            category=revision.category,
            spent_on=revision.spent_on,
            currency=revision.currency,
            amount_minor=None if hidden else revision.amount_minor,
            paid_minor=None if hidden else paid_minor,
            share_minor=None if hidden else share_minor,
            deleted=expense.deleted_at is not None,
        )


def exported_settlements(session: Session, user: User) -> Iterator[SettlementExported]:
    """Every settlement one of the account's participants paid or received, for its export."""
    rows = session.exec(
        export.streamed(
            select(Settlement, Participant.id, Trip, TripMember.role)
            .join(Participant, _own_participant_in(Settlement.trip_id, user))
            .join(Trip, col(Trip.id) == Settlement.trip_id)
            .outerjoin(TripMember, _own_membership_in(Settlement.trip_id, user))
            .where(
                (col(Settlement.from_participant_id) == Participant.id)
                | (col(Settlement.to_participant_id) == Participant.id)
            )
            .order_by(col(Settlement.trip_id), col(Settlement.settled_on), col(Settlement.id))
        )
    )
    for settlement, participant_id, trip, role in rows:
        paid = settlement.from_participant_id == participant_id
        yield SettlementExported(
            trip_id=settlement.trip_id,
            id=settlement.id,
            participant_id=participant_id,
            direction="paid" if paid else "received",
            counterpart_participant_id=(
                settlement.to_participant_id if paid else settlement.from_participant_id
            ),
            amount_minor=None if _hidden_from_account(trip, role) else settlement.amount_minor,
            currency=settlement.currency,
            settled_on=settlement.settled_on,
            deleted=settlement.deleted_at is not None,
        )


trip_hooks.base_currency_changing.subscribe(ensure_base_currency_can_change)
export.register(
    export.ExportSection(
        "expense_shares",
        ExpenseShareExported,
        exported_expense_shares,
        "The expenses the account pays or shares in, with its own part.",
    )
)
export.register(
    export.ExportSection(
        "settlements",
        SettlementExported,
        exported_settlements,
        "The settlements the account paid or received.",
    )
)
