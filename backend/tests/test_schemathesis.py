"""Schemathesis against the app's own OpenAPI document: in process, on real PostgreSQL.

Every operation is called with examples, coverage cases (boundaries and each way to break
each parameter) and fuzzed data, positive and negative, and every response goes through
all of Schemathesis' default checks; then the stateful run follows the document's links
through create → read → update → delete chains. Zero failures is the bar.

- In process: the ASGI app itself, no server, no network.
- Authenticated: a bearer token of a user created for the run, who owns a seeded trip with
  items, a checklist, an expense and a settlement; generated path ids are swapped for the
  seeded ones (when they are well-formed), so calls reach real rows instead of all being 404.
- Isolated: the app's sessions are bound to one connection in a transaction that is rolled
  back at the end, like the `connection` fixture; each operation starts from the same seeded
  trip (a savepoint per operation), so one operation's deletes do not starve the next.
- Bounded and reproducible: fixed seed, no example database, a few examples per operation.
"""

import random
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import ASGIClient
from sqlalchemy import Connection, Engine

from app.api.routing import IDEMPOTENCY_HEADER as IDEMPOTENCY_KEY
from app.api.routing import IDEMPOTENCY_KEY_PATTERN
from app.main import app
from app.trips.models import MAX_TRIP_DAYS
from app.users.models import User
from tests import factories, support

VALID_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
SEED = 20261126
FUZZED_EXAMPLES = 10  # per operation, on top of its explicit and coverage cases
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 8
# Below these the run has silently stopped testing (e.g. everything filtered out).
MIN_CASES_PER_OPERATION = 5
MIN_STATEFUL_STEPS = 50

# Statuses a schema-valid request may still get, besides Schemathesis' defaults (2xx, 3xx, 401,
# 403, 404, 409, 429, 5xx). 410 and 412 depend on the state of the resource, as 409 does. 422
# answers rules relating several values (a trip's dates, a day within them, a payer in the
# trip, a rate for a currency), which JSON Schema cannot state; `refused_for_a_relation`
# below makes sure no 422 is about a single value the document allows.
_POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "410", "412", "422", "429", "5xx"]
# Operations taking a value only this server can issue (a signed cursor, a version it handed
# out, a mailed token, the current password): a well-formed made-up one is rightly 400.
_SERVER_ISSUED = ("cursor", "since")
_OPAQUE_INPUT_OPERATIONS = sorted(
    {"POST /auth/verify-email", "POST /auth/password-reset/confirm", "PUT /users/me/password"}
    | {
        f"{method.upper()} {path}"
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if any(
            support.resolved(app.openapi(), p)["name"] in _SERVER_ISSUED
            for p in operation.get("parameters", ())
        )
    }
)
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": FUZZED_EXAMPLES, "database": "none"},
        "phases": {
            "stateful": {
                "max-steps": STATEFUL_STEPS,
                # The document's own links only: guessing from names links a registered user's
                # id to "a member of this trip", which it is not.
                "inference": {"algorithms": []},
            }
        },
        "checks": {
            # 428 Precondition Required is the answer to a write without its If-Match.
            "missing_required_header": {
                "expected-statuses": ["400", "401", "403", "406", "415", "422", "428"]
            },
            "positive_data_acceptance": {"expected-statuses": _POSITIVE},
            # A value past a length limit may make the URL longer than the server allows (a
            # maxLength counts characters, the URL limit bytes): 414 refuses it too.
            "negative_data_rejection": {
                "expected-statuses": [
                    *("400", "401", "403", "404", "405", "406", "409", "414", "415", "422"),
                    *("428", "429", "431", "5xx"),
                ]
            },
        },
        "operations": [
            {
                "include-name": _OPAQUE_INPUT_OPERATIONS,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*_POSITIVE, "400"]}},
            }
        ],
    }
)
# The event stream answers until its client leaves, fed by the worker's listener, which the
# app's lifespan starts and this in-process run leaves out (see in_process_client); its inputs
# are server-issued tokens. tests/sync/test_events.py drives it against a running app.
_STREAMS = "/sync/events"
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG).exclude(path=_STREAMS)


def _value_at(body: object, path: list[object]) -> object:
    for part in path:
        if isinstance(body, dict) and isinstance(part, str):
            body = body.get(part)
        elif isinstance(body, list) and isinstance(part, int) and part < len(body):
            body = body[part]
        else:
            return None
    return body


@schemathesis.check
def refused_for_a_relation(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """A schema-valid request refused with 422 names an object whose fields do not fit together,
    never a single value: a rule about one value belongs in the OpenAPI document."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if (
        response.status_code != 422
        or "problem+json" not in response.headers.get("content-type", [""])[0]
    ):
        return None
    problem = response.json()
    if problem.get("code") != "validation_error":
        return None  # a rule of the domain, with its own code (day_outside_trip, ...)
    for error in problem["errors"]:
        where, *path = error["loc"]
        if where == "body" and isinstance(_value_at(case.body, path), dict):
            continue  # how an object's fields relate (end_date before start_date, ...)
        raise AssertionError(
            f"{'.'.join(map(str, error['loc']))} refused ({error['msg']}), "
            "but the OpenAPI document allows the value sent"
        )
    return None


@dataclass
class World:
    """What the run's user owns, by the path parameter names that refer to it."""

    token: str = ""
    calendar_token: str = ""
    connection: Connection | None = None
    seeded: dict[str, list[str]] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    keys: int = 0
    cases: Counter[str] = field(default_factory=Counter)
    successes: Counter[str] = field(default_factory=Counter)


WORLD = World()


@schema.auth(refresh_interval=None)  # the token exists only once the fixture ran
class RunUserBearer:
    """The bearer token of the run's user on every operation that declares security."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return WORLD.token

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def aim_at_seeded_rows(case: schemathesis.Case) -> None:
    """Point well-formed generated ids at the seeded rows (mostly), so calls reach real data.

    Ids that came from a response (a link followed by the stateful run) are left alone.
    """
    for name, value in (case.path_parameters or {}).items():
        known = WORLD.ids.get(name)
        if not known or not _is_uuid(value) or value in known or value in WORLD.seen:
            continue
        # Decided by the generated value alone, so Hypothesis replays a case identically.
        chooser = random.Random(f"{SEED}:{name}:{value}")
        if chooser.random() < 0.8:
            case.path_parameters[name] = chooser.choice(known)


def fresh_idempotency_key(case: schemathesis.Case) -> None:
    """A well-formed Idempotency-Key made unique, as the contract asks of clients.

    Generated keys repeat ("0", "0", ...), and the same key with another request is rightly
    refused (422 idempotency_key_reused); replays are tested in tests/core/test_idempotency.py.
    """
    headers = case.headers
    key = headers.get(IDEMPOTENCY_KEY)
    if isinstance(key, str) and VALID_KEY.fullmatch(key):
        WORLD.keys += 1
        headers[IDEMPOTENCY_KEY] = f"{key[:200]}-{WORLD.keys}"


def trip_dates_in_order(case: schemathesis.Case) -> None:
    """A valid trip ends on or after its start and lasts at most a year: a rule relating two
    dates, which JSON Schema cannot state. Positive cases keep it, so they create trips."""
    body = case.body
    if (
        case.meta is None
        or not case.meta.generation.mode.is_positive
        or not isinstance(body, dict)
        or not isinstance(body.get("start_date"), str)
        or not isinstance(body.get("end_date"), str)
    ):
        return
    start, end = sorted(date.fromisoformat(str(body[name])) for name in ("start_date", "end_date"))
    end = start + (end - start) % timedelta(days=MAX_TRIP_DAYS)
    case.body = {**body, "start_date": start.isoformat(), "end_date": end.isoformat()}


def _integers_as_integers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integers_as_integers(item) for item in value]
    if isinstance(value, dict):
        return {key: _integers_as_integers(item) for key, item in value.items()}
    return value


def integers_as_integers(case: schemathesis.Case) -> None:
    """Amounts in minor units refuse `818.0` on purpose (a client sending major units), which
    JSON Schema's `integer` cannot tell from `818`: positive cases write integers as such."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and isinstance(case.body, dict | list):
        case.body = _integers_as_integers(case.body)


def short_long_polls(case: schemathesis.Case) -> None:
    """`wait` holds a changes request up to 30 s when nothing changed: keep the run bounded."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 0.01:
        case.query["wait"] = 0.01


def use_the_calendar_token(case: schemathesis.Case) -> None:
    """The feed's token is a secret only this server issues: a made-up one is rightly 404.
    Well-formed positive cases carry the run user's own (mostly), so the feed is served."""
    query = case.query or {}
    token = query.get("token")
    if case.path != "/trips/{trip_id}/calendar.ics" or not isinstance(token, str):
        return
    if random.Random(f"{SEED}:token:{token}").random() < 0.8:
        case.query["token"] = WORLD.calendar_token


def prepare(case: schemathesis.Case) -> None:
    aim_at_seeded_rows(case)
    use_the_calendar_token(case)
    fresh_idempotency_key(case)
    trip_dates_in_order(case)
    integers_as_integers(case)
    short_long_polls(case)


def forget_deleted(case: schemathesis.Case, response: schemathesis.Response) -> None:
    """A seeded row deleted by this operation's run is not aimed at again (it would be a
    404 to a pinned id); a deleted trip takes everything in it along."""
    path_ids = list((case.path_parameters or {}).values())
    if case.method.upper() != "DELETE" or not 200 <= response.status_code < 300 or not path_ids:
        return  # (a delete without ids, e.g. of the calendar token, deletes no seeded row)
    deleted = path_ids[-1]
    if deleted in WORLD.ids.get("trip_id", ()):
        WORLD.ids = {}
    for ids in WORLD.ids.values():
        if deleted in ids:
            ids.remove(deleted)


def remember_ids(response: schemathesis.Response) -> None:
    try:
        body = response.json()
    except ValueError:
        return
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        WORLD.seen.add(body["id"])


def _seed(client: TestClient, owner: User, editor: User) -> dict[str, list[str]]:
    """A trip with one of everything, made through the API as a client would."""
    seeded = factories.seed_trip_with_everything(client, owner)
    trip, guest, payer = seeded["trip"], seeded["guest"], seeded["payer"]
    item, checklist, checklist_item = seeded["item"], seeded["checklist"], seeded["checklist_item"]
    expense, settlement = seeded["expense"], seeded["settlement"]
    trip_path = f"/trips/{trip['id']}"
    factories.join(client, owner, trip["id"], editor, "editor")
    sent = client.post(
        f"{trip_path}/invitations",
        headers=support.auth(owner),
        json={"email": "dave@example.com", "role": "viewer"},
    )
    assert sent.status_code == 201, sent.text
    invitation = sent.json()
    # Another device of the run's user: a session to list and revoke (not the run's own).
    other_device = client.post(
        "/auth/login",
        data={"username": owner.email, "password": support.PASSWORD, "device_label": "Other"},
    )
    assert other_device.status_code == 200, other_device.text
    sessions = client.get("/users/me/sessions", headers=support.auth(owner)).json()["items"]
    link = factories.create_invite_link(client, owner, trip["id"], role="editor", max_uses=5)
    shared = client.post(
        f"{trip_path}/share-links", headers=support.auth(owner), json={"scope": "itinerary"}
    )
    assert shared.status_code == 201, shared.text
    calendar = client.post("/users/me/calendar-token", headers=support.auth(owner))
    assert calendar.status_code == 201, calendar.text
    WORLD.calendar_token = calendar.json()["token"]
    return {
        "trip_id": [trip["id"]],
        "user_id": [str(editor.id)],
        "participant_id": [guest["id"], payer],
        "item_id": [item["id"], checklist_item["id"]],
        "checklist_id": [checklist["id"]],
        "expense_id": [expense["id"]],
        "settlement_id": [settlement["id"]],
        "invitation_id": [invitation["id"]],
        "session_id": [s["id"] for s in sessions if not s["current"]],
        "link_id": [link["id"], shared.json()["id"]],
    }


@pytest.fixture(scope="module")
def world_connection(engine: Engine) -> Iterator[Connection]:
    """The whole run in one transaction, rolled back at the end (as the `connection` fixture)."""
    try:
        with support.rolled_back(engine) as connection:
            with support.session_on(connection) as session:
                owner = factories.make_user(session, full_name="Schemathesis")
                editor = factories.make_user(session, full_name="Editor")
            WORLD.token = support.auth(owner)["Authorization"].removeprefix("Bearer ")
            WORLD.seeded = _seed(TestClient(app), owner, editor)
            WORLD.connection = connection
            yield connection
    finally:
        print(summary())


STATEFUL = "stateful "


def summary() -> str:
    stateless = {label: n for label, n in WORLD.cases.items() if not label.startswith(STATEFUL)}
    steps = sum(WORLD.cases.values()) - sum(stateless.values())
    lines = [
        f"schemathesis (seed {SEED}): {sum(stateless.values())} cases over "
        f"{len(stateless)} operations (fewest: {min(stateless.values(), default=0)}), "
        f"{sum(WORLD.successes[label] for label in stateless)} answered 2xx; "
        f"{steps} stateful steps, "
        f"{sum(WORLD.successes.values()) - sum(WORLD.successes[label] for label in stateless)}"
        " answered 2xx",
    ]
    lines += [
        f"  {label}: {WORLD.successes[label]}/{n} 2xx" for label, n in sorted(WORLD.cases.items())
    ]
    return "\n" + "\n".join(lines)


@contextmanager
def seeded_world(connection: Connection) -> Iterator[None]:
    """Start from the seeded trip; undo everything written meanwhile."""
    savepoint = connection.begin_nested()
    WORLD.ids = {name: list(ids) for name, ids in WORLD.seeded.items()}
    try:
        yield
    finally:
        savepoint.rollback()


@pytest.fixture
def fresh_world(world_connection: Connection) -> Iterator[None]:
    """Each operation starts from the seeded trip."""
    with seeded_world(world_connection):
        yield


def in_process_client() -> ASGIClient:
    # Not entered: the app's lifespan (which disposes the engine) stays out, as in conftest.
    return ASGIClient(app)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def asgi_client() -> ASGIClient:
    return in_process_client()


@pytest.fixture
def enough_cases(request: pytest.FixtureRequest) -> Iterator[None]:
    """An operation tested with fewer cases than this has silently stopped being tested."""
    yield
    label = request.node.operation_label
    assert WORLD.cases[label] >= MIN_CASES_PER_OPERATION, f"{label}: {WORLD.cases[label]} cases"


def count(case: schemathesis.Case, response: schemathesis.Response, prefix: str = "") -> None:
    WORLD.cases[prefix + case.operation.label] += 1
    if 200 <= response.status_code < 300:
        WORLD.successes[prefix + case.operation.label] += 1


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_operation(
    case: schemathesis.Case, fresh_world: None, enough_cases: None, asgi_client: ASGIClient
) -> None:
    prepare(case)
    response = case.call(session=asgi_client)
    count(case, response)
    forget_deleted(case, response)
    case.validate_response(response, transport_kwargs={"session": asgi_client})


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Chains of calls along the document's links; each scenario starts from the seeded trip."""

    def setup(self) -> None:
        assert WORLD.connection is not None
        self.world = ExitStack()
        self.world.enter_context(seeded_world(WORLD.connection))

    def teardown(self) -> None:
        self.world.close()

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        return {"session": in_process_client()}

    def before_call(self, case: schemathesis.Case) -> None:
        prepare(case)

    def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
        count(case, response, prefix=STATEFUL)
        forget_deleted(case, response)
        remember_ids(response)
        super().after_call(response, case)


def test_stateful_workflows(world_connection: Connection) -> None:
    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            suppress_health_check=list(HealthCheck),
            deadline=None,
            database=None,
            derandomize=True,
        )
    )
    steps = {label: n for label, n in WORLD.cases.items() if label.startswith(STATEFUL)}
    assert sum(steps.values()) >= MIN_STATEFUL_STEPS, steps
    # The chains reached real resources: reads, updates and deletes of what they created.
    for method in ("GET", "PATCH", "DELETE"):
        assert any(
            label.startswith(f"{STATEFUL}{method} /trips/{{trip_id}}/") and n > 0
            for label, n in WORLD.successes.items()
        ), f"no {method} along a link answered 2xx"
