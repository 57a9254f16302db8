"""What production refuses to start on (app.core.config, app.core.db.check_schema_at_startup):
no DATABASE_URL, a weak SECRET_KEY, a database without the app's schema or behind it; and
what it starts on with a warning: a database ahead of it (a rolling deploy)."""

import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from alembic import command
from app import cli
from app.core.config import with_psycopg2
from app.core.db import StartupRefused, alembic_config, alembic_head, known_revisions
from app.main import create_app
from tests import support

BACKEND = Path(__file__).resolve().parents[2]
# A revision no migration of this checkout has: what a newer release would leave behind.
NEWER_REVISION = "f00dfeedc0de"


def production(url: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": secrets.token_hex(32),
        "EMAIL_DELIVERY": "smtp",
    }


@pytest.fixture
def database(server_url: str) -> Iterator[str]:
    url = support.create_database(server_url, prefix="tripsync_startup")
    try:
        yield url
    finally:
        support.drop_database(url)


def _previous_revision() -> str:
    from alembic.script import ScriptDirectory

    head_revision = alembic_head()
    assert head_revision is not None
    head = ScriptDirectory.from_config(alembic_config()).get_revision(head_revision)
    assert head is not None
    assert isinstance(head.down_revision, str)
    return head.down_revision


def _set_revision(url: str, revision: str) -> None:
    engine = create_engine(with_psycopg2(url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


def _uvicorn(environment: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`uvicorn app.main:app` as production starts it; it should exit by itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "POSTGRES_SERVER")}
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        env={**env, "PYTHONPATH": str(BACKEND), **environment},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_exits_on_a_database_without_the_schema(database: str, tmp_path: Path) -> None:
    completed = _uvicorn(production(database), tmp_path)
    assert completed.returncode == 3, completed.stderr  # uvicorn's "startup failed"
    assert "refusing to start: The database has no schema" in completed.stderr
    assert "python -m app.cli migrate" in completed.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL must be set when ENVIRONMENT=production"),
        ({"SECRET_KEY": "a" * 32}, "SECRET_KEY is too weak for ENVIRONMENT=production"),
    ],
    ids=["no-database-url", "weak-secret-key"],
)
def test_production_exits_on_settings_it_cannot_run_with(
    database: str, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    environment = {**production(database), **change}
    if not environment["DATABASE_URL"]:
        del environment["DATABASE_URL"]
    completed = _uvicorn(environment, tmp_path)
    assert completed.returncode != 0
    assert message in completed.stderr


def test_production_refuses_a_database_behind_the_head(
    database: str, environment: Callable[..., None]
) -> None:
    previous = _previous_revision()
    command.upgrade(alembic_config(database), previous)
    environment(**production(database))
    app = create_app()
    refused = pytest.raises(StartupRefused, match=f"at revision {previous}, behind the app's head")
    with refused, TestClient(app):
        pass


def test_production_starts_on_a_database_ahead_with_a_warning_and_stays_ready(
    database: str, environment: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    assert NEWER_REVISION not in known_revisions()
    command.upgrade(alembic_config(database), "head")
    _set_revision(database, NEWER_REVISION)
    environment(**production(database))
    caplog.set_level(logging.INFO)
    with TestClient(create_app()) as client:
        ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "revision": NEWER_REVISION}
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"at revision {NEWER_REVISION}, which this app's migrations" in warning.getMessage()


def test_readiness_refuses_a_database_behind_the_head(
    database: str, environment: Callable[..., None]
) -> None:
    previous = _previous_revision()
    command.upgrade(alembic_config(database), previous)
    environment(DATABASE_URL=database)  # not production: the app starts, and says it is not ready
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        problem = support.assert_problem(client.get("/health/ready"), 503, "schema_not_at_head")
    assert f"at revision {previous}, behind the app's head {alembic_head()}" in problem["detail"]


def test_the_check_command_refuses_what_the_start_up_refuses(
    database: str,
    environment: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m app.cli check`, which the image runs before uvicorn's workers."""
    environment(**production(database))
    assert cli.main(["check"]) == 1
    assert "refusing to start: The database has no schema" in capsys.readouterr().err

    command.upgrade(alembic_config(database), _previous_revision())
    assert cli.main(["check"]) == 1
    assert "behind the app's head" in capsys.readouterr().err

    command.upgrade(alembic_config(database), "head")
    assert cli.main(["check"]) == 0
    assert f"at the head revision {alembic_head()}" in capsys.readouterr().out

    _set_revision(database, NEWER_REVISION)
    assert cli.main(["check"]) == 0
    assert "a newer release migrated it" in capsys.readouterr().out

    monkeypatch.delenv("DATABASE_URL")
    environment()
    assert cli.main(["check"]) == 1
    assert "DATABASE_URL must be set" in capsys.readouterr().err
    environment(DATABASE_URL=database)  # valid again, for the fixture's clean-up
