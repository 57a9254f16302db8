"""Settings: the one typed configuration object, read from the environment and `.env`."""

import math
from collections import Counter
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Self

from pydantic import (
    Field,
    HttpUrl,
    PostgresDsn,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The placeholder shipped in `.env.example`; refused in production like an empty key.
DEFAULT_SECRET_KEY = "change-me-in-production-this-is-not-a-secret"  # noqa: S105

# What production asks of SECRET_KEY and each TWO_FACTOR_ENCRYPTION_KEYS key. The estimate
# catches keys typed by hand or repeated ('a' * 32, a word over and over), not every weak key:
# 64 hex characters (`openssl rand -hex 32`, about 240 bits by estimate) pass; 32 hex
# characters carry 128 bits but their estimate mostly falls short of it, so use 64.
KEY_MIN_LENGTH = 32
KEY_MIN_DISTINCT_CHARACTERS = 10
KEY_MIN_ESTIMATED_BITS = 128
KEY_RULE = (
    f"at least {KEY_MIN_LENGTH} characters, at least {KEY_MIN_DISTINCT_CHARACTERS} different "
    f"ones, and at least {KEY_MIN_ESTIMATED_BITS} bits of estimated entropy (its length times "
    "the Shannon entropy of its characters' frequencies); `openssl rand -hex 32` makes one"
)


def estimated_entropy_bits(key: str) -> float:
    """The key's length times the Shannon entropy of its own characters' frequencies."""
    return -sum(count * math.log2(count / len(key)) for count in Counter(key).values())


def key_weakness(key: str) -> str | None:
    """Why `key` is too weak for production (never quoting it), or None."""
    if key == DEFAULT_SECRET_KEY:
        return "it is the placeholder of .env.example"
    if len(key) < KEY_MIN_LENGTH:
        return f"it has {len(key)} characters"
    if len(set(key)) < KEY_MIN_DISTINCT_CHARACTERS:
        return f"it has only {len(set(key))} different characters"
    if (bits := estimated_entropy_bits(key)) < KEY_MIN_ESTIMATED_BITS:
        return f"its estimated entropy is {bits:.0f} bits"
    return None


class EmailDelivery(StrEnum):
    FILE = "file"  # development: one .eml file per message under EMAIL_OUTBOX_DIR
    SMTP = "smtp"  # production: an SMTP server
    MEMORY = "memory"  # tests: kept in the process


class RateLimitStore(StrEnum):
    POSTGRES = "postgres"  # the default: nothing more to run
    REDIS = "redis"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Environment(StrEnum):
    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    ENVIRONMENT: Environment = Environment.LOCAL
    PROJECT_NAME: str = "TripSync API"
    LOG_LEVEL: str = "INFO"
    # `text` for a terminal; `json` writes one JSON object per line (app.core.logs), with the
    # request id, for a log collector.
    LOG_FORMAT: LogFormat = LogFormat.TEXT
    # Prometheus metrics at GET /metrics, for `Authorization: Bearer <METRICS_TOKEN>` only;
    # empty (the default): /metrics does not exist (404). app.api.metrics says why a token.
    METRICS_TOKEN: SecretStr = SecretStr("")

    # Either a full URL, or the parts below from which one is built.
    DATABASE_URL: PostgresDsn | None = None
    POSTGRES_SERVER: str = "127.0.0.1"
    POSTGRES_PORT: int = Field(default=5432, ge=1, le=65535)
    POSTGRES_USER: str = "postgres"
    POSTGRES_PASSWORD: SecretStr = SecretStr("")
    POSTGRES_DB: str = "tripsync"

    # Sync routes run in a thread pool of THREADPOOL_SIZE threads. At most
    # DB_MAX_CONCURRENT_REQUESTS requests hold a database session at once (app.core.admission);
    # the others wait up to DB_POOL_TIMEOUT for a slot, then get 503 server_busy. Each holds
    # at most one connection, so that limit may not exceed the pool (size + overflow): an
    # admitted request never waits on the pool. Unset, it is the smaller of the two.
    THREADPOOL_SIZE: int = Field(default=40, ge=1, le=1000)
    DB_POOL_SIZE: int = Field(default=20, ge=1, le=1000)
    DB_MAX_OVERFLOW: int = Field(default=20, ge=0, le=1000)
    DB_MAX_CONCURRENT_REQUESTS: int | None = Field(default=None, ge=1, le=1000)
    DB_POOL_TIMEOUT: float = Field(default=5.0, gt=0, le=300)
    DB_POOL_RECYCLE: int = Field(default=1800, ge=-1)
    DB_CONNECT_TIMEOUT: int = Field(default=5, ge=1, le=300)
    # Enforced by the server; the client also gives up on any call to the database (and a
    # request on all its database work) DB_DEADLINE_MARGIN_MS after it, for a server that
    # hangs instead of answering (app.core.deadlines): then 504 database_unresponsive.
    DB_STATEMENT_TIMEOUT_MS: int = Field(default=15_000, ge=1)
    DB_DEADLINE_MARGIN_MS: int = Field(default=500, ge=100, le=60_000)
    # TCP keepalives on every connection (an idle one to a vanished server is noticed after
    # IDLE + INTERVAL x COUNT seconds), and how long sent data may stay unacknowledged before
    # the kernel drops the connection (lost packets, a dead host): TCP_USER_TIMEOUT.
    DB_KEEPALIVES_IDLE_SECONDS: int = Field(default=30, ge=1, le=7200)
    DB_KEEPALIVES_INTERVAL_SECONDS: int = Field(default=10, ge=1, le=600)
    DB_KEEPALIVES_COUNT: int = Field(default=3, ge=1, le=100)
    DB_TCP_USER_TIMEOUT_MS: int = Field(default=30_000, ge=0, le=3_600_000)
    DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: int = Field(default=60_000, ge=0)
    # Send the two timeouts above as libpq startup `options` on every new connection. Behind
    # PgBouncer set it false (PgBouncer refuses the `options` parameter) and set the timeouts
    # on the server (ALTER ROLE ... SET); the app then only checks them at start-up.
    DB_STARTUP_OPTIONS: bool = True
    # The connection each worker LISTENs on for committed trip versions (app.sync.live). Unset:
    # DATABASE_URL. Behind PgBouncer in transaction mode, point it at PostgreSQL directly.
    DB_LISTEN_URL: PostgresDsn | None = None

    SECRET_KEY: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    # Sessions: a short-lived access token (checked against its session on every request)
    # and a refresh token that is replaced at each use; a session unused for longer than
    # REFRESH_TOKEN_TTL_DAYS ends.
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1, le=60 * 24 * 30)
    REFRESH_TOKEN_TTL_DAYS: int = Field(default=30, ge=1, le=365)
    INVITATION_TTL_DAYS: int = Field(default=14, ge=1, le=365)
    # How long deletions are remembered for offline devices; a device that has not synced for
    # longer must take a new snapshot. Weeks: offline trips last weeks.
    # Login and registration limits, per fixed window, shared by every worker and host.
    RATE_LIMIT_STORE: RateLimitStore = RateLimitStore.POSTGRES
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    RATE_LIMIT_WINDOW_SECONDS: int = Field(default=900, ge=1, le=86_400)
    LOGIN_ATTEMPTS_PER_ACCOUNT: int = Field(default=10, ge=1)
    LOGIN_ATTEMPTS_PER_ADDRESS: int = Field(default=100, ge=1)
    REGISTRATIONS_PER_ADDRESS: int = Field(default=20, ge=1)
    # Reads of shared trips (GET /shared/{token}) per window from one client address: a guess
    # at tokens, or a scraper of one link, is slowed down.
    SHARED_READS_PER_ADDRESS: int = Field(default=300, ge=1)
    # Password reset requests (POST /auth/password-reset), per email address typed (whether
    # or not it has an account) and per client address.
    PASSWORD_RESETS_PER_ACCOUNT: int = Field(default=5, ge=1)
    PASSWORD_RESETS_PER_ADDRESS: int = Field(default=20, ge=1)
    # Second-factor codes tried per account (the login's second step, confirming and turning
    # off two-factor sign-in), per window and per day: a 6-digit code is not to be guessed.
    TWO_FACTOR_ATTEMPTS_PER_ACCOUNT: int = Field(default=5, ge=1)
    TWO_FACTOR_ATTEMPTS_PER_ACCOUNT_DAILY: int = Field(default=20, ge=1)
    # How long the `mfa_token` of a login's first step (the password) may finish it.
    MFA_TOKEN_TTL_SECONDS: int = Field(default=300, ge=30, le=3600)
    # The keys two-factor secrets are encrypted with (Fernet, each derived with HKDF): the
    # first encrypts, all decrypt, so a new key goes first and the old one stays behind it.
    # Empty: SECRET_KEY alone.
    TWO_FACTOR_ENCRYPTION_KEYS: Annotated[list[SecretStr], NoDecode] = []

    SYNC_RETENTION_DAYS: int = Field(default=56, ge=1, le=3650)
    # Event streams (GET /sync/events): how long a stream token may open one, and how many
    # streams one user may hold open at once per worker process (429 too_many_streams).
    STREAM_TOKEN_TTL_SECONDS: int = Field(default=300, ge=10, le=3600)
    SSE_MAX_STREAMS_PER_USER: int = Field(default=10, ge=1, le=10_000)
    EMAIL_VERIFICATION_TTL_HOURS: int = Field(default=48, ge=1, le=24 * 30)
    # How long a mailed password reset link works (once).
    PASSWORD_RESET_TTL_MINUTES: int = Field(default=30, ge=1, le=24 * 60)
    # A reset request is answered no sooner than this, whether or not the address has an
    # account, so the time taken does not tell them apart (the wait holds no connection).
    PASSWORD_RESET_MIN_RESPONSE_MS: int = Field(default=250, ge=0, le=10_000)
    # Registering an address that has an account mails its owner a notice, at most once in
    # this many minutes (0: every time).
    REGISTRATION_NOTICE_INTERVAL_MINUTES: int = Field(default=60, ge=0, le=7 * 24 * 60)
    # Weeks, not hours: an offline client replays its queue when the trip ends.
    IDEMPOTENCY_RETENTION_DAYS: int = Field(default=28, ge=1, le=366)
    # Share and invite links that stopped working (expired or revoked) stay listed to their
    # owners this many days, then `make cleanup` deletes them.
    LINK_RETENTION_DAYS: int = Field(default=30, ge=1, le=3650)
    # Larger request bodies are refused with 413 before anything reads them.
    MAX_REQUEST_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Longer URLs are refused with 414, larger header sections with 431 (app.api.head_limit).
    # Room for a /sync cursor of ~1,000 trips (60 bytes each), in the URL or as an event
    # stream's Last-Event-ID. uvicorn's httptools refuses a URL of 64 KiB itself, in plain
    # text, hence the bound (docs/operations.md#request-size-limits).
    MAX_URL_BYTES: int = Field(default=60 * 1024, ge=1024, le=60 * 1024)
    MAX_HEADER_BYTES: int = Field(default=64 * 1024, ge=4 * 1024, le=128 * 1024)
    # The account and ledger exports (GET /users/me/export, /trips/{id}/export) read rows through
    # a server-side cursor this many at a time: what one export holds, whatever its size.
    EXPORT_BATCH_ROWS: int = Field(default=500, ge=1, le=100_000)

    # Mail (verification, invitations, security notices) is written to the outbox in the
    # transaction that causes it and sent by the worker (`python -m app.worker`).
    EMAIL_DELIVERY: EmailDelivery = EmailDelivery.FILE
    EMAIL_OUTBOX_DIR: str = ".data/outbox"
    EMAIL_FROM: str = "TripSync <no-reply@tripsync.invalid>"
    SMTP_HOST: str = "localhost"
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_USERNAME: str = ""
    SMTP_PASSWORD: SecretStr = SecretStr("")
    SMTP_STARTTLS: bool = True
    SMTP_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=300)
    # The web client's address: links in mail (verify the address, open an invitation) start
    # with it.
    PUBLIC_URL: HttpUrl = HttpUrl("http://127.0.0.1:8000/app/")
    # The worker: messages claimed per transaction, how often an idle worker looks for due
    # mail, and sends per second per worker process.
    OUTBOX_BATCH_SIZE: int = Field(default=20, ge=1, le=1000)
    OUTBOX_POLL_SECONDS: float = Field(default=1.0, gt=0, le=300)
    OUTBOX_SEND_RATE: float = Field(default=10.0, gt=0, le=10_000)
    # A failed message is retried after OUTBOX_RETRY_BASE_SECONDS, doubling up to
    # OUTBOX_RETRY_MAX_SECONDS, and becomes a dead letter after OUTBOX_MAX_ATTEMPTS attempts.
    OUTBOX_MAX_ATTEMPTS: int = Field(default=10, ge=1, le=100)
    OUTBOX_RETRY_BASE_SECONDS: float = Field(default=30.0, gt=0, le=86_400)
    OUTBOX_RETRY_MAX_SECONDS: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    # While the SMTP server cannot be reached no attempt is counted: the worker waits, doubling
    # from OUTBOX_POLL_SECONDS up to this, and tries again.
    OUTBOX_OUTAGE_MAX_WAIT_SECONDS: float = Field(default=30.0, gt=0, le=3600)
    # How long a worker's claim on a message lasts: past it (the worker died), another may
    # send it. Must leave room for a batch of sends (checked below).
    OUTBOX_LEASE_SECONDS: float = Field(default=300.0, gt=0, le=86_400)
    # Sent and dead messages are deleted by `make cleanup` this long after their last attempt.
    OUTBOX_RETENTION_DAYS: int = Field(default=14, ge=1, le=3650)
    # Reference exchange rates (app.fx): where the worker fetches ECB's rates once a day
    # (unset: no fetching; import files with `python -m app.cli fx-import FILE`), how long it
    # waits for an answer, and how many days before an expense's date a rate may be from
    # (ECB skips weekends and holidays; a currency it stopped quoting gets no old rate).
    FX_SOURCE_URL: HttpUrl | None = None
    FX_FETCH_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=600)
    FX_MAX_AGE_DAYS: int = Field(default=7, ge=0, le=366)
    # OWASP's Argon2id baseline (19 MiB, 2 passes); at most PASSWORD_HASH_CONCURRENCY hashes run
    # at once per worker, so a login burst costs at most that many times the memory.
    ARGON2_TIME_COST: int = Field(default=2, ge=1, le=10)
    ARGON2_MEMORY_COST_KIB: int = Field(default=19_456, ge=8, le=1_048_576)
    PASSWORD_HASH_CONCURRENCY: int = Field(default=2, ge=1, le=64)

    CORS_ORIGINS: Annotated[list[str], NoDecode] = [
        "http://localhost:5173",
        "http://127.0.0.1:5173",
    ]
    # Serve the static client under /app when this folder exists (empty disables it).
    # Relative paths are relative to the repository's top folder.
    FRONTEND_DIR: str = "frontend-stub"

    # `make dev` without DATABASE_URL: the embedded server's data folder and port.
    EMBEDDED_PG_DATA: str = ".data/postgres"
    EMBEDDED_PG_PORT: int = Field(default=54329, ge=1024, le=65535)
    # `make backup` / `make restore`: a folder holding pg_dump and pg_restore of the server's
    # major version; unset, the usual places are searched (app.core.backup).
    PG_BIN_DIR: str | None = None

    @field_validator("CORS_ORIGINS", "TWO_FACTOR_ENCRYPTION_KEYS", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        admitted = self.DB_MAX_CONCURRENT_REQUESTS
        pool = self.DB_POOL_SIZE + self.DB_MAX_OVERFLOW
        if admitted is not None and admitted > pool:
            raise ValueError(
                f"DB_MAX_CONCURRENT_REQUESTS ({admitted}) may not exceed DB_POOL_SIZE + "
                f"DB_MAX_OVERFLOW ({self.DB_POOL_SIZE} + {self.DB_MAX_OVERFLOW}): an admitted "
                "request must never wait for a connection"
            )
        if admitted is not None and admitted > self.THREADPOOL_SIZE:
            raise ValueError(
                f"DB_MAX_CONCURRENT_REQUESTS ({admitted}) may not exceed THREADPOOL_SIZE "
                f"({self.THREADPOOL_SIZE}): an admitted request must not queue for a thread "
                "while it holds a connection"
            )
        if self.ACCESS_TOKEN_EXPIRE_MINUTES >= self.REFRESH_TOKEN_TTL_DAYS * 24 * 60:
            raise ValueError(
                f"ACCESS_TOKEN_EXPIRE_MINUTES ({self.ACCESS_TOKEN_EXPIRE_MINUTES}) must be shorter "
                f"than REFRESH_TOKEN_TTL_DAYS ({self.REFRESH_TOKEN_TTL_DAYS} days): an access "
                "token may not outlive its session"
            )
        if self.OUTBOX_RETRY_MAX_SECONDS < self.OUTBOX_RETRY_BASE_SECONDS:
            raise ValueError(
                "OUTBOX_RETRY_MAX_SECONDS may not be less than OUTBOX_RETRY_BASE_SECONDS"
            )
        if self.outbox_send_budget_seconds * 2 > self.OUTBOX_LEASE_SECONDS:
            raise ValueError(
                f"OUTBOX_LEASE_SECONDS ({self.OUTBOX_LEASE_SECONDS:g}) must be at least twice "
                f"the time one send may take ({self.outbox_send_budget_seconds:g} s: three "
                "SMTP_TIMEOUT_SECONDS plus the pause of OUTBOX_SEND_RATE), so that a claim "
                "never runs out while its message is being sent"
            )
        if self.ENVIRONMENT is Environment.PRODUCTION:
            if self.DATABASE_URL is None:
                raise ValueError(
                    "DATABASE_URL must be set when ENVIRONMENT=production: without it the "
                    "POSTGRES_* parts would silently name a database (by default "
                    "postgres@127.0.0.1:5432/tripsync)"
                )
            if weakness := key_weakness(self.SECRET_KEY.get_secret_value()):
                raise ValueError(
                    f"SECRET_KEY is too weak for ENVIRONMENT=production ({weakness}): it must "
                    f"be a random value of {KEY_RULE}"
                )
            for position, key in enumerate(self.TWO_FACTOR_ENCRYPTION_KEYS, start=1):
                if weakness := key_weakness(key.get_secret_value()):
                    raise ValueError(
                        f"key {position} of TWO_FACTOR_ENCRYPTION_KEYS is too weak for "
                        f"ENVIRONMENT=production ({weakness}): each must be a random value of "
                        f"{KEY_RULE}"
                    )
            if self.EMAIL_DELIVERY is not EmailDelivery.SMTP:
                raise ValueError("EMAIL_DELIVERY must be 'smtp' when ENVIRONMENT=production")
            token = self.METRICS_TOKEN.get_secret_value()
            if token and len(token) < 32:
                raise ValueError(
                    "METRICS_TOKEN must be empty (no /metrics) or a random value of at least 32 "
                    "characters when ENVIRONMENT=production"
                )
            if "*" in self.CORS_ORIGINS:
                raise ValueError("CORS_ORIGINS may not contain '*' when ENVIRONMENT=production")
        return self

    @property
    def outbox_send_budget_seconds(self) -> float:
        """The longest one message's send may take: connect, the dialogue, the rate's pause."""
        return 3 * self.SMTP_TIMEOUT_SECONDS + 1 / self.OUTBOX_SEND_RATE

    @property
    def database_deadline_seconds(self) -> float:
        """The longest one request's database work (or one call outside a request) may take."""
        return (self.DB_STATEMENT_TIMEOUT_MS + self.DB_DEADLINE_MARGIN_MS) / 1000

    @property
    def database_admission_limit(self) -> int:
        """Requests that may hold a database session at once (per worker process)."""
        if self.DB_MAX_CONCURRENT_REQUESTS is not None:
            return self.DB_MAX_CONCURRENT_REQUESTS
        return min(self.THREADPOOL_SIZE, self.DB_POOL_SIZE + self.DB_MAX_OVERFLOW)

    @property
    def database_listen_url(self) -> str:
        """Where the worker's listener connects: DB_LISTEN_URL, else the database URL."""
        if self.DB_LISTEN_URL is not None:
            return with_psycopg2(str(self.DB_LISTEN_URL))
        return self.database_url

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL: DATABASE_URL when set, else built from the POSTGRES_* parts."""
        if self.DATABASE_URL is not None:
            url = str(self.DATABASE_URL)
        else:
            url = str(
                PostgresDsn.build(
                    scheme="postgresql",
                    username=self.POSTGRES_USER,
                    password=self.POSTGRES_PASSWORD.get_secret_value() or None,
                    host=self.POSTGRES_SERVER,
                    port=self.POSTGRES_PORT,
                    path=self.POSTGRES_DB,
                )
            )
        return with_psycopg2(url)


def with_psycopg2(url: str) -> str:
    """One driver everywhere: a bare `postgresql://` URL would pick psycopg 3 in SQLAlchemy 2.1."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


@cache
def get_settings() -> Settings:
    return Settings()
