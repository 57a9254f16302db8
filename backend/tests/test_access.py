"""Access rules for every route, built from the app itself: a new route without a rule fails.

For each route: anonymous callers get 401 (unless the route is public); on routes under a
trip, a user who is not a member gets 404 and nothing changes; viewers get 403 on writes.
"""

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.main import app
from app.trips.models import Role, TripMember
from tests import factories, support


@dataclass(frozen=True)
class Rule:
    public: bool = False
    in_trip: bool = False
    viewer_forbidden: bool = False


RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/health/live"): Rule(public=True),
    ("GET", "/health/ready"): Rule(public=True),
    ("POST", "/auth/register"): Rule(public=True),
    ("POST", "/auth/login"): Rule(public=True),
    ("POST", "/auth/verify-email"): Rule(public=True),
    # The refresh token is the credential (tests/users/test_sessions.py).
    ("POST", "/auth/refresh"): Rule(public=True),
    # The same answer for every address; the mailed token is the credential
    # (tests/users/test_password_reset.py).
    ("POST", "/auth/password-reset"): Rule(public=True),
    ("POST", "/auth/password-reset/confirm"): Rule(public=True),
    ("POST", "/auth/logout"): Rule(),
    # Only the caller's own sessions; another user's is the same 404 as a missing one
    # (tests/users/test_sessions.py).
    ("GET", "/users/me/sessions"): Rule(),
    ("DELETE", "/users/me/sessions/{session_id}"): Rule(),
    ("POST", "/users/me/verification-email"): Rule(),
    ("GET", "/users/me"): Rule(),
    ("PATCH", "/users/me"): Rule(),
    ("PUT", "/users/me/password"): Rule(),
    # The caller's own account only: tests/users/test_account_deletion.py, test_export.py.
    ("DELETE", "/users/me"): Rule(),
    ("GET", "/users/me/export"): Rule(),
    # The caller's own second factor only (tests/users/test_two_factor.py).
    ("GET", "/users/me/2fa"): Rule(),
    ("POST", "/users/me/2fa"): Rule(),
    ("POST", "/users/me/2fa/confirm"): Rule(),
    ("DELETE", "/users/me/2fa"): Rule(),
    # The caller's own calendar feed token (tests/itinerary/test_calendar.py).
    ("POST", "/users/me/calendar-token"): Rule(),
    ("DELETE", "/users/me/calendar-token"): Rule(),
    # The feed token in the address is the credential (calendar apps send no bearer header):
    # it serves only its user's trips, the same 404 otherwise (tests/itinerary/test_calendar.py).
    ("GET", "/trips/{trip_id}/calendar.ics"): Rule(public=True),
    # The mfa_token of a login's first step is the credential (tests/users/test_two_factor.py).
    ("POST", "/auth/login/2fa"): Rule(public=True),
    ("GET", "/trips"): Rule(),
    ("POST", "/trips"): Rule(),
    ("GET", "/trips/{trip_id}"): Rule(in_trip=True),
    ("PATCH", "/trips/{trip_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("DELETE", "/trips/{trip_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("GET", "/trips/{trip_id}/members"): Rule(in_trip=True),
    ("PATCH", "/trips/{trip_id}/members/{user_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("DELETE", "/trips/{trip_id}/members/{user_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("POST", "/trips/{trip_id}/transfer-ownership"): Rule(in_trip=True, viewer_forbidden=True),
    ("GET", "/trips/{trip_id}/participants"): Rule(in_trip=True),
    ("POST", "/trips/{trip_id}/guests"): Rule(in_trip=True, viewer_forbidden=True),
    ("PATCH", "/trips/{trip_id}/guests/{participant_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("DELETE", "/trips/{trip_id}/guests/{participant_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("POST", "/trips/{trip_id}/guests/{participant_id}/claim"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("GET", "/trips/{trip_id}/invitations"): Rule(in_trip=True, viewer_forbidden=True),
    ("POST", "/trips/{trip_id}/invitations"): Rule(in_trip=True, viewer_forbidden=True),
    ("DELETE", "/trips/{trip_id}/invitations/{invitation_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    # Editors and owners; an editor sees and revokes only their own (tests/invite_links).
    ("GET", "/trips/{trip_id}/invite-links"): Rule(in_trip=True, viewer_forbidden=True),
    ("POST", "/trips/{trip_id}/invite-links"): Rule(in_trip=True, viewer_forbidden=True),
    ("DELETE", "/trips/{trip_id}/invite-links/{link_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    # Owners only: editors get 403 too (tests/share_links).
    ("GET", "/trips/{trip_id}/share-links"): Rule(in_trip=True, viewer_forbidden=True),
    ("POST", "/trips/{trip_id}/share-links"): Rule(in_trip=True, viewer_forbidden=True),
    ("DELETE", "/trips/{trip_id}/share-links/{link_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("GET", "/trips/{trip_id}/activity"): Rule(in_trip=True),
    ("GET", "/trips/{trip_id}/snapshot"): Rule(in_trip=True),
    ("GET", "/trips/{trip_id}/changes"): Rule(in_trip=True),
    # Amounts hidden from a viewer are refused (csv) or masked (json): tests/exports.
    ("GET", "/trips/{trip_id}/export"): Rule(in_trip=True),
    ("GET", "/sync"): Rule(),
    ("POST", "/sync/stream-tokens"): Rule(),
    # Every event is about the caller's own trips: tests/sync/test_events.py.
    ("GET", "/sync/events"): Rule(),
    # Each write in a batch is checked on its own (a viewer's writes come back 403 inside).
    ("POST", "/trips/{trip_id}/mutations"): Rule(in_trip=True),
    ("GET", "/trips/{trip_id}/days"): Rule(in_trip=True),
    ("GET", "/trips/{trip_id}/items"): Rule(in_trip=True),
    ("POST", "/trips/{trip_id}/items"): Rule(in_trip=True, viewer_forbidden=True),
    ("GET", "/trips/{trip_id}/items/{item_id}"): Rule(in_trip=True),
    ("PATCH", "/trips/{trip_id}/items/{item_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("DELETE", "/trips/{trip_id}/items/{item_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("POST", "/trips/{trip_id}/items/{item_id}/move"): Rule(in_trip=True, viewer_forbidden=True),
    ("GET", "/trips/{trip_id}/checklists"): Rule(in_trip=True),
    ("POST", "/trips/{trip_id}/checklists"): Rule(in_trip=True, viewer_forbidden=True),
    ("GET", "/trips/{trip_id}/checklists/{checklist_id}"): Rule(in_trip=True),
    ("PATCH", "/trips/{trip_id}/checklists/{checklist_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("DELETE", "/trips/{trip_id}/checklists/{checklist_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("GET", "/trips/{trip_id}/checklists/{checklist_id}/items"): Rule(in_trip=True),
    ("POST", "/trips/{trip_id}/checklists/{checklist_id}/items"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("PATCH", "/trips/{trip_id}/checklists/{checklist_id}/items/{item_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("DELETE", "/trips/{trip_id}/checklists/{checklist_id}/items/{item_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("GET", "/trips/{trip_id}/expenses"): Rule(in_trip=True),
    ("POST", "/trips/{trip_id}/expenses"): Rule(in_trip=True, viewer_forbidden=True),
    ("GET", "/trips/{trip_id}/expenses/{expense_id}"): Rule(in_trip=True),
    ("PATCH", "/trips/{trip_id}/expenses/{expense_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("DELETE", "/trips/{trip_id}/expenses/{expense_id}"): Rule(in_trip=True, viewer_forbidden=True),
    ("GET", "/trips/{trip_id}/expenses/{expense_id}/revisions"): Rule(in_trip=True),
    ("GET", "/trips/{trip_id}/settlements"): Rule(in_trip=True),
    ("POST", "/trips/{trip_id}/settlements"): Rule(in_trip=True, viewer_forbidden=True),
    ("DELETE", "/trips/{trip_id}/settlements/{settlement_id}"): Rule(
        in_trip=True, viewer_forbidden=True
    ),
    ("GET", "/trips/{trip_id}/balances"): Rule(in_trip=True),
    # A viewer of a trip hiding amounts gets 403 amounts_hidden (tests/expenses/test_summary.py).
    ("GET", "/trips/{trip_id}/summary"): Rule(in_trip=True),
    # Not under a trip: only the invitee can see or answer (tests/invitations).
    ("GET", "/invitations"): Rule(),
    ("POST", "/invitations/{invitation_id}/accept"): Rule(),
    ("POST", "/invitations/{invitation_id}/decline"): Rule(),
    # Whoever holds the token, signed in; the token alone names the trip (tests/invite_links).
    ("POST", "/join/{token}"): Rule(),
    # No account: the token alone names the trip and its scope (tests/share_links).
    ("GET", "/shared/{token}"): Rule(public=True),
}

# Every operation the app serves, read from its own OpenAPI description.
ROUTES = sorted(
    (method.upper(), path)
    for path, operations in app.openapi()["paths"].items()
    for method in operations
)
_SOMEONE = str(uuid.uuid4())
# Bodies valid enough that only the access rule can refuse the request.
BODIES = {
    ("POST", "/trips/{trip_id}/mutations"): {
        "mutations": [
            {
                "id": "1",
                "method": "DELETE",
                "path": "/trips/x/items/y",
                "headers": {"Idempotency-Key": "access-test"},
            }
        ]
    },
    ("PATCH", "/trips/{trip_id}"): {"name": "Changed"},
    ("PATCH", "/trips/{trip_id}/members/{user_id}"): {"role": "editor"},
    ("POST", "/trips/{trip_id}/transfer-ownership"): {"user_id": str(uuid.uuid4())},
    ("POST", "/trips/{trip_id}/guests"): {"name": "Guest"},
    ("PATCH", "/trips/{trip_id}/guests/{participant_id}"): {"name": "Guest"},
    ("POST", "/trips/{trip_id}/invitations"): {"email": "someone@example.com", "role": "viewer"},
    ("POST", "/trips/{trip_id}/invite-links"): {"role": "viewer"},
    ("POST", "/trips/{trip_id}/share-links"): {"scope": "itinerary"},
    ("POST", "/trips/{trip_id}/items"): {"kind": "note", "title": "Item"},
    ("PATCH", "/trips/{trip_id}/items/{item_id}"): {"title": "Item"},
    ("POST", "/trips/{trip_id}/items/{item_id}/move"): {"day": None},
    ("POST", "/trips/{trip_id}/checklists"): {"kind": "packing", "title": "List"},
    ("PATCH", "/trips/{trip_id}/checklists/{checklist_id}"): {"title": "List"},
    ("POST", "/trips/{trip_id}/checklists/{checklist_id}/items"): {"text": "Item"},
    ("PATCH", "/trips/{trip_id}/checklists/{checklist_id}/items/{item_id}"): {"done": True},
    ("POST", "/trips/{trip_id}/expenses"): {
        "title": "Dinner",
        "amount_minor": 1000,
        "currency": "EUR",
        "spent_on": "2027-01-01",
        "payers": [{"participant_id": _SOMEONE, "amount_minor": 1000}],
        "split_mode": "equal",
        "splits": [{"participant_id": _SOMEONE}],
    },
    ("PATCH", "/trips/{trip_id}/expenses/{expense_id}"): {"title": "Lunch"},
    ("POST", "/trips/{trip_id}/settlements"): {
        "from_participant_id": _SOMEONE,
        "to_participant_id": str(uuid.uuid4()),
        "amount_minor": 1000,
        "currency": "EUR",
        "settled_on": "2027-01-01",
    },
}


def test_every_route_has_an_access_rule() -> None:
    assert set(ROUTES) == set(RULES), "add the new route to RULES (and to its tests)"


def _call(client: TestClient, method: str, path: str, headers: dict[str, str], **ids: str):  # type: ignore[no-untyped-def]
    """Call the route with the given path ids; any other id is a fresh random UUID."""
    url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)
    body = BODIES.get((method, path))
    if method != "GET":  # any version: a write's precondition holds, only the access rule refuses
        headers = {**headers, "If-Match": "*"}
    return client.request(method, url, headers=headers, json=body)


@pytest.mark.parametrize(
    ("method", "path"), [r for r in ROUTES if r in RULES and not RULES[r].public]
)
def test_anonymous_gets_401(client: TestClient, method: str, path: str) -> None:
    response = _call(client, method, path, headers={})
    support.assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.fixture
def trip(client: TestClient, session: Session) -> dict[str, Any]:
    owner = factories.make_user(session)
    viewer = factories.make_user(session)
    response = client.post(
        "/trips",
        headers=support.auth(owner),
        json={"name": "Secret", "start_date": "2027-01-01", "end_date": "2027-01-02"},
    )
    trip_id = response.json()["id"]
    session.add(TripMember(trip_id=uuid.UUID(trip_id), user_id=viewer.id, role=Role.VIEWER))
    session.commit()
    return {"id": trip_id, "owner": owner, "viewer": viewer}


def _snapshot(client: TestClient, trip: dict[str, Any]) -> tuple[object, object, object]:
    headers = support.auth(trip["owner"])  # type: ignore[arg-type]
    return (
        client.get(f"/trips/{trip['id']}", headers=headers).json(),
        client.get(f"/trips/{trip['id']}/members", headers=headers).json(),
        # Every change records an entry here, so an unchanged log means nothing was written.
        client.get(f"/trips/{trip['id']}/activity", headers=headers).json(),
    )


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r in RULES and RULES[r].in_trip])
def test_non_member_gets_404_and_changes_nothing(
    client: TestClient, session: Session, trip: dict[str, Any], method: str, path: str
) -> None:
    outsider = factories.make_user(session)
    before = _snapshot(client, trip)
    owner_id = str(trip["owner"].id)  # type: ignore[attr-defined]
    response = _call(
        client, method, path, support.auth(outsider), trip_id=str(trip["id"]), user_id=owner_id
    )
    support.assert_problem(response, 404, "trip_not_found")
    assert _snapshot(client, trip) == before


@pytest.mark.parametrize(
    ("method", "path"), [r for r in ROUTES if r in RULES and RULES[r].viewer_forbidden]
)
def test_viewer_gets_403_on_writes_and_changes_nothing(
    client: TestClient, trip: dict[str, Any], method: str, path: str
) -> None:
    before = _snapshot(client, trip)
    owner_id = str(trip["owner"].id)  # type: ignore[attr-defined]
    response = _call(
        client,
        method,
        path,
        support.auth(trip["viewer"]),
        trip_id=str(trip["id"]),
        user_id=owner_id,  # type: ignore[arg-type]
    )
    support.assert_problem(response, 403)
    assert _snapshot(client, trip) == before


def test_the_same_404_for_missing_and_foreign_trips(
    client: TestClient, session: Session, trip: dict[str, Any]
) -> None:
    outsider = factories.make_user(session)
    foreign = client.get(f"/trips/{trip['id']}", headers=support.auth(outsider)).json()
    missing = client.get(f"/trips/{uuid.uuid4()}", headers=support.auth(outsider)).json()
    assert foreign == missing
