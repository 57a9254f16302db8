"""The Citus placement plan (app.core.distribution): every table of the models is placed on
purpose, and on a Citus coordinator (make test-citus) the schema is placed as it says."""

import pytest
from sqlalchemy import Connection, UniqueConstraint, text

from app import models
from app.core.distribution import PLACEMENTS, Placement, citus_installed, distribute

TRIP_TABLES = {name for name, plan in PLACEMENTS.items() if plan.placement is Placement.BY_TRIP}


def test_every_model_table_has_a_placement_and_every_placement_a_table() -> None:
    tables = set(models.metadata.tables)
    assert tables - set(PLACEMENTS) == set(), "place the new table in app.core.distribution"
    # Only Alembic's own table is placed without being a model.
    assert set(PLACEMENTS) - tables == {"alembic_version"}


def test_a_table_distributed_by_trip_has_the_trip_in_every_unique_key() -> None:
    """Citus refuses a unique key without the distribution column: the models keep to it."""
    for name in TRIP_TABLES:
        table = models.metadata.tables[name]
        column = "id" if name == "trips" else "trip_id"
        keys = [table.primary_key.columns.keys()]
        keys += [index.columns.keys() for index in table.indexes if index.unique]
        keys += [
            constraint.columns.keys()
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        ]
        assert all(column in key for key in keys), (name, keys)


def test_every_placement_gives_its_reason() -> None:
    assert all(len(plan.reason) > 20 for plan in PLACEMENTS.values())


@pytest.fixture
def citus(connection: Connection) -> Connection:
    if not citus_installed(connection):
        pytest.skip("not a Citus coordinator: make test-citus runs this")
    return connection


def test_the_cluster_holds_each_table_where_the_plan_says(citus: Connection) -> None:
    rows = citus.execute(text("SELECT table_name::text, citus_table_type FROM citus_tables"))
    kinds: dict[str, str] = {row[0]: row[1] for row in rows}
    expected = {
        Placement.BY_TRIP: "distributed",
        Placement.REFERENCE: "reference",
        Placement.COORDINATOR: "local",
    }
    for name, plan in PLACEMENTS.items():
        assert kinds.get(name) == expected.get(plan.placement), name
    colocated = citus.execute(
        text(
            "SELECT count(DISTINCT colocation_id) FROM citus_tables "
            "WHERE citus_table_type = 'distributed'"
        )
    ).scalar_one()
    assert colocated == 1


def test_distributing_again_changes_nothing(citus: Connection) -> None:
    assert distribute(citus) == []


def test_the_foreign_keys_are_all_back(citus: Connection) -> None:
    """Dropped to convert the tables, each one of the models is there again."""
    present = set(
        citus.execute(
            text(
                "SELECT conname FROM pg_constraint WHERE contype = 'f' "
                "AND conrelid = ANY(SELECT table_name FROM citus_tables)"
            )
        ).scalars()
    )
    wanted = {
        str(key.name)
        for table in models.metadata.tables.values()
        for key in table.foreign_key_constraints
    }
    assert wanted
    assert wanted <= present
