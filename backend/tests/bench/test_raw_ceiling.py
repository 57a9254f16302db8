"""The raw ceiling (bench/raw_app.py) answers each read scenario of `make bench` with
TripSync's own bytes, on a small seeded database, both as real uvicorn processes (no load)."""

import uuid
from collections.abc import Callable, Iterator

import pytest

from alembic import command
from bench.run import (
    READ_SCENARIOS,
    SECRET,
    Request,
    Scenario,
    _psycopg_url,
    _scenarios,
    _start,
    _stop,
    compare_bodies,
    same_body,
)
from bench.seed import PASSWORD, Seeded, ensure_seeded
from tests import support

TINY = 0.0001  # every size at its floor: 20 users, 20 trips, 2,000 items (500 in the big trip)


@pytest.fixture
def seeded(server_url: str, environment: Callable[..., None]) -> Iterator[tuple[str, Seeded]]:
    from app.core.db import alembic_config
    from app.core.security import hash_password

    # The bench signs its tokens with its own secret; the environment fixture restores ours.
    environment(SECRET_KEY=SECRET, ACCESS_TOKEN_EXPIRE_MINUTES="60")
    url = support.create_database(server_url, prefix="tripsync_bench_test")
    try:
        command.upgrade(alembic_config(url), "head")
        yield url, ensure_seeded(_psycopg_url(url), TINY, hash_password(PASSWORD))
    finally:
        support.drop_database(url)


def test_the_raw_app_answers_every_read_with_tripsyncs_bytes(seeded: tuple[str, Seeded]) -> None:
    url, data = seeded
    reads = [s for s in _scenarios(data, url) if s.name in READ_SCENARIOS]
    assert [s.name for s in reads] == list(READ_SCENARIOS)
    auth = reads[0].requests[0].headers
    trip, day = data.typical_trip_id, data.typical_trip_day
    # Pages that end early, so both cursors (a trip's created_at, an item's day and key) are
    # made and must be signed alike.
    cursors = [
        Scenario(name, name, [Request("GET", path, None, auth)])
        for name, path in (
            ("trips_next_page", "/trips?limit=2"),
            ("day_next_page", f"/trips/{trip}/items?day={day}&limit=2"),
            ("unscheduled_after_days", f"/trips/{data.big_trip_id}/items?limit=100"),
        )
    ]
    raw, raw_base = _start("bench.raw_app:app", 1, url)
    try:
        ours, our_base = _start("app.main:app", 1, url)
        try:
            found = compare_bodies(raw_base, our_base, reads + cursors)
        finally:
            _stop(ours)
    finally:
        _stop(raw)
    assert found == dict.fromkeys(found, "bytes")
    assert len(found) == len(reads) + len(cursors)


def test_a_body_is_the_same_by_bytes_or_by_json_or_differs() -> None:
    assert same_body(b'{"a":1,"b":[2]}', b'{"a":1,"b":[2]}') == "bytes"
    assert same_body(b'{"b":[2],"a":1}', b'{"a": 1, "b": [2]}') == "json"
    assert same_body(b'{"a":1}', b'{"a":2}') == "differ"
    assert same_body(b'{"items":[]}', b"<html>") == "differ"
    assert same_body(str(uuid.uuid4()).encode(), b"") == "differ"
