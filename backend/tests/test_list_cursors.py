"""Cursors belong to the list they came from, for every route that pages, read from the app
itself: a cursor of one trip's list does not page another trip's, nor one user's another's.
"""

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.main import app
from app.trips.models import Role
from app.users.models import User
from tests import factories, support

# Every list the app serves: the GET operations that take a `cursor`.
LISTS = sorted(
    path
    for path, operations in app.openapi()["paths"].items()
    if any(
        parameter["name"] == "cursor"
        for parameter in operations.get("get", {}).get("parameters", [])
    )
)
# Lists of the caller's own (not under a trip).
PERSONAL = {"/trips", "/invitations", "/users/me/sessions", "/sync"}


def _url(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: ids[match.group(1)], path)


def _cursor_of(client: TestClient, user: User, url: str) -> str:
    """The cursor a client holds after the list's first page (of one row)."""
    response = client.get(url, headers=support.auth(user), params={"limit": 1})
    assert response.status_code == 200, f"{url}: {response.text}"
    body = response.json()
    cursor = body.get("next_cursor", body.get("cursor"))
    assert cursor, f"{url}: the test data leaves no second page"
    return str(cursor)


def _page(client: TestClient, user: User, url: str, cursor: str) -> Any:
    return client.get(url, headers=support.auth(user), params={"limit": 1, "cursor": cursor})


def test_the_lists_are_found() -> None:
    assert {"/trips", "/trips/{trip_id}/items", "/trips/{trip_id}/activity"} <= set(LISTS)
    assert set(LISTS) >= PERSONAL


def test_a_cursor_pages_only_its_own_list(client: TestClient, session: Session) -> None:
    """Every list: its cursor pages it; another trip's list (same route, same user) and the
    same route for another user answer 400 invalid_cursor."""
    owner, other = factories.make_user(session), factories.make_user(session)
    trip_a = factories.create_trip_with_full_lists(client, session, owner, invitee=other)
    trip_b = factories.create_trip_with_full_lists(client, session, owner, invitee=other)
    factories.create_trip(client, other)
    support.session_of(owner)
    login = client.post("/auth/login", data={"username": owner.email, "password": support.PASSWORD})
    assert login.status_code == 200, login.text  # a second session to list

    wrong: list[str] = []
    for path in LISTS:
        # A personal list is the invitee's for /invitations, else the owner's.
        holder, stranger = (other, owner) if path == "/invitations" else (owner, other)
        url = _url(path, trip_a)
        cursor = _cursor_of(client, holder, url)
        if _page(client, holder, url, cursor).status_code != 200:
            wrong.append(f"{path}: refused on its own list")
        elsewhere = [(stranger, url)] if path in PERSONAL else [(holder, _url(path, trip_b))]
        for user, url_elsewhere in elsewhere:
            response = _page(client, user, url_elsewhere, cursor)
            if response.status_code != 400 or response.json().get("code") != "invalid_cursor":
                wrong.append(f"{path}: {response.status_code} elsewhere")
    assert not wrong, wrong


def test_a_members_cursor_does_not_page_for_another_member(
    client: TestClient, session: Session
) -> None:
    owner, editor = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    factories.add_member(session, trip["id"], editor, Role.EDITOR)
    url = f"/trips/{trip['id']}/activity"
    factories.add_item(client, owner, trip["id"])
    cursor = _cursor_of(client, owner, url)
    assert _page(client, owner, url, cursor).status_code == 200
    support.assert_problem(_page(client, editor, url, cursor), 400, "invalid_cursor")


def test_a_cursor_belongs_to_its_filter(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    for title in ("a", "b"):
        factories.add_item(client, owner, trip["id"], title=title, day="2027-05-02")
    url = f"/trips/{trip['id']}/items"
    first = client.get(
        url, headers=support.auth(owner), params={"limit": 1, "day": "2027-05-02"}
    ).json()
    cursor = first["next_cursor"]
    same = client.get(
        url, headers=support.auth(owner), params={"day": "2027-05-02", "cursor": cursor}
    )
    assert support.titles(same.json()["items"]) == ["b"]
    for params in ({}, {"day": "2027-05-03"}, {"unscheduled": "true"}):
        response = client.get(url, headers=support.auth(owner), params={**params, "cursor": cursor})
        support.assert_problem(response, 400, "invalid_cursor")
