"""Conditional writes on every synced resource: ETags, If-Match, 428 and 412, no lost update."""

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from app.core.errors import BadRequest
from app.core.preconditions import ANY_VERSION, parse_if_match
from app.itinerary import service as itinerary_service
from app.itinerary.models import ItemCreate, ItemKind
from app.main import create_app
from app.trips import service as trip_service
from app.trips.models import Role, TripCreate, TripMember
from app.users.models import User
from tests import factories, support

# --- parsing If-Match ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "matches", "refuses"),
    [
        ("*", [0, 1, 42], []),
        ('"42"', [42], [4, 41, 420]),
        (' "7" , "42" ', [7, 42], [1]),
        ('"42",,', [42], [1]),
        ('W/"42"', [], [42]),  # weak tags never match: If-Match compares strongly
        ('"042"', [], [42]),  # entity tags compare character by character
        ('"a,b", "3"', [3], [1]),  # a comma may sit inside a tag
    ],
)
def test_if_match_lists_and_star(header: str, matches: list[int], refuses: list[int]) -> None:
    expected = parse_if_match(header)
    assert all(expected.matches(version) for version in matches)
    assert not any(expected.matches(version) for version in refuses)


@pytest.mark.parametrize("header", ["", " ", "42", '"42', '"42" "43"', '*, "1"', ",", "W/42"])
def test_malformed_if_match_is_refused(header: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_if_match(header)
    assert raised.value.code == "invalid_if_match"


def test_star_is_any_version() -> None:
    assert parse_if_match("*") == ANY_VERSION


# --- every synced resource ----------------------------------------------------------------------


@dataclass
class Resource:
    """One synced resource of a trip, as the owner sees it through the API."""

    client: TestClient
    owner: User
    url: str  # where PATCH and DELETE go
    read: Callable[[], dict[str, Any] | None]  # the current representation (None: gone)
    edits: tuple[dict[str, Any], dict[str, Any]] | None  # two different PATCH bodies

    def write(self, method: str, if_match: str | int | None, body: Any = None) -> Any:
        headers = support.auth(self.owner, if_match=if_match)
        return self.client.request(method, self.url, headers=headers, json=body)


def _get(client: TestClient, user: User, url: str) -> dict[str, Any] | None:
    response = client.get(url, headers=support.auth(user))
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    return response.json()  # type: ignore[no-any-return]


def _listed(client: TestClient, user: User, url: str, key: str, value: str) -> Any:
    response = client.get(url, headers=support.auth(user), params={"limit": 100})
    assert response.status_code == 200, response.text
    found = [row for row in response.json()["items"] if row[key] == value]
    return found[0] if found else None


def _post(client: TestClient, user: User, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(url, headers=support.auth(user), json=body)
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    return response.json()  # type: ignore[no-any-return]


def _trip(client: TestClient, owner: User, trip: dict[str, Any]) -> Resource:
    url = f"/trips/{trip['id']}"
    return Resource(
        client, owner, url, lambda: _get(client, owner, url), ({"name": "A"}, {"name": "B"})
    )


def _member(client: TestClient, owner: User, trip: dict[str, Any], session: Session) -> Resource:
    friend = factories.make_user(session)
    session.add(TripMember(trip_id=uuid.UUID(trip["id"]), user_id=friend.id, role=Role.EDITOR))
    session.commit()
    members = f"/trips/{trip['id']}/members"
    return Resource(
        client,
        owner,
        f"{members}/{friend.id}",
        lambda: _listed(client, owner, members, "user_id", str(friend.id)),
        ({"role": "viewer"}, {"role": "owner"}),
    )


def _guest(client: TestClient, owner: User, trip: dict[str, Any]) -> Resource:
    base = f"/trips/{trip['id']}"
    guest = _post(client, owner, f"{base}/guests", {"name": "Gus"})
    return Resource(
        client,
        owner,
        f"{base}/guests/{guest['id']}",
        lambda: _listed(client, owner, f"{base}/participants", "id", guest["id"]),
        ({"name": "A"}, {"name": "B"}),
    )


def _item(client: TestClient, owner: User, trip: dict[str, Any]) -> Resource:
    item = _post(client, owner, f"/trips/{trip['id']}/items", {"kind": "meal", "title": "Lunch"})
    url = f"/trips/{trip['id']}/items/{item['id']}"
    return Resource(
        client, owner, url, lambda: _get(client, owner, url), ({"title": "A"}, {"title": "B"})
    )


def _checklist(client: TestClient, owner: User, trip: dict[str, Any]) -> Resource:
    body = {"kind": "packing", "title": "Bags"}
    checklist = _post(client, owner, f"/trips/{trip['id']}/checklists", body)
    url = f"/trips/{trip['id']}/checklists/{checklist['id']}"
    return Resource(
        client, owner, url, lambda: _get(client, owner, url), ({"title": "A"}, {"title": "B"})
    )


def _checklist_item(client: TestClient, owner: User, trip: dict[str, Any]) -> Resource:
    body = {"kind": "todo", "title": "Before we go"}
    checklist = _post(client, owner, f"/trips/{trip['id']}/checklists", body)
    items = f"/trips/{trip['id']}/checklists/{checklist['id']}/items"
    item = _post(client, owner, items, {"text": "Passport"})
    return Resource(
        client,
        owner,
        f"{items}/{item['id']}",
        lambda: _listed(client, owner, items, "id", item["id"]),
        ({"text": "A"}, {"done": True}),
    )


def _expense(client: TestClient, owner: User, trip: dict[str, Any]) -> Resource:
    me = support.participant_ids(client, owner, trip["id"])[0]
    body = {
        "title": "Dinner",
        "amount_minor": 3000,
        "currency": "EUR",
        "spent_on": "2027-05-02",
        "payers": [{"participant_id": me, "amount_minor": 3000}],
        "split_mode": "equal",
        "splits": [{"participant_id": me}],
    }
    expense = _post(client, owner, f"/trips/{trip['id']}/expenses", body)
    url = f"/trips/{trip['id']}/expenses/{expense['id']}"
    return Resource(
        client, owner, url, lambda: _get(client, owner, url), ({"title": "A"}, {"title": "B"})
    )


def _settlement(client: TestClient, owner: User, trip: dict[str, Any]) -> Resource:
    base = f"/trips/{trip['id']}"
    me = support.participant_ids(client, owner, trip["id"])[0]
    guest = _post(client, owner, f"{base}/guests", {"name": "Gus"})
    body = {
        "from_participant_id": guest["id"],
        "to_participant_id": me,
        "amount_minor": 1000,
        "currency": "EUR",
        "settled_on": "2027-05-03",
    }
    settlement = _post(client, owner, f"{base}/settlements", body)
    return Resource(
        client,
        owner,
        f"{base}/settlements/{settlement['id']}",
        lambda: _listed(client, owner, f"{base}/settlements", "id", settlement["id"]),
        None,  # settlements are recorded and deleted, never edited
    )


KINDS = [
    "trip",
    "member",
    "guest",
    "item",
    "checklist",
    "checklist_item",
    "expense",
    "settlement",
]


@pytest.fixture(params=KINDS)
def resource(request: pytest.FixtureRequest, client: TestClient, session: Session) -> Resource:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    kind: str = request.param
    if kind == "trip":
        return _trip(client, owner, trip)
    if kind == "member":
        return _member(client, owner, trip, session)
    return {
        "guest": _guest,
        "item": _item,
        "checklist": _checklist,
        "checklist_item": _checklist_item,
        "expense": _expense,
        "settlement": _settlement,
    }[kind](client, owner, trip)


def _current(resource: Resource) -> dict[str, Any]:
    current = resource.read()
    assert current is not None
    return current


def test_a_write_with_the_current_version_succeeds_and_gets_a_new_etag(
    resource: Resource,
) -> None:
    before = _current(resource)
    if resource.edits is not None:
        edited = resource.write("PATCH", before["version"], resource.edits[0])
        assert edited.status_code == 200, edited.text
        after = _current(resource)
        assert edited.headers["etag"] == f'"{after["version"]}"'
        assert after["version"] > before["version"]
        assert {k: v for k, v in edited.json().items() if k in after} == after
        before = after
    deleted = resource.write("DELETE", before["version"])
    assert deleted.status_code == 204, deleted.text
    assert resource.read() is None
    # Gone is gone, whatever the precondition says.
    support.assert_problem(resource.write("DELETE", "*"), 404)


def test_a_write_without_if_match_is_428_and_changes_nothing(resource: Resource) -> None:
    before = _current(resource)
    writes: list[tuple[str, dict[str, Any] | None]] = [("DELETE", None)]
    if resource.edits is not None:
        writes.append(("PATCH", resource.edits[0]))
    for method, body in writes:
        response = resource.write(method, None, body)
        support.assert_problem(response, 428, "precondition_required")
    assert resource.read() == before


def test_a_malformed_if_match_is_400_and_changes_nothing(resource: Resource) -> None:
    before = _current(resource)
    support.assert_problem(
        resource.write("DELETE", str(before["version"])), 400, "invalid_if_match"
    )
    assert resource.read() == before


def test_two_clients_from_one_version_the_second_gets_412_and_the_current_state(
    resource: Resource,
) -> None:
    seen = _current(resource)  # both clients read this version
    if resource.edits is not None:
        first, second = resource.edits
        assert resource.write("PATCH", seen["version"], first).status_code == 200
        now = _current(resource)
        stale = resource.write("PATCH", seen["version"], second)
    else:
        # Nothing edits a settlement: a version it never had stands for a stale copy.
        now = seen
        stale = resource.write("DELETE", seen["version"] - 1)
    body = support.assert_problem(stale, 412, "precondition_failed")
    assert body["current"] == now
    assert stale.headers["etag"] == f'"{now["version"]}"'
    assert resource.read() == now  # the second change was not applied
    refused = resource.write("DELETE", seen["version"] if resource.edits else 0)
    support.assert_problem(refused, 412, "precondition_failed")
    assert resource.read() == now
    # With the version from the 412 the client can apply its change after all.
    assert resource.write("DELETE", stale.headers["etag"]).status_code == 204


def test_star_and_lists_match_the_current_version(resource: Resource) -> None:
    current = _current(resource)
    if resource.edits is not None:
        edited = resource.write("PATCH", "*", resource.edits[0])
        assert edited.status_code == 200, edited.text
        current = _current(resource)
    listed = f'"{current["version"] - 1}", "{current["version"]}"'
    assert resource.write("DELETE", listed).status_code == 204


def test_a_weak_tag_never_matches(resource: Resource) -> None:
    current = _current(resource)
    support.assert_problem(
        resource.write("DELETE", f'W/"{current["version"]}"'), 412, "precondition_failed"
    )
    assert resource.read() == current


# --- the optional precondition of moves and claims ----------------------------------------------


def test_a_move_checks_if_match_only_when_sent(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    item = _post(client, owner, f"/trips/{trip['id']}/items", {"kind": "note", "title": "x"})
    url = f"/trips/{trip['id']}/items/{item['id']}/move"
    moved = client.post(url, headers=support.auth(owner), json={"day": "2027-05-02"})
    assert moved.status_code == 200, moved.text
    assert moved.headers["etag"] == f'"{moved.json()["version"]}"'
    stale = client.post(
        url, headers=support.auth(owner, if_match=item["version"]), json={"day": "2027-05-03"}
    )
    body = support.assert_problem(stale, 412, "precondition_failed")
    assert body["current"] == moved.json()
    again = client.post(
        url,
        headers=support.auth(owner, if_match=moved.json()["version"]),
        json={"day": "2027-05-03"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["day"] == "2027-05-03"


def test_a_claim_checks_if_match_only_when_sent(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    base = f"/trips/{trip['id']}/guests"
    first, second = (_post(client, owner, base, {"name": name}) for name in ("Al", "Bo"))
    renamed = client.patch(
        f"{base}/{first['id']}",
        headers=support.auth(owner, if_match=first["version"]),
        json={"name": "Alan"},
    ).json()
    stale = client.post(
        f"{base}/{first['id']}/claim", headers=support.auth(owner, if_match=first["version"])
    )
    assert support.assert_problem(stale, 412, "precondition_failed")["current"] == renamed
    claimed = client.post(f"{base}/{second['id']}/claim", headers=support.auth(owner))
    assert claimed.status_code == 200, claimed.text
    assert claimed.headers["etag"] == f'"{claimed.json()["version"]}"'


# --- real concurrency ---------------------------------------------------------------------------


@pytest.fixture
def committed_item(engine: Engine) -> Iterator[tuple[User, uuid.UUID, uuid.UUID, int]]:
    """A committed user, trip and item; all removed afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        user = factories.make_user(session)
        trip = trip_service.create_trip(
            session=session,
            owner=user,
            data=TripCreate(name="Race", start_date=date(2027, 5, 1), end_date=date(2027, 5, 3)),
        ).value
        item = itinerary_service.create_item(
            session=session,
            trip_id=trip.id,
            data=ItemCreate(kind=ItemKind.NOTE, title="Original"),
            actor_id=user.id,
        ).value
        session.commit()
    try:
        yield user, trip.id, item.id, item.version
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM trips WHERE id = :t"), {"t": trip.id})
            connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def test_concurrent_edits_from_one_version_lose_no_update(
    engine: Engine, committed_item: tuple[User, uuid.UUID, uuid.UUID, int]
) -> None:
    """Two devices send an edit based on the same version at the same moment: both wait for
    the trip, then exactly one applies and the other is told what it missed."""
    user, trip_id, item_id, version = committed_item
    url = f"/trips/{trip_id}/items/{item_id}"
    clients = [TestClient(create_app(), raise_server_exceptions=False) for _ in range(2)]
    for client in clients:  # warm up: the framework builds some validators on first use
        assert client.get(url, headers=support.auth(user)).status_code == 200
        warm_up = client.patch(url, headers=support.auth(user, if_match="*"), json={"title": ""})
        assert warm_up.status_code == 422
    results: dict[str, Any] = {}

    def edit(client: TestClient, title: str) -> None:
        headers = support.auth(user, if_match=version)
        results[title] = client.patch(url, headers=headers, json={"title": title})

    with engine.connect() as blocker:
        transaction = blocker.begin()
        blocker.execute(text("SELECT id FROM trips WHERE id = :t FOR UPDATE"), {"t": trip_id})
        threads = [
            threading.Thread(target=edit, args=(client, title))
            for client, title in zip(clients, ("One", "Two"), strict=True)
        ]
        for thread in threads:
            thread.start()
        threads[0].join(timeout=1.0)
        assert threads[0].is_alive(), "the write did not wait for the trip lock"
        transaction.commit()
        for thread in threads:
            thread.join(timeout=10)

    statuses = sorted(response.status_code for response in results.values())
    assert statuses == [200, 412]
    winner = next(title for title, response in results.items() if response.status_code == 200)
    loser = results["Two" if winner == "One" else "One"]
    stored = clients[0].get(url, headers=support.auth(user)).json()
    assert stored["title"] == winner
    assert loser.json()["current"] == stored
