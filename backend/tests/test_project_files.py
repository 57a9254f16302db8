"""The deployment files agree with the code: compose stack, .env.example, layout invariants."""

import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.config import Settings
from app.core.db import REPO_DIR

SETTINGS = set(Settings.model_fields)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_DIR / "docker-compose.yml").read_text())


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} forms."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":-":
            return arg
        raise KeyError(f"{name} is required: {arg}")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", replace, value)


def test_compose_describes_the_production_like_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"db", "migrate", "backend", "worker", "cleanup", "frontend", "mail"}
    assert "app.cli cleanup" in " ".join(services["cleanup"]["command"])
    assert services["worker"]["command"] == ["python", "-m", "app.worker"]
    worker_deps = services["worker"]["depends_on"]
    assert worker_deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["db"]["healthcheck"]["test"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    # The installed package migrates itself: no alembic.ini or source tree in the image.
    assert services["migrate"]["command"] == ["python", "-m", "app.cli", "migrate"]
    assert services["migrate"]["restart"] == "no"
    backend_deps = services["backend"]["depends_on"]
    assert backend_deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["frontend"]["depends_on"]["backend"]["condition"] == "service_healthy"
    for name in ("migrate", "backend", "worker", "cleanup"):
        dockerfile = (
            REPO_DIR / services[name]["build"]["context"] / services[name]["build"]["dockerfile"]
        )
        assert dockerfile.is_file()
    for volume in services["frontend"]["volumes"]:
        assert (REPO_DIR / volume.split(":")[0]).exists(), volume
    assert set(compose["volumes"]) == {"pgdata"}


def test_compose_backend_settings_are_valid_production_settings(compose: dict[str, Any]) -> None:
    environment = compose["services"]["backend"]["environment"]
    for service in ("migrate", "worker", "cleanup"):
        assert environment == compose["services"][service]["environment"], service
    assert set(environment) <= SETTINGS
    with pytest.raises(KeyError, match="SECRET_KEY"):
        _interpolate(environment["SECRET_KEY"], {})
    key = secrets.token_hex(32)
    resolved = {k: _interpolate(str(v), {"SECRET_KEY": key}) for k, v in environment.items()}
    settings = Settings(_env_file=None, **resolved)  # type: ignore[arg-type]
    assert settings.ENVIRONMENT == "production"
    assert settings.database_url.endswith("@db:5432/tripsync")
    # The worker delivers to the mail catcher; links open the frontend nginx serves.
    assert (settings.EMAIL_DELIVERY, settings.SMTP_HOST) == ("smtp", "mail")
    frontend_port = compose["services"]["frontend"]["ports"][0].split(":")[0]
    assert str(settings.PUBLIC_URL) == f"http://localhost:{frontend_port}/"


def test_compose_has_nothing_docker_compose_1_29_refuses(compose: dict[str, Any]) -> None:
    # Debian's docker-compose 1.29 validates against a Compose schema without top-level `name`
    # (the project name is given with -p); the Compose specification accepts the rest as is.
    assert set(compose) <= {"services", "volumes", "networks", "configs", "secrets"} | {
        key for key in compose if key.startswith("x-")
    }


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose binary")
def test_docker_compose_validates_the_compose_file(tmp_path: Path) -> None:
    """`docker-compose config` (Debian's 1.29 in CI: .ci/run installs it) needs no engine."""
    completed = subprocess.run(
        ["docker-compose", "-f", str(REPO_DIR / "docker-compose.yml"), "config", "--quiet"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SECRET_KEY": secrets.token_hex(32)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def _dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per stage."""
    text = (REPO_DIR / "backend" / "Dockerfile").read_text()
    lines = [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]
    stages: list[list[str]] = []
    for line in lines:
        if line.lstrip().startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(" ".join(line.split()))
    return stages


def test_the_image_installs_the_wheel_and_holds_no_dev_tooling() -> None:
    build, *_, runtime = stages = _dockerfile_stages()
    assert len(stages) >= 2
    build_name = build[0].split()[-1]
    assert build[0].upper().startswith("FROM ")
    assert " AS " in build[0].upper()
    every = [instruction for stage in stages for instruction in stage]
    copied = [i.split()[1:-1] for i in every if i.upper().startswith("COPY ") and "--from" not in i]
    # The build stage sees only what the wheel is built from: no devtools, tests, bench, ini.
    assert sorted(source for sources in copied for source in sources) == [
        "backend/app",
        "backend/pyproject.toml",
    ]
    assert any("pip wheel" in i and "--no-deps" in i for i in build)
    assert any(re.search(r"pip install \S*\.whl", i) for i in build)
    assert not [i for i in every if "[dev]" in i or re.search(r"pip install (-e|\.)", i)]
    # The runtime stage copies only the installed environment from the build stage.
    runtime_copies = [i for i in runtime if i.upper().startswith("COPY ")]
    assert runtime_copies
    assert all(f"--from={build_name}" in i for i in runtime_copies)
    assert any(i.upper().startswith("USER ") for i in runtime)
    # The production checks run before the workers start (app.cli check).
    assert "python -m app.cli check && exec uvicorn app.main:app " in runtime[-1]


def test_env_example_lists_every_setting() -> None:
    text = (REPO_DIR / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert listed == SETTINGS


def _python_sources() -> dict[Path, str]:
    folders = (REPO_DIR / "backend" / "app",)
    return {path: path.read_text() for folder in folders for path in folder.rglob("*.py")}


def test_one_session_dependency_and_create_all_only_in_init_db() -> None:
    sources = _python_sources()
    assert not [p for p, s in sources.items() if re.search(r"def\s+get_db\b", s)]
    definitions = [
        p for p, s in sources.items() if re.search(r"^(?:async )?def get_session\b", s, re.M)
    ]
    assert [p.name for p in definitions] == ["db.py"]
    create_all = [
        p for p, s in sources.items() if "create_all(" in s and p.parts[-2:] != ("core", "db.py")
    ]
    assert create_all == []


# What would outlive a transaction on a server connection, and so break (or leak to another
# client) behind PgBouncer in transaction mode. docs/operations.md lists the audit ("PgBouncer,
# transaction pooling").
SESSION_STATE = {
    "session-level advisory lock (use pg_advisory_xact_lock)": r"pg_(try_)?advisory_(un)?lock",
    "SET without LOCAL": r"""["'(]\s*SET\s+(?!LOCAL\b|NULL\b|DEFAULT\b)\w+""",
    "set_config (is_local must be true; use SET LOCAL)": r"\bset_config\s*\(",
    "LISTEN": r"\bLISTEN\s+\w",
    "temporary table": r"\bCREATE\s+(TEMP|TEMPORARY)\b",
    "cursor WITH HOLD": r"\bWITH\s+HOLD\b",
    "server-side prepared statement": r"\bPREPARE\s+\w|\bDEALLOCATE\b",
}


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        (
            'text("SELECT pg_advisory_lock(1)")',
            "session-level advisory lock (use pg_advisory_xact_lock)",
        ),
        (
            "func.pg_try_advisory_lock(key)",
            "session-level advisory lock (use pg_advisory_xact_lock)",
        ),
        ('text("SET statement_timeout = 0")', "SET without LOCAL"),
        ('text("SET SESSION search_path TO x")', "SET without LOCAL"),
        ("text('LISTEN trip_changes')", "LISTEN"),
        ('"CREATE TEMP TABLE t (id int)"', "temporary table"),
        ('"DECLARE c CURSOR WITH HOLD FOR SELECT 1"', "cursor WITH HOLD"),
        ('"PREPARE q AS SELECT 1"', "server-side prepared statement"),
    ],
)
def test_the_session_state_patterns_catch_what_they_name(sql: str, kind: str) -> None:
    assert [k for k, pattern in SESSION_STATE.items() if re.search(pattern, sql)] == [kind]


def test_nothing_in_the_app_keeps_session_state_between_transactions() -> None:
    """Runs behind PgBouncer in transaction mode: each transaction may get another server."""
    allowed = [
        'text("SET LOCAL statement_timeout = 50")',
        "func.pg_advisory_xact_lock(x)",
        "func.pg_try_advisory_xact_lock(x)",
        '" DO UPDATE SET hits = rate_limit_counters.hits + 1"',
        '"UPDATE trips SET pruned_version = 1"',
        'event.listen(OrmSession, "before_flush", _stamp)',
        'Field(foreign_key="users.id", ondelete="SET NULL")',
    ]
    for sql in allowed:
        assert not [k for k, pattern in SESSION_STATE.items() if re.search(pattern, sql)], sql
    app_sources = {
        path: source
        for path, source in _python_sources().items()
        if path.is_relative_to(REPO_DIR / "backend" / "app")
    }
    # The one exception: each worker's listener LISTENs on a connection of its own, made from
    # DB_LISTEN_URL (PostgreSQL directly, not the pooler), never from the request pool.
    listener = REPO_DIR / "backend" / "app" / "sync" / "live.py"
    found = [
        f"{path.relative_to(REPO_DIR)}:{source.count(chr(10), 0, match.start()) + 1}: {kind}"
        for path, source in app_sources.items()
        for kind, pattern in SESSION_STATE.items()
        for match in re.finditer(pattern, source)
        if not (path == listener and kind == "LISTEN")
    ]
    assert found == []
    assert "psycopg2.connect(" in app_sources[listener]
    assert "database_listen_url" in app_sources[listener]


def test_nginx_proxies_every_api_path_to_the_backend() -> None:
    """docker-compose serves the client with nginx, which must pass every API route on."""
    from app.main import app

    config = (REPO_DIR / "frontend-stub" / "nginx.conf").read_text()
    match = re.search(r"location ~ \^/\(([^)]*)\)", config)
    assert match, "nginx.conf has no proxied location"
    proxied = {prefix.replace("\\.", ".") for prefix in match.group(1).split("|")}
    # Every operation the app serves (from its OpenAPI document: `app.routes` holds included
    # routers, whose own paths are not listed there), and its own pages.
    paths = [*app.openapi()["paths"], "/openapi.json", "/docs", "/redoc"]
    first_segments = {path.split("/")[1] for path in paths}
    assert {"auth", "trips", "join"} <= first_segments  # the check sees the routes
    assert first_segments <= proxied, first_segments - proxied
