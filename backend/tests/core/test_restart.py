"""The service survives a database restart without being restarted itself."""

import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from alembic import command
from app.core.config import Settings
from app.core.db import alembic_config, build_engine, get_sessionmaker
from app.main import create_app
from devtools.local_postgres import LocalPostgres
from tests import support


def test_requests_succeed_again_after_the_database_restarts(tmp_path: Path, engine: Engine) -> None:
    server = LocalPostgres(tmp_path / "pg")  # durable: an immediate stop loses no commit
    server.start()
    private = build_engine(
        Settings(_env_file=None, DATABASE_URL=server.url, DB_CONNECT_TIMEOUT=1)  # type: ignore[call-arg]
    )
    factory = get_sessionmaker()
    try:
        command.upgrade(alembic_config(server.url), "head")
        factory.configure(bind=private)
        client = TestClient(create_app(), raise_server_exceptions=False)
        assert client.get("/health/ready").status_code == 200  # the pool now holds a connection

        server.stop(mode="immediate")
        started = time.monotonic()
        support.assert_problem(client.get("/health/ready"), 503, "database_unavailable")
        assert time.monotonic() - started < 10  # connect timeout 1 s, plus a loaded machine

        server.start()
        # The pooled connection died with the old server; pre-ping replaces it transparently.
        # Allow a loaded machine a few seconds, as the service promises.
        deadline = time.monotonic() + 10
        while (response := client.get("/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)
    finally:
        factory.configure(bind=engine)
        private.dispose()
        server.stop()
