"""Maintenance commands, run as `python -m app.cli <command>` (`make migrate`, `make cleanup`)."""

import argparse
import logging
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from alembic import command
from app.core import backup as backups
from app.core import distribution
from app.core.columns import utcnow
from app.core.config import get_settings, with_psycopg2
from app.core.db import alembic_config, get_engine, get_sessionmaker, schema_state_of
from app.feed import service as sync_service
from app.fx import service as fx_service
from app.fx.ecb import EcbFormatError
from app.idempotency import service as idempotency_service
from app.invite_links import service as invite_link_service
from app.outbox import service as outbox_service
from app.ratelimit import service as rate_limit
from app.share_links import service as share_link_service
from app.sync import versions
from app.users import password_reset, sessions


class BatchDelete(Protocol):
    def __call__(self, *, session: Session, now: datetime, limit: int) -> int:
        """Delete up to `limit` rows that expired before `now`; return how many."""
        ...


# What `cleanup` prunes, in order; a new retention rule is one more entry here.
CLEANUP_TASKS: dict[str, BatchDelete] = {
    "expired idempotency keys": idempotency_service.delete_expired_keys,
    "tombstones past the sync retention": sync_service.prune_tombstones,
    "ended rate-limit windows": rate_limit.delete_expired_counters,
    "sessions unused past their expiry": sessions.delete_expired_sessions,
    "password reset tokens past their expiry": password_reset.delete_expired_reset_tokens,
    "sent and dead mail past the outbox retention": outbox_service.delete_finished,
    "share links ended past the link retention": share_link_service.delete_ended_links,
    "invite links ended past the link retention": invite_link_service.delete_ended_links,
}

DEFAULT_BATCH_SIZE = 1000


def _delete_in_batches(delete_batch: BatchDelete, *, now: datetime, batch_size: int) -> int:
    # One short transaction per batch: no long-held locks, progress survives an interruption.
    total = 0
    while True:
        with get_sessionmaker()() as session:
            deleted = delete_batch(session=session, now=now, limit=batch_size)
            session.commit()
        total += deleted
        if deleted < batch_size:
            return total


def cleanup(*, now: datetime | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, int]:
    """Run every cleanup task; returns how many rows each one deleted."""
    now = now or utcnow()
    return {
        name: _delete_in_batches(delete_batch, now=now, batch_size=batch_size)
        for name, delete_batch in CLEANUP_TASKS.items()
    }


def _outbox(parser: argparse.ArgumentParser, requeue: list[str] | None) -> int:
    ids: list[uuid.UUID] | None = None
    if requeue:
        try:
            ids = [uuid.UUID(value) for value in requeue]
        except ValueError:
            parser.error("--requeue takes message ids (UUIDs)")
    with get_sessionmaker()() as session:
        if requeue is not None:
            count = outbox_service.requeue(session=session, now=utcnow(), message_ids=ids)
            session.commit()
            print(f"re-queued {count} dead letter(s)")
        counts = outbox_service.summary(session=session, now=utcnow())
    print(", ".join(f"{name}: {count}" for name, count in counts.items()))
    return 0


def start_new_timeline(database_url: str | None = None) -> int:
    """Make every sync cursor issued before now unusable (app.sync.versions.start_new_timeline)
    in the app's database, or `database_url`; returns how many trips were moved."""
    if database_url is None:
        with get_sessionmaker()() as session:
            moved = versions.start_new_timeline(session, utcnow())
            session.commit()
        return moved
    engine = create_engine(with_psycopg2(database_url), pool_size=1)
    try:
        with Session(engine) as session:
            moved = versions.start_new_timeline(session, utcnow())
            session.commit()
    finally:
        engine.dispose()
    return moved


def _backup(file: Path) -> int:
    settings = get_settings()
    try:
        client = backups.backup(settings.database_url, file, bin_dir=settings.PG_BIN_DIR)
    except backups.BackupError as error:
        print(f"backup failed: {error}", file=sys.stderr)
        return 1
    print(f"backed up to {file} with {client.path} (PostgreSQL {client.major})")
    return 0


def _restore(file: Path, into: str) -> int:
    settings = get_settings()
    try:
        client = backups.restore(
            file, into, live_url=settings.database_url, bin_dir=settings.PG_BIN_DIR
        )
    except backups.BackupError as error:
        print(f"restore failed: {error}", file=sys.stderr)
        return 1
    moved = start_new_timeline(into)
    print(
        f"restored {file} with {client.path} (PostgreSQL {client.major}); {moved} trip(s) "
        "start a new sync timeline: devices take a new snapshot. Point DATABASE_URL at it."
    )
    return 0


def _fx_import(path: Path) -> int:
    # One transaction: a file with an error anywhere imports nothing.
    try:
        with path.open("rb") as stream, get_sessionmaker()() as session:
            result = fx_service.import_file(session=session, stream=stream)
            if result.days == 0:
                raise EcbFormatError("the file holds no rates")
            session.commit()
    except (EcbFormatError, OSError) as error:
        print(f"fx-import: {path}: {error}; nothing was imported", file=sys.stderr)
        return 1
    print(
        f"imported {result.rates} rates for {result.days} days "
        f"({result.first_day} to {result.last_day})"
    )
    return 0


def migrate(revision: str = "head") -> int:
    """Upgrade the configured database (DATABASE_URL) with the migrations the package carries."""
    # Alembic says which migrations it runs (INFO on the `alembic` logger).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = get_engine().url.render_as_string(hide_password=False)
    command.upgrade(alembic_config(url), revision)
    # On a Citus coordinator the tables are then placed (app.core.distribution); else no-op.
    with get_engine().begin() as connection:
        placed = distribution.distribute(connection)
    if placed:
        print(f"Citus: placed the tables ({len(placed)} statements).")
    with get_engine().connect() as connection:
        print(schema_state_of(connection).describe())
    get_engine().dispose()
    return 0


def check() -> int:
    """What the app checks before it serves, as a command: the settings are valid (production's
    rules included) and the database answers with a schema the app can serve (at its head, or
    ahead of it). Exits 1 with the reason otherwise; the image runs it before uvicorn, whose
    worker processes would otherwise be restarted by their supervisor forever."""
    try:
        get_settings()
    except ValidationError as error:
        print(f"refusing to start: invalid settings: {error}", file=sys.stderr)
        return 1
    try:
        with get_engine().connect() as connection:
            schema = schema_state_of(connection)
    except SQLAlchemyError as error:
        print(f"refusing to start: the database does not answer: {error}", file=sys.stderr)
        return 1
    finally:
        get_engine().dispose()
    if not schema.serves:
        print(f"refusing to start: {schema.describe()}", file=sys.stderr)
        return 1
    print(schema.describe())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_parser = commands.add_parser(
        "migrate",
        help="apply the migrations to the configured database (DATABASE_URL); "
        "the production path, run before a new release serves",
    )
    migrate_parser.add_argument(
        "revision", nargs="?", default="head", help="the revision to upgrade to (default: head)"
    )
    commands.add_parser(
        "check",
        help="exit 1 with the reason unless the settings are valid and the database's schema "
        "is one the app can serve (at its migrations' head or ahead of it)",
    )
    cleanup_parser = commands.add_parser(
        "cleanup",
        help="delete what has outlived its retention "
        "(idempotency keys, tombstones, rate-limit windows, expired sessions and reset tokens, "
        "sent and dead mail, ended share and invite links)",
    )
    cleanup_parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="rows per transaction"
    )
    outbox_parser = commands.add_parser(
        "outbox", help="show how many messages are due, waiting, sent and dead"
    )
    outbox_parser.add_argument(
        "--requeue",
        nargs="*",
        metavar="MESSAGE_ID",
        help="give these dead letters (none listed: every dead letter) a fresh set of attempts",
    )
    fx_parser = commands.add_parser(
        "fx-import",
        help="import ECB reference rates from FILE (eurofxref CSV or XML, daily or historical, "
        "or the .zip of the CSV); a rate already stored for a day is replaced",
    )
    fx_parser.add_argument("file", type=Path, metavar="FILE")
    backup_parser = commands.add_parser(
        "backup", help="dump the database (pg_dump, custom format) to FILE"
    )
    backup_parser.add_argument("file", type=Path, metavar="FILE")
    restore_parser = commands.add_parser(
        "restore",
        help="restore a backup into a NEW database (pg_restore), never over the app's own; "
        "its trips start a new sync timeline",
    )
    restore_parser.add_argument("file", type=Path, metavar="FILE")
    restore_parser.add_argument(
        "--into", required=True, metavar="NEW_DATABASE_URL", help="created when missing"
    )
    commands.add_parser(
        "new-timeline",
        help="after a point-in-time recovery: every device takes a new snapshot of its trips",
    )
    args = parser.parse_args(argv)
    if args.command == "fx-import":
        return _fx_import(args.file)
    if args.command == "migrate":
        return migrate(args.revision)
    if args.command == "check":
        return check()
    if args.command == "backup":
        return _backup(args.file)
    if args.command == "restore":
        return _restore(args.file, args.into)
    if args.command == "new-timeline":
        print(f"{start_new_timeline()} trip(s) start a new sync timeline")
        return 0
    if args.command == "outbox":
        return _outbox(parser, args.requeue)
    if args.command == "cleanup":
        if args.batch_size < 1:
            parser.error("--batch-size must be at least 1")
        for name, deleted in cleanup(batch_size=args.batch_size).items():
            print(f"{name}: {deleted} deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
