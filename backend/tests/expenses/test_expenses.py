"""Expenses over HTTP on real PostgreSQL: splits, currencies, validation, revisions, deletion."""

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.activity.models import Activity
from app.expenses.models import Expense, ExpensePayer, ExpenseRevision, ExpenseSplit
from tests import factories, support
from tests.expenses.support import Ledger


def post_expense(client: TestClient, ledger: Ledger, **changes: Any) -> dict[str, Any]:
    response = client.post(
        ledger.url("/expenses"), headers=support.auth(ledger.owner), json=ledger.expense(**changes)
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def post_raw(client: TestClient, ledger: Ledger, text: str):  # type: ignore[no-untyped-def]
    """Send the JSON text as written (so `12.0` stays `12.0` on the wire)."""
    headers = {**support.auth(ledger.owner), "Content-Type": "application/json"}
    return client.post(ledger.url("/expenses"), headers=headers, content=text)


def by_participant(rows: list[dict[str, Any]], key: str = "amount_minor") -> dict[str, Any]:
    return {row["participant_id"]: row[key] for row in rows}


def count(session: Session, table: Any, trip_id: str) -> int:
    return session.exec(
        select(func.count()).select_from(table).where(table.trip_id == uuid.UUID(trip_id))
    ).one()


def test_create_read_and_list(client: TestClient, ledger: Ledger, session: Session) -> None:
    created = post_expense(client, ledger, category="food", notes="Tasca do Chico")
    assert created["revision"] == 1
    assert created["amount_minor"] == created["base_amount_minor"] == 9000
    assert created["exchange_rate"] == "1"
    assert created["base_currency"] == "EUR"
    assert by_participant(created["splits"]) == {
        ledger.owner_pid: 3000,
        ledger.editor_pid: 3000,
        ledger.guest_pid: 3000,
    }
    assert created["payers"] == [
        {"participant_id": ledger.owner_pid, "amount_minor": 9000, "base_amount_minor": 9000}
    ]
    headers = support.auth(ledger.editor, if_match="*")
    fetched = client.get(ledger.url(f"/expenses/{created['id']}"), headers=headers).json()
    assert fetched == created
    listed = client.get(ledger.url("/expenses"), headers=headers).json()
    assert listed == {"items": [created], "next_cursor": None}

    activity = session.exec(
        select(Activity).where(Activity.object_id == uuid.UUID(created["id"]))
    ).one()
    assert (activity.action, activity.summary) == ("expense.created", "Dinner")


def test_equal_split_remainder_goes_to_the_lowest_participant_id(
    client: TestClient, ledger: Ledger
) -> None:
    created = post_expense(
        client,
        ledger,
        amount_minor=100,
        payers=[{"participant_id": ledger.owner_pid, "amount_minor": 100}],
    )
    shares = by_participant(created["splits"])
    first = min(shares, key=uuid.UUID)
    assert shares[first] == 34
    assert sorted(shares.values()) == [33, 33, 34]
    assert sum(by_participant(created["splits"], "base_amount_minor").values()) == 100


def test_shares_use_largest_remainders(client: TestClient, ledger: Ledger) -> None:
    weights = {ledger.owner_pid: 1, ledger.editor_pid: 2, ledger.guest_pid: 3}
    created = post_expense(
        client,
        ledger,
        amount_minor=1000,
        payers=[{"participant_id": ledger.editor_pid, "amount_minor": 1000}],
        split_mode="shares",
        splits=[{"participant_id": pid, "shares": n} for pid, n in weights.items()],
    )
    # 166.67 / 333.33 / 500: the one unit left goes to the largest remainder (0.67).
    assert by_participant(created["splits"]) == {
        ledger.owner_pid: 167,
        ledger.editor_pid: 333,
        ledger.guest_pid: 500,
    }
    assert by_participant(created["splits"], "shares") == weights


def test_percentages_are_exact_decimals_even_when_sent_as_json_floats(
    client: TestClient, ledger: Ledger
) -> None:
    # Sent as JSON numbers; added up as binary floats they would make 99.99999999999999.
    percents = {ledger.owner_pid: 34.3, ledger.editor_pid: 29.9, ledger.guest_pid: 35.8}
    assert sum(percents.values()) != 100
    body = ledger.expense(
        amount_minor=1000,
        payers=[{"participant_id": ledger.owner_pid, "amount_minor": 1000}],
        split_mode="percentages",
        splits=[{"participant_id": pid, "percent": p} for pid, p in percents.items()],
    )
    response = client.post(ledger.url("/expenses"), headers=support.auth(ledger.owner), json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert by_participant(created["splits"], "percent") == {
        ledger.owner_pid: "34.3",
        ledger.editor_pid: "29.9",
        ledger.guest_pid: "35.8",
    }
    assert by_participant(created["splits"]) == {
        ledger.owner_pid: 343,
        ledger.editor_pid: 299,
        ledger.guest_pid: 358,
    }


def test_exact_amounts(client: TestClient, ledger: Ledger) -> None:
    created = post_expense(
        client,
        ledger,
        split_mode="exact",
        splits=[
            {"participant_id": ledger.editor_pid, "amount_minor": 7000},
            {"participant_id": ledger.guest_pid, "amount_minor": 2000},
        ],
    )
    assert by_participant(created["splits"]) == {ledger.editor_pid: 7000, ledger.guest_pid: 2000}


def test_several_payers(client: TestClient, ledger: Ledger) -> None:
    created = post_expense(
        client,
        ledger,
        payers=[
            {"participant_id": ledger.owner_pid, "amount_minor": 5000},
            {"participant_id": ledger.guest_pid, "amount_minor": 4000},
        ],
    )
    assert by_participant(created["payers"]) == {ledger.owner_pid: 5000, ledger.guest_pid: 4000}


@pytest.mark.parametrize(
    ("currency", "amount", "rate", "base_amount"),
    [
        ("JPY", 10_000, "0.0061", 6100),  # 10 000 yen at 0.0061 EUR/JPY = 61.00 EUR
        ("USD", 10_001, "0.5", 5000),  # 50.005 EUR: half to even, 5000 cents
        ("USD", 10_003, "0.5", 5002),  # 50.015 EUR: half to even, 5002 cents
        ("BHD", 1_234, "2.5", 308),  # 1.234 BHD (3 digits) = 3.085 EUR: half to even
        ("GBP", 12_345, "1.1712", 14_458),  # 144.58464 EUR
        # A tiny rate comes back in positional notation, never "1E-7".
        ("JPY", 50_000_000, "0.0000001", 500),  # 5.00 EUR
    ],
)
def test_foreign_currency_is_converted_with_the_frozen_rate(
    client: TestClient,
    ledger: Ledger,
    session: Session,
    currency: str,
    amount: int,
    rate: str,
    base_amount: int,
) -> None:
    created = post_expense(
        client,
        ledger,
        amount_minor=amount,
        currency=currency,
        exchange_rate=rate,
        payers=[{"participant_id": ledger.owner_pid, "amount_minor": amount}],
    )
    assert created["base_amount_minor"] == base_amount
    assert created["exchange_rate"] == rate
    assert sum(by_participant(created["splits"]).values()) == amount
    assert sum(by_participant(created["splits"], "base_amount_minor").values()) == base_amount
    assert sum(by_participant(created["payers"], "base_amount_minor").values()) == base_amount
    stored = session.exec(
        select(ExpenseRevision).where(ExpenseRevision.expense_id == uuid.UUID(created["id"]))
    ).one()
    assert stored.exchange_rate == Decimal(rate)


def test_rates_sent_as_json_numbers_are_kept_digit_for_digit(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    # 18 significant digits: a binary float would keep about 16 of them.
    body = json.dumps(ledger.expense(currency="USD", exchange_rate="__RATE__"))
    response = post_raw(client, ledger, body.replace('"__RATE__"', "123456.123456789012"))
    assert response.status_code == 201, response.text
    assert response.json()["exchange_rate"] == "123456.123456789012"
    stored = session.exec(
        select(col(ExpenseRevision.exchange_rate)).where(
            ExpenseRevision.expense_id == uuid.UUID(response.json()["id"])
        )
    ).one()
    assert stored == Decimal("123456.123456789012")
    # More decimal places than the column keeps (12) are refused, never rounded away.
    too_precise = post_raw(client, ledger, body.replace('"__RATE__"', "1.0000000000001"))
    support.assert_problem(too_precise, 422, "validation_error")


def _invalid_bodies(ledger: Ledger, other_trip_pid: str) -> dict[str, tuple[dict[str, Any], str]]:
    owner, editor, guest = ledger.owner_pid, ledger.editor_pid, ledger.guest_pid
    return {
        "payers do not sum": (
            ledger.expense(payers=[{"participant_id": owner, "amount_minor": 8999}]),
            "payers_do_not_sum",
        ),
        "exact splits do not sum": (
            ledger.expense(
                split_mode="exact",
                splits=[
                    {"participant_id": editor, "amount_minor": 5000},
                    {"participant_id": guest, "amount_minor": 3999},
                ],
            ),
            "splits_do_not_sum",
        ),
        "percentages do not sum to 100": (
            ledger.expense(
                split_mode="percentages",
                splits=[{"participant_id": p, "percent": "33.33"} for p in (owner, editor, guest)],
            ),
            "percentages_do_not_sum",
        ),
        "all shares zero": (
            ledger.expense(split_mode="shares", splits=[{"participant_id": owner, "shares": 0}]),
            "shares_all_zero",
        ),
        "a value for another mode": (
            ledger.expense(splits=[{"participant_id": owner, "shares": 2}]),
            "split_values_mismatch",
        ),
        "shares missing": (
            ledger.expense(split_mode="shares"),
            "split_values_mismatch",
        ),
        "duplicate participant": (
            ledger.expense(splits=[{"participant_id": owner}, {"participant_id": owner}]),
            "duplicate_participant",
        ),
        "unknown participant": (
            ledger.expense(splits=[{"participant_id": str(uuid.uuid4())}]),
            "unknown_participant",
        ),
        "payer of another trip": (
            ledger.expense(payers=[{"participant_id": other_trip_pid, "amount_minor": 9000}]),
            "unknown_participant",
        ),
        "split of another trip": (
            ledger.expense(splits=[{"participant_id": other_trip_pid}]),
            "unknown_participant",
        ),
        "foreign currency, no rate to be found": (
            ledger.expense(currency="USD"),
            "exchange_rate_unavailable",
        ),
        "rate for the base currency": (
            ledger.expense(exchange_rate="1.1"),
            "exchange_rate_not_applicable",
        ),
        "negative amount": (ledger.expense(amount_minor=-9000), "validation_error"),
        "zero amount": (ledger.expense(amount_minor=0), "validation_error"),
        "negative payer amount": (
            ledger.expense(
                payers=[
                    {"participant_id": owner, "amount_minor": 10000},
                    {"participant_id": guest, "amount_minor": -1000},
                ]
            ),
            "validation_error",
        ),
        "negative shares": (
            ledger.expense(split_mode="shares", splits=[{"participant_id": owner, "shares": -1}]),
            "validation_error",
        ),
        "percent over 100": (
            ledger.expense(
                split_mode="percentages", splits=[{"participant_id": owner, "percent": "100.5"}]
            ),
            "validation_error",
        ),
        "amount as a string": (ledger.expense(amount_minor="9000"), "validation_error"),
        "amount as a boolean": (ledger.expense(amount_minor=True), "validation_error"),
        "too large": (ledger.expense(amount_minor=10**16), "validation_error"),
        "lower-case currency": (ledger.expense(currency="eur"), "validation_error"),
        "unknown currency": (ledger.expense(currency="XYZ"), "validation_error"),
        "currency name": (ledger.expense(currency="EURO"), "validation_error"),
        "zero rate": (ledger.expense(currency="USD", exchange_rate="0"), "validation_error"),
        "negative rate": (ledger.expense(currency="USD", exchange_rate="-1"), "validation_error"),
        "rate not a number": (
            ledger.expense(currency="USD", exchange_rate="NaN"),
            "validation_error",
        ),
        "no payer": (ledger.expense(payers=[]), "validation_error"),
        "no split": (ledger.expense(splits=[]), "validation_error"),
        "unknown split mode": (ledger.expense(split_mode="whatever"), "validation_error"),
        "unknown field": (ledger.expense(base_amount_minor=1), "validation_error"),
        "blank title": (ledger.expense(title="  "), "validation_error"),
        "bad date": (ledger.expense(spent_on="2027-02-30"), "validation_error"),
    }


INVALID_NAMES = [
    "payers do not sum",
    "exact splits do not sum",
    "percentages do not sum to 100",
    "all shares zero",
    "a value for another mode",
    "shares missing",
    "duplicate participant",
    "unknown participant",
    "payer of another trip",
    "split of another trip",
    "foreign currency, no rate to be found",
    "rate for the base currency",
    "negative amount",
    "zero amount",
    "negative payer amount",
    "negative shares",
    "percent over 100",
    "amount as a string",
    "amount as a boolean",
    "too large",
    "lower-case currency",
    "unknown currency",
    "currency name",
    "zero rate",
    "negative rate",
    "rate not a number",
    "no payer",
    "no split",
    "unknown split mode",
    "unknown field",
    "blank title",
    "bad date",
]


@pytest.mark.parametrize("case", INVALID_NAMES)
def test_invalid_expenses_are_422_and_store_nothing(
    client: TestClient, ledger: Ledger, session: Session, case: str
) -> None:
    other = factories.create_trip(client, ledger.editor, name="Elsewhere")
    other_pid = support.participants(client, ledger.editor, other["id"])[0]["id"]
    body, code = _invalid_bodies(ledger, other_pid)[case]
    response = client.post(ledger.url("/expenses"), headers=support.auth(ledger.owner), json=body)
    support.assert_problem(response, 422, code)
    for table in (Expense, ExpenseRevision, ExpensePayer, ExpenseSplit):
        assert count(session, table, ledger.trip_id) == 0
    assert not session.exec(
        select(Activity).where(
            Activity.trip_id == uuid.UUID(ledger.trip_id), Activity.action == "expense.created"
        )
    ).first()


def test_every_invalid_case_is_tested(client: TestClient, ledger: Ledger) -> None:
    assert set(_invalid_bodies(ledger, str(uuid.uuid4()))) == set(INVALID_NAMES)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("amount_minor", "9000.5"),  # a fraction of a cent
        ("amount_minor", "9000.0"),  # a float that happens to be whole: still not an integer
        ("amount_minor", "9e3"),
        ("amount_minor", "NaN"),
        ("exchange_rate", "Infinity"),
    ],
)
def test_fractional_and_non_finite_numbers_are_refused(
    client: TestClient, ledger: Ledger, session: Session, field: str, text: str
) -> None:
    body = json.dumps({**ledger.expense(currency="USD", exchange_rate="1.1"), field: "__X__"})
    response = post_raw(client, ledger, body.replace('"__X__"', text))
    support.assert_problem(response, 422, "validation_error")
    assert count(session, Expense, ledger.trip_id) == 0


def test_edits_create_revisions_and_keep_earlier_ones(client: TestClient, ledger: Ledger) -> None:
    created = post_expense(client, ledger)
    url = ledger.url(f"/expenses/{created['id']}")
    headers = support.auth(ledger.editor, if_match="*")

    renamed = client.patch(url, headers=headers, json={"title": "Late dinner"}).json()
    assert (renamed["revision"], renamed["title"]) == (2, "Late dinner")
    assert renamed["splits"] == created["splits"]

    # A new amount re-splits equally; the single payer must follow, in the same request.
    patch = {
        "amount_minor": 12000,
        "payers": [{"participant_id": ledger.editor_pid, "amount_minor": 12000}],
    }
    repriced = client.patch(url, headers=headers, json=patch).json()
    assert repriced["revision"] == 3
    assert set(by_participant(repriced["splits"]).values()) == {4000}
    assert repriced["updated_at"] > created["updated_at"]
    assert repriced["created_at"] == created["created_at"]

    revisions = client.get(f"{url}/revisions", headers=headers).json()
    assert [r["number"] for r in revisions["items"]] == [1, 2, 3]
    assert [r["action"] for r in revisions["items"]] == ["created", "updated", "updated"]
    first = revisions["items"][0]
    assert first["title"] == "Dinner"
    assert first["payers"] == created["payers"]
    assert first["splits"] == created["splits"]
    assert first["actor_id"] == str(ledger.owner.id)
    assert revisions["items"][2]["actor_id"] == str(ledger.editor.id)
    assert revisions["items"][2]["amount_minor"] == 12000


def test_an_edit_that_changes_nothing_records_nothing(client: TestClient, ledger: Ledger) -> None:
    created = post_expense(client, ledger)
    url = ledger.url(f"/expenses/{created['id']}")
    headers = support.auth(ledger.owner, if_match="*")
    same = {
        "title": "Dinner",
        "currency": "EUR",
        "split_mode": "equal",
        "splits": list(reversed(ledger.expense()["splits"])),  # same people, another order
    }
    for patch in ({}, same):
        response = client.patch(url, headers=headers, json=patch)
        assert response.status_code == 200, response.text
        assert response.json() == created
    revisions = client.get(f"{url}/revisions", headers=headers).json()["items"]
    assert len(revisions) == 1


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"amount_minor": 10000}, "payers_do_not_sum"),  # the payer still paid 9000
        ({"currency": "USD"}, "exchange_rate_unavailable"),  # no reference rate stored
        ({"exchange_rate": "1.2"}, "exchange_rate_not_applicable"),  # it is in EUR
        ({"split_mode": "shares"}, "validation_error"),  # mode and splits change together
        ({"splits": [{"participant_id": str(uuid.uuid4())}], "split_mode": "equal"}, None),
        ({"title": None}, "validation_error"),
        ({"revision": 7}, "validation_error"),
    ],
)
def test_invalid_edits_change_nothing(
    client: TestClient, ledger: Ledger, patch: dict[str, Any], code: str | None
) -> None:
    created = post_expense(client, ledger)
    url = ledger.url(f"/expenses/{created['id']}")
    response = client.patch(url, headers=support.auth(ledger.owner, if_match="*"), json=patch)
    support.assert_problem(response, 422, code or "unknown_participant")
    assert client.get(url, headers=support.auth(ledger.owner)).json() == created
    revisions = client.get(f"{url}/revisions", headers=support.auth(ledger.owner)).json()
    assert len(revisions["items"]) == 1


def test_changing_currency_takes_its_rate_and_back_to_base_drops_it(
    client: TestClient, ledger: Ledger
) -> None:
    created = post_expense(client, ledger)
    url = ledger.url(f"/expenses/{created['id']}")
    headers = support.auth(ledger.owner, if_match="*")
    in_usd = client.patch(
        url, headers=headers, json={"currency": "USD", "exchange_rate": "0.9"}
    ).json()
    assert (in_usd["currency"], in_usd["base_amount_minor"]) == ("USD", 8100)
    corrected = client.patch(url, headers=headers, json={"exchange_rate": "0.95"}).json()
    assert (corrected["currency"], corrected["base_amount_minor"]) == ("USD", 8550)
    support.assert_problem(
        client.patch(url, headers=headers, json={"exchange_rate": None}),
        422,
        "exchange_rate_unavailable",
    )
    back = client.patch(url, headers=headers, json={"currency": "EUR"}).json()
    assert (back["exchange_rate"], back["base_amount_minor"]) == ("1", 9000)


def test_an_edit_based_on_a_stale_revision_is_refused(client: TestClient, ledger: Ledger) -> None:
    """The deprecated `expected_revision` still guards edits, next to If-Match."""
    created = post_expense(client, ledger)
    url = ledger.url(f"/expenses/{created['id']}")
    headers = support.auth(ledger.owner, if_match="*")
    first = client.patch(url, headers=headers, json={"title": "A", "expected_revision": 1})
    assert first.status_code == 200, first.text
    stale = client.patch(url, headers=headers, json={"title": "B", "expected_revision": 1})
    support.assert_problem(stale, 409, "revision_conflict")
    support.assert_problem(
        client.delete(url, headers=headers, params={"expected_revision": 1}),
        409,
        "revision_conflict",
    )
    assert client.get(url, headers=headers).json()["title"] == "A"


def test_deleting_hides_the_expense_but_keeps_its_history(
    client: TestClient, ledger: Ledger
) -> None:
    kept = post_expense(client, ledger, title="Kept")
    gone = post_expense(
        client,
        ledger,
        title="Gone",
        amount_minor=3000,
        payers=[{"participant_id": ledger.guest_pid, "amount_minor": 3000}],
    )
    url = ledger.url(f"/expenses/{gone['id']}")
    headers = support.auth(ledger.editor, if_match="*")
    assert client.delete(url, headers=headers).status_code == 204

    support.assert_problem(client.get(url, headers=headers), 404, "expense_not_found")
    support.assert_problem(
        client.patch(url, headers=headers, json={"title": "x"}), 404, "expense_not_found"
    )
    support.assert_problem(client.delete(url, headers=headers), 404, "expense_not_found")
    listed = client.get(ledger.url("/expenses"), headers=headers).json()["items"]
    assert [e["id"] for e in listed] == [kept["id"]]
    balances = client.get(ledger.url("/balances"), headers=headers).json()["balances"]
    assert {b["participant_id"]: b["paid_minor"] for b in balances}[ledger.guest_pid] == 0

    revisions = client.get(f"{url}/revisions", headers=headers).json()["items"]
    assert [r["action"] for r in revisions] == ["created", "deleted"]
    deleted = revisions[1]
    assert deleted["title"] == "Gone"
    assert deleted["payers"] == gone["payers"]
    assert deleted["splits"] == gone["splits"]
    assert deleted["amount_minor"] == 3000


def test_revisions_of_an_unknown_expense_are_404(client: TestClient, ledger: Ledger) -> None:
    response = client.get(
        ledger.url(f"/expenses/{uuid.uuid4()}/revisions"), headers=support.auth(ledger.owner)
    )
    support.assert_problem(response, 404, "expense_not_found")


def test_an_expense_of_another_trip_is_not_found(client: TestClient, ledger: Ledger) -> None:
    created = post_expense(client, ledger)
    mine = factories.create_trip(client, ledger.owner, name="Other trip")
    for method in ("GET", "PATCH", "DELETE"):
        response = client.request(
            method,
            f"/trips/{mine['id']}/expenses/{created['id']}",
            headers=support.auth(ledger.owner, if_match="*"),
            json={"title": "x"} if method == "PATCH" else None,
        )
        support.assert_problem(response, 404, "expense_not_found")


def test_pages_cover_every_expense_once_latest_date_first(
    client: TestClient, ledger: Ledger
) -> None:
    days = ["2027-05-03", "2027-05-01", "2027-05-03", "2027-05-02", "2027-05-05", "2027-05-01"]
    created = {post_expense(client, ledger, spent_on=day)["id"]: day for day in days}
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get(
            ledger.url("/expenses"), headers=support.auth(ledger.owner), params=params
        ).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(e["id"] for e in seen) == sorted(created)
    dates = [e["spent_on"] for e in seen]
    assert dates == sorted(dates, reverse=True)


def test_revision_pages_and_cursors_of_other_lists(client: TestClient, ledger: Ledger) -> None:
    created = post_expense(client, ledger)
    url = ledger.url(f"/expenses/{created['id']}")
    headers = support.auth(ledger.owner, if_match="*")
    for title in ("B", "C"):
        client.patch(url, headers=headers, json={"title": title})
    numbers, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{url}/revisions", headers=headers, params=params).json()
        numbers += [r["number"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        revision_cursor = cursor
    assert numbers == [1, 2, 3]
    # A valid cursor of another list is not a cursor of this one.
    response = client.get(
        ledger.url("/expenses"), headers=headers, params={"cursor": revision_cursor}
    )
    support.assert_problem(response, 400, "invalid_cursor")


def test_listing_does_not_query_per_expense(
    client: TestClient, ledger: Ledger, connection: Connection
) -> None:
    statements: list[str] = []

    def counted(*args: Any) -> None:
        statements.append(args[2])

    def list_all() -> int:
        statements.clear()
        event.listen(connection, "before_cursor_execute", counted)
        try:
            response = client.get(ledger.url("/expenses"), headers=support.auth(ledger.owner))
        finally:
            event.remove(connection, "before_cursor_execute", counted)
        assert response.status_code == 200
        return len(statements)

    post_expense(client, ledger)
    few = list_all()
    for _ in range(8):
        post_expense(client, ledger)
    assert list_all() == few


def test_deleting_the_trip_removes_its_ledger(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    created = post_expense(client, ledger)
    client.patch(
        ledger.url(f"/expenses/{created['id']}"),
        headers=support.auth(ledger.owner, if_match="*"),
        json={"title": "x"},
    )
    settlement = {
        "from_participant_id": ledger.editor_pid,
        "to_participant_id": ledger.owner_pid,
        "amount_minor": 3000,
        "currency": "EUR",
        "settled_on": "2027-05-04",
    }
    client.post(ledger.url("/settlements"), headers=support.auth(ledger.owner), json=settlement)
    response = client.delete(ledger.url(), headers=support.auth(ledger.owner, if_match="*"))
    assert response.status_code == 204, response.text
    for table in (Expense, ExpenseRevision, ExpensePayer, ExpenseSplit):
        assert count(session, table, ledger.trip_id) == 0


def test_the_database_refuses_what_must_never_be_stored(
    client: TestClient, ledger: Ledger, session: Session
) -> None:
    created = post_expense(client, ledger)
    revision = session.exec(
        select(ExpenseRevision).where(col(ExpenseRevision.expense_id) == uuid.UUID(created["id"]))
    ).one()
    for column, value in (
        ("amount_minor", -1),
        ("exchange_rate", Decimal(0)),
        ("currency", "eur"),
        ("split_mode", "random"),
    ):
        savepoint = session.begin_nested()
        setattr(revision, column, value)
        session.add(revision)
        with pytest.raises(IntegrityError):
            session.flush()
        savepoint.rollback()
        session.expire_all()
        revision = session.get_one(ExpenseRevision, (revision.trip_id, revision.id))
