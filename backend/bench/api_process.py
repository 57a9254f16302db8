"""One `uvicorn app.main:app` worker on a free loopback port, for the benches that time it."""

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from app.core.db import REPO_DIR
from devtools.local_postgres import free_port


@contextlib.contextmanager
def running_api(database_url: str, secret: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The worker's base URL and process, once `/health/live` answers; stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "SECRET_KEY": secret,
        "LOG_LEVEL": "WARNING",
        "EMAIL_DELIVERY": "memory",
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    server = subprocess.Popen(  # noqa: S603 (this interpreter, no shell)
        [*command, "--log-level", "warning", "--no-access-log"],
        env=env,
        cwd=REPO_DIR / "backend",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/health/live", timeout=1)  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=10)
