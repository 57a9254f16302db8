"""Expenses and settlements without exchange_rate take the ECB reference rate of their day:
stored with its source and date, frozen, in every representation; none is a clear 422."""

import csv
import io
import uuid
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app.expenses.models import ExpenseRevision, Settlement
from tests import factories, support
from tests.expenses.support import Ledger

# 2027-04-30 is a Friday; 2027-05-01 and 02 a weekend.
RATES = {
    "2027-04-29": {"USD": "1.0800", "JPY": "157.00"},
    "2027-04-30": {"USD": "1.0921", "JPY": "158.54"},
    "2027-05-03": {"USD": "1.1000", "JPY": "160.00"},
}


def _post(client: TestClient, ledger: Ledger, path: str, body: dict[str, Any]) -> Any:
    return client.post(ledger.url(path), headers=support.auth(ledger.owner), json=body)


def _patch(client: TestClient, ledger: Ledger, expense_id: str, body: dict[str, Any]) -> Any:
    response = client.patch(
        ledger.url(f"/expenses/{expense_id}"),
        headers=support.auth(ledger.owner, if_match="*"),
        json=body,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _settlement(ledger: Ledger, **changes: Any) -> dict[str, Any]:
    body = {
        "from_participant_id": ledger.editor_pid,
        "to_participant_id": ledger.owner_pid,
        "amount_minor": 3000,
        "currency": "USD",
        "settled_on": "2027-05-01",
    }
    return {**body, **changes}


def _rate(body: dict[str, Any]) -> tuple[str, str, str | None]:
    return body["exchange_rate"], body["rate_source"], body["rate_date"]


def _in_usd(client: TestClient, ledger: Ledger) -> None:
    response = client.patch(
        ledger.url(),
        headers=support.auth(ledger.owner, if_match="*"),
        json={"base_currency": "USD"},
    )
    assert response.status_code == 200, response.text


def test_an_expense_without_rate_takes_the_last_published_one(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    factories.add_fx_rates(session, RATES)
    response = _post(client, ledger, "/expenses", ledger.expense(currency="USD"))  # a Sunday
    assert response.status_code == 201, response.text
    created = response.json()
    # Friday's rate: 1 USD = 1 / 1.0921 EUR, to 12 places.
    assert _rate(created) == ("0.915667063456", "ecb", "2027-04-30")
    assert created["base_amount_minor"] == 8241  # 9000 * 0.915667063456 = 8241.0035...
    stored = session.exec(
        select(ExpenseRevision).where(ExpenseRevision.expense_id == uuid.UUID(created["id"]))
    ).one()
    assert (stored.exchange_rate, stored.rate_source, str(stored.rate_date)) == (
        Decimal("0.915667063456"),
        "ecb",
        "2027-04-30",
    )


def test_a_cross_rate_is_stored_exactly(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    factories.add_fx_rates(session, RATES)
    _in_usd(client, ledger)
    body = ledger.expense(
        currency="JPY",
        amount_minor=10000,
        payers=[{"participant_id": ledger.owner_pid, "amount_minor": 10000}],
    )
    created = _post(client, ledger, "/expenses", body).json()
    # 1.0921 / 158.54 = 0.00688848240191749..., rounded half even to 12 places.
    assert _rate(created) == ("0.006888482402", "ecb", "2027-04-30")
    assert created["base_amount_minor"] == 6888  # 10000 yen * rate = 68.88482402 USD
    stored = session.exec(
        select(col(ExpenseRevision.exchange_rate)).where(
            ExpenseRevision.expense_id == uuid.UUID(created["id"])
        )
    ).one()
    assert stored == Decimal("0.006888482402")
    # EUR in a USD trip: ECB's own quote for USD.
    in_eur = _post(client, ledger, "/expenses", ledger.expense(currency="EUR")).json()
    assert _rate(in_eur) == ("1.0921", "ecb", "2027-04-30")


def test_base_and_client_rates_say_so(client: TestClient, ledger: Ledger, session: Session) -> None:
    factories.add_fx_rates(session, RATES)
    base = _post(client, ledger, "/expenses", ledger.expense()).json()
    assert _rate(base) == ("1", "base", None)
    given = ledger.expense(currency="USD", exchange_rate="0.9")
    assert _rate(_post(client, ledger, "/expenses", given).json()) == ("0.9", "client", None)


def test_a_looked_up_rate_is_frozen_until_the_currency_or_rate_changes(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    factories.add_fx_rates(session, RATES)
    created = _post(client, ledger, "/expenses", ledger.expense(currency="USD")).json()
    friday = _rate(created)
    # A later day has another rate, but the entered one stays (with its source and date).
    moved = _patch(client, ledger, created["id"], {"spent_on": "2027-05-04", "title": "Late"})
    assert (_rate(moved), moved["revision"]) == (friday, 2)
    same_currency = _patch(client, ledger, created["id"], {"currency": "USD", "notes": "x"})
    assert _rate(same_currency) == friday
    # A new currency takes the reference rate of the expense's (new) day.
    in_jpy = _patch(client, ledger, created["id"], {"currency": "JPY"})
    assert _rate(in_jpy) == ("0.00625", "ecb", "2027-05-03")
    corrected = _patch(client, ledger, created["id"], {"exchange_rate": "0.0061"})
    assert _rate(corrected) == ("0.0061", "client", None)
    looked_up = _patch(client, ledger, created["id"], {"exchange_rate": None})
    assert _rate(looked_up) == ("0.00625", "ecb", "2027-05-03")
    back = _patch(client, ledger, created["id"], {"currency": "EUR"})
    assert _rate(back) == ("1", "base", None)
    revisions = client.get(
        ledger.url(f"/expenses/{created['id']}/revisions"), headers=support.auth(ledger.owner)
    ).json()["items"]
    assert [(r["rate_source"], r["rate_date"]) for r in revisions] == [
        ("ecb", "2027-04-30"),
        ("ecb", "2027-04-30"),
        ("ecb", "2027-04-30"),
        ("ecb", "2027-05-03"),
        ("client", None),
        ("ecb", "2027-05-03"),
        ("base", None),
    ]


def test_no_rate_is_a_422_naming_currency_and_date_and_changes_nothing(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    factories.add_fx_rates(session, {"2027-04-20": {"USD": "1.08"}})  # 12 days before
    response = _post(client, ledger, "/expenses", ledger.expense(currency="USD"))
    problem = support.assert_problem(response, 422, "exchange_rate_unavailable")
    assert problem["detail"] == (
        "No reference rate for USD in EUR on 2027-05-02 or in the 7 days before; "
        "send exchange_rate."
    )
    assert (problem["currency"], problem["base_currency"], problem["date"]) == (
        "USD",
        "EUR",
        "2027-05-02",
    )
    support.assert_problem(
        _post(client, ledger, "/settlements", _settlement(ledger, currency="CHF")),
        422,
        "exchange_rate_unavailable",
    )
    auth = support.auth(ledger.owner)
    assert client.get(ledger.url("/expenses"), headers=auth).json()["items"] == []
    assert client.get(ledger.url("/settlements"), headers=auth).json()["items"] == []
    # An edit to a currency without a rate is refused too, and changes nothing.
    created = _post(client, ledger, "/expenses", ledger.expense()).json()
    response = client.patch(
        ledger.url(f"/expenses/{created['id']}"),
        headers=support.auth(ledger.owner, if_match="*"),
        json={"currency": "GBP"},
    )
    support.assert_problem(response, 422, "exchange_rate_unavailable")
    assert client.get(ledger.url(f"/expenses/{created['id']}"), headers=auth).json() == created


def test_a_replayed_create_compares_equal_whatever_was_imported_since(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    factories.add_fx_rates(session, RATES)
    expense = ledger.expense(currency="USD", id=str(uuid.uuid4()))
    settlement = _settlement(ledger, id=str(uuid.uuid4()))
    first = _post(client, ledger, "/expenses", expense).json()
    paid = _post(client, ledger, "/settlements", settlement).json()
    assert _rate(paid) == ("0.915667063456", "ecb", "2027-04-30")
    assert paid["base_amount_minor"] == 2747
    # A newer file corrects Friday's USD rate: the retry still matches what was created.
    factories.add_fx_rates(session, {"2027-04-30": {"USD": "1.2"}})
    again = _post(client, ledger, "/expenses", expense)
    assert again.status_code in (200, 201), again.text
    assert again.json() == first
    paid_again = _post(client, ledger, "/settlements", settlement)
    assert paid_again.status_code in (200, 201), paid_again.text
    assert paid_again.json() == paid
    # Other content under the same id is still a conflict.
    support.assert_problem(
        _post(client, ledger, "/expenses", {**expense, "title": "Other"}), 409, "id_conflict"
    )


def test_a_settlement_without_rate_is_stored_with_its_source(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    factories.add_fx_rates(session, RATES)
    created = _post(client, ledger, "/settlements", _settlement(ledger)).json()
    stored = session.exec(select(Settlement).where(Settlement.id == uuid.UUID(created["id"]))).one()
    assert (stored.exchange_rate, stored.rate_source, str(stored.rate_date)) == (
        Decimal("0.915667063456"),
        "ecb",
        "2027-04-30",
    )
    in_eur = _post(client, ledger, "/settlements", _settlement(ledger, currency="EUR")).json()
    assert _rate(in_eur) == ("1", "base", None)


def test_the_sync_feed_and_the_csv_carry_the_rate_source(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    factories.add_fx_rates(session, RATES)
    expense = _post(client, ledger, "/expenses", ledger.expense(currency="USD")).json()
    settlement = _post(client, ledger, "/settlements", _settlement(ledger)).json()
    changes = client.get(
        ledger.url("/changes"), headers=support.auth(ledger.owner), params={"since": 0}
    ).json()["changes"]
    data = {change["entity"]: change["data"] for change in changes}
    assert data["expense"] == expense
    assert (data["expense"]["rate_source"], data["expense"]["rate_date"]) == (
        "ecb",
        "2027-04-30",
    )
    assert data["settlement"] == settlement
    assert data["settlement"]["rate_source"] == "ecb"

    response = client.get(ledger.url("/export?format=csv"), headers=support.auth(ledger.owner))
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(row["kind"], row["rate_source"], row["rate_date"]) for row in rows] == [
        ("expense", "ecb", "2027-04-30"),
        ("settlement", "ecb", "2027-04-30"),
    ]
    base = _post(client, ledger, "/expenses", ledger.expense(spent_on="2027-05-05")).json()
    response = client.get(ledger.url("/export?format=csv"), headers=support.auth(ledger.owner))
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert (rows[1]["id"], rows[1]["rate_source"], rows[1]["rate_date"]) == (
        base["id"],
        "base",
        "",
    )
