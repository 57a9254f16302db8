"""What other features do when a trip changes: they subscribe here, trips calls.

A parent does not import its children: trips knows these hook points, not who fills them.
Each is filled at import by the subscribing feature's service module (participants,
itinerary, expenses, activity); `create_app` refuses to start while one has no subscriber.
Subscribers run in the caller's transaction, in the order they subscribed.
"""

from collections.abc import Callable
from typing import Any

from app.core.hooks import Hook

# (session, trip_id, user): a user became a member (the trip's creator included).
member_joined: Hook[Callable[..., Any]] = Hook("member_joined")
# (session, trip_id): the base currency is about to change; raise to refuse it.
base_currency_changing: Hook[Callable[..., None]] = Hook("base_currency_changing")
# (session, trip_id, start_date, end_date): the dates changed; return the ids of the
# itinerary items this moved out of the dates (unscheduled).
dates_changed: Hook[Callable[..., list[Any]]] = Hook("dates_changed")
# (session, trip_id, actor_id, action, object_type, object_id, summary): something happened
# in the trip that its activity log keeps.
happened: Hook[Callable[..., None]] = Hook("happened")

HOOKS = (member_joined, base_currency_changing, dates_changed, happened)


def unsubscribed() -> list[str]:
    """The hook points nobody subscribed to: a feature module was never imported."""
    return [hook.name for hook in HOOKS if not hook.subscribers]
