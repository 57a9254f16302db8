"""Settlements, balances and the settle-up plan over HTTP, and the rules around them."""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from app.expenses.models import Settlement
from app.participants.service import _referencing_columns, has_history
from app.trips.models import Trip
from tests import factories, support
from tests.expenses.support import Ledger


def post(client: TestClient, ledger: Ledger, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(ledger.url(path), headers=support.auth(ledger.owner), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def settlement(ledger: Ledger, **changes: Any) -> dict[str, Any]:
    body = {
        "from_participant_id": ledger.editor_pid,
        "to_participant_id": ledger.owner_pid,
        "amount_minor": 3000,
        "currency": "EUR",
        "settled_on": "2027-05-06",
    }
    return {**body, **changes}


def balances(client: TestClient, ledger: Ledger) -> dict[str, Any]:
    response = client.get(ledger.url("/balances"), headers=support.auth(ledger.owner))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def net(report: dict[str, Any]) -> dict[str, int]:
    return {b["participant_id"]: b["balance_minor"] for b in report["balances"]}


def test_balances_of_an_empty_trip(client: TestClient, ledger: Ledger) -> None:
    report = balances(client, ledger)
    assert report["currency"] == "EUR"
    assert [b["name"] for b in report["balances"]] == [
        "Olivia Owner",
        "Eddie Editor",
        "Vera Viewer",
        "Gus Guest",
    ]
    assert set(net(report).values()) == {0}
    assert report["settle_up"] == []


def test_balances_and_settle_up_plan(client: TestClient, ledger: Ledger) -> None:
    post(client, ledger, "/expenses", ledger.expense())  # owner paid 90.00, split in 3
    # The guest paid 100 USD at 0.9 for a taxi only the editor used (a custom split).
    post(
        client,
        ledger,
        "/expenses",
        ledger.expense(
            title="Taxi",
            amount_minor=10000,
            currency="USD",
            exchange_rate="0.9",
            payers=[{"participant_id": ledger.guest_pid, "amount_minor": 10000}],
            split_mode="exact",
            splits=[{"participant_id": ledger.editor_pid, "amount_minor": 10000}],
        ),
    )
    report = balances(client, ledger)
    assert net(report) == {
        ledger.owner_pid: 6000,
        ledger.editor_pid: -3000 - 9000,
        ledger.viewer_pid: 0,
        ledger.guest_pid: 9000 - 3000,
    }
    owner = next(b for b in report["balances"] if b["participant_id"] == ledger.owner_pid)
    assert (owner["paid_minor"], owner["owed_minor"]) == (9000, 3000)
    assert sum(net(report).values()) == 0
    # The editor owes both others: two transfers, from the balances (custom split included).
    assert report["settle_up"] == [
        {
            "from_participant_id": ledger.editor_pid,
            "to_participant_id": min(ledger.owner_pid, ledger.guest_pid, key=uuid.UUID),
            "amount_minor": 6000,
        },
        {
            "from_participant_id": ledger.editor_pid,
            "to_participant_id": max(ledger.owner_pid, ledger.guest_pid, key=uuid.UUID),
            "amount_minor": 6000,
        },
    ]

    # Paying the plan back settles everyone.
    for transfer in report["settle_up"]:
        post(
            client,
            ledger,
            "/settlements",
            settlement(
                ledger,
                from_participant_id=transfer["from_participant_id"],
                to_participant_id=transfer["to_participant_id"],
                amount_minor=transfer["amount_minor"],
            ),
        )
    settled = balances(client, ledger)
    assert set(net(settled).values()) == {0}
    assert settled["settle_up"] == []
    editor = next(b for b in settled["balances"] if b["participant_id"] == ledger.editor_pid)
    assert editor["settlements_paid_minor"] == 12000


def test_settlements_in_another_currency_and_their_deletion(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    created = post(
        client,
        ledger,
        "/settlements",
        settlement(ledger, amount_minor=5000, currency="GBP", exchange_rate=1.17, note="Cash"),
    )
    assert (created["exchange_rate"], created["base_amount_minor"]) == ("1.17", 5850)
    assert net(balances(client, ledger))[ledger.editor_pid] == 5850
    listed = client.get(ledger.url("/settlements"), headers=support.auth(ledger.viewer)).json()
    assert listed == {"items": [created], "next_cursor": None}

    url = ledger.url(f"/settlements/{created['id']}")
    assert client.delete(url, headers=support.auth(ledger.editor, if_match="*")).status_code == 204
    support.assert_problem(
        client.delete(url, headers=support.auth(ledger.editor, if_match="*")),
        404,
        "settlement_not_found",
    )
    assert set(net(balances(client, ledger)).values()) == {0}
    assert (
        client.get(ledger.url("/settlements"), headers=support.auth(ledger.owner)).json()["items"]
        == []
    )
    # Soft-deleted: the record stays.
    assert session.get_one(Settlement, (uuid.UUID(ledger.trip_id), uuid.UUID(created["id"])))


def test_settlement_pages(client: TestClient, ledger: Ledger) -> None:
    days = ["2027-05-02", "2027-05-04", "2027-05-03", "2027-05-04", "2027-05-01"]
    created = {
        post(client, ledger, "/settlements", settlement(ledger, settled_on=d))["id"] for d in days
    }
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(
            ledger.url("/settlements"), headers=support.auth(ledger.owner), params=params
        ).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(s["id"] for s in seen) == sorted(created)
    assert [s["settled_on"] for s in seen] == sorted(days, reverse=True)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"to_participant_id": "EDITOR"}, "validation_error"),  # to oneself
        ({"to_participant_id": str(uuid.uuid4())}, "unknown_participant"),
        ({"amount_minor": 0}, "validation_error"),
        ({"amount_minor": -5}, "validation_error"),
        ({"amount_minor": 12.5}, "validation_error"),
        ({"currency": "USD"}, "exchange_rate_unavailable"),
        ({"exchange_rate": "2"}, "exchange_rate_not_applicable"),
        ({"currency": "usd", "exchange_rate": "2"}, "validation_error"),
        ({"id": "not-a-uuid"}, "validation_error"),
        ({"version": 1}, "validation_error"),
        ({"created_at": "2027-05-01T10:00:00Z"}, "validation_error"),
    ],
)
def test_invalid_settlements_are_422_and_store_nothing(
    client: TestClient, ledger: Ledger, session: Session, changes: dict[str, Any], code: str
) -> None:
    if changes.get("to_participant_id") == "EDITOR":
        changes = {"to_participant_id": ledger.editor_pid}
    response = client.post(
        ledger.url("/settlements"),
        headers=support.auth(ledger.owner),
        json=settlement(ledger, **changes),
    )
    support.assert_problem(response, 422, code)
    stored = session.exec(
        select(func.count())
        .select_from(Settlement)
        .where(Settlement.trip_id == uuid.UUID(ledger.trip_id))
    ).one()
    assert stored == 0


def test_a_settlement_cannot_involve_another_trip(client: TestClient, ledger: Ledger) -> None:
    other = factories.create_trip(client, ledger.owner, name="Elsewhere")
    stranger = support.participants(client, ledger.owner, other["id"])[0]["id"]
    response = client.post(
        ledger.url("/settlements"),
        headers=support.auth(ledger.owner),
        json=settlement(ledger, to_participant_id=stranger),
    )
    support.assert_problem(response, 422, "unknown_participant")


def test_viewers_see_no_amounts_when_the_trip_hides_them(
    client: TestClient, ledger: Ledger
) -> None:
    expense = post(
        client,
        ledger,
        "/expenses",
        ledger.expense(
            split_mode="exact", splits=[{"participant_id": ledger.editor_pid, "amount_minor": 9000}]
        ),
    )
    post(client, ledger, "/settlements", settlement(ledger))
    viewer = support.auth(ledger.viewer)
    expense_url = ledger.url(f"/expenses/{expense['id']}")

    # Not hidden by default: viewers read everything.
    assert client.get(expense_url, headers=viewer).json()["amount_minor"] == 9000
    assert client.get(ledger.url("/balances"), headers=viewer).status_code == 200

    hide = client.patch(
        ledger.url(),
        headers=support.auth(ledger.owner, if_match="*"),
        json={"hide_amounts_from_viewers": True},
    )
    assert hide.status_code == 200, hide.text

    seen = client.get(expense_url, headers=viewer).json()
    assert seen["title"] == "Dinner"
    assert seen["amount_minor"] is None
    assert seen["base_amount_minor"] is None
    assert {(p["amount_minor"], p["base_amount_minor"]) for p in seen["payers"]} == {(None, None)}
    assert {(s["amount_minor"], s["base_amount_minor"]) for s in seen["splits"]} == {(None, None)}
    assert seen["payers"][0]["participant_id"] == ledger.owner_pid
    listed = client.get(ledger.url("/expenses"), headers=viewer).json()["items"]
    assert listed == [seen]
    revisions = client.get(f"{expense_url}/revisions", headers=viewer).json()["items"]
    assert revisions[0]["amount_minor"] is None
    assert revisions[0]["splits"][0]["amount_minor"] is None
    settlements = client.get(ledger.url("/settlements"), headers=viewer).json()["items"]
    assert (settlements[0]["amount_minor"], settlements[0]["base_amount_minor"]) == (None, None)
    support.assert_problem(
        client.get(ledger.url("/balances"), headers=viewer), 403, "amounts_hidden"
    )
    # The activity log never carried amounts.
    activity = client.get(ledger.url("/activity"), headers=viewer).json()["items"]
    assert activity
    assert not [a for a in activity if "9000" in a["summary"] or "3000" in a["summary"]]

    # Editors and owners still see everything.
    assert (
        client.get(expense_url, headers=support.auth(ledger.editor)).json()["amount_minor"] == 9000
    )
    assert (
        client.get(ledger.url("/balances"), headers=support.auth(ledger.editor)).status_code == 200
    )


def test_base_currency_is_frozen_once_the_ledger_has_entries(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    headers = support.auth(ledger.owner, if_match="*")
    changed = client.patch(ledger.url(), headers=headers, json={"base_currency": "USD"})
    assert changed.json()["base_currency"] == "USD"
    client.patch(ledger.url(), headers=headers, json={"base_currency": "EUR"})

    expense = post(client, ledger, "/expenses", ledger.expense())
    refused = client.patch(ledger.url(), headers=headers, json={"base_currency": "USD"})
    support.assert_problem(refused, 409, "base_currency_locked")
    trip = session.get_one(Trip, uuid.UUID(ledger.trip_id))
    session.refresh(trip)
    assert trip.base_currency == "EUR"
    # Other changes, and restating the same currency, are fine.
    same = client.patch(ledger.url(), headers=headers, json={"base_currency": "EUR", "name": "X"})
    assert same.status_code == 200, same.text

    # Deleted entries keep their base amounts, so they keep the currency frozen too.
    client.delete(ledger.url(f"/expenses/{expense['id']}"), headers=headers)
    support.assert_problem(
        client.patch(ledger.url(), headers=headers, json={"base_currency": "USD"}),
        409,
        "base_currency_locked",
    )


def test_a_settlement_alone_freezes_the_base_currency(client: TestClient, ledger: Ledger) -> None:
    post(client, ledger, "/settlements", settlement(ledger))
    response = client.patch(
        ledger.url(),
        headers=support.auth(ledger.owner, if_match="*"),
        json={"base_currency": "JPY"},
    )
    support.assert_problem(response, 409, "base_currency_locked")


def test_a_guests_expenses_follow_the_guest_when_a_member_claims_it(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    expense = post(
        client,
        ledger,
        "/expenses",
        ledger.expense(payers=[{"participant_id": ledger.guest_pid, "amount_minor": 9000}]),
    )
    post(client, ledger, "/settlements", settlement(ledger, to_participant_id=ledger.guest_pid))
    assert has_history(
        session=session,
        trip_id=uuid.UUID(ledger.trip_id),
        participant_id=uuid.UUID(ledger.guest_pid),
    )
    support.assert_problem(
        client.delete(
            ledger.url(f"/guests/{ledger.guest_pid}"),
            headers=support.auth(ledger.owner, if_match="*"),
        ),
        409,
        "participant_has_history",
    )
    before = net(balances(client, ledger))

    newcomer = factories.make_user(session, full_name="Gustavo Newcomer")
    factories.join(client, ledger.owner, ledger.trip_id, newcomer, "editor")
    claimed = client.post(
        ledger.url(f"/guests/{ledger.guest_pid}/claim"), headers=support.auth(newcomer)
    )
    assert claimed.status_code == 200, claimed.text

    # Same participant, now the newcomer's: the expense, the settlement and the balance follow.
    mine = next(
        p
        for p in support.participants(client, newcomer, ledger.trip_id)
        if p["user_id"] == str(newcomer.id)
    )
    assert mine["id"] == ledger.guest_pid
    fetched = client.get(
        ledger.url(f"/expenses/{expense['id']}"), headers=support.auth(newcomer)
    ).json()
    assert fetched["payers"][0]["participant_id"] == ledger.guest_pid
    report = balances(client, ledger)
    assert net(report) == before
    assert (
        next(b for b in report["balances"] if b["participant_id"] == ledger.guest_pid)["name"]
        == "Gustavo Newcomer"
    )


def test_a_member_with_ledger_history_cannot_absorb_a_guest(
    client: TestClient, ledger: Ledger
) -> None:
    post(
        client,
        ledger,
        "/expenses",
        ledger.expense(payers=[{"participant_id": ledger.editor_pid, "amount_minor": 9000}]),
    )
    response = client.post(
        ledger.url(f"/guests/{ledger.guest_pid}/claim"), headers=support.auth(ledger.editor)
    )
    support.assert_problem(response, 409, "participant_has_history")


def test_viewer_is_a_participant_who_can_owe(client: TestClient, ledger: Ledger) -> None:
    post(
        client, ledger, "/expenses", ledger.expense(splits=[{"participant_id": ledger.viewer_pid}])
    )
    assert net(balances(client, ledger))[ledger.viewer_pid] == -9000


def test_has_history_sees_every_reference_to_a_participant() -> None:
    columns = {f"{c.table.name}.{c.name}" for _, c in _referencing_columns()}
    assert {
        "trip_expense_payers.participant_id",
        "trip_expense_splits.participant_id",
        "trip_settlements.from_participant_id",
        "trip_settlements.to_participant_id",
    } <= columns
