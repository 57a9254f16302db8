"""Every error a client can cause is problem+json with a stable code, never a stack trace."""

import time

from fastapi.testclient import TestClient
from sqlalchemy import Connection, text
from sqlmodel import Session

from app.core.deps import SessionDep
from app.main import create_app
from tests import support


def test_unknown_route_is_a_problem(client: TestClient) -> None:
    support.assert_problem(client.get("/nowhere"), 404, "not_found")


def test_wrong_method_is_a_problem(client: TestClient) -> None:
    support.assert_problem(client.put("/health/live"), 405, "method_not_allowed")


def test_invalid_json_is_a_422_problem(client: TestClient, session: Session) -> None:
    user = support.make_user(session)
    response = client.post(
        "/trips",
        headers={**support.auth(user), "Content-Type": "application/json"},
        content=b'{"name": "x",',
    )
    body = support.assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["type"] == "json_invalid"


def test_wrong_types_list_each_bad_field(client: TestClient, session: Session) -> None:
    user = support.make_user(session)
    response = client.post(
        "/trips",
        headers=support.auth(user),
        json={"name": 5, "start_date": "soon", "end_date": [], "timezone": None},
    )
    body = support.assert_problem(response, 422, "validation_error")
    fields = {tuple(error["loc"]) for error in body["errors"]}
    assert {("body", "name"), ("body", "start_date"), ("body", "end_date")} <= fields


def test_the_openapi_document_declares_problem_responses(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/trips/{trip_id}"]["get"]["responses"]
    assert "application/problem+json" in responses["404"]["content"]


def test_a_statement_cut_off_by_the_statement_timeout_is_a_504_problem(
    connection: Connection,
) -> None:
    app = create_app()

    @app.get("/_test/runaway")
    def runaway(session: SessionDep) -> None:
        session.exec(text("SET LOCAL statement_timeout = 50"))  # type: ignore[call-overload]
        session.exec(text("SELECT pg_sleep(2)"))  # type: ignore[call-overload]

    client = TestClient(app, raise_server_exceptions=False)
    started = time.monotonic()
    response = client.get("/_test/runaway")
    assert time.monotonic() - started < 1.5
    support.assert_problem(response, 504, "database_timeout")
    assert response.headers["retry-after"] == "1"
