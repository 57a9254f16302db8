"""Backups and restores (app.core.backup, `python -m app.cli backup|restore|new-timeline`) on
the test server, with the pg_dump and pg_restore of its own major version.

A database with data is backed up, written to again, and restored into a new database: the
restored one holds exactly what the backup saw. Then the app is pointed at it, and a device
whose cursors come from before the restore is told to take a new snapshot.
"""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text
from sqlmodel import Session

from alembic import command
from app import cli
from app.core import backup as backups
from app.core.db import alembic_config, get_engine
from app.main import create_app
from app.models import metadata
from tests import factories, support


@pytest.fixture
def databases(server_url: str) -> Iterator[Callable[[], str]]:
    """Fresh databases on the test server (migrated on request), dropped at the end."""
    made: list[str] = []

    def new_database(*, migrated: bool = True) -> str:
        url = support.create_database(server_url, prefix="tripsync_backup")
        made.append(url)
        if migrated:
            command.upgrade(alembic_config(url), "head")
        return url

    yield new_database  # type: ignore[misc]
    get_engine().dispose()
    for url in made:
        support.drop_database(url)


# Moved by the restore on purpose (app.sync.versions.start_new_timeline).
_NEW_TIMELINE = frozenset({"head_version", "pruned_version"})


def _contents(url: str, *, but: frozenset[str] = frozenset()) -> dict[str, list[tuple]]:
    """Every row of every table of the app (and Alembic's version), in a stable order,
    without the columns named in `but`."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"), pool_size=1)
    tables = [table.name for table in metadata.sorted_tables] + ["alembic_version"]
    try:
        with engine.connect() as connection:
            return {
                name: sorted(
                    (
                        tuple(value for key, value in row.items() if key not in but)
                        for row in connection.execute(text(f'SELECT * FROM "{name}"')).mappings()  # noqa: S608
                    ),
                    key=repr,
                )
                for name in tables
            }
    finally:
        engine.dispose()


def _point_app_at(environment: Callable[..., None], url: str) -> TestClient:
    environment(DATABASE_URL=url)
    return TestClient(create_app(), raise_server_exceptions=False)


def test_a_restore_holds_the_backup_and_devices_ahead_of_it_take_a_new_snapshot(
    databases: Callable[..., str], environment: Callable[..., None], tmp_path: Path
) -> None:
    source = databases()
    client = _point_app_at(environment, source)
    with Session(get_engine(), expire_on_commit=False) as session:
        owner = factories.make_user(session)
    headers = support.auth(owner)
    trip = factories.create_trip(client, owner)
    trip_id = trip["id"]
    for title in ("Castle", "Tram 28"):
        factories.add_item(client, owner, trip_id, title=title)
    snapshot = client.get(f"/trips/{trip_id}/snapshot", headers=headers).json()
    backed_up_version = snapshot["version"]
    device = client.get("/sync", headers=headers).json()["cursor"]

    dump = tmp_path / "tripsync.dump"
    assert cli.main(["backup", str(dump)]) == 0
    assert dump.stat().st_size > 0
    assert not dump.with_name(dump.name + ".partial").exists()
    at_backup = _contents(source, but=_NEW_TIMELINE)

    # Written after the backup: lost by the restore, but seen by the device.
    for title in ("Pastéis", "Fado", "Sintra"):
        factories.add_item(client, owner, trip_id, title=title)
    changes = client.get(
        f"/trips/{trip_id}/changes?since={backed_up_version}", headers=headers
    ).json()
    device_ahead = changes["version"]
    assert device_ahead == backed_up_version + 3
    device_ahead_feed = client.get(f"/sync?cursor={device}", headers=headers).json()["cursor"]
    assert _contents(source, but=_NEW_TIMELINE) != at_backup

    restored = make_url(source).set(database=f"tripsync_restored_{uuid.uuid4().hex[:10]}")
    restored_url = restored.render_as_string(hide_password=False)
    assert cli.main(["restore", str(dump), "--into", restored_url]) == 0
    try:
        assert _contents(restored_url, but=_NEW_TIMELINE) == at_backup  # row for row

        client = _point_app_at(environment, restored_url)
        items = client.get(f"/trips/{trip_id}/items", headers=headers).json()["items"]
        assert sorted(item["title"] for item in items) == ["Castle", "Tram 28"]
        # New writes in the restored database: without a new timeline the trip's clock would
        # pass the device's cursor again, and the device would miss them.
        for title in ("Belém", "Cascais", "Óbidos", "Évora"):
            factories.add_item(client, owner, trip_id, title=title)

        for since in (device_ahead, backed_up_version):
            support.assert_problem(
                client.get(f"/trips/{trip_id}/changes?since={since}", headers=headers),
                410,
                "cursor_expired",
            )
        for cursor in (device, device_ahead_feed):
            feed = client.get(f"/sync?cursor={cursor}", headers=headers).json()
            assert [state["status"] for state in feed["trips"]] == ["reset"]

        # A new snapshot works as usual from there.
        fresh = client.get(f"/trips/{trip_id}/snapshot", headers=headers).json()
        assert fresh["version"] > device_ahead
        assert len([row for row in fresh["rows"] if row["entity"] == "item"]) == 6
        again = client.get(f"/trips/{trip_id}/changes?since={fresh['version']}", headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["changes"] == []
        factories.add_item(client, owner, trip_id, title="Nazaré")
        after = client.get(f"/trips/{trip_id}/changes?since={fresh['version']}", headers=headers)
        assert [change["data"]["title"] for change in after.json()["changes"]] == ["Nazaré"]
    finally:
        get_engine().dispose()
        support.drop_database(restored_url)


def test_a_device_ahead_of_the_trip_is_told_to_reset(
    databases: Callable[..., str], environment: Callable[..., None]
) -> None:
    """Before any new write, a cursor ahead of the trip is refused by both sync routes."""
    client = _point_app_at(environment, databases())
    with Session(get_engine(), expire_on_commit=False) as session:
        owner = factories.make_user(session)
    headers = support.auth(owner)
    trip = factories.create_trip(client, owner)
    feed = client.get("/sync", headers=headers).json()
    factories.add_item(client, owner, trip["id"])
    ahead = client.get(f"/sync?cursor={feed['cursor']}", headers=headers).json()["cursor"]
    with get_engine().begin() as connection:  # as if restored from before the item
        connection.execute(text("UPDATE trips SET head_version = head_version - 1"))

    head = trip["version"]
    support.assert_problem(
        client.get(f"/trips/{trip['id']}/changes?since={head + 1}", headers=headers),
        410,
        "cursor_ahead",
    )
    states = client.get(f"/sync?cursor={ahead}", headers=headers).json()["trips"]
    assert [state["status"] for state in states] == ["reset"]


def test_a_restore_never_goes_over_the_live_database_or_one_with_tables(
    databases: Callable[..., str], environment: Callable[..., None], tmp_path: Path
) -> None:
    live = databases()
    environment(DATABASE_URL=live)
    dump = tmp_path / "live.dump"
    assert cli.main(["backup", str(dump)]) == 0
    with pytest.raises(backups.BackupError, match="the database the app uses"):
        backups.restore(dump, live, live_url=live)
    busy = databases()
    with pytest.raises(backups.BackupError, match="already has tables"):
        backups.restore(dump, busy, live_url=live)
    assert cli.main(["restore", str(dump), "--into", busy]) == 1
    with pytest.raises(backups.BackupError, match="no backup file"):
        backups.restore(tmp_path / "missing.dump", databases(migrated=False), live_url=live)


def test_the_client_binaries_must_match_the_server(
    databases: Callable[..., str], tmp_path: Path
) -> None:
    major = backups.server_major_version(databases(migrated=False))
    found = backups.find_client("pg_dump", major)
    assert found.major == major
    # A folder holding another version only: refused, saying which version is needed.
    other = tmp_path / "bin"
    other.mkdir()
    fake = other / "pg_dump"
    fake.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {major - 1}.4'\n")
    fake.chmod(0o755)
    with pytest.raises(backups.BackupError, match=rf"PostgreSQL {major}, the server's version"):
        backups.find_client("pg_dump", major, str(other))
    with pytest.raises(backups.BackupError, match=rf"PostgreSQL {major - 1}\)"):
        backups.find_client("pg_dump", major, str(other))
