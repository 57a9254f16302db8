"""A PgBouncer in transaction-pooling mode in front of one PostgreSQL database, for the fault
tests and the benchmark: the system's `pgbouncer` (Debian's package), a folder of its own and
a free 127.0.0.1 port, stopped and removed by `stop()`.

Authentication is `trust` with a one-line userlist: the servers behind it are the embedded
ones of tests and benchmarks, which trust 127.0.0.1 too. Production settings: docs/operations.md,
"PgBouncer, transaction pooling".
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg2
import psycopg2.extras
from sqlalchemy.engine import make_url

from devtools.local_postgres import SERVER_USER, free_port


def pgbouncer_binary() -> str | None:
    """Where `pgbouncer` is installed, or None; /usr/sbin is often not on a user's PATH."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


class LocalPgBouncer:
    def __init__(
        self,
        server_url: str,
        *,
        pool_size: int,
        max_client_conn: int = 100,
        connect_query: str | None = None,
        query_wait_timeout: int = 120,
    ) -> None:
        """`server_url`: the database behind it; `pool_size`: at most this many server
        connections to it; `connect_query`: run on each new one. Clients need no password."""
        self.server = make_url(server_url)
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.connect_query = connect_query
        self.query_wait_timeout = query_wait_timeout
        self.port = 0
        self.folder: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def database(self) -> str:
        return str(self.server.database)

    @property
    def url(self) -> str:
        """The same database, through PgBouncer."""
        return f"postgresql://{self.server.username}@127.0.0.1:{self.port}/{self.database}"

    def _config(self, folder: Path) -> str:
        target = (
            f"host={self.server.host} port={self.server.port} dbname={self.database}"
            f" user={self.server.username} pool_size={self.pool_size}"
        )
        if self.server.password:
            target += f" password={self.server.password}"
        if self.connect_query is not None:
            if "'" in self.connect_query:
                raise ValueError("connect_query may not contain a single quote")
            target += f" connect_query='{self.connect_query}'"
        return "\n".join(
            [
                "[databases]",
                f"{self.database} = {target}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                f"admin_users = {self.server.username}",
                "pool_mode = transaction",
                f"default_pool_size = {self.pool_size}",
                "reserve_pool_size = 0",
                f"max_client_conn = {self.max_client_conn}",
                f"query_wait_timeout = {self.query_wait_timeout}",
                # Not run in transaction mode anyway; empty says nothing is reset between clients.
                "server_reset_query =",
                "",
            ]
        )

    def start(self, seconds: float = 30) -> Self:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="tripsync-pgbouncer-"))
        (self.folder / "userlist.txt").write_text(f'"{self.server.username}" ""\n')
        ini = self.folder / "pgbouncer.ini"
        ini.write_text(self._config(self.folder))
        run_as = None
        if os.geteuid() == 0:  # PgBouncer refuses to run as root, like PostgreSQL
            run_as = SERVER_USER
            for path in (self.folder, *self.folder.iterdir()):
                shutil.chown(path, SERVER_USER, SERVER_USER)
        with (self.folder / "pgbouncer.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (the system's pgbouncer, no shell)
                [binary, str(ini)], stdout=log, stderr=subprocess.STDOUT, user=run_as
            )
        deadline = time.monotonic() + seconds
        while True:
            try:
                psycopg2.connect(self.url, connect_timeout=2).close()
                return self
            except psycopg2.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log_text = self.log()
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start:\n{log_text}") from None
                time.sleep(0.05)

    def show(self, what: str) -> list[dict[str, Any]]:
        """`SHOW POOLS`, `SHOW SERVERS`, ... on PgBouncer's admin console."""
        admin = f"postgresql://{self.server.username}@127.0.0.1:{self.port}/pgbouncer"
        connection = psycopg2.connect(admin, connect_timeout=5)
        connection.autocommit = True  # the console knows no transactions
        try:
            with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                cursor.execute(f"SHOW {what}")
                return [dict(row) for row in cursor.fetchall()]
        finally:
            connection.close()

    def log(self) -> str:
        if self.folder is None or not (self.folder / "pgbouncer.log").exists():
            return ""
        return (self.folder / "pgbouncer.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop it (SIGTERM: immediate shutdown) and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
