"""Models and migrations describe the same schema, migrations run both ways, and data
migrations compute what the application would have."""

import uuid
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect
from sqlmodel import Session, SQLModel, select

import app.models  # noqa: F401
from alembic import command
from app.core.config import with_psycopg2
from app.core.db import alembic_config
from app.core.preconditions import ANY_VERSION
from app.expenses import service as expenses
from app.expenses.models import ExpenseCreate, ExpenseUpdate, ParticipantTotals, SettlementCreate
from app.participants.service import add_guest
from app.trips import service as trips
from app.trips.models import TripCreate
from app.users.models import User
from tests import support


@pytest.fixture
def empty_database(server_url: str) -> Iterator[tuple[str, Engine]]:
    url = support.create_database(server_url, prefix="tripsync_migrations")
    engine = create_engine(with_psycopg2(url))
    try:
        yield url, engine
    finally:
        engine.dispose()
        support.drop_database(url)


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences: list[object] = list(compare_metadata(context, SQLModel.metadata))
    # Autogenerate does not compare check constraints: compare their names ourselves.
    inspector = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        in_models = {
            str(c.name) for c in table.constraints if c.__class__.__name__ == "CheckConstraint"
        }
        in_database = {str(c["name"]) for c in inspector.get_check_constraints(table.name)}
        if in_models != in_database:
            differences.append(("check constraints", table.name, in_models ^ in_database))
    return differences


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_there_is_a_single_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


def test_models_match_migrations_and_migrations_run_both_ways(
    empty_database: tuple[str, Engine],
) -> None:
    url, engine = empty_database
    config = alembic_config(url)

    command.upgrade(config, "head")
    assert _schema_differences(engine) == []
    assert set(SQLModel.metadata.tables) <= _tables(engine)

    command.downgrade(config, "base")
    assert _tables(engine) == {"alembic_version"}

    command.upgrade(config, "head")
    assert _schema_differences(engine) == []


# The revision before trip_participant_totals: downgrading to it drops the table.
BEFORE_PARTICIPANT_TOTALS = "c4a6bc327ec9"


def _write_ledger(session: Session, name: str) -> None:
    """A trip whose ledger has live, edited and deleted expenses and settlements."""
    owner = User(email=f"{uuid.uuid4().hex}@example.com", full_name=name, password_hash="x")
    session.add(owner)
    session.flush()
    trip = trips.create_trip(
        session=session,
        owner=owner,
        data=TripCreate(name=name, start_date=date(2027, 5, 1), end_date=date(2027, 5, 9)),
    ).value
    ann, bob, cy = (
        add_guest(session=session, trip_id=trip.id, name=guest, actor_id=owner.id).value.id
        for guest in ("Ann", "Bob", "Cy")
    )

    def spend(amount: int, payer: uuid.UUID, currency: str = "EUR") -> uuid.UUID:
        data = ExpenseCreate.model_validate(
            {
                "title": "Spent",
                "amount_minor": amount,
                "currency": currency,
                "exchange_rate": None if currency == "EUR" else Decimal("0.9"),
                "spent_on": "2027-05-02",
                "payers": [{"participant_id": payer, "amount_minor": amount}],
                "split_mode": "equal",
                "splits": [{"participant_id": who} for who in (ann, bob, cy)],
            }
        )
        created = expenses.create_expense(
            session=session, trip_id=trip.id, data=data, actor_id=owner.id
        )
        return created.value.expense.id

    def settle(amount: int) -> uuid.UUID:
        data = SettlementCreate(
            from_participant_id=bob,
            to_participant_id=ann,
            amount_minor=amount,
            currency="EUR",
            settled_on=date(2027, 5, 8),
        )
        created = expenses.create_settlement(
            session=session, trip_id=trip.id, data=data, actor_id=owner.id
        )
        return created.value.id

    spend(9000, ann)
    edited = spend(1001, bob, "USD")
    expenses.update_expense(
        session=session,
        trip_id=trip.id,
        expense_id=edited,
        data=ExpenseUpdate.model_validate(
            {"amount_minor": 2003, "payers": [{"participant_id": cy, "amount_minor": 2003}]}
        ),
        actor_id=owner.id,
        expected=ANY_VERSION,
    )
    expenses.delete_expense(
        session=session,
        trip_id=trip.id,
        expense_id=spend(500, cy),
        actor_id=owner.id,
        expected=ANY_VERSION,
    )
    settle(3000)
    expenses.delete_settlement(
        session=session,
        trip_id=trip.id,
        settlement_id=settle(700),
        actor_id=owner.id,
        expected=ANY_VERSION,
    )


Totals = tuple[uuid.UUID, uuid.UUID, int, int, int, int]  # trip, participant, four sums


def _non_zero(rows: Iterable[Totals]) -> set[Totals]:
    """A row taken back to zero is the same as no row."""
    return {row for row in rows if any(row[2:])}


def _totals(engine: Engine) -> set[Totals]:
    with Session(engine) as session:
        return _non_zero(
            (
                row.trip_id,
                row.participant_id,
                row.paid_minor,
                row.owed_minor,
                row.settlements_paid_minor,
                row.settlements_received_minor,
            )
            for row in session.exec(select(ParticipantTotals))
        )


def test_participant_totals_are_backfilled_as_the_writes_keep_them(
    empty_database: tuple[str, Engine],
) -> None:
    url, engine = empty_database
    config = alembic_config(url)
    command.upgrade(config, "head")
    with Session(engine) as session:
        for name in ("Lisbon", "Porto"):
            _write_ledger(session, name)
        session.commit()
    kept = _totals(engine)
    with Session(engine) as session:
        reference = _non_zero(session.exec(expenses.recomputed_totals()))
    assert kept == reference
    assert len({trip_id for trip_id, *_ in kept}) == 2

    command.downgrade(config, BEFORE_PARTICIPANT_TOTALS)
    assert "trip_participant_totals" not in _tables(engine)
    command.upgrade(config, "head")
    assert _totals(engine) == kept


BEFORE_RATE_SOURCES = "9c4d2f7a1e53"


def _rate_sources(engine: Engine) -> list[tuple[str, str, str, date | None]]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT 'revision', currency, rate_source, rate_date FROM trip_expense_revisions "
            "UNION ALL SELECT 'settlement', currency, rate_source, rate_date "
            "FROM trip_settlements ORDER BY 1, 2, 3"
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_rate_sources_are_backfilled_base_or_client(empty_database: tuple[str, Engine]) -> None:
    """Before reference rates, a foreign currency's rate always came from the client."""
    url, engine = empty_database
    config = alembic_config(url)
    command.upgrade(config, "head")
    with Session(engine) as session:
        _write_ledger(session, "Lisbon")
        session.commit()
    written = _rate_sources(engine)
    command.downgrade(config, BEFORE_RATE_SOURCES)
    assert "fx_rates" not in _tables(engine)
    command.upgrade(config, "head")
    assert _rate_sources(engine) == written
    assert {(currency, source, day) for _, currency, source, day in written} == {
        ("EUR", "base", None),
        ("USD", "client", None),
    }
