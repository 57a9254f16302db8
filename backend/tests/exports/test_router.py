"""GET /trips/{id}/export: the ledger as CSV (parsed back, summed against the balances) and
the trip as JSON (the member's snapshot), with the rules on who sees amounts."""

import csv
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from app.core.config import get_settings
from app.exports import service as export_service
from app.trips.models import Trip
from app.users import export
from app.users.models import User
from tests import factories, support
from tests.expenses.support import Ledger


def download(client: TestClient, ledger: Ledger, user: User, fmt: str = "csv") -> Any:
    return client.get(ledger.url(f"/export?format={fmt}"), headers=support.auth(user))


def rows(client: TestClient, ledger: Ledger, user: User) -> list[dict[str, str]]:
    response = download(client, ledger, user)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="tripsync-trip-{ledger.trip_id}-ledger.csv"'
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))


def post(client: TestClient, ledger: Ledger, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(ledger.url(path), headers=support.auth(ledger.owner), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def seed(client: TestClient, ledger: Ledger) -> dict[str, Any]:
    """Two live expenses (one in USD), one deleted, one settlement."""
    dinner = post(client, ledger, "/expenses", ledger.expense(title='Dinner, "the good one"'))
    taxi = post(
        client,
        ledger,
        "/expenses",
        ledger.expense(
            title="Taxi ✈ café",
            category="transport",
            amount_minor=1001,
            currency="USD",
            exchange_rate="0.9",
            spent_on="2027-05-03",
            payers=[{"participant_id": ledger.editor_pid, "amount_minor": 1001}],
        ),
    )
    gone = post(client, ledger, "/expenses", ledger.expense(title="Mistake"))
    deleted = client.delete(
        ledger.url(f"/expenses/{gone['id']}"), headers=support.auth(ledger.owner, if_match="*")
    )
    assert deleted.status_code == 204, deleted.text
    settlement = post(
        client,
        ledger,
        "/settlements",
        {
            "from_participant_id": ledger.editor_pid,
            "to_participant_id": ledger.owner_pid,
            "amount_minor": 2000,
            "currency": "EUR",
            "settled_on": "2027-05-06",
            "note": "cash",
        },
    )
    return {"dinner": dinner, "taxi": taxi, "gone": gone, "settlement": settlement}


def cents(cell: str) -> int:
    return int(Decimal(cell or "0") * 100)


def test_the_csv_holds_live_expenses_and_settlements(client: TestClient, ledger: Ledger) -> None:
    made = seed(client, ledger)
    table = rows(client, ledger, ledger.owner)

    assert [(r["kind"], r["id"]) for r in table] == [
        ("expense", made["dinner"]["id"]),
        ("expense", made["taxi"]["id"]),
        ("settlement", made["settlement"]["id"]),
    ]
    dinner, taxi, settlement = table
    assert dinner["title"] == 'Dinner, "the good one"'
    assert (dinner["amount"], dinner["currency"], dinner["exchange_rate"]) == ("90.00", "EUR", "1")
    assert dinner["paid: Olivia Owner"] == "90.00"
    assert dinner["owed: Gus Guest"] == "30.00"
    assert dinner["owed: Vera Viewer"] == ""
    assert (taxi["title"], taxi["amount"], taxi["currency"]) == ("Taxi ✈ café", "10.01", "USD")
    assert (dinner["category"], taxi["category"]) == ("other", "transport")
    assert (taxi["exchange_rate"], taxi["base_currency"]) == ("0.9", "EUR")
    assert taxi["base_amount"] == "9.01"
    assert taxi["paid: Eddie Editor"] == "9.01"
    assert (
        sum(cents(taxi[f"owed: {n}"]) for n in ("Olivia Owner", "Eddie Editor", "Gus Guest")) == 901
    )
    assert (settlement["title"], settlement["amount"], settlement["date"]) == (
        "cash",
        "20.00",
        "2027-05-06",
    )
    assert (settlement["paid: Eddie Editor"], settlement["owed: Olivia Owner"]) == (
        "20.00",
        "20.00",
    )


def test_each_participants_columns_sum_to_their_balance(client: TestClient, ledger: Ledger) -> None:
    seed(client, ledger)
    table = rows(client, ledger, ledger.owner)
    report = client.get(ledger.url("/balances"), headers=support.auth(ledger.owner)).json()

    for balance in report["balances"]:
        name = balance["name"]
        paid = sum(cents(r[f"paid: {name}"]) for r in table)
        owed = sum(cents(r[f"owed: {name}"]) for r in table)
        expenses = [r for r in table if r["kind"] == "expense"]
        assert sum(cents(r[f"paid: {name}"]) for r in expenses) == balance["paid_minor"]
        assert sum(cents(r[f"owed: {name}"]) for r in expenses) == balance["owed_minor"]
        assert paid - owed == balance["balance_minor"], name
    assert any(b["balance_minor"] != 0 for b in report["balances"])


def test_a_viewer_of_a_trip_hiding_amounts_gets_no_csv_and_a_masked_json(
    client: TestClient, ledger: Ledger
) -> None:
    seed(client, ledger)
    assert download(client, ledger, ledger.viewer).status_code == 200
    hide = client.patch(
        ledger.url(),
        headers=support.auth(ledger.owner, if_match="*"),
        json={"hide_amounts_from_viewers": True},
    )
    assert hide.status_code == 200, hide.text

    support.assert_problem(download(client, ledger, ledger.viewer), 403, "amounts_hidden")
    assert download(client, ledger, ledger.editor).status_code == 200
    response = download(client, ledger, ledger.viewer, "json")
    assert response.status_code == 200, response.text
    text = response.text
    assert '"amount_minor":9000' not in text.replace(" ", "")
    document = json.loads(text)
    snapshot = client.get(ledger.url("/snapshot"), headers=support.auth(ledger.viewer)).json()
    assert document == snapshot
    assert document["role"] == "viewer"


def test_the_json_is_the_members_snapshot(client: TestClient, ledger: Ledger) -> None:
    seed(client, ledger)
    response = download(client, ledger, ledger.editor, "json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="tripsync-trip-{ledger.trip_id}.json"'
    )
    snapshot = client.get(ledger.url("/snapshot"), headers=support.auth(ledger.editor))
    assert response.json() == snapshot.json()
    assert len(response.json()["rows"]) > 0


def test_another_users_trip_a_bad_format_and_the_default(
    client: TestClient, session: Session, ledger: Ledger
) -> None:
    stranger = factories.make_user(session)
    for fmt in ("csv", "json"):
        support.assert_problem(download(client, ledger, stranger, fmt), 404)
    support.assert_problem(download(client, ledger, ledger.owner, "xlsx"), 422)
    default = client.get(ledger.url("/export"), headers=support.auth(ledger.owner))
    assert (default.status_code, default.headers["content-type"]) == (
        200,
        "text/csv; charset=utf-8",
    )


def test_the_csv_is_written_as_it_is_read(
    client: TestClient,
    session: Session,
    engine: Engine,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = get_settings().model_copy(update={"EXPORT_BATCH_ROWS": 2})
    monkeypatch.setattr(export, "get_settings", lambda: small)
    monkeypatch.setattr(export_service, "CHUNK_CHARS", 256)
    for number in range(12):
        post(client, ledger, "/expenses", ledger.expense(title=f"Lunch {number}"))
    trip = session.get_one(Trip, ledger.trip_id)

    with support.counted_statements(engine) as statements:
        chunks = export_service.ledger_csv(session, trip)
        first = next(chunks)
        read_before_first_chunk = len(statements)
        rest = list(chunks)
    # Batches of two: the first chunk left before most of the ledger was queried.
    assert read_before_first_chunk < len(statements)
    assert len(rest) >= 3
    table = list(csv.DictReader(io.StringIO(b"".join([first, *rest]).decode(), newline="")))
    assert sorted(r["title"] for r in table) == sorted(f"Lunch {n}" for n in range(12))
    assert table == rows(client, ledger, ledger.owner)
