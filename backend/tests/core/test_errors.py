"""Every error a client can cause is problem+json with a stable code, never a stack trace."""

import logging
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text
from sqlmodel import Session

from app.core.deps import SessionDep
from app.main import create_app
from tests import factories, support


def test_unknown_route_is_a_problem(client: TestClient) -> None:
    support.assert_problem(client.get("/nowhere"), 404, "not_found")


def test_wrong_method_is_a_problem(client: TestClient) -> None:
    support.assert_problem(client.put("/health/live"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"name": "x",', "Expecting property name enclosed in double quotes"),
        (b'{"name": "\xff"}', "the body is not valid UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "arrays and objects are nested too deeply"),
        (b'{"name": ' + b"7" * 5000 + b"}", "a number has too many digits"),
    ],
    ids=["truncated", "not UTF-8", "nested too deep", "too many digits"],
)
def test_an_unreadable_body_is_a_422_json_invalid_problem(
    client: TestClient, session: Session, body: bytes, reason: str
) -> None:
    user = factories.make_user(session)
    response = client.post(
        "/trips", headers={**support.auth(user), "Content-Type": "application/json"}, content=body
    )
    problem = support.assert_problem(response, 422, "json_invalid")
    assert problem["detail"] == f"The request body is not valid JSON: {reason}."
    assert problem["errors"][0]["type"] == "json_invalid"


def test_wrong_types_list_each_bad_field(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
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
    assert set(support.resolved(spec, responses["404"])["content"]) == {"application/problem+json"}


def test_security_headers_and_cors_policy(client: TestClient) -> None:
    response = client.get("/health/live")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert "strict-transport-security" not in response.headers  # production only
    # Errors carry them too, and never a stack trace or SQL.
    missing = client.get("/trips/not-a-uuid", headers={"Authorization": "Bearer x"})
    assert missing.headers["x-content-type-options"] == "nosniff"
    assert "Traceback" not in missing.text
    assert "SELECT" not in missing.text
    # CORS: allowed origins from settings are answered, others are not.
    allowed = client.options(
        "/trips",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    refused = client.options(
        "/trips",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in refused.headers


def test_info_logs_carry_no_sql_or_stack_traces(
    client: TestClient, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    user = factories.make_user(session)
    with caplog.at_level(logging.INFO):
        client.post(
            "/auth/register", json={"email": user.email, "password": "x" * 10, "full_name": "D"}
        )
        client.get("/trips/00000000-0000-0000-0000-000000000000", headers=support.auth(user))
        client.post("/trips", headers=support.auth(user), json={"name": 5})
    text = "\n".join(
        record.getMessage() + (str(record.exc_info) if record.exc_info else "")
        for record in caplog.records
        if record.levelno <= logging.INFO
    )
    for leak in ("Traceback", "SELECT", "INSERT", "psycopg2", user.email):
        assert leak not in text


def test_method_not_allowed_lists_every_method_of_the_path(client: TestClient) -> None:
    # /trips is served by two routes (GET, POST); the first one alone would say "POST".
    response = client.put("/trips")
    support.assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"


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
