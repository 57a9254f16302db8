"""Rebalancing: moving items into the same gap again and again never wears the keys out; the
day's keys are spread afresh, and devices receive the rewritten rows as ordinary changes."""

import uuid
from datetime import date

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app.core.preconditions import ANY_VERSION
from app.itinerary import service
from app.itinerary.models import ItemMove, ItineraryItem
from app.itinerary.order_keys import REBALANCE_LENGTH
from tests import factories, support
from tests.sync.support import Replica

DAY = "2027-05-02"
# In the service each move is some 7 statements (13-25 ms on a busy CI machine): 1,000 moves
# go round the rebalancing cycle (~140 moves for six items) seven times. The 20,000 moves of
# the issue run on the keys alone (tests/itinerary/test_order_keys.py).
MOVES = 1_000
CHECK_EVERY = 200


def _order(session: Session, trip_id: str) -> list[tuple[str, str]]:
    """The day's (id, key) in the database's order."""
    rows = session.exec(
        select(col(ItineraryItem.id), col(ItineraryItem.order_key))
        .where(ItineraryItem.trip_id == uuid.UUID(trip_id), col(ItineraryItem.day) == DAY)
        .order_by(col(ItineraryItem.order_key))
    ).all()
    return [(str(row_id), key) for row_id, key in rows]


def _replica_order(replica: Replica) -> list[tuple[str, str]]:
    items = [data for (entity, _), data in replica.state().items() if entity == "item"]
    on_day = sorted((item["order_key"], item["id"]) for item in items if item["day"] == DAY)
    return [(item_id, key) for key, item_id in on_day]


def test_moving_into_the_same_gap_again_and_again_keeps_working(
    client: TestClient, session: Session
) -> None:
    """The last item of the day goes right after the first, over and over (in the service,
    committing every CHECK_EVERY moves): without rebalancing the keys grew a character every
    ~5 moves and ran out after ~5,100. A device pulling changes keeps the server's order."""
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    trip_id = uuid.UUID(trip["id"])
    expected = [factories.add_item(client, owner, trip["id"], day=DAY)["id"] for _ in range(6)]
    first_keys = {_order(session, trip["id"])[0][1]}  # the first item only moves if rebalanced
    device = Replica(client, owner, trip["id"])
    longest = 0
    for move in range(1, MOVES + 1):
        moving = expected.pop()
        expected.insert(1, moving)
        moved = service.move_item(
            session=session,
            trip_id=trip_id,
            item_id=uuid.UUID(moving),
            data=ItemMove(day=date.fromisoformat(DAY), after_id=uuid.UUID(expected[0])),
            actor_id=owner.id,
            expected=ANY_VERSION,
        )
        longest = max(longest, len(moved.order_key))
        if move % CHECK_EVERY == 0:
            session.commit()  # the next moves are another transaction, with another version
            order = _order(session, trip["id"])
            assert [row_id for row_id, _ in order] == expected
            first_keys.add(order[0][1])
            device.pull()
            assert _replica_order(device) == order
    assert longest <= REBALANCE_LENGTH
    assert len(first_keys) > 1, "the day was never rebalanced"


def test_a_move_that_rebalances_answers_like_any_move(client: TestClient, session: Session) -> None:
    """Over HTTP: the move that makes the day rebalance returns the item in its new spot, the
    list shows the intended order, and the other items carry new versions (and ETags)."""
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    expected = [factories.add_item(client, owner, trip["id"], day=DAY)["id"] for _ in range(3)]
    versions = {
        item["id"]: item["version"] for item in support.list_items(client, owner, trip["id"])
    }
    for _ in range(REBALANCE_LENGTH * 8):
        moving = expected.pop()
        expected.insert(1, moving)
        response = client.post(
            f"/trips/{trip['id']}/items/{moving}/move",
            headers=support.auth(owner, if_match="*"),
            json={"day": DAY, "after_id": expected[0]},
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["order_key"]) <= REBALANCE_LENGTH
    listed = support.list_items(client, owner, trip["id"])
    assert [item["id"] for item in listed] == expected
    # The first item never moved: only a rebalance gave it a new version.
    assert listed[0]["version"] > versions[expected[0]]
