"""Per-trip versions: how every write is stamped so that no client can skip a committed change.

Each trip has a counter, `trips.head_version`. A transaction that writes anything in a trip
first runs `UPDATE trips SET head_version = head_version + 1 ... RETURNING head_version`,
which also locks the trip row until the transaction ends. Every synced row it writes (and
every tombstone it leaves) carries that value in `version`.

Why a locked counter and not a sequence or a timestamp: with a global sequence, transaction
A can take 41, transaction B take 42 and commit first; a client that pulls then sees 42 and
moves its cursor past 41, and when A commits a moment later its row (version 41) is behind
the cursor and is never sent. Holding the trip row's lock from the bump to the commit makes
version order equal commit order within a trip, so "everything after my cursor" is always
complete. The cost is that writes to one trip are serialised, which a trip's handful of
writers never notices; different trips never wait for each other.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, SQLModel, col, select

from app.checklists.models import Checklist, ChecklistItem
from app.expenses.models import Expense, Settlement
from app.itinerary.models import ItemParticipant, ItineraryItem
from app.participants.models import Participant
from app.sync.models import Tombstone
from app.trips.models import Trip, TripMember

_CLAIMED = "sync_versions"


@dataclass(frozen=True)
class Entity:
    """A kind of synced row: its name in the feed and how to find its trip and its id."""

    name: str
    model: type[SQLModel]

    def trip_id(self, row: Any) -> uuid.UUID:
        return row.id if self.model is Trip else row.trip_id  # type: ignore[no-any-return]

    def row_id(self, row: Any) -> uuid.UUID:
        return row.user_id if self.model is TripMember else row.id  # type: ignore[no-any-return]


ENTITIES = (
    Entity("trip", Trip),
    Entity("member", TripMember),
    Entity("participant", Participant),
    Entity("item", ItineraryItem),
    Entity("checklist", Checklist),
    Entity("checklist_item", ChecklistItem),
    Entity("expense", Expense),
    Entity("settlement", Settlement),
)
_BY_MODEL = {entity.model: entity for entity in ENTITIES}


def entity_of(model: type[SQLModel]) -> Entity:
    """The synced kind of row this table holds."""
    return _BY_MODEL[model]


def claim_version(session: Session | OrmSession, trip_id: uuid.UUID) -> int:
    """The version of this transaction's writes to the trip; the first call locks the trip.

    Call it before taking any other lock in the trip, so writers queue on one row in one order.
    """
    claimed = _claim(session, trip_id, member_id=None)
    if claimed is None:
        raise LookupError(f"trip {trip_id} does not exist")
    return claimed


def holds_trip_lock(session: Session | OrmSession, trip_id: uuid.UUID) -> bool:
    """Whether this transaction has claimed the trip's version, so holds its row lock."""
    return trip_id in session.info.get(_CLAIMED, {})


def claim_version_as_member(
    session: Session | OrmSession, trip_id: uuid.UUID, member_id: uuid.UUID
) -> int | None:
    """As `claim_version`, only if `member_id` is a member of the trip: else None, no lock."""
    return _claim(session, trip_id, member_id=member_id)


def _claim(
    session: Session | OrmSession, trip_id: uuid.UUID, member_id: uuid.UUID | None
) -> int | None:
    claimed: dict[uuid.UUID, int] = session.info.setdefault(_CLAIMED, {})
    if trip_id not in claimed:
        statement = update(Trip).where(col(Trip.id) == trip_id)
        if member_id is not None:
            statement = statement.where(
                select(TripMember.user_id)
                .where(TripMember.trip_id == trip_id, TripMember.user_id == member_id)
                .exists()
            )
        bumped = session.execute(
            statement.values(head_version=col(Trip.head_version) + 1)
            .returning(col(Trip.head_version))
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if bumped is None:
            return None
        claimed[trip_id] = bumped
    return claimed[trip_id]


def _stamp(session: OrmSession, _context: Any, _instances: Any) -> None:
    """Before each flush: version every synced row written, and tombstone every deleted one."""
    with session.no_autoflush:
        _stamp_rows(session)


def _stamp_rows(session: OrmSession) -> None:
    claimed: dict[uuid.UUID, int] = session.info.setdefault(_CLAIMED, {})
    for row in session.new:
        if isinstance(row, Trip):  # a new trip starts its own clock at 1
            claimed.setdefault(row.id, 1)
            row.head_version = row.version = 1
    for row in list(session.new) + list(session.deleted):
        if isinstance(row, TripMember):
            _touch_participant(session, row)  # its `is_member` changes
    for row in list(session.new) + list(session.dirty):
        entity = _BY_MODEL.get(type(row))
        if entity is not None and (row in session.new or session.is_modified(row)):
            if isinstance(row, Trip) and row in session.new:
                continue
            row.version = claim_version(session, entity.trip_id(row))
        elif isinstance(row, ItemParticipant):
            _touch_item(session, row)
    for row in session.deleted:
        entity = _BY_MODEL.get(type(row))
        if entity is not None:
            trip_id = entity.trip_id(row)
            session.add(
                Tombstone(
                    trip_id=trip_id,
                    version=claim_version(session, trip_id),
                    entity=entity.name,
                    entity_id=entity.row_id(row),
                )
            )
        elif isinstance(row, ItemParticipant):
            _touch_item(session, row)


def _touch_item(session: OrmSession, link: ItemParticipant) -> None:
    """Who takes part is part of an item: a changed link re-versions its item."""
    item = session.get(ItineraryItem, (link.trip_id, link.item_id))
    if item is not None and item not in session.deleted:
        item.version = claim_version(session, link.trip_id)


def _touch_participant(session: OrmSession, member: TripMember) -> None:
    found = session.execute(
        select(Participant).where(
            col(Participant.trip_id) == member.trip_id, col(Participant.user_id) == member.user_id
        )
    ).scalar_one_or_none()
    if found is not None and found not in session.deleted:
        found.version = claim_version(session, member.trip_id)


def _forget_claims(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended: its lock is gone
        session.info.pop(_CLAIMED, None)


event.listen(OrmSession, "before_flush", _stamp)
event.listen(OrmSession, "after_transaction_end", _forget_claims)
