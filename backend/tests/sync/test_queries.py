"""The feed's statements: a fixed number per page, whatever the number and kinds of its rows."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from app.users.models import User
from tests import factories, support


def _selects(client: TestClient, engine: Engine, user: User, path: str, **params: Any) -> list[str]:
    with support.counted_statements(engine) as statements:
        response = client.get(path, headers=support.auth(user), params=params)
    assert response.status_code == 200, response.text
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


def _add_rows(client: TestClient, owner: User, seeded: dict[str, Any], count: int) -> None:
    """`count` more of each kind: guests, items with people, checklist items, expenses."""
    base = f"/trips/{seeded['trip']['id']}"
    headers = support.auth(owner)

    def post(path: str, body: dict[str, Any]) -> Any:
        response = client.post(base + path, headers=headers, json=body)
        assert response.status_code == 201, response.text
        return response.json()

    for n in range(count):
        guest = post("/guests", {"name": f"Guest {n}"})["id"]
        people = [seeded["payer"], guest]
        post("/items", {"kind": "meal", "title": f"#{n}", "participant_ids": people})
        post(
            f"/checklists/{seeded['checklist']['id']}/items",
            {"text": f"#{n}", "private": n % 2 == 1},
        )
        post(
            "/expenses",
            {
                "title": f"#{n}",
                "amount_minor": 1000 + n,
                "currency": "EUR",
                "spent_on": "2027-05-02",
                "payers": [{"participant_id": guest, "amount_minor": 1000 + n}],
                "split_mode": "equal",
                "splits": [{"participant_id": p} for p in people],
            },
        )
        post(
            "/settlements",
            {
                "from_participant_id": guest,
                "to_participant_id": seeded["payer"],
                "amount_minor": 10,
                "currency": "EUR",
                "settled_on": "2027-05-03",
            },
        )


def test_feed_pages_do_not_grow_with_their_rows(
    client: TestClient, session: Session, engine: Engine
) -> None:
    owner = factories.make_user(session)
    seeded = factories.seed_trip_with_everything(client, owner)
    trip_id = seeded["trip"]["id"]
    since = client.get(f"/trips/{trip_id}/snapshot", headers=support.auth(owner)).json()["version"]

    def reads() -> dict[str, list[str]]:
        return {
            "snapshot": _selects(client, engine, owner, f"/trips/{trip_id}/snapshot"),
            "from scratch": _selects(client, engine, owner, f"/trips/{trip_id}/changes", since=0),
            "from a version": _selects(
                client, engine, owner, f"/trips/{trip_id}/changes", since=since
            ),
        }

    _add_rows(client, owner, seeded, 1)
    few = reads()
    _add_rows(client, owner, seeded, 12)
    many = reads()

    page = client.get(
        f"/trips/{trip_id}/changes", headers=support.auth(owner), params={"since": since}
    ).json()
    assert len(page["changes"]) > 60
    for name in few:
        assert len(many[name]) == len(few[name]), (name, many[name])
    # The caller with their membership and trip (one query), the trip's head, the cursor's
    # checks (membership again, then the page's last version; from scratch, only the
    # latter), and the page itself.
    assert [len(many[name]) for name in many] == [3, 4, 5], many
