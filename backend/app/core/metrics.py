"""The app's Prometheus metrics (prometheus-client): defined once, here, so core and features
can record without knowing how they are served (app.api.metrics serves them).

With PROMETHEUS_MULTIPROC_DIR set (before the process starts: several uvicorn workers),
prometheus-client keeps each value in a file of that folder and a scrape adds up every
worker's; the gauges say how (`livesum`: the sum over the live workers).
"""

from prometheus_client import Counter, Gauge, Histogram

# Request latency: most answers take milliseconds; 503 server_busy waits DB_POOL_TIMEOUT (5 s),
# a 504 up to DB_STATEMENT_TIMEOUT_MS (15 s).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)

REQUEST_DURATION = Histogram(
    "tripsync_http_request_duration_seconds",
    "Time from a request's arrival to its last byte (an event stream: to its headers), by "
    "route template, method and status.",
    ["route", "method", "status"],
    buckets=REQUEST_BUCKETS,
)
SERVER_ERRORS = Counter(
    "tripsync_http_server_errors_total",
    "5xx problems answered, by status and code (503 server_busy, database_unavailable; 504 "
    "database_timeout; 500 internal_error).",
    ["status", "code"],
)

ADMISSION_WAIT = Histogram(
    "tripsync_admission_wait_seconds",
    "Time a request waited for its turn (a database slot, a password hash), timed out or not.",
    ["admission"],
    buckets=(0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ADMISSION_WAITING = Gauge(
    "tripsync_admission_waiting",
    "Requests waiting for a turn now (the admission queue's length).",
    ["admission"],
    multiprocess_mode="livesum",
)
ADMISSION_TIMEOUTS = Counter(
    "tripsync_admission_timeouts_total",
    "Waits for a turn that ran out (each answered 503 server_busy).",
    ["admission"],
)

POOL_CHECKED_OUT = Gauge(
    "tripsync_db_pool_checked_out",
    "Database connections in use (SQLAlchemy's pool, sampled).",
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "tripsync_db_pool_overflow",
    "Connections open beyond DB_POOL_SIZE (negative: pool slots never opened yet; sampled).",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "tripsync_db_pool_size",
    "DB_POOL_SIZE: connections each worker keeps open.",
    multiprocess_mode="livesum",
)
SSE_STREAMS = Gauge(
    "tripsync_sse_streams",
    "Open event streams (GET /sync/events), sampled.",
    multiprocess_mode="livesum",
)
LONG_POLLS = Gauge(
    "tripsync_long_polls_waiting",
    "Long polls (GET /trips/{trip_id}/changes?wait=) waiting for a change, sampled.",
    multiprocess_mode="livesum",
)
