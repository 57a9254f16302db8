"""Every error a client can cause is problem+json with a stable code, never a stack trace."""

from fastapi.testclient import TestClient
from sqlmodel import Session

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


def test_method_not_allowed_lists_every_method_of_the_path(client: TestClient) -> None:
    # /trips is served by two routes (GET, POST); the first one alone would say "POST".
    response = client.put("/trips")
    support.assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
