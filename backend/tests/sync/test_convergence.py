"""Convergence: several devices edit one trip at once, some offline, all pulling changes.

Each simulated device (a thread with its own HTTP client on the real app and committed data)
makes seeded-random creates, edits, moves and deletes — online one by one, or queued while
offline and sent later as a batch, sometimes twice (a retry after a lost answer). At the end:
every device's copy, built only from a snapshot and the changes feed, equals the server's
state; no write was applied twice; and every write was either applied or answered with the
reason it was not. A failing run prints its seed.
"""

import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from app.activity.models import Activity
from app.main import create_app
from app.participants.models import Participant
from app.trips.models import Role, Trip, TripMember
from app.users.models import User
from tests import factories, support
from tests.sync.support import Replica

DAYS = ["2027-05-01", "2027-05-02", None]
DEVICES = 3
OPERATIONS = 40


@dataclass
class Write:
    """One intended write and what the server said about it."""

    key: str
    kind: str
    item_id: str
    title: str | None = None
    status: int | None = None
    result: str | None = None
    code: str | None = None
    version: int | None = None


@dataclass
class Device:
    user: User
    rng: random.Random
    client: TestClient
    trip_id: str
    replica: Replica = field(init=False)
    writes: list[Write] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.replica = Replica(self.client, self.user, self.trip_id)

    # --- choosing a write from the local copy -------------------------------------------------

    def _local_items(self) -> list[tuple[str, dict[str, Any], int]]:
        return [
            (item_id, data, version)
            for (entity, item_id), (version, data) in self.replica.rows.items()
            if entity == "item"
        ]

    def _next_write(self) -> tuple[Write, dict[str, Any]]:
        base = f"/trips/{self.trip_id}/items"
        key = str(uuid.uuid4())
        items = self._local_items()
        choice = self.rng.random()
        if not items or choice < 0.35:
            item_id = str(uuid.uuid4())
            title = f"new {self.rng.randrange(10**6)}"
            day = self.rng.choice(DAYS)
            body = {"id": item_id, "kind": "note", "title": title, "day": day}
            return Write(key, "create", item_id, title), _request("POST", base, key, body=body)
        item_id, data, version = self.rng.choice(items)
        if choice < 0.65:
            title = f"edit {self.rng.randrange(10**6)}"
            request = _request(
                "PATCH", f"{base}/{item_id}", key, version=version, body={"title": title}
            )
            return Write(key, "edit", item_id, title), request
        if choice < 0.85:
            same_day = [i for i, d, _ in items if d["day"] == data["day"] and i != item_id]
            anchor = {"before_id": self.rng.choice(same_day)} if same_day else {}
            body = {"day": data["day"], **anchor}
            return Write(key, "move", item_id), _request(
                "POST", f"{base}/{item_id}/move", key, body=body
            )
        request = _request("DELETE", f"{base}/{item_id}", key, version=version)
        return Write(key, "delete", item_id), request

    # --- sending -------------------------------------------------------------------------------

    def _record(self, write: Write, status: int, body: Any, result: str) -> None:
        write.status, write.result = status, result
        if isinstance(body, dict):
            write.code = body.get("code")
            if result == "applied" and "version" in body:
                write.version = body["version"]
        self.writes.append(write)

    def online(self) -> None:
        write, request = self._next_write()
        response = self.client.request(
            request["method"],
            request["path"],
            headers={**support.auth(self.user), **request["headers"]},
            json=request["body"],
        )
        body = response.json() if response.content else None
        result = (
            "applied"
            if response.is_success
            else ("conflict" if response.status_code in (409, 412) else "rejected")
        )
        self._record(write, response.status_code, body, result)

    def offline(self, count: int) -> None:
        queued = [self._next_write() for _ in range(count)]  # all from the same stale copy
        mutations = [{"id": w.key, **request} for w, request in queued]
        answers = [self._send_batch(mutations)]
        if self.rng.random() < 0.4:  # the answer was lost: the device sends the batch again
            answers.append(self._send_batch(mutations))
        first = answers[0]
        for (write, _), outcome in zip(queued, first, strict=True):
            self._record(write, outcome["status"], outcome["body"], outcome["result"])
        for retry in answers[1:]:
            for before, again in zip(first, retry, strict=True):
                if before["result"] == "applied":  # a replay, never a second application
                    assert (again["status"], again["body"]) == (before["status"], before["body"])

    def _send_batch(self, mutations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self.client.post(
            f"/trips/{self.trip_id}/mutations",
            headers=support.auth(self.user),
            json={"mutations": mutations},
        )
        assert response.status_code == 200, response.text
        return response.json()["results"]  # type: ignore[no-any-return]

    def run(self) -> None:
        for _ in range(OPERATIONS):
            if self.rng.random() < 0.15:
                self.offline(self.rng.randint(2, 5))
            else:
                self.online()
            if self.rng.random() < 0.4:
                self.replica.pull(limit=self.rng.choice([3, 50]))
        self.replica.pull()


def _request(
    method: str, path: str, key: str, *, version: int | None = None, body: Any = None
) -> dict[str, Any]:
    headers = {"Idempotency-Key": key}
    if version is not None:
        headers["If-Match"] = f'"{version}"'
    return {"method": method, "path": path, "headers": headers, "body": body}


@pytest.fixture
def shared_trip(engine: Engine) -> Iterator[tuple[str, list[User]]]:
    with Session(engine, expire_on_commit=False) as session:
        users = [factories.make_user(session, full_name=f"Device {n}") for n in range(DEVICES)]
        trip = Trip(name="Converge", start_date=date(2027, 5, 1), end_date=date(2027, 5, 2))
        session.add(trip)
        session.flush()
        for n, user in enumerate(users):
            role = Role.OWNER if n == 0 else Role.EDITOR
            session.add(TripMember(trip_id=trip.id, user_id=user.id, role=role))
            session.add(Participant(trip_id=trip.id, user_id=user.id, name=user.full_name))
        session.commit()
    yield str(trip.id), users
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE id = :t"), {"t": trip.id})
        connection.execute(text("DELETE FROM sync_tombstones WHERE trip_id = :t"), {"t": trip.id})
        for user in users:
            connection.execute(
                text("DELETE FROM idempotency_keys WHERE scope = :s"), {"s": str(user.id)}
            )
            connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_devices_converge_and_no_write_is_applied_twice_or_lost_silently(
    engine: Engine, shared_trip: tuple[str, list[User]], seed: int
) -> None:
    trip_id, users = shared_trip
    app = create_app()
    devices = [
        Device(user, random.Random(seed * 100 + n), TestClient(app), trip_id)
        for n, user in enumerate(users)
    ]
    failures: list[BaseException] = []

    def run(device: Device) -> None:
        try:
            device.run()
        except BaseException as error:  # reported below with the seed
            failures.append(error)

    threads = [threading.Thread(target=run, args=(device,)) for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, f"seed {seed}: {failures[0]!r}"

    writes = [write for device in devices for write in device.writes]
    outcomes = {r: sum(w.result == r for w in writes) for r in ("applied", "conflict", "rejected")}
    print(f"seed {seed}: {len(writes)} writes {outcomes}")
    # Every intended write got an answer: applied, or the reason it was not.
    assert all(w.result in {"applied", "conflict", "rejected"} for w in writes), f"seed {seed}"
    assert all(w.code for w in writes if w.result != "applied"), f"seed {seed}"

    # Every device's copy, built only from snapshot + changes, equals the server's state.
    for device in devices:
        device.replica.pull()
        fresh = Replica(device.client, device.user, trip_id)
        assert device.replica.state() == fresh.state(), f"seed {seed}: {device.user.full_name}"

    with Session(engine) as session:
        # No write applied twice: one activity entry per applied write, whatever the retries.
        logged = session.exec(
            select(Activity.action).where(
                Activity.trip_id == uuid.UUID(trip_id),
                Activity.object_type == "itinerary_item",
            )
        ).all()
        applied = [w for w in writes if w.result == "applied"]
        assert len(logged) == len(applied), f"seed {seed}: {len(logged)} != {len(applied)}"
    # No lost update: an item's final title is the one from its latest applied edit or create.
    final = {item_id: data for (entity, item_id), data in fresh.state().items() if entity == "item"}
    latest: dict[str, Write] = {}
    for write in writes:
        if write.result != "applied" or write.title is None or write.version is None:
            continue
        if write.item_id not in latest or write.version > (latest[write.item_id].version or 0):
            latest[write.item_id] = write
    for item_id, write in latest.items():
        if item_id in final:
            assert final[item_id]["title"] == write.title, f"seed {seed}: {item_id}"
