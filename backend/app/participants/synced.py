"""Participants in the sync feed; a membership joining or leaving re-versions its participant."""

from typing import Any

from sqlalchemy import Select
from sqlmodel import Session, col, func, select

from app.core.json_sql import json_object
from app.participants.models import Participant, ParticipantPublic
from app.sync.feed_sql import feed_rows, trip_id_param, upsert
from app.sync.registry import SyncedEntity, Touch, Versions, register, register_touch
from app.trips.models import TripMember
from app.users.models import User


def _participants(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    is_member = (
        select(TripMember.user_id)
        .where(
            # The trip parameter, not the outer row's: Citus routes the subquery by it.
            col(TripMember.trip_id) == trip_id_param(),
            col(TripMember.user_id) == Participant.user_id,
        )
        .exists()
    )
    data = json_object(
        ParticipantPublic,
        Participant,
        # Members are shown with their account's name, guests with theirs.
        name=func.coalesce(User.full_name, Participant.name),
        is_guest=col(Participant.user_id).is_(None),
        is_member=is_member,
    )
    change = upsert("participant", Participant.id, Participant.version, data)
    return (
        feed_rows("participant", Participant.id, Participant.version, change)
        .outerjoin(User, col(User.id) == Participant.user_id)
        .where(col(Participant.trip_id) == trip_id_param(), versions(Participant.version))
    )


def _participant_of(session: Session, member: TripMember) -> Participant | None:
    """A member's participant shows `is_member`: it changes when they join or leave."""
    return session.execute(
        select(Participant).where(
            col(Participant.trip_id) == member.trip_id, col(Participant.user_id) == member.user_id
        )
    ).scalar_one_or_none()


register(SyncedEntity("participant", Participant, position=2, reader=_participants))
register_touch(Touch(TripMember, parent=_participant_of, on=frozenset({"new", "deleted"})))
