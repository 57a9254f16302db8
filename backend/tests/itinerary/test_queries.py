"""No N+1: the number of SQL statements a read makes does not grow with the rows it returns."""

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from app.users.models import User
from tests import factories, support


def _statements_for(client: TestClient, engine: Engine, user: User, url: str) -> list[str]:
    with support.counted_statements(engine) as statements:
        response = client.get(url, headers=support.auth(user), params={"limit": 100})
    assert response.status_code == 200, response.text
    return statements


def test_reads_do_not_grow_with_the_number_of_items(
    client: TestClient, session: Session, engine: Engine
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    people = [
        support.participant_ids(client, owner, trip["id"])[0],
        *(factories.add_guest(client, owner, trip["id"], name=f"Guest {n}") for n in range(3)),
    ]

    def add_items(count: int) -> None:
        for n in range(count):
            factories.add_item(
                client,
                owner,
                trip["id"],
                title=f"#{n}",
                day=f"2027-05-0{1 + n % 7}" if n % 5 else None,
                participant_ids=people[: 1 + n % len(people)],
            )

    urls = {
        "trip": f"/trips/{trip['id']}",
        "items": f"/trips/{trip['id']}/items",
        "days": f"/trips/{trip['id']}/days",
    }
    add_items(3)
    few = {name: _statements_for(client, engine, owner, url) for name, url in urls.items()}
    add_items(27)
    many = {name: _statements_for(client, engine, owner, url) for name, url in urls.items()}

    listed = client.get(urls["items"], headers=support.auth(owner), params={"limit": 100})
    assert len(listed.json()["items"]) == 30
    assert all(item["participant_ids"] for item in listed.json()["items"])
    for name in urls:
        assert len(many[name]) == len(few[name]), (name, many[name])
    # One statement: the caller's access, the items and their participants, as the page's
    # JSON (tests/test_round_trips.py counts the round trips on the app's own engine).
    queries = [s for s in many["items"] if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(queries) == 1, queries
