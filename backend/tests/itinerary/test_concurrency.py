"""Two devices reorder and fill the same day at once, through the real app on committed data."""

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session, col, func, select

from app.itinerary import service as itinerary_service
from app.itinerary.models import ItemCreate, ItemKind, ItineraryItem
from app.main import create_app
from app.trips import service as trip_service
from app.trips.models import TripCreate
from app.users.models import User
from tests import factories, support

DAY = date(2027, 5, 2)
DEVICES = 2
ITEMS = 8
MOVES_PER_DEVICE = 25


@pytest.fixture
def committed_trip(engine: Engine) -> Iterator[tuple[User, uuid.UUID, list[uuid.UUID]]]:
    """A committed user and trip with ITEMS items on DAY; all removed afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        user = factories.make_user(session)
        trip = trip_service.create_trip(
            session=session,
            owner=user,
            data=TripCreate(name="Race", start_date=date(2027, 5, 1), end_date=date(2027, 5, 3)),
        ).value
        item_ids = [
            itinerary_service.create_item(
                session=session,
                trip_id=trip.id,
                data=ItemCreate(kind=ItemKind.ACTIVITY, title=f"#{index}", day=DAY),
                actor_id=user.id,
            ).value.id
            for index in range(ITEMS)
        ]
        session.commit()
    try:
        yield user, trip.id, item_ids
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM trips WHERE id = :t"), {"t": trip.id})
            connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def _warmed_up_client(user: User, trip_id: uuid.UUID) -> TestClient:
    """A client whose routes have served once: the framework builds some validators lazily,
    and two threads building the same one at once race (a pydantic warning, not our bug)."""
    client = TestClient(create_app(), raise_server_exceptions=False)
    headers = support.auth(user)
    base = f"/trips/{trip_id}/items"
    assert (
        client.post(f"{base}/{uuid.uuid4()}/move", headers=headers, json={"day": None}).status_code
        == 404
    )
    assert client.post(base, headers=headers, json={"kind": "meal"}).status_code == 422
    assert client.get(base, headers=headers).status_code == 200
    return client


def _run_devices(
    user: User, trip_id: uuid.UUID, work: Callable[[TestClient, random.Random], list[int]]
) -> list[int]:
    """Run `work` on DEVICES threads, released together; return every status code seen."""
    start = threading.Barrier(DEVICES, timeout=30)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def device(client: TestClient, seed: int) -> None:
        try:
            start.wait()
            statuses.extend(work(client, random.Random(seed)))
        except BaseException as error:  # surfaced below, not lost in the thread
            errors.append(error)

    # One app per device, built and warmed up here, before the threads start.
    clients = [_warmed_up_client(user, trip_id) for _ in range(DEVICES)]
    threads = [
        threading.Thread(target=device, args=(client, seed)) for seed, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return statuses


def _day_keys(engine: Engine, trip_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(ItineraryItem.id, ItineraryItem.order_key)
            .where(ItineraryItem.trip_id == trip_id, ItineraryItem.day == DAY)
            .order_by(col(ItineraryItem.order_key))
        ).all()
        return [(item_id, key) for item_id, key in rows]


def _assert_total_order(client: TestClient, user: User, trip_id: uuid.UUID, count: int) -> None:
    listed = client.get(
        f"/trips/{trip_id}/items",
        headers=support.auth(user),
        params={"day": DAY.isoformat(), "limit": 100},
    ).json()["items"]
    keys = [item["order_key"] for item in listed]
    assert len(listed) == count
    assert len(set(keys)) == len(keys), "two items share a position"
    assert keys == sorted(keys), "the list is not in key order"
    assert len({item["id"] for item in listed}) == count


def test_two_devices_reordering_one_day_keep_a_total_order(
    engine: Engine, committed_trip: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    user, trip_id, item_ids = committed_trip
    headers = support.auth(user)

    def reorder(client: TestClient, rng: random.Random) -> list[int]:
        statuses = []
        for _ in range(MOVES_PER_DEVICE):
            item, anchor = rng.sample(item_ids, 2)
            side = rng.choice(["after_id", "before_id"])
            body: dict[str, Any] = {"day": DAY.isoformat(), side: str(anchor)}
            response = client.post(
                f"/trips/{trip_id}/items/{item}/move", headers=headers, json=body
            )
            statuses.append(response.status_code)
        return statuses

    statuses = _run_devices(user, trip_id, reorder)
    # Writers into one day queue on its lock: every move succeeds, none needs a retry.
    assert statuses == [200] * (DEVICES * MOVES_PER_DEVICE)
    rows = _day_keys(engine, trip_id)
    assert sorted(item_id for item_id, _ in rows) == sorted(item_ids)
    assert len({key for _, key in rows}) == ITEMS
    _assert_total_order(TestClient(create_app()), user, trip_id, ITEMS)


def test_two_devices_adding_and_moving_into_one_day(
    engine: Engine, committed_trip: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    user, trip_id, item_ids = committed_trip
    headers = support.auth(user)
    per_device = 10

    def add_and_move(client: TestClient, rng: random.Random) -> list[int]:
        statuses = []
        for index in range(per_device):
            created = client.post(
                f"/trips/{trip_id}/items",
                headers=headers,
                json={"kind": "meal", "title": f"new {index}", "day": DAY.isoformat()},
            )
            statuses.append(created.status_code)
            if created.status_code != 201:
                continue
            # ...and at once put it right after the first original item.
            moved = client.post(
                f"/trips/{trip_id}/items/{created.json()['id']}/move",
                headers=headers,
                json={"day": DAY.isoformat(), "after_id": str(item_ids[0])},
            )
            statuses.append(moved.status_code)
        return statuses

    statuses = _run_devices(user, trip_id, add_and_move)
    assert sorted(set(statuses)) == [200, 201]
    total = ITEMS + DEVICES * per_device
    _assert_total_order(TestClient(create_app()), user, trip_id, total)
    with Session(engine) as session:
        stored = session.exec(
            select(func.count(col(ItineraryItem.order_key).distinct())).where(
                ItineraryItem.trip_id == trip_id
            )
        ).one()
    assert stored == total
