"""Models and migrations describe the same schema, migrations run both ways, and data
migrations compute what the application would have."""

import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

import app.models  # noqa: F401
from alembic import command
from app.core.config import with_psycopg2
from app.core.db import alembic_config
from app.core.preconditions import ANY_VERSION
from app.expenses import service as expenses
from app.expenses.models import (
    ExpenseCategory,
    ExpenseCreate,
    ExpenseUpdate,
    ParticipantTotals,
    SettlementCreate,
)
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


# The revision before expense categories became a fixed list.
BEFORE_CATEGORIES = "d7a2c4e9f613"
# Free-text labels as they were typed, with the notes beside them → what the migration makes.
LABELS = [
    ((" Food ", "Tasca"), ("food", "Tasca")),
    (("TRANSPORT", ""), ("transport", "")),
    (("", "kept as it was"), ("other", "kept as it was")),
    (("Snorkel gear", "x" * 1995), ("other", ("Snorkel gear: " + "x" * 1995)[:2000])),
    (("Souvenirs", ""), ("other", "Souvenirs")),
]


def _versions(engine: Engine) -> dict[str, int]:
    """Each trip's head version and each expense's version, by id."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id::text, head_version FROM trips"
                " UNION ALL SELECT id::text, version FROM trip_expenses"
            )
        )
        return {str(row[0]): int(row[1]) for row in rows}


def test_free_text_categories_become_the_list_and_keep_their_labels_in_the_notes(
    empty_database: tuple[str, Engine],
) -> None:
    url, engine = empty_database
    config = alembic_config(url)
    command.upgrade(config, "head")
    with Session(engine) as session:
        _write_ledger(session, "Lisbon")  # five revisions: its labels are rewritten below
        _write_ledger(session, "Porto")  # categories already on the list: nothing changes
        session.commit()
    command.downgrade(config, BEFORE_CATEGORIES)
    with engine.begin() as connection:
        lisbon = connection.execute(
            text(
                "SELECT revision.id FROM trip_expense_revisions AS revision"
                " JOIN trips ON trips.id = revision.trip_id WHERE trips.name = 'Lisbon'"
                " ORDER BY revision.created_at, revision.number"
            )
        ).scalars()
        revision_ids = list(lisbon)
        assert len(revision_ids) == len(LABELS)
        for revision_id, ((category, notes), _) in zip(revision_ids, LABELS, strict=True):
            connection.execute(
                text(
                    "UPDATE trip_expense_revisions SET category = :category, notes = :notes"
                    " WHERE id = :id"
                ),
                {"category": category, "notes": notes, "id": revision_id},
            )
    before = _versions(engine)

    command.upgrade(config, "head")

    with engine.connect() as connection:
        migrated = {
            row_id: (category, notes)
            for row_id, category, notes in connection.execute(
                text("SELECT id, category, notes FROM trip_expense_revisions")
            )
        }
        trips_by_name: dict[str, str] = dict(
            connection.execute(text("SELECT name, id::text FROM trips")).all()
        )
        expense_trips: dict[str, str] = dict(
            connection.execute(text("SELECT id::text, trip_id::text FROM trip_expenses")).all()
        )
    assert [migrated[revision_id] for revision_id in revision_ids] == [
        expected for _, expected in LABELS
    ]
    assert {migrated[r] for r in set(migrated) - set(revision_ids)} == {("other", "")}
    # Lisbon's expenses changed: a new trip version, which they all take; Porto's did not.
    after = _versions(engine)
    lisbon_id, porto_id = trips_by_name["Lisbon"], trips_by_name["Porto"]
    assert after[lisbon_id] == before[lisbon_id] + 1
    assert after[porto_id] == before[porto_id]
    for expense_id, trip_id in expense_trips.items():
        expected = after[lisbon_id] if trip_id == lisbon_id else before[expense_id]
        assert after[expense_id] == expected
    # From now on only the list is stored.
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text("UPDATE trip_expense_revisions SET category = 'Food' WHERE id = :id"),
            {"id": revision_ids[0]},
        )

    command.downgrade(config, BEFORE_CATEGORIES)  # the constraint goes; the values stay
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT count(*) FROM trip_expense_revisions")).scalar()
    assert kept == len(migrated)


def test_the_category_constraint_allows_exactly_the_list(
    empty_database: tuple[str, Engine],
) -> None:
    """The migration's frozen copy of the list and the model's enum must not drift apart."""
    url, engine = empty_database
    command.upgrade(alembic_config(url), "head")
    [constraint] = [
        c
        for c in inspect(engine).get_check_constraints("trip_expense_revisions")
        if c["name"] == "ck_trip_expense_revisions_category"
    ]
    assert re.findall(r"'(\w+)'", str(constraint["sqltext"])) == [c.value for c in ExpenseCategory]
