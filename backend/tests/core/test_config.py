from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from app.core.config import (
    DEFAULT_SECRET_KEY,
    KEY_RULE,
    Environment,
    Settings,
    estimated_entropy_bits,
    get_settings,
)

# Made by `openssl rand -hex 32` (64 hex characters, about 240 bits by estimate).
STRONG_KEY = "1f7a6f3ca29628ccd207a865d04bd4043a71517d70047c8de948988e38627279"


def make(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_url_is_built_from_parts_when_database_url_is_absent() -> None:
    settings = make(
        DATABASE_URL=None,
        POSTGRES_SERVER="db.internal",
        POSTGRES_PORT=6543,
        POSTGRES_USER="trip",
        POSTGRES_PASSWORD="s3cret",
        POSTGRES_DB="trips",
    )
    assert settings.database_url == "postgresql+psycopg2://trip:s3cret@db.internal:6543/trips"


def test_database_url_wins_and_uses_psycopg2() -> None:
    settings = make(DATABASE_URL="postgresql://u@h:5/d", POSTGRES_SERVER="ignored")
    assert settings.database_url == "postgresql+psycopg2://u@h:5/d"


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "33")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("ENVIRONMENT", "local")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.DB_POOL_SIZE == 33
    assert settings.CORS_ORIGINS == ["https://a.example", "https://b.example"]
    assert settings.ENVIRONMENT is Environment.LOCAL


def test_settings_are_read_from_a_dotenv_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DB_POOL_TIMEOUT", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("DB_POOL_TIMEOUT=2.5\n")
    assert Settings(_env_file=env_file).DB_POOL_TIMEOUT == 2.5  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"DB_POOL_SIZE": 0}, "DB_POOL_SIZE"),
        ({"DB_POOL_TIMEOUT": "soon"}, "DB_POOL_TIMEOUT"),
        ({"ENVIRONMENT": "staging"}, "ENVIRONMENT"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"POSTGRES_PORT": 70000}, "POSTGRES_PORT"),
        ({"DB_MAX_CONCURRENT_REQUESTS": 0}, "DB_MAX_CONCURRENT_REQUESTS"),
        (
            {"DB_MAX_CONCURRENT_REQUESTS": 21, "DB_POOL_SIZE": 10, "DB_MAX_OVERFLOW": 10},
            "DB_MAX_CONCURRENT_REQUESTS",
        ),
        ({"DB_MAX_CONCURRENT_REQUESTS": 11, "THREADPOOL_SIZE": 10}, "DB_MAX_CONCURRENT_REQUESTS"),
        # An access token may not outlive its session.
        (
            {"ACCESS_TOKEN_EXPIRE_MINUTES": 24 * 60, "REFRESH_TOKEN_TTL_DAYS": 1},
            "ACCESS_TOKEN_EXPIRE_MINUTES",
        ),
        ({"REFRESH_TOKEN_TTL_DAYS": 0}, "REFRESH_TOKEN_TTL_DAYS"),
    ],
)
def test_invalid_settings_fail_naming_the_variable(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as error:
        make(**values)
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "it has 0 characters"),
        (DEFAULT_SECRET_KEY, "the placeholder"),
        ("short", "it has 5 characters"),
        ("a" * 32, "only 1 different characters"),
        ("k" * 40, "only 1 different characters"),
        ("password" * 4, "only 7 different characters"),
        ("abcdefghi" * 4, "only 9 different characters"),
        # Eleven different characters, but nearly all of them one: about 75 bits.
        ("a" * 60 + "bcdefghijk", "estimated entropy is 75 bits"),
    ],
)
def test_production_refuses_a_default_short_or_low_entropy_secret_key(
    key: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as error:
        make(ENVIRONMENT="production", SECRET_KEY=key, EMAIL_DELIVERY="smtp")
    message = str(error.value)
    assert "SECRET_KEY is too weak" in message
    assert reason in message
    assert KEY_RULE in message  # the rule is said, so the operator knows what to make
    if len(key) > 5:
        assert key not in message  # and the key itself is not


@pytest.mark.parametrize(
    "key",
    [
        STRONG_KEY,
        "julP5xdUg3cdGy80iSnl7ae28TDDVw9Ta0AC1yNhv1o",  # secrets.token_urlsafe(32)
        "dedTOTNa4lRcKqq5Iji9O8gCsfz0X4fkXRBlvTCn5UA=",  # openssl rand -base64 32
    ],
)
def test_production_accepts_random_keys(key: str) -> None:
    assert estimated_entropy_bits(key) >= 128
    settings = make(ENVIRONMENT="production", SECRET_KEY=key, EMAIL_DELIVERY="smtp")
    assert settings.SECRET_KEY.get_secret_value() == key


def test_production_refuses_a_weak_two_factor_encryption_key() -> None:
    with pytest.raises(ValidationError, match="key 2 of TWO_FACTOR_ENCRYPTION_KEYS is too weak"):
        make(
            ENVIRONMENT="production",
            SECRET_KEY=STRONG_KEY,
            EMAIL_DELIVERY="smtp",
            TWO_FACTOR_ENCRYPTION_KEYS=f"{STRONG_KEY[::-1]},{'x' * 40}",
        )


def test_production_needs_a_database_url() -> None:
    """Without it the POSTGRES_* parts would quietly name postgres@127.0.0.1:5432/tripsync."""
    with pytest.raises(ValidationError, match="DATABASE_URL must be set"):
        make(
            ENVIRONMENT="production",
            SECRET_KEY=STRONG_KEY,
            EMAIL_DELIVERY="smtp",
            DATABASE_URL=None,
        )
    # Elsewhere the parts still make the URL (make dev, tests).
    assert make(DATABASE_URL=None).database_url.endswith("@127.0.0.1:5432/tripsync")


def test_production_refuses_emails_that_never_leave_the_machine() -> None:
    with pytest.raises(ValidationError, match="EMAIL_DELIVERY"):
        make(ENVIRONMENT="production", SECRET_KEY=STRONG_KEY, EMAIL_DELIVERY="file")


def test_production_refuses_wildcard_cors() -> None:
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        make(
            ENVIRONMENT="production", SECRET_KEY=STRONG_KEY, EMAIL_DELIVERY="smtp", CORS_ORIGINS="*"
        )


def test_production_accepts_a_strong_key() -> None:
    settings = make(ENVIRONMENT="production", SECRET_KEY=STRONG_KEY, EMAIL_DELIVERY="smtp")
    assert settings.ENVIRONMENT is Environment.PRODUCTION


def test_default_admission_fits_the_pool_and_the_thread_pool() -> None:
    settings = make()
    assert settings.database_admission_limit == 40
    assert settings.database_admission_limit <= settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW
    assert settings.database_admission_limit <= settings.THREADPOOL_SIZE


@pytest.mark.parametrize(
    ("values", "limit"),
    [
        # More threads than connections is fine now: database work is admitted by slots.
        ({"THREADPOOL_SIZE": 50, "DB_POOL_SIZE": 10, "DB_MAX_OVERFLOW": 10}, 20),
        ({"THREADPOOL_SIZE": 8, "DB_POOL_SIZE": 10, "DB_MAX_OVERFLOW": 10}, 8),
        ({"THREADPOOL_SIZE": 8, "DB_POOL_SIZE": 4, "DB_MAX_CONCURRENT_REQUESTS": 3}, 3),
    ],
)
def test_admission_limit_defaults_to_the_smaller_of_threads_and_connections(
    values: dict[str, Any], limit: int
) -> None:
    assert make(**values).database_admission_limit == limit


def test_the_environment_fixture_rebuilds_every_cached_singleton(
    environment: Callable[..., None],
) -> None:
    from app.core import admission, db, security
    from app.ratelimit import service as rate_limit

    singletons = (
        get_settings,
        db.get_engine,
        db.get_sessionmaker,
        db.alembic_head,
        admission.get_admission,
        admission.get_hashing_admission,
        rate_limit._store,
        security._password_hasher,
        security.hashing_slots,
        security.dummy_password_hash,
    )
    assert [f.cache_info().currsize for f in singletons] == [0] * len(singletons)
    environment(PASSWORD_HASH_CONCURRENCY="3")
    assert get_settings().PASSWORD_HASH_CONCURRENCY == 3
    assert security.hashing_slots()._value == 3  # type: ignore[attr-defined]


def test_the_outbox_lease_must_outlast_a_send() -> None:
    # One send may take 3 x SMTP_TIMEOUT_SECONDS + 1 / OUTBOX_SEND_RATE = 31 s: a lease of
    # 61 s could run out while its message is still being sent.
    with pytest.raises(ValidationError, match="OUTBOX_LEASE_SECONDS"):
        make(OUTBOX_LEASE_SECONDS=61, SMTP_TIMEOUT_SECONDS=10, OUTBOX_SEND_RATE=1)
    assert make(OUTBOX_LEASE_SECONDS=62, SMTP_TIMEOUT_SECONDS=10, OUTBOX_SEND_RATE=1)
    with pytest.raises(ValidationError, match="OUTBOX_RETRY_MAX_SECONDS"):
        make(OUTBOX_RETRY_BASE_SECONDS=60, OUTBOX_RETRY_MAX_SECONDS=30)


def test_the_public_url_must_be_a_web_address() -> None:
    with pytest.raises(ValidationError, match="PUBLIC_URL"):
        make(PUBLIC_URL="javascript:alert(1)")
    assert str(make(PUBLIC_URL="https://trips.example").PUBLIC_URL) == "https://trips.example/"


def test_production_refuses_a_short_metrics_token_and_accepts_none() -> None:
    production = {"ENVIRONMENT": "production", "SECRET_KEY": STRONG_KEY, "EMAIL_DELIVERY": "smtp"}
    with pytest.raises(ValidationError, match="METRICS_TOKEN"):
        make(**production, METRICS_TOKEN="short")
    assert make(**production, METRICS_TOKEN="").METRICS_TOKEN.get_secret_value() == ""
    assert make(**production, METRICS_TOKEN=STRONG_KEY).METRICS_TOKEN.get_secret_value()
