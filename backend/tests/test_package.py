"""The package as an operator installs it: the wheel built from backend/, installed with its
dependencies into a fresh virtual environment, run from a directory that has nothing of the
source tree. `python -m app.cli migrate` finds the migrations inside the installed package,
and the API started there answers /health/ready 200 (`pytest -m package`, ~1 min the first
time, while the environment's dependencies are installed)."""

import fcntl
import hashlib
import json
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.db import alembic_head
from devtools.local_postgres import free_port
from tests import support

pytestmark = pytest.mark.package

BACKEND = Path(__file__).resolve().parents[1]
# Reused between runs while the dependencies stay the same: only the wheel is reinstalled.
VENV_CACHE = Path("/tmp") / "tripsync-wheel-venvs"  # noqa: S108


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(  # type: ignore[call-overload]
        command, capture_output=True, text=True, timeout=600, check=False, **kwargs
    )
    assert completed.returncode == 0, f"{command}:\n{completed.stdout}\n{completed.stderr}"
    return completed  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of what the Dockerfile copies (pyproject.toml and app/)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(BACKEND / "pyproject.toml", source)
    shutil.copytree(BACKEND / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheels")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)])
    [built] = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Iterator[Path]:
    """A virtual environment (not the test's) holding the wheel and its dependencies from the
    package index; its Python. Held under a lock: runs of other checkouts share it."""
    project = tomllib.loads((BACKEND / "pyproject.toml").read_text())["project"]
    key = json.dumps([sys.version, project["dependencies"]]).encode()
    environment = VENV_CACHE / hashlib.sha256(key).hexdigest()[:16]
    VENV_CACHE.mkdir(exist_ok=True)
    with (VENV_CACHE / f"{environment.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = environment / "bin" / "python"
        complete = environment / ".dependencies-installed"
        if complete.exists():
            _run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--force-reinstall",
                    "--no-deps",
                    str(wheel),
                ]
            )
        else:
            shutil.rmtree(environment, ignore_errors=True)
            venv.create(environment, with_pip=True)
            _run([str(python), "-m", "pip", "install", "-q", str(wheel)])
            complete.touch()
        yield python


def test_the_wheel_holds_the_app_and_its_migrations_and_no_dev_tooling(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"app"}
    migrations = BACKEND / "app" / "migrations"
    files = [migrations / "env.py", migrations / "script.py.mako"]
    expected = {
        path.relative_to(BACKEND).as_posix()
        for path in [*files, *(migrations / "versions").glob("*.py")]
    }
    assert len(expected) > 10
    assert expected <= names, expected - names
    assert "app/outbox/templates/layout.html" in names


def _ready(port: int) -> tuple[int, dict[str, object]]:
    ready = f"http://127.0.0.1:{port}/health/ready"
    try:
        with urllib.request.urlopen(ready, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_installed_wheel_migrates_and_serves_from_any_directory(
    installed: Path, server_url: str, tmp_path: Path
) -> None:
    url = support.create_database(server_url, prefix="tripsync_package")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Nothing of the test's environment: no PYTHONPATH, no .env, no source tree.
    environment = {
        "PATH": f"{installed.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATABASE_URL": url,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "EMAIL_DELIVERY": "smtp",
        "FRONTEND_DIR": "",
        "LOG_LEVEL": "INFO",
    }
    server = None
    log_path = tmp_path / "uvicorn.log"
    try:
        imported = _run(
            [str(installed), "-c", "import app; print(app.__file__)"],
            cwd=elsewhere,
            env=environment,
        )
        assert Path(imported.stdout.strip()).is_relative_to(installed.parents[1])

        migrated = _run(
            [str(installed), "-m", "app.cli", "migrate"], cwd=elsewhere, env=environment
        )
        assert f"at the head revision {alembic_head()}" in migrated.stdout
        assert "Running upgrade" in migrated.stderr  # Alembic said what it applied

        port = free_port()
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [str(installed), "-m", "uvicorn", "app.main:app", "--port", str(port)],
                cwd=elsewhere,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        answer: tuple[int, dict[str, object]] | None = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                answer = _ready(port)
            except (OSError, ValueError):
                time.sleep(0.1)
                continue
            if answer[0] == 200:
                break
            time.sleep(0.1)
        assert answer == (200, {"status": "ok", "revision": alembic_head()}), (
            answer,
            log_path.read_text(errors="replace"),
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        support.drop_database(url)
