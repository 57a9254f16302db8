"""Server-side statement and idle-in-transaction timeouts come from settings, and a request
stuck in the database past the statement timeout is cut off with 504 database_timeout."""

import time
from collections.abc import Callable

import pytest
from psycopg2.errors import QueryCanceled
from sqlalchemy import exc, text

from app.core.config import Settings
from app.core.db import build_engine
from tests.faults.harness import (
    ApiProcess,
    Database,
    call,
    create_trip,
    expect,
    item_write,
    participant_of,
    present_ids,
    register,
    report,
)

pytestmark = pytest.mark.faults

STATEMENT_TIMEOUT, IDLE_TIMEOUT = 1.5, 2.0
SETTINGS = {
    "DB_STATEMENT_TIMEOUT_MS": str(int(STATEMENT_TIMEOUT * 1000)),
    "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": str(int(IDLE_TIMEOUT * 1000)),
}
SLACK = 2.0  # for a loaded two-core machine


def test_timeouts_are_set_on_the_server_and_a_runaway_request_gets_504(
    database: Database, start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(**SETTINGS)
    alice = register(api, database, "Alice")
    trip = create_trip(api, alice, "Slow")
    write = item_write(trip, alice, [participant_of(api, alice, trip)], 0)

    # Through the API: a write that waits on the trip's lock longer than the statement
    # timeout is cancelled by the server and answered 504; reads are not held up meanwhile.
    with database.trip_locked(trip):
        blocked = write.send(api)
        read = call(api, "GET", f"/trips/{trip}", token=alice.token)
    assert blocked.status == 504, (blocked.status, blocked.body)
    assert blocked.code == "database_timeout"
    assert blocked.headers.get("retry-after") == "1"
    assert STATEMENT_TIMEOUT * 0.95 <= blocked.elapsed < STATEMENT_TIMEOUT + SLACK
    assert read.status == 200
    assert read.elapsed < 1
    # Nothing of it was written, not even its idempotency key; sent again it goes through.
    assert present_ids(database, "itinerary_items", [write.id]) == set()
    assert database.rows("SELECT 1 FROM idempotency_keys WHERE key = %s", write.key) == []
    expect(write.send(api), 201)
    expect(call(api, "GET", "/health/ready"), 200)

    # Through the app's own engine, built from the same settings: the values on the server.
    engine = build_engine(Settings(_env_file=None, DATABASE_URL=database.url, **SETTINGS))  # type: ignore[arg-type]
    try:
        with engine.connect() as connection:
            shown = (
                connection.execute(text("SHOW statement_timeout")).scalar_one(),
                connection.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one(),
            )
        assert shown == ("1500ms", "2s")
        # A runaway query is cancelled by the server.
        with engine.connect() as connection:
            started = time.monotonic()
            with pytest.raises(exc.OperationalError) as cancelled:
                connection.execute(text("SELECT pg_sleep(30)"))
            runaway = time.monotonic() - started
        assert isinstance(cancelled.value.orig, QueryCanceled)
        assert STATEMENT_TIMEOUT * 0.95 <= runaway < STATEMENT_TIMEOUT + SLACK
        # A transaction left idle is ended by the server; the pool then replaces the connection.
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))  # opens the transaction
            time.sleep(IDLE_TIMEOUT + 0.5)
            with pytest.raises(exc.OperationalError):
                connection.execute(text("SELECT 1"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
    server_log = (database.server.data_dir / "server.log").read_text(errors="replace")
    assert "terminating connection due to idle-in-transaction timeout" in server_log

    report(
        "statement and idle-in-transaction timeouts",
        {
            "settings": "DB_STATEMENT_TIMEOUT_MS=1500, DB_IDLE_IN_TRANSACTION_TIMEOUT_MS=2000",
            "SHOW through the app's engine": f"statement_timeout={shown[0]}, "
            f"idle_in_transaction_session_timeout={shown[1]}",
            "write blocked on the trip lock": f"{blocked.status} {blocked.code} after "
            f"{blocked.elapsed * 1000:.0f} ms; nothing written; 201 when sent again",
            "read of the locked trip": f"{read.status} in {read.elapsed * 1000:.0f} ms",
            "SELECT pg_sleep(30) through the engine": f"cancelled after {runaway * 1000:.0f} ms",
            "transaction idle for 2.5 s": "ended by the server; next checkout reconnected",
        },
    )
