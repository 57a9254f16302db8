"""The OpenAPI document as client generators read it: shared enums written once, member names
that do not collide, honest local times, every reference resolving, problems as problem+json.

`make clients` (in CI) runs the generators themselves on this document; these tests keep the
properties they depend on, without them.
"""

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.errors import PROBLEM_MEDIA_TYPE
from app.core.fields import COMPONENT_KEY, LOCAL_DATETIME_PATTERN, enum_member_name
from app.main import app
from tests import factories, support

# The document was 441,528 characters before the shared components (time zones alone were
# 6 copies of 597 values); this keeps it from growing back unnoticed.
MAX_DOCUMENT_CHARS = 230_000
SHARED = ("TimeZone", "Currency", "LocalDateTime", "Day")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return app.openapi()


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def _refs_to(node: Any, name: str) -> bool:
    return any(
        isinstance(value, dict) and value.get("$ref") == f"#/components/schemas/{name}"
        for _, value in _walk(node)
    )


def test_the_document_stays_small(document: dict[str, Any]) -> None:
    assert len(json.dumps(document)) < MAX_DOCUMENT_CHARS


def test_shared_enums_are_written_once(document: dict[str, Any]) -> None:
    zones, currencies = _schema(document, "TimeZone"), _schema(document, "Currency")
    assert "Europe/Paris" in zones["enum"]
    assert "EUR" in currencies["enum"]
    components = document["components"]["schemas"]
    long_enums = [
        path
        for path, node in _walk(document)
        if isinstance(node, dict) and len(node.get("enum", ())) > 20
    ]
    assert sorted(long_enums) == [
        "#/components/schemas/Currency",
        "#/components/schemas/TimeZone",
    ]
    assert not any(COMPONENT_KEY in node for _, node in _walk(document) if isinstance(node, dict))
    # Each field of the type refers to it.
    assert _refs_to(components["TripCreate"]["properties"]["timezone"], "TimeZone")
    assert _refs_to(components["TripUpdate"]["properties"]["timezone"], "TimeZone")
    assert _refs_to(components["ItemCreate"]["properties"]["start_timezone"], "TimeZone")
    assert _refs_to(components["ItemUpdate"]["properties"]["end_timezone"], "TimeZone")
    assert _refs_to(components["TripCreate"]["properties"]["base_currency"], "Currency")
    assert _refs_to(components["ExpenseCreate"]["properties"]["currency"], "Currency")
    # Requests only: a stored zone stays readable when the tz database drops it.
    assert not _refs_to(components["TripPublic"], "TimeZone")


def test_time_zone_member_names_are_unique_identifiers(document: dict[str, Any]) -> None:
    zones = _schema(document, "TimeZone")
    names = zones["x-enum-varnames"]
    assert len(names) == len(zones["enum"]) == len(set(names))
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in names)
    named = dict(zip(zones["enum"], names, strict=True))
    assert [named["GMT+0"], named["GMT-0"], named["GMT0"]] == ["GMT_PLUS_0", "GMT_MINUS_0", "GMT0"]
    assert named["Etc/GMT+10"] == "ETC_GMT_PLUS_10"
    assert named["America/Port-au-Prince"] == "AMERICA_PORT_AU_PRINCE"
    assert named["America/Argentina/Buenos_Aires"] == "AMERICA_ARGENTINA_BUENOS_AIRES"


def test_member_names_stay_apart_where_punctuation_alone_differs() -> None:
    # What a generator that only drops punctuation would merge.
    assert len({enum_member_name(zone) for zone in ("GMT+0", "GMT-0", "GMT0")}) == 3
    assert enum_member_name("Etc/GMT-14") == "ETC_GMT_MINUS_14"


def test_local_times_are_strings_with_a_pattern_never_date_time(document: dict[str, Any]) -> None:
    local = _schema(document, "LocalDateTime")
    assert local["type"] == "string"
    assert "format" not in local
    assert local["pattern"] == LOCAL_DATETIME_PATTERN
    components = document["components"]["schemas"]
    for name in ("ItemCreate", "ItemUpdate", "ItemPublic", "ItemExported"):
        for field in ("start_local", "end_local"):
            field_schema = components[name]["properties"][field]
            assert _refs_to(field_schema, "LocalDateTime"), (name, field)
            assert "date-time" not in json.dumps(field_schema), (name, field)


def test_a_served_local_time_matches_its_schema(
    client: TestClient, session: Session, document: dict[str, Any]
) -> None:
    owner = factories.make_user(session)
    trip_id = factories.create_trip(client, owner)["id"]
    created = client.post(
        f"/trips/{trip_id}/items",
        headers=support.auth(owner),
        json={"kind": "activity", "title": "Tram 28", "start_local": "2027-05-01T10:00"},
    )
    assert created.status_code == 201, created.text
    pattern = _schema(document, "LocalDateTime")["pattern"]
    read = client.get(f"/trips/{trip_id}/items/{created.json()['id']}", headers=support.auth(owner))
    for answer in (created, read):
        start_local = answer.json()["start_local"]
        assert start_local == "2027-05-01T10:00:00"
        assert re.fullmatch(pattern, start_local)
    assert not re.fullmatch(pattern, "2027-05-01T10:00:00Z")
    assert not re.fullmatch(pattern, "2027-05-01T10:00:00+02:00")


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    references = [
        node["$ref"]
        for _, node in _walk(document)
        if isinstance(node, dict) and isinstance(node.get("$ref"), str)
    ]
    assert len(references) > 500
    for reference in set(references):
        assert support.resolved(document, {"$ref": reference}), reference


def test_repeated_parts_are_components(document: dict[str, Any]) -> None:
    components = document["components"]
    assert {"IdempotencyKey", "IfMatch", "TripId"} <= set(components["parameters"])
    assert {"NotFound", "Unauthorized", "UnprocessableEntity"} <= set(components["responses"])
    assert {"ETag", "IdempotentReplayed"} <= set(components["headers"])
    shared = {**components["parameters"], **components["responses"], **components["headers"]}
    texts = [json.dumps(part, sort_keys=True) for part in shared.values()]
    assert len(texts) == len(set(texts))  # each written once


def test_every_error_response_is_problem_json_only(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    content = support.resolved(document, response)["content"]
                    assert list(content) == [PROBLEM_MEDIA_TYPE], (method, path, status)


def test_operation_ids_are_the_route_functions_names(document: dict[str, Any]) -> None:
    ids = [
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
    ]
    assert len(ids) == len(set(ids))
    assert document["paths"]["/trips"]["post"]["operationId"] == "create_trip"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", operation_id) for operation_id in ids)


def test_the_event_stream_is_text(document: dict[str, Any]) -> None:
    stream = document["paths"]["/sync/events"]["get"]["responses"]["200"]["content"]
    assert stream["text/event-stream"]["schema"]["type"] == "string"
    assert stream["text/event-stream"]["x-itemSchema"]["required"] == ["event", "id", "data"]
