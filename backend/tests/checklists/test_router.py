"""Checklists and their items: behaviour, validation, private items, cross-trip references."""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from app.activity.models import Activity
from app.checklists.models import Checklist, ChecklistItem
from app.trips.models import Role
from app.users.models import User
from tests import factories, support


def _create_list(client: TestClient, user: User, trip_id: str, **fields: object) -> dict[str, Any]:
    body = {"kind": "packing", "title": "Bags", **fields}
    response = client.post(f"/trips/{trip_id}/checklists", headers=support.auth(user), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _add(client: TestClient, user: User, base: str, **fields: object) -> dict[str, Any]:
    body = {"text": "Passport", **fields}
    response = client.post(f"{base}/items", headers=support.auth(user), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _texts(client: TestClient, user: User, base: str) -> list[str]:
    response = client.get(f"{base}/items", headers=support.auth(user))
    assert response.status_code == 200, response.text
    return [item["text"] for item in response.json()["items"]]


@pytest.fixture
def shared(client: TestClient, session: Session) -> dict[str, Any]:
    """A trip with an owner, an editor and a viewer, and one packing list."""
    owner, editor, viewer = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    factories.add_member(session, trip["id"], editor, Role.EDITOR)
    factories.add_member(session, trip["id"], viewer, Role.VIEWER)
    checklist = _create_list(client, owner, trip["id"])
    base = f"/trips/{trip['id']}/checklists/{checklist['id']}"
    return {
        "owner": owner,
        "editor": editor,
        "viewer": viewer,
        "trip": trip,
        "checklist": checklist,
        "base": base,
    }


def test_checklists_create_read_update_delete(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    headers = support.auth(owner)
    packing = _create_list(client, owner, trip["id"], title="What to pack")
    todo = _create_list(client, owner, trip["id"], kind="todo", title="Before we go")
    assert (packing["kind"], packing["item_count"], packing["done_count"]) == ("packing", 0, 0)

    url = f"/trips/{trip['id']}/checklists/{packing['id']}"
    assert client.get(url, headers=headers).json() == packing
    listed = client.get(f"/trips/{trip['id']}/checklists", headers=headers).json()
    assert [c["id"] for c in listed["items"]] == [packing["id"], todo["id"]]
    only_todo = client.get(
        f"/trips/{trip['id']}/checklists", headers=headers, params={"kind": "todo"}
    ).json()
    assert [c["id"] for c in only_todo["items"]] == [todo["id"]]

    updated = client.patch(
        url,
        headers=support.auth(owner, if_match=packing["version"]),
        json={"title": "Packing", "kind": "todo"},
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["title"], updated.json()["kind"]) == ("Packing", "todo")

    _add(client, owner, url)  # an item is not part of the list's version
    deleted = client.delete(url, headers=support.auth(owner, if_match=updated.json()["version"]))
    assert deleted.status_code == 204
    support.assert_problem(client.get(url, headers=headers), 404, "checklist_not_found")
    remaining = session.exec(
        select(func.count())
        .select_from(ChecklistItem)
        .where(ChecklistItem.checklist_id == uuid.UUID(packing["id"]))
    ).one()
    assert remaining == 0  # the items went with their list
    actions = session.exec(
        select(Activity.action).where(Activity.trip_id == uuid.UUID(trip["id"]))
    ).all()
    for action in ("checklist.created", "checklist.updated", "checklist.deleted"):
        assert action in actions


def test_items_create_list_update_delete_and_counts(
    client: TestClient, session: Session, shared: dict[str, Any]
) -> None:
    owner, editor, base = shared["owner"], shared["editor"], shared["base"]
    trip_id = shared["trip"]["id"]
    me = support.participant_ids(client, owner, trip_id)[0]
    passport = _add(client, editor, base, text="Passport", assignee_id=me)
    assert (passport["assignee_id"], passport["done"], passport["private"]) == (me, False, False)
    assert passport["created_by"] == str(editor.id)
    charger = _add(client, owner, base, text="Charger", done=True)
    assert _texts(client, shared["viewer"], base) == ["Passport", "Charger"]

    item_url = f"{base}/items/{passport['id']}"
    checked = client.patch(
        item_url,
        headers=support.auth(owner, if_match=passport["version"]),
        json={"done": True, "assignee_id": None},
    ).json()
    assert (checked["done"], checked["assignee_id"]) == (True, None)
    counts = client.get(base, headers=support.auth(owner)).json()
    assert (counts["item_count"], counts["done_count"]) == (2, 2)

    deleted = client.delete(item_url, headers=support.auth(editor, if_match=checked["version"]))
    assert deleted.status_code == 204
    support.assert_problem(
        client.delete(item_url, headers=support.auth(editor, if_match="*")),
        404,
        "checklist_item_not_found",
    )
    assert _texts(client, owner, base) == ["Charger"]
    assert charger["id"] in client.get(f"{base}/items", headers=support.auth(owner)).text


def test_viewers_read_but_do_not_write(
    client: TestClient, session: Session, shared: dict[str, Any]
) -> None:
    viewer, base = shared["viewer"], shared["base"]
    item = _add(client, shared["owner"], base)
    assert client.get(base, headers=support.auth(viewer)).status_code == 200
    assert _texts(client, viewer, base) == ["Passport"]
    for method, url, body in (
        ("POST", f"{base}/items", {"text": "x"}),
        ("PATCH", f"{base}/items/{item['id']}", {"done": True}),
        ("DELETE", f"{base}/items/{item['id']}", None),
        ("PATCH", base, {"title": "x"}),
    ):
        response = client.request(
            method, url, headers=support.auth(viewer, if_match="*"), json=body
        )
        support.assert_problem(response, 403, "read_only_member")


def test_private_items_exist_only_for_their_creator(
    client: TestClient, session: Session, shared: dict[str, Any]
) -> None:
    owner, editor, viewer, base = (shared[k] for k in ("owner", "editor", "viewer", "base"))
    _add(client, owner, base, text="Shared")
    secret = _add(client, editor, base, text="Surprise gift for Ana", private=True)
    assert secret["private"] is True

    assert _texts(client, editor, base) == ["Shared", "Surprise gift for Ana"]
    for other in (owner, viewer):
        assert _texts(client, other, base) == ["Shared"]
        counted = client.get(base, headers=support.auth(other)).json()
        assert counted["item_count"] == 1
        listed = client.get(
            f"/trips/{shared['trip']['id']}/checklists", headers=support.auth(other)
        ).json()
        assert listed["items"][0]["item_count"] == 1
    assert client.get(base, headers=support.auth(editor)).json()["item_count"] == 2

    # To the owner (even an owner) the item is a 404, exactly as a missing one.
    secret_url = f"{base}/items/{secret['id']}"
    missing_url = f"{base}/items/{uuid.uuid4()}"
    for method, body in (("PATCH", {"done": True}), ("DELETE", None)):
        headers = support.auth(owner, if_match="*")
        hidden = client.request(method, secret_url, headers=headers, json=body)
        missing = client.request(method, missing_url, headers=headers, json=body)
        support.assert_problem(hidden, 404, "checklist_item_not_found")
        assert hidden.json() == missing.json()
    # Entries about the private item are in the log for its creator only.
    activity = f"/trips/{shared['trip']['id']}/activity"
    for other in (owner, viewer):
        entries = client.get(activity, headers=support.auth(other)).json()["items"]
        assert secret["id"] not in {entry["object_id"] for entry in entries}
    mine = client.get(activity, headers=support.auth(editor)).json()["items"]
    assert [e["summary"] for e in mine if e["object_id"] == secret["id"]] == [
        "Surprise gift for Ana"
    ]

    # Its creator can share it; then everyone sees it.
    shared_now = client.patch(
        secret_url, headers=support.auth(editor, if_match="*"), json={"private": False}
    )
    assert shared_now.json()["private"] is False
    assert _texts(client, viewer, base) == ["Shared", "Surprise gift for Ana"]


def test_only_the_creator_makes_an_item_private(
    client: TestClient, session: Session, shared: dict[str, Any]
) -> None:
    item = _add(client, shared["editor"], shared["base"], text="Towels")
    url = f"{shared['base']}/items/{item['id']}"
    owner, editor = support.auth(shared["owner"], if_match="*"), support.auth(shared["editor"])
    support.assert_problem(
        client.patch(url, headers=owner, json={"private": True}), 403, "not_item_creator"
    )
    # Sending the current value is not a change.
    unchanged = client.patch(url, headers=owner, json={"private": False})
    assert unchanged.status_code == 200
    editor["If-Match"] = unchanged.headers["etag"]
    hidden = client.patch(url, headers=editor, json={"private": True})
    assert hidden.json()["private"] is True
    assert _texts(client, shared["owner"], shared["base"]) == []


def test_assignees_must_be_participants_of_the_trip(
    client: TestClient, session: Session, shared: dict[str, Any]
) -> None:
    owner, base = shared["owner"], shared["base"]
    other = factories.create_trip(client, owner, name="Other")
    stranger = factories.add_guest(client, owner, other["id"])
    response = client.post(
        f"{base}/items", headers=support.auth(owner), json={"text": "x", "assignee_id": stranger}
    )
    support.assert_problem(response, 422, "participant_not_in_trip")
    assert _texts(client, owner, base) == []
    item = _add(client, owner, base)
    support.assert_problem(
        client.patch(
            f"{base}/items/{item['id']}",
            headers=support.auth(owner, if_match="*"),
            json={"assignee_id": stranger},
        ),
        422,
        "participant_not_in_trip",
    )
    guest = factories.add_guest(client, owner, shared["trip"]["id"])
    assigned = client.patch(
        f"{base}/items/{item['id']}",
        headers=support.auth(owner, if_match="*"),
        json={"assignee_id": guest},
    )
    assert assigned.json()["assignee_id"] == guest


def test_the_database_refuses_cross_trip_references(
    client: TestClient, session: Session, shared: dict[str, Any]
) -> None:
    owner = shared["owner"]
    trip_id = uuid.UUID(shared["trip"]["id"])
    other = factories.create_trip(client, owner, name="Other")
    stranger = uuid.UUID(factories.add_guest(client, owner, other["id"]))
    foreign_list = _create_list(client, owner, other["id"])
    checklist_id = uuid.UUID(shared["checklist"]["id"])
    for row, constraint in (
        (
            ChecklistItem(
                trip_id=trip_id, checklist_id=checklist_id, text="x", assignee_id=stranger
            ),
            "fk_checklist_items_trip_id_trip_participants",
        ),
        (
            ChecklistItem(trip_id=trip_id, checklist_id=uuid.UUID(foreign_list["id"]), text="x"),
            "fk_checklist_items_trip_id_checklists",
        ),
    ):
        session.add(row)
        with pytest.raises(IntegrityError, match=constraint):
            session.flush()
        session.rollback()


def test_a_list_of_another_trip_is_not_found(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip, other = (
        factories.create_trip(client, owner),
        factories.create_trip(client, owner, name="Other"),
    )
    foreign = _create_list(client, owner, other["id"])
    item = _add(client, owner, f"/trips/{other['id']}/checklists/{foreign['id']}")
    base = f"/trips/{trip['id']}/checklists/{foreign['id']}"
    headers = support.auth(owner, if_match="*")
    for method, url, body in (
        ("GET", base, None),
        ("PATCH", base, {"title": "x"}),
        ("DELETE", base, None),
        ("GET", f"{base}/items", None),
        ("POST", f"{base}/items", {"text": "x"}),
    ):
        response = client.request(method, url, headers=headers, json=body)
        support.assert_problem(response, 404, "checklist_not_found")
    support.assert_problem(
        client.patch(f"{base}/items/{item['id']}", headers=headers, json={"done": True}),
        404,
        "checklist_item_not_found",
    )
    assert session.get(Checklist, (uuid.UUID(other["id"]), uuid.UUID(foreign["id"])))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("", {"kind": "shopping", "title": "x"}),
        ("", {"kind": "todo", "title": "  "}),
        ("", {"kind": "todo"}),
        ("", {"kind": "todo", "title": "x", "id": "not-a-uuid"}),
        ("", {"kind": "todo", "title": "x", "trip_id": str(uuid.uuid4())}),
        ("", {"kind": "todo", "title": "x", "version": 7}),
        ("/items", {"text": "ok", "updated_at": "2027-01-01T00:00:00Z"}),
        ("/items", {"text": ""}),
        ("/items", {"text": "x" * 501}),
        ("/items", {"text": "ok", "done": "maybe"}),
        ("/items", {"text": "ok", "created_by": str(uuid.uuid4())}),
        ("/items", {"text": "bad\x00byte"}),
        ("/items", {"text": "ok", "assignee_id": str(uuid.uuid4())}),
    ],
)
def test_invalid_creates_are_422_and_store_nothing(
    client: TestClient, session: Session, shared: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    url = f"{shared['base']}{path}" if path else f"/trips/{shared['trip']['id']}/checklists"
    support.assert_problem(client.post(url, headers=support.auth(shared["owner"]), json=body), 422)
    trip_id = uuid.UUID(shared["trip"]["id"])
    lists = session.exec(select(func.count()).where(Checklist.trip_id == trip_id)).one()
    items = session.exec(select(func.count()).where(ChecklistItem.trip_id == trip_id)).one()
    assert (lists, items) == (1, 0)


@pytest.mark.parametrize(
    ("target", "patch"),
    [
        ("list", {"title": None}),
        ("list", {"kind": None}),
        ("list", {"created_by": str(uuid.uuid4())}),
        ("item", {"done": None}),
        ("item", {"text": None}),
        ("item", {"private": None}),
        ("item", {"checklist_id": str(uuid.uuid4())}),
    ],
)
def test_invalid_edits_change_nothing(
    client: TestClient, session: Session, shared: dict[str, Any], target: str, patch: dict
) -> None:
    item = _add(client, shared["owner"], shared["base"])
    url = shared["base"] if target == "list" else f"{shared['base']}/items/{item['id']}"
    headers = support.auth(shared["owner"], if_match="*")

    def state() -> tuple[object, list[str]]:
        checklist = client.get(shared["base"], headers=headers).json()
        return checklist, _texts(client, shared["owner"], shared["base"])

    before = state()
    support.assert_problem(client.patch(url, headers=headers, json=patch), 422)
    assert state() == before


def test_item_pages_cover_every_visible_item_once(
    client: TestClient, session: Session, shared: dict[str, Any]
) -> None:
    owner, editor, base = shared["owner"], shared["editor"], shared["base"]
    for n in range(5):
        _add(client, owner, base, text=f"#{n}")
        _add(client, editor, base, text=f"private {n}", private=True)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{base}/items", headers=support.auth(owner), params=params).json()
        seen += [item["text"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"#{n}" for n in range(5)]


def test_a_guest_assigned_to_an_item_is_kept(
    client: TestClient, session: Session, shared: dict[str, Any]
) -> None:
    owner, trip_id = shared["owner"], shared["trip"]["id"]
    guest = factories.add_guest(client, owner, trip_id)
    _add(client, owner, shared["base"], assignee_id=guest)
    support.assert_problem(
        client.delete(
            f"/trips/{trip_id}/guests/{guest}", headers=support.auth(owner, if_match="*")
        ),
        409,
        "participant_has_history",
    )
