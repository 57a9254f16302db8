# TripSync API — the front door. `make dev` runs the service, `make test` runs the suite.
# Both create the virtual environment and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install dev worker test test-citus test-e2e test-faults migrate cleanup backup restore lint fmt clients routes-doc clean bench-sync bench-live bench-export bench

$(STAMP): backend/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e "backend[dev]"
	@touch $(STAMP)

install: $(STAMP)

## Run the API with reload on 127.0.0.1:8000 (embedded PostgreSQL unless DATABASE_URL is set).
dev: $(STAMP)
	cd backend && ../$(BIN)/python -m devtools.dev

## Send the mail queued in the outbox (EMAIL_DELIVERY: smtp, file or memory) until stopped;
## run one or more beside the API in production. `make dev` runs one of its own.
worker: $(STAMP)
	cd backend && ../$(BIN)/python -m app.worker

## Run the whole suite on a real PostgreSQL (TEST_DATABASE_URL, else an embedded server).
## The fault-injection tests run apart, with `make test-faults`.
test: $(STAMP)
	cd backend && ../$(BIN)/pytest -m "not faults" $(PYTEST_ARGS)

## The API-level suites (access, sync, ledger, Schemathesis, invitations, links, trips, users)
## on a Citus cluster, ~7 min: a coordinator and two workers of devtools.citus (Citus built once
## into .data/citus, ~1 min), or your own coordinator as TEST_DATABASE_URL. See
## docs/operations.md, "Distributing by trip (Citus)".
test-citus: $(STAMP)
	cd backend && ../$(BIN)/python -m devtools.citus test $(PYTEST_ARGS)

## Fault injection (~1 min): database restarts, a killed API process, pool exhaustion,
## timeouts, and PgBouncer in transaction mode (needs /usr/sbin/pgbouncer, else skipped),
## each against its own uvicorn and embedded PostgreSQL; prints the figures.
test-faults: $(STAMP)
	cd backend && ../$(BIN)/pytest -m faults -s tests/faults $(PYTEST_ARGS)

## Drive the frontend stub in Chromium (/usr/bin/chromium) against a real API and PostgreSQL.
test-e2e: $(STAMP)
	cd backend && ../$(BIN)/pytest tests_e2e $(PYTEST_ARGS)

## Apply migrations to the configured database (production path: python -m app.cli migrate,
## which an installed package or the image runs the same way).
migrate: $(STAMP)
	$(BIN)/python -m app.cli migrate

## Delete what has outlived its retention (idempotency keys, tombstones, rate-limit windows, old mail); run it daily.
cleanup: $(STAMP)
	$(BIN)/python -m app.cli cleanup

## Dump the database to FILE (pg_dump's custom format, the server's own major version):
## `make backup FILE=tripsync.dump`. Point-in-time recovery: docs/operations.md#backups.
backup: $(STAMP)
	@test -n "$(FILE)" || { echo "usage: make backup FILE=path.dump"; exit 1; }
	$(BIN)/python -m app.cli backup "$(FILE)"

## Restore FILE into a NEW database (never the app's own): `make restore FILE=... INTO=postgresql://...`.
restore: $(STAMP)
	@test -n "$(FILE)" -a -n "$(INTO)" || { echo "usage: make restore FILE=path.dump INTO=new-database-url"; exit 1; }
	$(BIN)/python -m app.cli restore "$(FILE)" --into "$(INTO)"

## ruff, the import rules of backend/.importlinter (layers, feature edges, no circles), mypy strict.
lint: $(STAMP)
	$(BIN)/ruff check backend
	$(BIN)/ruff format --check backend
	cd backend && ../$(BIN)/lint-imports --no-cache
	cd backend && ../$(BIN)/mypy app devtools tests tests_e2e bench

fmt: $(STAMP)
	$(BIN)/ruff check --fix backend
	$(BIN)/ruff format backend

## The OpenAPI contract: generate a Python client (openapi-python-client, default settings) and
## TypeScript types (openapi-typescript) into a temporary folder and type-check them (mypy
## --strict, tsc --noEmit --strict). Generators pinned, cached in ~/.cache/tripsync; needs npm.
clients: $(STAMP)
	cd backend && ../$(BIN)/python -m devtools.clients $(CLIENTS_ARGS)

## Regenerate docs/routes.md (every route, from the OpenAPI document); a test checks it is current.
routes-doc: $(STAMP)
	cd backend && ../$(BIN)/python -m devtools.routes_doc

clean:
	rm -rf $(VENV) backend/*.egg-info

## Sync feed figures on a 100,000-row trip (embedded PostgreSQL unless BENCH_DATABASE_URL).
bench-sync: $(STAMP)
	cd backend && ../$(BIN)/python -m bench.sync_pull

## Ledger CSV export of a 10,000-expense trip: time, bytes, rows, the server's peak RSS growth,
## and tracemalloc's peak streamed against joined (embedded PostgreSQL unless BENCH_DATABASE_URL).
bench-export: $(STAMP)
	cd backend && ../$(BIN)/python -m bench.export

## Live sync (~10 min): write → event latency for SSE and long polls with 1, 1,000 and 10,000
## subscribers on one worker, RSS and database statements per idle subscriber, GET p99 beside
## them; BENCH_LIVE_BEFORE=<checkout> adds that code's long poll. Raises the open-file limit.
bench-live: $(STAMP)
	cd backend && ../$(BIN)/python -m bench.live

## Load test (wrk): seeds BENCH_SCALE × (1,000 users, 10,000 trips, 1M items, 200k expenses),
## runs TripSync with 1 and 2 workers and the raw ceiling; see docs/benchmark.md.
## BENCH_BASELINE_REF=<git ref>: A/B instead, this checkout against that commit (built in
## .data/bench-refs/<sha>), interleaved rounds, ratios as median [min-max] (~10 min).
bench: $(STAMP)
	@for tool in wrk pgbouncer; do \
		command -v $$tool >/dev/null || [ -x /usr/sbin/$$tool ] || { \
			if [ "$$(id -u)" -eq 0 ]; then \
				echo "--- installing $$tool (Debian)"; apt-get update -qq && \
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$tool >/dev/null; \
			else echo "$$tool is missing: sudo apt-get install $$tool"; exit 1; fi; }; \
	done
	cd backend && ../$(BIN)/python -m bench.run
