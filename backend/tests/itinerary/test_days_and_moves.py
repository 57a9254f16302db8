"""Days follow the trip's dates; moves place one item next to another; date changes unschedule."""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.activity.models import Activity
from app.users.models import User
from tests import factories, support


def _move(
    client: TestClient, user: User, trip_id: str, item_id: str, **body: object
) -> dict[str, Any]:
    response = client.post(
        f"/trips/{trip_id}/items/{item_id}/move", headers=support.auth(user), json=body
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _day(client: TestClient, user: User, trip_id: str, day: str | None) -> list[str]:
    params = {"day": day} if day else {"unscheduled": "true"}
    return support.titles(support.list_items(client, user, trip_id, **params))


@pytest.fixture
def planned(client: TestClient, session: Session) -> tuple[User, dict[str, Any], dict[str, str]]:
    """A trip with A, B, C on its first day (in that order)."""
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    ids = {
        title: factories.add_item(client, owner, trip["id"], title=title, day="2027-05-01")["id"]
        for title in "ABC"
    }
    return owner, trip, ids


def test_days_list_the_trip_dates_with_item_counts(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)  # 1 to 7 May
    for day in ("2027-05-01", "2027-05-01", "2027-05-07", None):
        factories.add_item(client, owner, trip["id"], day=day)
    days: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(
            f"/trips/{trip['id']}/days", headers=support.auth(owner), params=params
        ).json()
        days += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [d["day_number"] for d in days] == [1, 2, 3, 4, 5, 6, 7]
    assert days[0] == {"day": "2027-05-01", "day_number": 1, "item_count": 2}
    assert days[6] == {"day": "2027-05-07", "day_number": 7, "item_count": 1}
    assert sum(d["item_count"] for d in days) == 3  # the unscheduled item is on no day
    # A cursor of another trip's day list is refused.
    other = factories.create_trip(client, owner, name="Other")
    foreign = client.get(
        f"/trips/{other['id']}/days", headers=support.auth(owner), params={"limit": 1}
    ).json()["next_cursor"]
    support.assert_problem(
        client.get(
            f"/trips/{trip['id']}/days", headers=support.auth(owner), params={"cursor": foreign}
        ),
        400,
        "invalid_cursor",
    )


def test_new_items_go_to_the_end_of_their_day(planned: Any, client: TestClient) -> None:
    owner, trip, _ = planned
    factories.add_item(client, owner, trip["id"], title="D", day="2027-05-01")
    assert _day(client, owner, trip["id"], "2027-05-01") == ["A", "B", "C", "D"]


def test_moves_within_a_day(planned: Any, client: TestClient, session: Session) -> None:
    owner, trip, ids = planned
    day = "2027-05-01"
    before = {
        item["id"]: item["order_key"] for item in support.list_items(client, owner, trip["id"])
    }

    moved = _move(client, owner, trip["id"], ids["C"], day=day, after_id=ids["A"])
    assert _day(client, owner, trip["id"], day) == ["A", "C", "B"]
    # One row changed: the others kept their keys.
    after = {
        item["id"]: item["order_key"] for item in support.list_items(client, owner, trip["id"])
    }
    assert {k: v for k, v in after.items() if k != ids["C"]} == {
        k: v for k, v in before.items() if k != ids["C"]
    }
    assert moved["order_key"] != before[ids["C"]]

    _move(client, owner, trip["id"], ids["B"], day=day, before_id=ids["A"])
    assert _day(client, owner, trip["id"], day) == ["B", "A", "C"]
    _move(client, owner, trip["id"], ids["B"], day=day)  # no neighbour: the end
    assert _day(client, owner, trip["id"], day) == ["A", "C", "B"]
    _move(client, owner, trip["id"], ids["B"], day=day, after_id=ids["A"], before_id=ids["C"])
    assert _day(client, owner, trip["id"], day) == ["A", "B", "C"]
    # Moving an item to where it already is keeps the order.
    _move(client, owner, trip["id"], ids["B"], day=day, after_id=ids["A"])
    assert _day(client, owner, trip["id"], day) == ["A", "B", "C"]
    moves = session.exec(
        select(Activity).where(
            Activity.trip_id == uuid.UUID(trip["id"]), Activity.action == "itinerary_item.moved"
        )
    ).all()
    assert len(moves) == 5


def test_moves_between_days_and_to_unscheduled(planned: Any, client: TestClient) -> None:
    owner, trip, ids = planned
    other = factories.add_item(client, owner, trip["id"], title="X", day="2027-05-02")
    _move(client, owner, trip["id"], ids["B"], day="2027-05-02", before_id=other["id"])
    assert _day(client, owner, trip["id"], "2027-05-01") == ["A", "C"]
    assert _day(client, owner, trip["id"], "2027-05-02") == ["B", "X"]
    moved = _move(client, owner, trip["id"], ids["A"], day=None)
    assert moved["day"] is None
    _move(client, owner, trip["id"], ids["C"], day=None, before_id=ids["A"])
    assert _day(client, owner, trip["id"], None) == ["C", "A"]
    assert _day(client, owner, trip["id"], "2027-05-01") == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"day": "2027-05-08"}, 422, "day_outside_trip"),
        ({"day": "2027-04-30", "after_id": "A"}, 422, "day_outside_trip"),
        ({"day": "2027-05-02", "after_id": "A"}, 409, "anchor_not_in_day"),
        ({"day": "2027-05-01", "before_id": str(uuid.uuid4())}, 409, "anchor_not_in_day"),
        ({"day": "2027-05-01", "after_id": "B"}, 422, "invalid_anchor"),
        ({"day": "2027-05-01", "after_id": "A", "before_id": "A"}, 422, "invalid_anchor"),
        ({"day": "2027-05-01", "after_id": "C", "before_id": "A"}, 409, "anchors_out_of_order"),
        ({"after_id": "A"}, 422, "validation_error"),  # day must be given (null: unscheduled)
        ({"day": "2027-05-01", "order_key": "V"}, 422, "validation_error"),
    ],
)
def test_refused_moves_change_nothing(
    planned: Any, client: TestClient, body: dict[str, Any], status: int, code: str
) -> None:
    owner, trip, ids = planned
    body = {key: ids.get(value, value) if key != "day" else value for key, value in body.items()}
    before = support.list_items(client, owner, trip["id"])
    response = client.post(
        f"/trips/{trip['id']}/items/{ids['B']}/move", headers=support.auth(owner), json=body
    )
    support.assert_problem(response, status, code)
    assert support.list_items(client, owner, trip["id"]) == before


def test_neighbours_of_another_trip_are_not_in_the_day(
    planned: Any, client: TestClient, session: Session
) -> None:
    owner, trip, ids = planned
    other = factories.create_trip(client, owner, name="Other")
    foreign = factories.add_item(client, owner, other["id"], day="2027-05-01")
    response = client.post(
        f"/trips/{trip['id']}/items/{ids['B']}/move",
        headers=support.auth(owner),
        json={"day": "2027-05-01", "after_id": foreign["id"]},
    )
    support.assert_problem(response, 409, "anchor_not_in_day")
    response = client.post(
        f"/trips/{trip['id']}/items/{foreign['id']}/move",
        headers=support.auth(owner),
        json={"day": "2027-05-01"},
    )
    support.assert_problem(response, 404, "item_not_found")


def test_changing_the_dates_unschedules_items_outside_them(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)  # 1 to 7 May
    waiting = factories.add_item(client, owner, trip["id"], title="Already unscheduled")
    first = factories.add_item(client, owner, trip["id"], title="First day", day="2027-05-01")
    middle = factories.add_item(client, owner, trip["id"], title="Middle", day="2027-05-04")
    last = factories.add_item(client, owner, trip["id"], title="Last day", day="2027-05-07")
    last_too = factories.add_item(client, owner, trip["id"], title="Last day too", day="2027-05-07")

    response = client.patch(
        f"/trips/{trip['id']}",
        headers=support.auth(owner, if_match="*"),
        json={"start_date": "2027-05-03", "end_date": "2027-05-05"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["start_date"], body["end_date"]) == ("2027-05-03", "2027-05-05")
    assert body["unscheduled_item_ids"] == [first["id"], last["id"], last_too["id"]]

    # Nothing was deleted: they follow the items that were already unscheduled.
    unscheduled = support.list_items(client, owner, trip["id"], unscheduled="true")
    assert [i["id"] for i in unscheduled] == [
        waiting["id"],
        first["id"],
        last["id"],
        last_too["id"],
    ]
    assert support.list_items(client, owner, trip["id"], day="2027-05-04")[0]["id"] == middle["id"]
    days = client.get(f"/trips/{trip['id']}/days", headers=support.auth(owner)).json()["items"]
    assert [(d["day"], d["item_count"]) for d in days] == [
        ("2027-05-03", 0),
        ("2027-05-04", 1),
        ("2027-05-05", 0),
    ]
    log = session.exec(
        select(Activity).where(
            Activity.trip_id == uuid.UUID(trip["id"]), Activity.action == "trip.items_unscheduled"
        )
    ).one()
    assert log.summary.startswith("3 item(s)")

    # Other edits, and date changes that leave every item in range, move nothing.
    for patch in ({"name": "Renamed"}, {"end_date": "2027-05-10"}):
        again = client.patch(
            f"/trips/{trip['id']}", headers=support.auth(owner, if_match="*"), json=patch
        )
        assert again.json()["unscheduled_item_ids"] == []
    # An item cannot be created on a day the trip no longer has.
    support.assert_problem(
        client.post(
            f"/trips/{trip['id']}/items",
            headers=support.auth(owner),
            json={"kind": "note", "title": "x", "day": "2027-05-01"},
        ),
        422,
        "day_outside_trip",
    )
