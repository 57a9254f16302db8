"""The whole stack for browser tests: a throwaway PostgreSQL migrated to head, a real uvicorn
process serving the API and the static client under /app, an outbox worker process sending
the mail, and Debian's Chromium driven by Playwright. No browser is downloaded: `apt-get
install chromium` provides it.

Mail goes to files (EMAIL_DELIVERY=file) in a temporary folder, where the tests read the
tokens and links a person would find in their inbox.
"""

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from alembic import command
from app.core.db import REPO_DIR, alembic_config
from devtools.local_postgres import LocalPostgres, free_port
from tests_e2e.support import Stack

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]

expect.set_options(timeout=10_000)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2):  # noqa: S310
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"the API did not become ready:\n{log.read_text()}")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e")
    server = LocalPostgres(root / "postgres", durable=False)
    server.start()
    process: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        database_url = server.ensure_database("tripsync_e2e")
        command.upgrade(alembic_config(database_url), "head")
        outbox = root / "outbox"
        port = free_port()
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")},
            "DATABASE_URL": database_url,
            "ENVIRONMENT": "test",
            "SECRET_KEY": secrets.token_hex(32),
            "LOG_LEVEL": "WARNING",
            "EMAIL_DELIVERY": "file",
            "EMAIL_OUTBOX_DIR": str(outbox),  # absolute: used as is
            "FRONTEND_DIR": "frontend-stub",
            # Cheap hashes keep the run fast; production uses the Argon2 defaults.
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_COST_KIB": "1024",
            "PUBLIC_URL": f"http://127.0.0.1:{port}/app/",
            "OUTBOX_POLL_SECONDS": "0.1",
            # Every person of every test comes from 127.0.0.1: the per-address limits would
            # count the whole suite as one client (the per-account ones still apply).
            "REGISTRATIONS_PER_ADDRESS": "1000",
            "LOGIN_ATTEMPTS_PER_ADDRESS": "1000",
        }
        with (root / "worker.log").open("wb") as output:
            worker = subprocess.Popen(
                [sys.executable, "-m", "app.worker"],
                cwd=REPO_DIR / "backend",
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        log = root / "uvicorn.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                cwd=REPO_DIR / "backend",
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_ready(base_url, process, log)
        yield Stack(base_url=base_url, outbox=outbox)
    finally:
        for started in (process, worker):
            if started is None:
                continue
            started.terminate()
            try:
                started.wait(timeout=10)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait()
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (or set E2E_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(stack: Stack, browser: Browser) -> Iterator[Callable[[], Page]]:
    """Opens the client in a fresh browser context (one per person: separate sessionStorage).
    The test fails if a page threw an uncaught error or broke its Content-Security-Policy."""
    contexts = []
    problems: list[str] = []

    def open_page() -> Page:
        context = browser.new_context(
            base_url=stack.app_url,
            locale="en-US",
            timezone_id="UTC",
            viewport={"width": 1100, "height": 800},
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.goto(stack.app_url)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert problems == []
