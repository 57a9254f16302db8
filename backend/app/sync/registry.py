"""The synced entities: each feature registers the kinds of row it syncs, here.

An entity is a table whose rows carry a `version` (the trip version of the transaction that
last wrote them): its name in the feed, its table, where its trip id and row id are, its
place in the feed's order, and how the feed reads it (`reader`, which applies the entity's
visibility rule for the caller). The version stamping (app.sync.versions) and the feed
(app.feed) iterate this registry; neither imports a feature. A feature registers from its
`synced.py`, which app.models imports with every table.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlmodel import Session, SQLModel, col

# A version column → the condition its rows must meet (all versions, or a range).
Versions = Callable[[Any], Any]
# (versions, amounts hidden, deletions included) → the entity's feed rows: see app.sync.feed_sql.
Reader = Callable[[Versions, bool, bool], Select[Any]]


@dataclass(frozen=True)
class SyncedEntity:
    name: str  # in the feed, and in tombstones
    model: type[SQLModel]
    # Within one version the feed lists entities in this order: parents before children.
    position: int
    reader: Reader
    trip_column: str = "trip_id"
    id_column: str = "id"
    # The trip itself: its row holds the trip's clock (`head_version`), see app.sync.versions.
    clock: bool = False

    def trip_id(self, row: Any) -> uuid.UUID:
        return getattr(row, self.trip_column)  # type: ignore[no-any-return]

    def row_id(self, row: Any) -> uuid.UUID:
        return getattr(row, self.id_column)  # type: ignore[no-any-return]

    @property
    def version_column(self) -> Any:
        return col(self.model.version)  # type: ignore[attr-defined]

    @property
    def trip_id_column(self) -> Any:
        return col(getattr(self.model, self.trip_column))


@dataclass(frozen=True)
class Touch:
    """Writing a row of `model` (not itself synced) re-versions a synced row: its `parent`.

    For what belongs to another row: who takes part in an item is part of the item.
    `on` names the writes that count: "new", "dirty", "deleted".
    """

    model: type[SQLModel]
    parent: Callable[[Session, Any], SQLModel | None]
    on: frozenset[str]


_ENTITIES: dict[type[SQLModel], SyncedEntity] = {}
_TOUCHES: list[Touch] = []


def register(entity: SyncedEntity) -> SyncedEntity:
    """Make `entity` synced: stamped on every write, tombstoned on delete, sent by the feed."""
    taken = {(e.name, e.position) for e in _ENTITIES.values() if e.model is not entity.model}
    names, positions = {name for name, _ in taken}, {position for _, position in taken}
    if entity.name in names or entity.position in positions:
        raise ValueError(f"synced entity {entity.name!r}: its name or position is taken")
    if entity.clock and any(e.clock for e in _ENTITIES.values() if e.model is not entity.model):
        raise ValueError("only one synced entity holds the trip's clock")
    _ENTITIES[entity.model] = entity
    return entity


def register_touch(touch: Touch) -> Touch:
    if touch not in _TOUCHES:
        _TOUCHES.append(touch)
    return touch


def entities() -> list[SyncedEntity]:
    """Every synced entity, in feed order."""
    return sorted(_ENTITIES.values(), key=lambda entity: entity.position)


def touches() -> list[Touch]:
    return list(_TOUCHES)


def entity_of(model: type[SQLModel]) -> SyncedEntity:
    """The synced entity this table holds."""
    return _ENTITIES[model]


def find_entity(model: type[Any]) -> SyncedEntity | None:
    return _ENTITIES.get(model)


def clock() -> SyncedEntity:
    """The entity whose rows are the trips' clocks."""
    for entity in _ENTITIES.values():
        if entity.clock:
            return entity
    raise LookupError("no synced entity holds the trip's clock (app.trips.synced registers it)")
