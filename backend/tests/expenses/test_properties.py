"""Random ledgers written through the service into PostgreSQL: the SQL aggregates agree with
the ledger's arithmetic, balances sum to zero, and the settle-up plan settles everyone."""

import uuid
from collections import defaultdict
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from app.core.pagination import MAX_PAGE_SIZE, PageRequest
from app.core.preconditions import ANY_VERSION
from app.expenses import service
from app.expenses.models import ExpenseCreate, ExpenseUpdate, SettlementCreate
from app.participants.service import add_guest
from app.trips import service as trip_service
from app.trips.models import TripCreate
from app.users.models import User
from tests.expenses.strategies import CURRENCIES, ExpenseSpec, SettlementSpec, expenses, settlements
from tests.expenses.support import check_settles

# Participants are created per example, so the random ledger refers to them by position.
PEOPLE = [uuid.UUID(int=n) for n in range(1, 5)]


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[str, list[ExpenseSpec], list[tuple[int, str, ExpenseSpec | None]], list[SettlementSpec]]:
    base = draw(st.sampled_from(CURRENCIES))
    spent = draw(st.lists(expenses(PEOPLE, base), min_size=1, max_size=5))
    # Later: edit (with a new random content) or delete some of them.
    changes = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(spent) - 1),
                st.sampled_from(["edit", "delete"]),
                expenses(PEOPLE, base),
            ),
            max_size=3,
        )
    )
    paid_back = draw(st.lists(settlements(PEOPLE, base), max_size=3))
    return base, spent, changes, paid_back  # type: ignore[return-value]


def _real(spec_ids: dict[uuid.UUID, uuid.UUID], body: dict[str, object]) -> dict[str, object]:
    """The body with placeholder participant ids replaced by the example's participants."""
    for key in ("payers", "splits"):
        body[key] = [
            {**row, "participant_id": spec_ids[row["participant_id"]]}  # type: ignore[index]
            for row in body[key]  # type: ignore[attr-defined]
        ]
    return body


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_stored_ledgers_balance_to_zero_and_settle(session: Session, scenario: tuple) -> None:
    base, spent, changes, paid_back = scenario
    savepoint = session.begin_nested()  # each example starts from the same database
    try:
        owner = User(email=f"{uuid.uuid4().hex}@example.com", full_name="Owner", password_hash="x")
        session.add(owner)
        session.flush()
        trip = trip_service.create_trip(
            session=session,
            owner=owner,
            data=TripCreate(
                name="Random",
                start_date=date(2027, 5, 1),
                end_date=date(2027, 5, 9),
                base_currency=base,
            ),
        ).value
        ids = {
            placeholder: add_guest(
                session=session, trip_id=trip.id, name=f"Guest {n}", actor_id=owner.id
            ).value.id
            for n, placeholder in enumerate(PEOPLE)
        }
        expense_ids = []
        for spec in spent:
            record = service.create_expense(
                session=session,
                trip_id=trip.id,
                data=ExpenseCreate.model_validate(_real(ids, spec.as_body())),
                actor_id=owner.id,
            ).value
            expense_ids.append(record.expense.id)
        live: dict[uuid.UUID, ExpenseSpec] = dict(zip(expense_ids, spent, strict=True))
        for index, action, new_content in changes:
            expense_id = expense_ids[index]
            if expense_id not in live:
                continue
            if action == "delete":
                service.delete_expense(
                    session=session,
                    trip_id=trip.id,
                    expense_id=expense_id,
                    actor_id=owner.id,
                    expected=ANY_VERSION,
                )
                del live[expense_id]
            else:
                body = _real(ids, new_content.as_body())
                body.pop("spent_on")
                service.update_expense(
                    session=session,
                    trip_id=trip.id,
                    expense_id=expense_id,
                    data=ExpenseUpdate.model_validate(body),
                    actor_id=owner.id,
                    expected=ANY_VERSION,
                )
                live[expense_id] = new_content
        for settlement in paid_back:
            service.create_settlement(
                session=session,
                trip_id=trip.id,
                data=SettlementCreate(
                    from_participant_id=ids[settlement.from_participant_id],
                    to_participant_id=ids[settlement.to_participant_id],
                    amount_minor=settlement.amount_minor,
                    currency=settlement.currency,
                    exchange_rate=settlement.exchange_rate,
                    settled_on=date(2027, 5, 8),
                ),
                actor_id=owner.id,
            )

        report = service.compute_balances(session=session, trip_id=trip.id)

        # The SQL sums equal the stored rows of the live expenses, added up in Python.
        expected: dict[uuid.UUID, int] = defaultdict(int)
        for expense_id in live:
            current = service.get_expense(
                session=session, trip_id=trip.id, expense_id=expense_id
            ).current
            for payer in current.payers:
                expected[payer.participant_id] += payer.base_amount_minor
            for split in current.splits:
                expected[split.participant_id] -= split.base_amount_minor
        stored_settlements, _ = service.list_settlements(
            session=session, trip_id=trip.id, page=PageRequest(limit=MAX_PAGE_SIZE, after=None)
        )
        for row in stored_settlements:
            expected[row.from_participant_id] += row.base_amount_minor
            expected[row.to_participant_id] -= row.base_amount_minor
        balances = {b.participant_id: b.balance_minor for b in report.balances}
        assert {k: v for k, v in balances.items() if v} == {k: v for k, v in expected.items() if v}

        plan = check_settles(balances)
        assert [(t.from_participant_id, t.to_participant_id, t.amount_minor) for t in plan] == [
            (t.from_participant_id, t.to_participant_id, t.amount_minor) for t in report.settle_up
        ]
    finally:
        savepoint.rollback()
