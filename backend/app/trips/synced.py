"""Trips and their members in the sync feed: the trip holds the trip's clock."""

from typing import Any

from sqlalchemy import Select
from sqlmodel import col

from app.core.json_sql import json_object
from app.sync.feed_sql import feed_rows, role_param, trip_id_param, upsert
from app.sync.registry import SyncedEntity, Versions, register
from app.trips.models import MemberPublic, Trip, TripMember, TripPublic
from app.users.models import User


def _trips(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    data = json_object(TripPublic, Trip, role=role_param())
    change = upsert("trip", Trip.id, Trip.version, data)
    return feed_rows("trip", Trip.id, Trip.version, change).where(
        col(Trip.id) == trip_id_param(), versions(Trip.version)
    )


def _members(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    data = json_object(
        MemberPublic,
        user_id=TripMember.user_id,
        email=User.email,
        full_name=User.full_name,
        role=TripMember.role,
        joined_at=TripMember.created_at,
        version=TripMember.version,
    )
    change = upsert("member", TripMember.user_id, TripMember.version, data)
    return (
        feed_rows("member", TripMember.user_id, TripMember.version, change)
        .join(User, col(User.id) == TripMember.user_id)
        .where(col(TripMember.trip_id) == trip_id_param(), versions(TripMember.version))
    )


register(SyncedEntity("trip", Trip, position=0, reader=_trips, trip_column="id", clock=True))
register(SyncedEntity("member", TripMember, position=1, reader=_members, id_column="user_id"))
