"""Order keys: a key between any two always exists, and PostgreSQL sorts them as Python does."""

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text
from sqlmodel import Session, col, select

from app.itinerary.models import ItemKind, ItineraryItem
from app.itinerary.order_keys import (
    DIGITS,
    FIRST_KEY,
    REBALANCE_LENGTH,
    is_order_key,
    key_between,
    spread_keys,
)
from app.trips.models import Trip
from tests import factories

keys = (
    st.text(alphabet=DIGITS, min_size=1, max_size=24).map(lambda key: key.rstrip("0")).filter(bool)
)


@given(keys, keys)
def test_a_key_between_two_keys_sorts_strictly_between(first: str, second: str) -> None:
    low, high = sorted((first, second))
    if low == high:
        return
    key = key_between(low, high)
    assert low < key < high
    assert is_order_key(key)


@given(keys)
def test_open_ends_append_and_prepend(key: str) -> None:
    after, before = key_between(key, None), key_between(None, key)
    assert before < key < after
    assert is_order_key(after)
    assert is_order_key(before)


@settings(max_examples=150)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=200))
def test_any_sequence_of_inserts_keeps_a_strict_order(spots: list[int]) -> None:
    ordered: list[str] = []
    for spot in spots:
        index = spot % (len(ordered) + 1)
        before = ordered[index - 1] if index > 0 else None
        after = ordered[index] if index < len(ordered) else None
        ordered.insert(index, key_between(before, after))
    assert ordered == sorted(ordered)
    assert len(set(ordered)) == len(ordered)


def test_many_inserts_at_the_same_spot_stay_ordered_and_short_enough() -> None:
    first, last = key_between(None, None), key_between(key_between(None, None), None)
    # Always right after `first`: the gap halves each time.
    ordered = [first, last]
    for _ in range(2000):
        ordered.insert(1, key_between(ordered[0], ordered[1]))
    assert ordered == sorted(ordered)
    assert len(set(ordered)) == len(ordered)
    assert max(map(len, ordered)) <= 2000 // 4  # about one character per five inserts
    # Always right before `last`.
    ordered = [first, last]
    for _ in range(2000):
        ordered.insert(-1, key_between(ordered[-2], ordered[-1]))
    assert ordered == sorted(ordered)
    assert len(set(ordered)) == len(ordered)


def test_twenty_thousand_moves_into_one_gap_with_rebalancing() -> None:
    """The service's rule (app.itinerary.service._place) on keys alone: a key longer than
    REBALANCE_LENGTH makes the list take spread keys, avoiding every key it had."""
    ordered = spread_keys(6)
    items = list(range(6))
    rebalances = 0
    for _ in range(20_000):
        items.insert(1, items.pop())
        ordered.pop()
        key = key_between(ordered[0], ordered[1])
        if len(key) > REBALANCE_LENGTH:
            old = set(ordered)
            ordered = spread_keys(len(ordered) + 1, avoid=old)
            assert not old & set(ordered)
            rebalances += 1
        else:
            ordered.insert(1, key)
        assert len(ordered) == 6
        assert ordered == sorted(ordered)
        assert max(map(len, ordered)) <= REBALANCE_LENGTH
    assert rebalances > 100


@given(st.integers(min_value=0, max_value=3000), st.sets(keys, max_size=300))
def test_spread_keys_are_ordered_short_and_avoid_the_old_ones(count: int, avoid: set[str]) -> None:
    spread = spread_keys(count, avoid)
    assert len(spread) == count
    assert spread == sorted(set(spread))
    assert all(is_order_key(key) for key in spread)
    assert not set(spread) & avoid
    assert all(len(key) <= 4 for key in spread)


def test_appending_and_prepending_keep_keys_short() -> None:
    appended, prepended = [FIRST_KEY], [FIRST_KEY]
    for _ in range(1000):
        appended.append(key_between(appended[-1], None))
        prepended.insert(0, key_between(None, prepended[0]))
    assert appended == sorted(appended)
    assert prepended == sorted(prepended)
    assert max(map(len, appended + prepended)) <= 40


@pytest.mark.parametrize(
    ("before", "after"),
    [("", None), ("V0", None), (None, "a-b"), ("b", "a"), ("a", "a"), (None, "0")],
)
def test_invalid_bounds_are_refused(before: str | None, after: str | None) -> None:
    with pytest.raises(ValueError, match=r"order key|sort before"):
        key_between(before, after)


def test_the_database_orders_keys_bytewise(session: Session) -> None:
    """Keys mix cases: under a linguistic collation 'a' < 'B'; the column uses "C"."""
    columns = {c["name"]: c for c in inspect(session.connection()).get_columns("itinerary_items")}
    assert getattr(columns["order_key"]["type"], "collation", None) == "C"
    owner = factories.make_user(session)
    trip = Trip(name="Keys", start_date=date(2027, 1, 1), end_date=date(2027, 1, 2))
    session.add(trip)
    session.flush()
    mixed = ["a", "B", "Z", "b", "0z", "1", "zz", "A1", "Az"]
    session.add_all(
        ItineraryItem(
            trip_id=trip.id, kind=ItemKind.NOTE, title=key, order_key=key, created_by=owner.id
        )
        for key in mixed
    )
    session.flush()
    stored = session.exec(
        select(ItineraryItem.order_key)
        .where(ItineraryItem.trip_id == trip.id)
        .order_by(col(ItineraryItem.order_key))
    ).all()
    assert list(stored) == sorted(mixed)
    # Whatever the database's default collation, the column comparison is bytewise.
    below = session.execute(
        text("SELECT count(*) FROM itinerary_items WHERE trip_id = :t AND order_key < 'a'"),
        {"t": trip.id},
    ).scalar_one()
    assert below == sum(1 for key in mixed if key < "a")
