"""Fixtures of the fault suite: a durable PostgreSQL per test and real API processes on it."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import ApiProcess, Database


@pytest.fixture
def database() -> Iterator[Database]:
    database = Database.start()
    try:
        yield database
    finally:
        database.remove()


@pytest.fixture
def start_api(database: Database, tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """Start `uvicorn app.main:app` with these settings; every process is stopped after."""
    started: list[ApiProcess] = []

    def start(**settings: str) -> ApiProcess:
        api = ApiProcess(database.url, tmp_path / f"api-{len(started)}.log", **settings)
        started.append(api)
        api.start()
        return api

    yield start
    for api in started:
        api.stop()
    for api in started:
        # An unhandled error would have been answered 500: none may happen under any fault.
        assert "unhandled error" not in api.log(), api.log()
