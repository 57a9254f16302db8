"""Expense categories and GET /trips/{id}/summary: categories are a fixed list wherever an
expense appears; the summary is the live expenses summed in the base currency, equal to the
ledger summed from scratch, and refused to viewers of a trip that hides amounts."""

import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session

from app.core.pagination import MAX_PAGE_SIZE
from app.expenses.models import ExpenseCategory
from app.main import app
from app.users.models import User
from tests import factories, support
from tests.expenses.strategies import CURRENCIES, ExpenseSpec, expenses, settlements
from tests.expenses.support import Ledger
from tests.sync.support import changes, snapshot

CATEGORIES = [category.value for category in ExpenseCategory]


def get_summary(client: TestClient, trip_id: str, user: User) -> Any:
    response = client.get(f"/trips/{trip_id}/summary", headers=support.auth(user))
    assert response.status_code == 200, response.text
    return response.json()


def post(client: TestClient, ledger: Ledger, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(ledger.url(path), headers=support.auth(ledger.owner), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def listed_expenses(client: TestClient, trip_id: str, user: User) -> list[dict[str, Any]]:
    response = client.get(
        f"/trips/{trip_id}/expenses", headers=support.auth(user), params={"limit": MAX_PAGE_SIZE}
    )
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return response.json()["items"]  # type: ignore[no-any-return]


def summed_from_scratch(listed: list[dict[str, Any]], participant_ids: list[str]) -> dict[str, Any]:
    """The summary worked out in Python from the expenses as the API lists them."""
    by_category: dict[str, int] = defaultdict(int)
    by_day: dict[str, int] = defaultdict(int)
    paid: dict[str, int] = dict.fromkeys(participant_ids, 0)
    consumed: dict[str, int] = dict.fromkeys(participant_ids, 0)
    for expense in listed:
        by_category[expense["category"]] += expense["base_amount_minor"]
        by_day[expense["spent_on"]] += expense["base_amount_minor"]
        for payer in expense["payers"]:
            paid[payer["participant_id"]] += payer["base_amount_minor"]
        for split in expense["splits"]:
            consumed[split["participant_id"]] += split["base_amount_minor"]
    return {
        "total_minor": sum(by_category.values()),
        "by_category": [
            {"category": category, "total_minor": by_category[category]}
            for category in CATEGORIES
            if category in by_category
        ],
        "by_participant": [(pid, paid[pid], consumed[pid]) for pid in participant_ids],
        "by_day": [{"day": day, "total_minor": by_day[day]} for day in sorted(by_day)],
    }


def check_summary(client: TestClient, trip_id: str, user: User) -> dict[str, Any]:
    """The summary equals the listed expenses summed from scratch; every breakdown adds up to
    the total; its participants are the balances', in their order."""
    summary = get_summary(client, trip_id, user)
    balances = client.get(f"/trips/{trip_id}/balances", headers=support.auth(user)).json()
    participant_ids = [row["participant_id"] for row in balances["balances"]]
    expected = summed_from_scratch(listed_expenses(client, trip_id, user), participant_ids)

    assert summary["currency"] == balances["currency"]
    assert summary["total_minor"] == expected["total_minor"]
    assert summary["by_category"] == expected["by_category"]
    assert summary["by_day"] == expected["by_day"]
    assert [
        (row["participant_id"], row["paid_minor"], row["consumed_minor"])
        for row in summary["by_participant"]
    ] == expected["by_participant"]
    total = summary["total_minor"]
    assert sum(row["total_minor"] for row in summary["by_category"]) == total
    assert sum(row["total_minor"] for row in summary["by_day"]) == total
    assert sum(row["paid_minor"] for row in summary["by_participant"]) == total
    assert sum(row["consumed_minor"] for row in summary["by_participant"]) == total
    # The paid and consumed columns are the balances' paid and owed.
    assert [(row["paid_minor"], row["consumed_minor"]) for row in summary["by_participant"]] == [
        (row["paid_minor"], row["owed_minor"]) for row in balances["balances"]
    ]
    return summary  # type: ignore[no-any-return]


# --- the summary, by example -------------------------------------------------------------------


def test_the_summary_of_a_small_ledger(client: TestClient, ledger: Ledger) -> None:
    dinner = post(client, ledger, "/expenses", ledger.expense(category="food"))
    taxi = post(
        client,
        ledger,
        "/expenses",
        ledger.expense(
            title="Taxi",
            category="transport",
            amount_minor=1001,
            currency="USD",
            exchange_rate="0.9",
            spent_on="2027-05-03",
            payers=[{"participant_id": ledger.editor_pid, "amount_minor": 1001}],
        ),
    )
    snacks = post(
        client,
        ledger,
        "/expenses",
        ledger.expense(
            title="Snacks",
            amount_minor=600,
            payers=[{"participant_id": ledger.owner_pid, "amount_minor": 600}],
        ),
    )
    gone = post(client, ledger, "/expenses", ledger.expense(title="Mistake", category="fees"))
    headers = support.auth(ledger.owner, if_match="*")
    deleted = client.delete(ledger.url(f"/expenses/{gone['id']}"), headers=headers)
    assert deleted.status_code == 204, deleted.text
    post(
        client,
        ledger,
        "/settlements",
        {
            "from_participant_id": ledger.editor_pid,
            "to_participant_id": ledger.owner_pid,
            "amount_minor": 2000,
            "currency": "EUR",
            "settled_on": "2027-05-06",
        },
    )

    summary = check_summary(client, ledger.trip_id, ledger.owner)

    assert taxi["base_amount_minor"] == 901
    assert summary["currency"] == "EUR"
    assert summary["total_minor"] == 9000 + 901 + 600
    # The list's order (transport before food), not the alphabet's; no row for empty ones.
    assert summary["by_category"] == [
        {"category": "transport", "total_minor": 901},
        {"category": "food", "total_minor": 9000},
        {"category": "other", "total_minor": 600},
    ]
    assert summary["by_day"] == [
        {"day": "2027-05-02", "total_minor": 9600},
        {"day": "2027-05-03", "total_minor": 901},
    ]
    consumed: dict[str, int] = defaultdict(int)
    for expense in (dinner, taxi, snacks):
        for split in expense["splits"]:
            consumed[split["participant_id"]] += split["base_amount_minor"]
    names = {
        ledger.owner_pid: "Olivia Owner",
        ledger.editor_pid: "Eddie Editor",
        ledger.viewer_pid: "Vera Viewer",
        ledger.guest_pid: "Gus Guest",
    }
    # Settlements are not spending: the editor's 20.00 to the owner is in no figure.
    paid = {ledger.owner_pid: 9600, ledger.editor_pid: 901}
    assert {row["participant_id"]: row for row in summary["by_participant"]} == {
        pid: {
            "participant_id": pid,
            "name": name,
            "paid_minor": paid.get(pid, 0),
            "consumed_minor": consumed[pid],
        }
        for pid, name in names.items()
    }
    assert consumed[ledger.viewer_pid] == 0  # everyone is listed, with zeros too


def test_a_trip_without_expenses_sums_to_zero(client: TestClient, ledger: Ledger) -> None:
    summary = get_summary(client, ledger.trip_id, ledger.viewer)
    assert (summary["total_minor"], summary["by_category"], summary["by_day"]) == (0, [], [])
    assert len(summary["by_participant"]) == 4
    assert {(row["paid_minor"], row["consumed_minor"]) for row in summary["by_participant"]} == {
        (0, 0)
    }


def test_a_viewer_of_a_trip_hiding_amounts_gets_403(client: TestClient, ledger: Ledger) -> None:
    post(client, ledger, "/expenses", ledger.expense())
    assert get_summary(client, ledger.trip_id, ledger.viewer)["total_minor"] == 9000
    hide = client.patch(
        ledger.url(),
        headers=support.auth(ledger.owner, if_match="*"),
        json={"hide_amounts_from_viewers": True},
    )
    assert hide.status_code == 200, hide.text

    response = client.get(ledger.url("/summary"), headers=support.auth(ledger.viewer))
    support.assert_problem(response, 403, "amounts_hidden")
    assert get_summary(client, ledger.trip_id, ledger.editor)["total_minor"] == 9000


def test_the_summary_reads_in_as_many_statements_whatever_the_ledger(
    client: TestClient, ledger: Ledger, engine: Engine
) -> None:
    def statements() -> list[str]:
        with support.counted_statements(engine) as sent:
            get_summary(client, ledger.trip_id, ledger.owner)
        return [s for s in sent if s.lstrip().upper().startswith("SELECT")]

    post(client, ledger, "/expenses", ledger.expense())
    few = statements()
    for n in range(12):
        post(
            client,
            ledger,
            "/expenses",
            ledger.expense(category=CATEGORIES[n % 8], spent_on=f"2027-05-0{1 + n % 7}"),
        )
    many = statements()
    assert len(get_summary(client, ledger.trip_id, ledger.owner)["by_day"]) == 7
    assert len(many) == len(few), many
    # The caller's access, the base currency, the three sums in one statement (one snapshot:
    # per category, per day, per participant) and the participants.
    assert len(many) == 4, many


# --- categories ---------------------------------------------------------------------------------


def test_categories_default_to_other_and_change_by_revision(
    client: TestClient, ledger: Ledger
) -> None:
    created = post(client, ledger, "/expenses", ledger.expense())
    assert created["category"] == "other"
    headers = support.auth(ledger.owner, if_match="*")
    url = ledger.url(f"/expenses/{created['id']}")
    changed = client.patch(url, headers=headers, json={"category": "accommodation"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["category"], changed.json()["revision"]) == ("accommodation", 2)
    revisions = client.get(f"{url}/revisions", headers=headers).json()["items"]
    assert [r["category"] for r in revisions] == ["other", "accommodation"]


def test_an_unknown_category_is_refused_and_changes_nothing(
    client: TestClient, ledger: Ledger
) -> None:
    kept = post(client, ledger, "/expenses", ledger.expense(category="food"))
    url = ledger.url(f"/expenses/{kept['id']}")
    headers = support.auth(ledger.owner, if_match="*")
    before = client.get(url, headers=headers).json()

    for category in ("Food", "taxi", "", None, 3):
        refusals = [
            client.post(
                ledger.url("/expenses"), headers=headers, json=ledger.expense(category=category)
            ),
            client.patch(url, headers=headers, json={"category": category}),
        ]
        for response in refusals:
            problem = support.assert_problem(response, 422, "validation_error")
            [error] = problem["errors"]
            if category is None and response.request.method == "PATCH":
                assert error["msg"].endswith("category may be omitted but not null"), error
                continue
            assert error["loc"][-1] == "category", (category, error)
            assert all(f"'{allowed}'" in error["msg"] for allowed in CATEGORIES), error

    assert [e["id"] for e in listed_expenses(client, ledger.trip_id, ledger.owner)] == [kept["id"]]
    assert client.get(url, headers=headers).json() == before


def test_the_openapi_document_lists_the_categories() -> None:
    schemas = app.openapi()["components"]["schemas"]
    category = schemas["ExpenseCategory"]
    assert category["enum"] == CATEGORIES
    reference = {"$ref": "#/components/schemas/ExpenseCategory"}
    create = schemas["ExpenseCreate"]["properties"]["category"]
    assert create == {**reference, "default": "other"}
    assert schemas["ExpensePublic"]["properties"]["category"] == reference
    assert schemas["CategoryTotal"]["properties"]["category"] == reference


def test_the_sync_feed_carries_the_category(client: TestClient, ledger: Ledger) -> None:
    created = post(client, ledger, "/expenses", ledger.expense(category="groceries"))
    for rows in (
        snapshot(client, ledger.viewer, ledger.trip_id)["rows"],
        changes(client, ledger.viewer, ledger.trip_id, 0)["changes"],
    ):
        [expense] = [row["data"] for row in rows if row.get("entity") == "expense"]
        assert (expense["id"], expense["category"]) == (created["id"], "groceries")


# --- the summary equals the ledger summed from scratch ------------------------------------------

PEOPLE = [uuid.UUID(int=n) for n in range(1, 5)]  # the owner, an editor, two guests
DAYS = [f"2027-05-0{day}" for day in range(1, 8)]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, list[tuple[Any, ...]]]:
    base = draw(st.sampled_from(CURRENCIES))
    content = st.tuples(expenses(PEOPLE, base), st.sampled_from(CATEGORIES), st.sampled_from(DAYS))
    index = st.integers(0, 20)  # of a live expense, modulo how many there are
    operation = st.one_of(
        st.tuples(st.just("create"), content),
        st.tuples(st.just("create"), content),
        st.tuples(st.just("edit"), index, content),
        st.tuples(st.just("recategorize"), index, st.sampled_from(CATEGORIES)),
        st.tuples(st.just("delete"), index),
        st.tuples(st.just("settle"), settlements(PEOPLE, base)),
    )
    return base, draw(st.lists(operation, min_size=1, max_size=10))


def _json(value: Any) -> Any:
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_the_summary_equals_the_ledger_summed_from_scratch(
    client: TestClient, session: Session, scenario: tuple[str, list[tuple[Any, ...]]]
) -> None:
    base, operations = scenario
    owner, editor = factories.make_user(session), factories.make_user(session)
    trip_id = factories.create_trip(client, owner, base_currency=base)["id"]  # its own trip
    factories.join(client, owner, trip_id, editor, "editor")
    by_user = {p["user_id"]: p["id"] for p in support.participants(client, owner, trip_id)}
    ids = {PEOPLE[0]: by_user[str(owner.id)], PEOPLE[1]: by_user[str(editor.id)]}
    for placeholder in PEOPLE[2:]:
        ids[placeholder] = factories.add_guest(client, owner, trip_id, f"Guest {placeholder}")
    url = f"/trips/{trip_id}"
    live: list[str] = []

    def body(spec: ExpenseSpec, category: str, day: str) -> Any:
        sent = spec.as_body()
        for key in ("payers", "splits"):
            sent[key] = [{**row, "participant_id": ids[row["participant_id"]]} for row in sent[key]]
        return _json({**sent, "category": category, "spent_on": day})

    def send(method: str, path: str, json: Any, status: int) -> Any:
        headers = support.auth(owner, if_match="*")
        response = client.request(method, f"{url}{path}", headers=headers, json=json)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    for kind, *arguments in operations:
        if kind == "create":
            live.append(send("POST", "/expenses", body(*arguments[0]), 201)["id"])
        elif kind == "edit" and live:
            expense_id = live[arguments[0] % len(live)]
            send("PATCH", f"/expenses/{expense_id}", body(*arguments[1]), 200)
        elif kind == "recategorize" and live:
            expense_id = live[arguments[0] % len(live)]
            send("PATCH", f"/expenses/{expense_id}", {"category": arguments[1]}, 200)
        elif kind == "delete" and live:
            send("DELETE", f"/expenses/{live.pop(arguments[0] % len(live))}", None, 204)
        elif kind == "settle":
            spec = arguments[0]
            settlement = {
                "from_participant_id": ids[spec.from_participant_id],
                "to_participant_id": ids[spec.to_participant_id],
                "amount_minor": spec.amount_minor,
                "currency": spec.currency,
                "exchange_rate": spec.exchange_rate,
                "settled_on": "2027-05-06",
            }
            send("POST", "/settlements", _json(settlement), 201)

    summary = check_summary(client, trip_id, owner)
    assert len(listed_expenses(client, trip_id, owner)) == len(live)
    assert summary["currency"] == base
