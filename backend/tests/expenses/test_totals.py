"""The running totals balances read stay equal to the ledger summed from scratch, whatever
sequence of API writes built it: creates, edits, deletes, replays, settlements (also through
the sync batch route), their deletion and the claim of a guest with history; and when
several devices write to one trip at once."""

import random
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from app.expenses.ledger import Payment, SplitEntry, SplitMode
from app.expenses.models import ParticipantTotals
from app.expenses.service import recomputed_totals
from app.main import create_app
from app.participants.models import Participant
from app.participants.service import add_guest
from app.trips import service as trip_service
from app.trips.models import TripCreate
from app.users.models import User
from tests import factories, support
from tests.expenses.strategies import (
    CURRENCIES,
    ExpenseSpec,
    SettlementSpec,
    expenses,
    settlements,
)

# Placeholders for the example's participants: the owner, an editor and two guests.
OWNER, EDITOR, GUEST_1, GUEST_2 = PEOPLE = [uuid.UUID(int=n) for n in range(1, 5)]

Totals = tuple[int, int, int, int]  # paid, owed, settlements paid, settlements received
Operation = tuple[Any, ...]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, list[Operation]]:
    base = draw(st.sampled_from(CURRENCIES))
    index = st.integers(0, 20)  # of a live expense or settlement, modulo how many there are
    operation = st.one_of(
        st.tuples(st.just("create"), expenses(PEOPLE, base)),
        st.tuples(st.just("edit"), index, expenses(PEOPLE, base)),
        st.tuples(st.just("retitle"), index),  # a new revision with the same amounts
        st.tuples(st.just("delete"), index),
        st.tuples(st.just("replay"), index),  # the same create again: nothing changes
        st.tuples(st.just("settle"), settlements(PEOPLE, base), st.booleans()),
        st.tuples(st.just("unsettle"), index),
        st.tuples(st.just("claim"), st.sampled_from([GUEST_1, GUEST_2])),
    )
    return base, draw(st.lists(operation, min_size=2, max_size=12))


def _json(value: Any) -> Any:
    """Ids and decimals as JSON strings (the API takes exact decimals as strings)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


class Example:
    """One trip driven through the API, and what the test knows is live in it."""

    def __init__(self, client: TestClient, session: Session, base: str) -> None:
        self.client, self.session = client, session
        self.owner = factories.make_user(session, full_name="Owner")
        editor = factories.make_user(session, full_name="Editor")
        self.trip_id = factories.create_trip(client, self.owner, base_currency=base)["id"]
        factories.join(client, self.owner, self.trip_id, editor, "editor")
        by_user = {
            p["user_id"]: p["id"] for p in support.participants(client, self.owner, self.trip_id)
        }
        self.ids = {OWNER: by_user[str(self.owner.id)], EDITOR: by_user[str(editor.id)]}
        for placeholder, name in ((GUEST_1, "Guest 1"), (GUEST_2, "Guest 2")):
            self.ids[placeholder] = self.post("/guests", {"name": name})["id"]
        self.expenses: dict[str, dict[str, Any]] = {}  # live: id → body as last sent
        self.settlements: list[str] = []
        self.claimed: set[uuid.UUID] = set()

    def url(self, path: str) -> str:
        return f"/trips/{self.trip_id}{path}"

    def post(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = self.client.post(self.url(path), headers=support.auth(self.owner), json=body)
        assert response.status_code == status, response.text
        return response.json()  # type: ignore[no-any-return]

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        headers = support.auth(self.owner, if_match="*")
        response = self.client.request(method, self.url(path), headers=headers, json=body)
        assert response.status_code in (200, 204), response.text

    def expense_body(self, spec: ExpenseSpec, title: str) -> dict[str, Any]:
        body = spec.as_body(title)
        for key in ("payers", "splits"):
            body[key] = [
                {**row, "participant_id": self.ids[row["participant_id"]]} for row in body[key]
            ]
        return _json(body)  # type: ignore[no-any-return]

    def settlement_body(self, spec: SettlementSpec) -> dict[str, Any]:
        return _json(  # type: ignore[no-any-return]
            {
                "from_participant_id": self.ids[spec.from_participant_id],
                "to_participant_id": self.ids[spec.to_participant_id],
                "amount_minor": spec.amount_minor,
                "currency": spec.currency,
                "exchange_rate": spec.exchange_rate,
                "settled_on": "2027-05-06",
            }
        )

    def apply(self, operation: Operation) -> None:
        kind, *arguments = operation
        live = sorted(self.expenses)
        if kind == "create":
            body = {"id": str(uuid.uuid4()), **self.expense_body(arguments[0], "Random")}
            self.expenses[self.post("/expenses", body)["id"]] = body
        elif kind == "edit" and live:
            expense_id = live[arguments[0] % len(live)]
            body = self.expense_body(arguments[1], "Edited")
            self.send("PATCH", f"/expenses/{expense_id}", body)
            self.expenses[expense_id] = {"id": expense_id, **body}
        elif kind == "retitle" and live:
            expense_id = live[arguments[0] % len(live)]
            title = f"{self.expenses[expense_id]['title']}!"
            self.send("PATCH", f"/expenses/{expense_id}", {"title": title})
            self.expenses[expense_id] = {**self.expenses[expense_id], "title": title}
        elif kind == "delete" and live:
            expense_id = live[arguments[0] % len(live)]
            self.send("DELETE", f"/expenses/{expense_id}")
            del self.expenses[expense_id]
        elif kind == "replay" and live:
            expense_id = live[arguments[0] % len(live)]
            self.post("/expenses", self.expenses[expense_id], status=200)
        elif kind == "settle":
            body = self.settlement_body(arguments[0])
            if arguments[1]:  # through the sync batch route, as a device would
                mutation = {"id": "1", "method": "POST", "path": self.url("/settlements")}
                result = self.post("/mutations", {"mutations": [{**mutation, "body": body}]}, 200)
                assert result["results"][0]["result"] == "applied", result
                self.settlements.append(result["results"][0]["body"]["id"])
            else:
                self.settlements.append(self.post("/settlements", body)["id"])
        elif kind == "unsettle" and self.settlements:
            settlement_id = self.settlements.pop(arguments[0] % len(self.settlements))
            self.send("DELETE", f"/settlements/{settlement_id}")
        elif kind == "claim" and arguments[0] not in self.claimed:
            # A newcomer joins (a participant of their own, no history), then takes the guest.
            newcomer = factories.make_user(self.session, full_name="Newcomer")
            factories.join(self.client, self.owner, self.trip_id, newcomer, "editor")
            guest_id = self.ids[arguments[0]]
            claimed = self.client.post(
                self.url(f"/guests/{guest_id}/claim"), headers=support.auth(newcomer)
            )
            assert claimed.status_code == 200, claimed.text
            self.claimed.add(arguments[0])

    def check(self) -> None:
        """Stored totals == the ledger summed from scratch == what GET /balances reports."""
        stored = stored_totals(self.session, uuid.UUID(self.trip_id))
        reference = reference_totals(self.session, uuid.UUID(self.trip_id))
        assert _non_zero(stored) == _non_zero(reference)

        response = self.client.get(self.url("/balances"), headers=support.auth(self.owner))
        assert response.status_code == 200, response.text
        reported = response.json()["balances"]
        assert sum(b["balance_minor"] for b in reported) == 0
        for balance in reported:
            assert (
                balance["paid_minor"],
                balance["owed_minor"],
                balance["settlements_paid_minor"],
                balance["settlements_received_minor"],
            ) == reference.get(uuid.UUID(balance["participant_id"]), (0, 0, 0, 0))
        assert {uuid.UUID(b["participant_id"]) for b in reported} >= set(_non_zero(reference))


def stored_totals(session: Session, trip_id: uuid.UUID) -> dict[uuid.UUID, Totals]:
    """The running totals as stored (read afresh: upserts bypass the session's copies)."""
    rows = session.exec(
        select(ParticipantTotals)
        .where(col(ParticipantTotals.trip_id) == trip_id)
        .execution_options(populate_existing=True)
    )
    return {
        row.participant_id: (
            row.paid_minor,
            row.owed_minor,
            row.settlements_paid_minor,
            row.settlements_received_minor,
        )
        for row in rows
    }


def reference_totals(session: Session, trip_id: uuid.UUID) -> dict[uuid.UUID, Totals]:
    """The same sums computed from every live entry, from scratch."""
    return {
        participant_id: (paid, owed, paid_back, paid_to)
        for _, participant_id, paid, owed, paid_back, paid_to in session.exec(
            recomputed_totals(trip_id)
        )
    }


def _non_zero(totals: dict[uuid.UUID, Totals]) -> dict[uuid.UUID, Totals]:
    """Participants whose entries were all taken out again keep a row of zeros: no difference."""
    return {participant_id: row for participant_id, row in totals.items() if any(row)}


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_running_totals_equal_the_ledger_summed_from_scratch(
    client: TestClient, session: Session, scenario: tuple[str, list[Operation]]
) -> None:
    base, operations = scenario
    example = Example(client, session, base)  # a trip of its own: examples do not meet
    for operation in operations:
        example.apply(operation)
        example.check()


def test_every_kind_of_ledger_write_keeps_the_totals(client: TestClient, session: Session) -> None:
    """Each path once, whatever Hypothesis happens to draw."""
    example = Example(client, session, "EUR")
    dinner = ExpenseSpec(
        amount_minor=9000,
        currency="EUR",
        exchange_rate=None,
        payers=[Payment(GUEST_1, 9000)],
        split_mode=SplitMode.EQUAL,
        splits=[SplitEntry(OWNER), SplitEntry(EDITOR), SplitEntry(GUEST_1)],
    )
    taxi = ExpenseSpec(
        amount_minor=4000,
        currency="USD",
        exchange_rate=Decimal("0.9"),
        payers=[Payment(OWNER, 1000), Payment(GUEST_2, 3000)],
        split_mode=SplitMode.SHARES,
        splits=[SplitEntry(EDITOR, shares=1), SplitEntry(GUEST_1, shares=2)],
    )
    cash = SettlementSpec(EDITOR, GUEST_1, 3000, "EUR", None)
    for operation in [
        ("create", dinner),
        ("create", taxi),
        ("replay", 0),
        ("retitle", 0),
        ("edit", 1, dinner),
        ("settle", cash, False),
        ("settle", cash, True),
        ("unsettle", 0),
        ("claim", GUEST_1),
        ("delete", 0),
    ]:
        example.apply(operation)
        example.check()
    assert (len(example.expenses), len(example.settlements), example.claimed) == (1, 1, {GUEST_1})


def test_a_claimed_guest_keeps_its_totals(client: TestClient, session: Session) -> None:
    example = Example(client, session, "EUR")
    guest = example.ids[GUEST_1]
    example.post(
        "/expenses",
        {
            "title": "Dinner",
            "amount_minor": 9000,
            "currency": "EUR",
            "spent_on": "2027-05-02",
            "payers": [{"participant_id": guest, "amount_minor": 9000}],
            "split_mode": "equal",
            "splits": [{"participant_id": example.ids[p]} for p in (OWNER, EDITOR, GUEST_1)],
        },
    )
    example.apply(("claim", GUEST_1))
    example.check()
    totals = session.get_one(ParticipantTotals, (uuid.UUID(example.trip_id), uuid.UUID(guest)))
    assert (totals.paid_minor, totals.owed_minor) == (9000, 3000)


# --- concurrent writers, on committed data ----------------------------------------------------

DEVICES = 3
WRITES_PER_DEVICE = 12


@pytest.fixture
def committed_trip(engine: Engine) -> Iterator[tuple[User, uuid.UUID, list[str]]]:
    """A committed owner and trip with two guests; all removed afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        owner = factories.make_user(session)
        trip = trip_service.create_trip(
            session=session,
            owner=owner,
            data=TripCreate(name="Race", start_date=date(2027, 5, 1), end_date=date(2027, 5, 3)),
        ).value
        guests = [
            add_guest(session=session, trip_id=trip.id, name=name, actor_id=owner.id).value.id
            for name in ("Ann", "Bob")
        ]
        own = session.exec(
            select(Participant.id).where(
                Participant.trip_id == trip.id, Participant.user_id == owner.id
            )
        ).one()
        session.commit()
    try:
        yield owner, trip.id, [str(own), *map(str, guests)]
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM trips WHERE id = :t"), {"t": trip.id})
            connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": owner.id})


def test_concurrent_ledger_writes_lose_no_update(
    engine: Engine, committed_trip: tuple[User, uuid.UUID, list[str]]
) -> None:
    """Devices writing to one trip at once: each write's upsert sees the previous one's."""
    owner, trip_id, people = committed_trip
    base = f"/trips/{trip_id}"
    start = threading.Barrier(DEVICES, timeout=30)
    errors: list[BaseException] = []

    def expense(rng: random.Random) -> dict[str, Any]:
        amount = rng.randint(1, 100_000)
        return {
            "title": "Race",
            "amount_minor": amount,
            "currency": "EUR",
            "spent_on": "2027-05-02",
            "payers": [{"participant_id": rng.choice(people), "amount_minor": amount}],
            "split_mode": "equal",
            "splits": [{"participant_id": pid} for pid in rng.sample(people, rng.randint(1, 3))],
        }

    def device(client: TestClient, seed: int) -> None:
        rng = random.Random(seed)
        headers, if_match = support.auth(owner), support.auth(owner, if_match="*")
        try:
            start.wait()
            for _ in range(WRITES_PER_DEVICE):
                created = client.post(f"{base}/expenses", headers=headers, json=expense(rng))
                assert created.status_code == 201, created.text
                url = f"{base}/expenses/{created.json()['id']}"
                action = rng.choice(["keep", "edit", "delete"])
                if action == "edit":
                    response = client.patch(url, headers=if_match, json=expense(rng))
                    assert response.status_code == 200, response.text
                elif action == "delete":
                    assert client.delete(url, headers=if_match).status_code == 204
                payer, payee = rng.sample(people, 2)
                settled = client.post(
                    f"{base}/settlements",
                    headers=headers,
                    json={
                        "from_participant_id": payer,
                        "to_participant_id": payee,
                        "amount_minor": rng.randint(1, 50_000),
                        "currency": "EUR",
                        "settled_on": "2027-05-02",
                    },
                )
                assert settled.status_code == 201, settled.text
        except BaseException as error:  # surfaced below, not lost in the thread
            errors.append(error)

    clients = [TestClient(create_app(), raise_server_exceptions=False) for _ in range(DEVICES)]
    for client in clients:  # routes build some validators lazily: not from two threads at once
        headers, missing = support.auth(owner, if_match="*"), f"{base}/expenses/{uuid.uuid4()}"
        assert client.get(f"{base}/balances", headers=headers).status_code == 200
        assert client.post(f"{base}/expenses", headers=headers, json={}).status_code == 422
        assert client.post(f"{base}/settlements", headers=headers, json={}).status_code == 422
        assert client.patch(missing, headers=headers, json={"title": "x"}).status_code == 404
        assert client.delete(missing, headers=headers).status_code == 404
    threads = [threading.Thread(target=device, args=(c, n)) for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    with Session(engine) as session:
        assert _non_zero(stored_totals(session, trip_id)) == _non_zero(
            reference_totals(session, trip_id)
        )
    report = clients[0].get(f"{base}/balances", headers=support.auth(owner)).json()
    assert sum(b["balance_minor"] for b in report["balances"]) == 0
