"""Bad input: every malformed or hostile request is a problem+json 4xx and changes nothing.

Each case compares every table, row by row, before and after the request (a trip with an
item, a checklist with an item, an expense and a settlement in it). What is refused:
bodies over MAX_REQUEST_BODY_BYTES (413, declared or streamed), invalid JSON, wrong types,
unknown fields on updates, pages over the maximum, malformed and forged cursors, malformed
UUIDs, impossible dates, strings over their length, NUL and other control characters, and
lone surrogates (text PostgreSQL could not store). What is legitimate text is stored
verbatim and read back exactly: emoji, combining marks, right-to-left and bidi controls,
and strings that look like SQL.
"""

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from app.core.config import Settings, get_settings
from app.core.pagination import Position, encode_cursor
from app.main import create_app
from app.users.models import User
from tests import factories, support

MIB = 1024 * 1024


@dataclass
class World:
    owner: User
    trip: str
    item: str
    checklist: str
    checklist_item: str
    expense: str
    settlement: str
    versions: dict[str, int]

    def headers(self, resource: str | None = None) -> dict[str, str]:
        """The owner's token; with a resource, also If-Match with its current ETag."""
        if resource is None:
            return support.auth(self.owner)
        return support.auth(self.owner, if_match=self.versions[resource])


@pytest.fixture
def world(client: TestClient, session: Session) -> World:
    owner = factories.make_user(session)
    headers = support.auth(owner)
    seeded = factories.seed_trip_with_everything(client, owner)
    trip, item, checklist = seeded["trip"], seeded["item"], seeded["checklist"]
    checklist_item, expense = seeded["checklist_item"], seeded["expense"]
    settlement = seeded["settlement"]
    base = f"/trips/{trip['id']}"
    trip_now = client.get(base, headers=headers).json()
    return World(
        owner=owner,
        trip=trip["id"],
        item=item["id"],
        checklist=checklist["id"],
        checklist_item=checklist_item["id"],
        expense=expense["id"],
        settlement=settlement["id"],
        versions={
            "trip": trip_now["version"],
            "item": item["version"],
            "checklist": checklist["version"],
            "checklist_item": checklist_item["version"],
            "expense": expense["version"],
        },
    )


def database_snapshot(session: Session) -> dict[str, tuple[int, str]]:
    """Every table's row count and a digest of all its rows, in a stable order."""
    tables = session.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version' ORDER BY tablename"
        )
    ).scalars()
    snapshot = {}
    for table in tables:
        count, digest = session.execute(
            text(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, {chr(39)}|{chr(39)} "  # noqa: S608
                f'ORDER BY t::text), {chr(39)}{chr(39)})) FROM "{table}" t'
            )
        ).one()
        snapshot[table] = (count, digest)
    assert {"trips", "itinerary_items", "trip_expenses", "checklists"} <= snapshot.keys()
    return snapshot


@pytest.fixture
def unchanged(session: Session, world: World) -> Iterator[None]:
    """The request under test writes nothing, anywhere."""
    before = database_snapshot(session)
    yield
    assert database_snapshot(session) == before


# --- Body size ------------------------------------------------------------------------------


def test_the_default_limit_is_one_mebibyte() -> None:
    assert get_settings().MAX_REQUEST_BODY_BYTES == MIB


def test_a_body_declared_over_the_limit_is_413_before_the_app_reads_it(
    client: TestClient, world: World, unchanged: None
) -> None:
    body = json.dumps({"name": "x" * MIB, "start_date": "2027-05-01", "end_date": "2027-05-02"})
    response = client.post(
        "/trips", headers={**world.headers(), "Content-Type": "application/json"}, content=body
    )
    problem = support.assert_problem(response, 413, "payload_too_large")
    assert str(MIB) in problem["detail"]


def test_a_streamed_body_growing_past_the_limit_is_413(
    client: TestClient, world: World, unchanged: None
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'", "start_date": "2027-05-01", "end_date": "2027-05-02"}'

    response = client.post(
        "/trips", headers={**world.headers(), "Content-Type": "application/json"}, content=chunks()
    )
    support.assert_problem(response, 413, "payload_too_large")


@pytest.fixture
def small_limit_client(client: TestClient) -> TestClient:
    settings = Settings(**{**get_settings().model_dump(), "MAX_REQUEST_BODY_BYTES": 1024})
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_the_limit_counts_bytes_exactly(small_limit_client: TestClient, world: World) -> None:
    path = f"/trips/{world.trip}"
    headers = {
        **support.auth(world.owner, if_match="*"),
        "Content-Type": "application/json",
    }
    envelope = len(json.dumps({"description": ""}))
    at_limit = json.dumps({"description": "d" * (1024 - envelope)}).encode()
    assert len(at_limit) == 1024
    response = small_limit_client.patch(path, headers=headers, content=at_limit)
    assert response.status_code == 200, response.text
    over = json.dumps({"description": "d" * (1025 - envelope)}).encode()
    support.assert_problem(
        small_limit_client.patch(path, headers=headers, content=over), 413, "payload_too_large"
    )

    def streamed() -> Iterator[bytes]:
        yield over[:600]
        yield over[600:]

    support.assert_problem(
        small_limit_client.patch(path, headers=headers, content=streamed()),
        413,
        "payload_too_large",
    )


def test_routes_with_a_body_declare_413(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "413" in paths["/trips"]["post"]["responses"]
    assert "413" in paths["/trips/{trip_id}/items/{item_id}"]["patch"]["responses"]
    assert "413" not in paths["/trips"]["get"]["responses"]


# --- Malformed and hostile requests ------------------------------------------------------------

# (method, path, headers' resource for If-Match, request keyword arguments, status, code)
Case = tuple[str, str, str | None, dict[str, Any], int, str]


def _bad_requests(world: World) -> dict[str, Case]:
    trip, item, checklist = world.trip, world.item, world.checklist
    base = f"/trips/{trip}"
    forged = encode_cursor(Position("2027-01-01", uuid.uuid4()), "/trips/{trip_id}/items")
    other_list = encode_cursor(Position("2027-01-01", uuid.uuid4()), "/trips")
    a_day_ok = {"kind": "note", "title": "x"}
    return {
        # A body that cannot be read as JSON is one answer, whatever the reason.
        "truncated JSON": (
            "POST",
            f"{base}/items",
            None,
            {"content": b'{"kind": "note", "title": ', "ctype": "application/json"},
            422,
            "json_invalid",
        ),
        "JSON syntax error": (
            "POST",
            f"{base}/items",
            None,
            {"content": b"{'kind': 'note'}", "ctype": "application/json"},
            422,
            "json_invalid",
        ),
        "not UTF-8": (
            "POST",
            f"{base}/items",
            None,
            {"content": b'{"kind": "note", "title": "\xff\xfe"}', "ctype": "application/json"},
            422,
            "json_invalid",
        ),
        "JSON nested 1,000 deep": (
            "PATCH",
            f"{base}/items/{item}",
            "item",
            {
                "content": b'{"notes": ' + b"[" * 1000 + b"]" * 1000 + b"}",
                "ctype": "application/json",
            },
            422,
            "json_invalid",
        ),
        "JSON nested 100,000 deep": (
            "POST",
            f"{base}/checklists",
            None,
            {"content": b"[" * 100_000, "ctype": "application/json"},
            422,
            "json_invalid",
        ),
        "an integer of 5,000 digits": (
            "PATCH",
            f"{base}/expenses/{world.expense}",
            "expense",
            {"content": b'{"amount_minor": 1' + b"0" * 4999 + b"}", "ctype": "application/json"},
            422,
            "json_invalid",
        ),
        "JSON that is not an object": ("POST", f"{base}/checklists", None, {"json": []}, 422, ""),
        "wrong types": (
            "POST",
            f"{base}/expenses",
            None,
            {"json": {"title": 5, "amount_minor": "9000", "currency": 978, "spent_on": 0}},
            422,
            "validation_error",
        ),
        "an integer written as 9000.0": (
            "PATCH",
            f"{base}/expenses/{world.expense}",
            "expense",
            {"json": {"amount_minor": 9000.0}},
            422,
            "validation_error",
        ),
        "a boolean written as 1": (
            "PATCH",
            f"{base}/checklists/{checklist}/items/{world.checklist_item}",
            "checklist_item",
            {"json": {"done": 1}},
            422,
            "validation_error",
        ),
        "unknown field on a trip update": (
            "PATCH",
            base,
            "trip",
            {"json": {"name": "Porto", "owner_id": str(uuid.uuid4())}},
            422,
            "validation_error",
        ),
        "unknown field on an item update": (
            "PATCH",
            f"{base}/items/{item}",
            "item",
            {"json": {"title": "x", "version": 99}},
            422,
            "validation_error",
        ),
        "unknown field on an expense update": (
            "PATCH",
            f"{base}/expenses/{world.expense}",
            "expense",
            {"json": {"title": "x", "trip_id": str(uuid.uuid4())}},
            422,
            "validation_error",
        ),
        "unknown field on a checklist update": (
            "PATCH",
            f"{base}/checklists/{checklist}",
            "checklist",
            {"json": {"title": "x", "created_by": str(uuid.uuid4())}},
            422,
            "validation_error",
        ),
        "null for a field that may only be omitted": (
            "PATCH",
            base,
            "trip",
            {"json": {"name": None}},
            422,
            "validation_error",
        ),
        "page size above the maximum": ("GET", f"{base}/items?limit=101", None, {}, 422, ""),
        "page size zero": ("GET", f"{base}/expenses?limit=0", None, {}, 422, "validation_error"),
        "malformed cursor": ("GET", f"{base}/items?cursor=not-a-cursor", None, {}, 400, ""),
        "cursor with a forged signature": (
            "GET",
            f"{base}/items?cursor={forged[:-4]}AAAA",
            None,
            {},
            400,
            "invalid_cursor",
        ),
        "cursor of another list": (
            "GET",
            f"{base}/items?cursor={other_list}",
            None,
            {},
            400,
            "invalid_cursor",
        ),
        "cursor longer than allowed": ("GET", f"/trips?cursor={'A' * 600}", None, {}, 422, ""),
        "malformed UUID in the path": ("GET", "/trips/not-a-uuid", None, {}, 422, ""),
        "malformed nested UUID in the path": (
            "DELETE",
            f"{base}/items/12345",
            "item",
            {},
            422,
            "validation_error",
        ),
        "malformed UUID in the body": (
            "POST",
            f"{base}/checklists/{checklist}/items",
            None,
            {"json": {"text": "Socks", "assignee_id": "1234"}},
            422,
            "validation_error",
        ),
        "malformed client-chosen id": (
            "POST",
            f"{base}/items",
            None,
            {"json": {**a_day_ok, "id": "' OR 1=1 --"}},
            422,
            "validation_error",
        ),
        "impossible date": (
            "POST",
            "/trips",
            None,
            {"json": {"name": "x", "start_date": "2027-02-30", "end_date": "2027-03-01"}},
            422,
            "validation_error",
        ),
        "year zero": (
            "POST",
            "/trips",
            None,
            {"json": {"name": "x", "start_date": "0000-01-01", "end_date": "0000-01-02"}},
            422,
            "validation_error",
        ),
        "year 10000": (
            "PATCH",
            base,
            "trip",
            {"json": {"end_date": "10000-01-01"}},
            422,
            "validation_error",
        ),
        "a date as a Unix time": (
            "POST",
            f"{base}/items",
            None,
            {"json": {**a_day_ok, "day": 1809561600}},
            422,
            "validation_error",
        ),
        "a date as digits in the query": ("GET", f"{base}/items?day=0", None, {}, 422, ""),
        "a local time with an offset": (
            "POST",
            f"{base}/items",
            None,
            {"json": {**a_day_ok, "start_local": "2027-05-02T10:00:00Z"}},
            422,
            "validation_error",
        ),
        "a day outside the trip": (
            "POST",
            f"{base}/items",
            None,
            {"json": {**a_day_ok, "day": "9999-12-31"}},
            422,
            "day_outside_trip",
        ),
        "an amount past the maximum": (
            "PATCH",
            f"{base}/expenses/{world.expense}",
            "expense",
            {"json": {"amount_minor": 10**30}},
            422,
            "validation_error",
        ),
        "a string over its length": (
            "PATCH",
            base,
            "trip",
            {"json": {"description": "d" * 5001}},
            422,
            "validation_error",
        ),
        "a huge string": (
            "POST",
            f"{base}/checklists",
            None,
            {"json": {"kind": "todo", "title": "t" * 500_000}},
            422,
            "validation_error",
        ),
        "NUL byte": (
            "PATCH",
            f"{base}/items/{item}",
            "item",
            {"json": {"notes": "before\u0000after"}},
            422,
            "validation_error",
        ),
        "other control character": (
            "POST",
            f"{base}/guests",
            None,
            {"json": {"name": "bell\u0007"}},
            422,
            "validation_error",
        ),
        "a name of only spaces": (
            "POST",
            f"{base}/guests",
            None,
            {"json": {"name": " \u3000\t "}},
            422,
            "validation_error",
        ),
        "lone surrogate (escaped in JSON)": (
            "POST",
            f"{base}/checklists",
            None,
            {"content": b'{"kind": "todo", "title": "a\\ud800b"}', "ctype": "application/json"},
            422,
            "validation_error",
        ),
        "lone low surrogate in an update": (
            "PATCH",
            f"{base}/checklists/{checklist}",
            "checklist",
            {"content": b'{"title": "\\udfff"}', "ctype": "application/json"},
            422,
            "validation_error",
        ),
        "malformed If-Match": (
            "PATCH",
            f"{base}/checklists/{checklist}",
            None,
            {"json": {"title": "x"}, "if_match": "42"},
            400,
            "invalid_if_match",
        ),
        "malformed Idempotency-Key": (
            "POST",
            f"{base}/guests",
            None,
            {"json": {"name": "x"}, "idempotency_key": " padded "},
            400,
            "invalid_idempotency_key",
        ),
        "form body where JSON is expected": (
            "POST",
            f"{base}/guests",
            None,
            {"content": b"name=x", "ctype": "application/x-www-form-urlencoded"},
            422,
            "validation_error",
        ),
    }


# The case names, for parametrize (from placeholder ids; each test builds its own cases).
_PLACEHOLDERS = ("trip", "item", "checklist", "checklist-item", "expense", "settlement")
CASE_NAMES = sorted(_bad_requests(World(User.model_construct(), *_PLACEHOLDERS, versions={})))


def _send(client: TestClient, world: World, case: Case) -> Any:
    method, path, resource, kwargs, _, _ = case
    headers = world.headers(resource)
    kwargs = dict(kwargs)
    if "ctype" in kwargs:
        headers["Content-Type"] = kwargs.pop("ctype")
    if "if_match" in kwargs:
        headers["If-Match"] = kwargs.pop("if_match")
    if "idempotency_key" in kwargs:
        headers["Idempotency-Key"] = kwargs.pop("idempotency_key")
    return client.request(method, path, headers=headers, **kwargs)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_a_4xx_problem_and_changes_nothing(
    client: TestClient, world: World, unchanged: None, name: str
) -> None:
    case = _bad_requests(world)[name]
    status, code = case[4], case[5]
    support.assert_problem(_send(client, world, case), status, code or None)


# --- Legitimate text is stored verbatim -------------------------------------------------------

ODD_BUT_LEGITIMATE = {
    "emoji": "Café ☕ 🇵🇹 👩🏽‍💻",
    "combining marks": "Cafe\u0301 \u2013 Zo\u0308e",  # decomposed, kept as sent (not normalised)
    "right-to-left text": "رحلة إلى لشبونة",
    "bidi controls": "abc\u202edcba\u202c \u2066x\u2069",
    "zero-width characters": "a\u200bb\u200dc\ufeff",
    "SQL-looking": "'; DROP TABLE trips; -- \" OR 1=1 /* */ \\x00",
    "PostgreSQL-looking": "$$; SELECT pg_sleep(10); $$ E'\\\\' ::text %s %(name)s",
    "markup": "<script>alert(1)</script> {{7*7}} ${jndi:ldap://x}",
    "line breaks in free text": "line one\nline two\r\n\ttabbed",
}


@pytest.mark.parametrize("label", sorted(ODD_BUT_LEGITIMATE))
def test_odd_but_legitimate_text_is_stored_verbatim(
    client: TestClient, world: World, label: str
) -> None:
    value = ODD_BUT_LEGITIMATE[label]
    base = f"/trips/{world.trip}"
    headers = world.headers()
    writes: list[tuple[str, str, dict[str, Any], str, Callable[[dict[str, Any]], str]]] = [
        ("POST", f"{base}/checklists", {"kind": "todo", "title": value}, "", lambda b: b["title"]),
        ("PATCH", f"{base}/items/{world.item}", {"notes": value}, "item", lambda b: b["notes"]),
        ("PATCH", base, {"description": value}, "trip", lambda b: b["description"]),
        (
            "PATCH",
            f"{base}/expenses/{world.expense}",
            {"notes": value},
            "expense",
            lambda b: b["notes"],
        ),
    ]
    for method, path, body, resource, read in writes:
        sent_headers = support.auth(world.owner, if_match="*") if resource else headers
        response = client.request(method, path, headers=sent_headers, json=body)
        assert response.status_code in (200, 201), (path, response.text)
        assert read(response.json()) == value.strip(), path
        stored = client.get(
            path if method == "PATCH" else f"{path}/{response.json()['id']}", headers=headers
        )
        assert read(stored.json()) == value.strip(), path


def test_sql_looking_strings_in_queries_and_paths_are_plain_values(
    client: TestClient, world: World, unchanged: None
) -> None:
    headers = world.headers()
    injected = "2027-05-02' OR '1'='1"
    support.assert_problem(
        client.get(f"/trips/{world.trip}/items", params={"day": injected}, headers=headers), 422
    )
    support.assert_problem(
        client.get("/trips/1%27%20OR%20%271%27%3D%271", headers=headers), 422, "validation_error"
    )
    listed = client.get(
        f"/trips/{world.trip}/checklists", params={"kind": "packing' --"}, headers=headers
    )
    support.assert_problem(listed, 422, "validation_error")
