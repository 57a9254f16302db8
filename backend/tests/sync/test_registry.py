"""The sync registry and the trip hooks are complete once the app is assembled."""

import pytest

from app import models
from app.main import app  # noqa: F401  (assembles every feature)
from app.sync import registry, versions
from app.sync.models import Tombstone
from app.trips import hooks


def test_every_versioned_table_is_a_synced_entity() -> None:
    versioned = {
        table.name
        for table in models.metadata.sorted_tables
        if "version" in table.c and table.name != Tombstone.__tablename__
    }
    synced = {entity.model.__tablename__ for entity in registry.entities()}  # type: ignore[misc]
    assert versioned == synced
    assert len({entity.position for entity in registry.entities()}) == len(synced)
    assert [entity.name for entity in registry.entities() if entity.clock] == ["trip"]


def test_a_versioned_row_the_registry_does_not_know_is_refused() -> None:
    class Stray:  # as a table's class: `version` is a column attribute
        version = 0

    with pytest.raises(RuntimeError, match="not a synced entity"):
        versions._synced(Stray())


def test_every_trip_hook_has_a_subscriber() -> None:
    assert hooks.unsubscribed() == []
    assert all(hook.subscribers for hook in hooks.HOOKS)


def test_a_missing_subscriber_stops_the_app_from_starting() -> None:
    from app.main import create_app

    saved = list(hooks.dates_changed.subscribers)
    hooks.dates_changed.subscribers.clear()
    try:
        with pytest.raises(RuntimeError, match="dates_changed"):
            create_app()
    finally:
        hooks.dates_changed.subscribers.extend(saved)
