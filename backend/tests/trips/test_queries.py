"""The list of my trips reads in one statement: the trips, with the caller's session checked."""

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from tests import factories, support


def _selects(client: TestClient, engine: Engine, token_headers: dict[str, str]) -> list[str]:
    with support.counted_statements(engine) as statements:
        response = client.get("/trips", headers=token_headers)
    assert response.status_code == 200, response.text
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


def test_the_list_of_my_trips_authenticates_in_its_own_statement(
    client: TestClient, session: Session, engine: Engine
) -> None:
    owner = factories.make_user(session)
    for n in range(3):
        factories.create_trip(client, owner, name=f"Trip {n}")
    queries = _selects(client, engine, support.auth(owner))
    assert len(queries) == 1, queries  # the trips, with the caller's session checked
    # With no trips, one more statement tells "no trips" from "session ended" (401).
    nobody = factories.make_user(session)
    assert len(_selects(client, engine, support.auth(nobody))) == 2


def test_an_ended_session_lists_nothing(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    factories.create_trip(client, owner)
    headers = support.auth(owner)
    assert client.post("/auth/logout", headers=headers).status_code == 204
    support.assert_problem(client.get("/trips", headers=headers), 401, "invalid_token")
