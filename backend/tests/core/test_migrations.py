"""Models and migrations describe the same schema, and migrations run both ways."""

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect
from sqlmodel import SQLModel

import app.models  # noqa: F401
from alembic import command
from app.core.config import with_psycopg2
from app.core.db import alembic_config
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
