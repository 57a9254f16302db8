"""The OpenAPI document: FastAPI's, made exact about parameters and linked resource to resource.

- A parameter (or form field) is text on the wire or absent, never JSON null: FastAPI
  describes an optional one (`str | None`) as "string or null"; here it is a string that is
  not required.
- Links (OpenAPI 3.1 `links`) tell a client, and a stateful test, how responses chain: the
  `id` a create returns is the path id of the resource's own operations and of everything
  under it, and the `ETag` of a create, read or update is the `If-Match` of the next write.
- The `Location` of a 201 says what it leads to: the created resource, `P/{x}` under the
  collection `P` posted to, and which methods reach it there (some have no GET of their own).
- Written for client generators (`make clients` proves it, docs/api.md says how): shared
  types (time zones, currencies, local times) are components referenced by every field,
  and so are the parameters, responses, headers and links several operations repeat; an
  error response is problem+json only; operationIds are the route functions' names.
"""

import json
import re
from collections import Counter
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.head_limit import HEADERS_TOO_LARGE, URI_TOO_LONG
from app.api.routing import CREATED_LOCATION
from app.core.errors import PROBLEM_MEDIA_TYPE
from app.core.fields import COMPONENT_KEY, SHARED_SCHEMAS

_METHODS = ("get", "put", "post", "patch", "delete")
_NULL = {"type": "null"}
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def operation_id(route: APIRoute) -> str:
    """An operation's id: its route function's name."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    """Serve the adjusted document as `app.openapi()` and at /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)  # FastAPI's, cached on the app: adjusted in place
            _operation_ids_are_unique(document)
            _parameters_are_never_null(document)
            _link_resources(document)
            _describe_locations(document)
            _problems_are_problem_json(document)
            _head_limits_on_every_operation(document)
            _share_schemas(document)
            _drop_generated_titles(document)
            _share_repeated_parts(document)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    ]


def _operation_ids_are_unique(document: dict[str, Any]) -> None:
    counts = Counter(operation["operationId"] for _, _, operation in _operations(document))
    if repeated := sorted(name for name, count in counts.items() if count > 1):
        raise RuntimeError(f"operations sharing an operationId: {', '.join(repeated)}")


def _not_null(schema: dict[str, Any]) -> None:
    branches = schema.get("anyOf")
    if not branches or _NULL not in branches:
        return
    kept = [branch for branch in branches if branch != _NULL]
    del schema["anyOf"]
    if schema.get("default", "") is None:
        del schema["default"]
    if len(kept) == 1:
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept


def _parameters_are_never_null(document: dict[str, Any]) -> None:
    """Nor are the fields of a form, which are text too (an empty one counts as missing)."""
    components = document.get("components", {}).get("schemas", {})
    for _, _, operation in _operations(document):
        for parameter in operation.get("parameters", ()):
            _not_null(parameter.get("schema", {}))
        content = operation.get("requestBody", {}).get("content", {})
        form = content.get("application/x-www-form-urlencoded", {}).get("schema", {})
        if "$ref" in form:
            form = components[form["$ref"].rsplit("/", 1)[-1]]
        for field_schema in form.get("properties", {}).values():
            _not_null(field_schema)


def _requires_if_match(operation: dict[str, Any]) -> bool:
    return any(
        parameter["in"] == "header" and parameter["name"] == "If-Match" and parameter["required"]
        for parameter in operation.get("parameters", ())
    )


def _link(
    target: dict[str, Any],
    target_path: str,
    *,
    from_request: set[str],
    from_body: str | None = None,
    with_etag: bool = False,
) -> dict[str, Any]:
    parameters: dict[str, str] = {}
    for name in _PATH_PARAMETER.findall(target_path):
        if name == from_body:
            parameters[f"path.{name}"] = "$response.body#/id"
        elif name in from_request:
            parameters[f"path.{name}"] = f"$request.path.{name}"
    if with_etag and _requires_if_match(target):
        parameters["header.If-Match"] = "$response.header.ETag"
    return {"operationId": target["operationId"], "parameters": parameters}


def _add_links(response: dict[str, Any] | None, links: dict[str, dict[str, Any]]) -> None:
    if response is not None and links:
        response.setdefault("links", {}).update(links)


def _describe_locations(document: dict[str, Any]) -> None:
    """Name the address in each 201's default `Location` and the methods it answers."""
    paths = document["paths"]
    for path, method, operation in _operations(document):
        created = operation["responses"].get("201", {})
        location = created.get("headers", {}).get("Location")
        if method != "post" or location is None or location["description"] != CREATED_LOCATION:
            continue
        children = [
            child
            for child in paths
            if child.startswith(path + "/{") and child.count("/") == path.count("/") + 1
        ]
        if len(children) != 1:
            continue  # the default description stands (tests/api/test_locations.py reads it)
        resource = children[0]
        methods = [name.upper() for name in _METHODS if name in paths[resource]]
        if "GET" in methods:
            reach = "`GET` reads it"
        else:
            listed = f" (`GET {path}` lists them)" if "get" in paths[path] else ""
            verb = "reach" if len(methods) > 1 else "reaches"
            reach = f"there is no GET of one{listed}; {' and '.join(methods)} {verb} it there"
        location["description"] = f"The created resource, `{resource}`: {reach}."


def _link_resources(document: dict[str, Any]) -> None:
    """Collection `P` (POST creates) and resource `P/{x}` (its GET, PATCH, DELETE, and the
    operations below it that need no other path parameter)."""
    operations = _operations(document)
    for path, method, operation in operations:
        own = set(_PATH_PARAMETER.findall(path))
        if method == "post" and "201" in operation["responses"]:
            # The created resource is P/{x}, for the one {x} of the paths right below P.
            children = {
                child
                for child, _, _ in operations
                if child.startswith(path + "/{") and child.count("/") == path.count("/") + 1
            }
            if len(children) != 1:
                continue
            resource = children.pop()
            created = _PATH_PARAMETER.findall(resource)[-1]
            links = {
                target["operationId"]: _link(
                    target,
                    target_path,
                    from_request=own,
                    from_body=created,
                    with_etag=target_path == resource,
                )
                for target_path, _, target in operations
                if (target_path == resource or target_path.startswith(resource + "/"))
                # A link gives every path parameter: what lies deeper is linked from there.
                and set(_PATH_PARAMETER.findall(target_path)) <= own | {created}
            }
            for status in ("201", "200"):  # 200: the replay of a client-chosen id
                _add_links(operation["responses"].get(status), links)
        elif method in ("get", "patch") and document["paths"][path].get("delete"):
            # A resource read or changed: its ETag is the If-Match of the next write to it.
            links = {
                target["operationId"]: _link(target, path, from_request=own, with_etag=True)
                for target_method, target in document["paths"][path].items()
                if not (method == target_method == "get")
            }
            _add_links(operation["responses"].get("200"), links)


def _problems_are_problem_json(document: dict[str, Any]) -> None:
    """An error response is `application/problem+json` (app.core.errors) only: FastAPI puts
    the Problem schema under the route's own media type (JSON, or an event stream's)."""
    for _, _, operation in _operations(document):
        for response in operation["responses"].values():
            content = response.get("content", {})
            if PROBLEM_MEDIA_TYPE in content:
                schemas = [media["schema"] for media in content.values() if "schema" in media]
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": schemas[0]}}


def _head_limits_on_every_operation(document: dict[str, Any]) -> None:
    """Any request may be refused for its URL or headers (app.api.head_limit)."""
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    limits = {
        str(URI_TOO_LONG): "`uri_too_long`: the URL is longer than the server allows.",
        str(HEADERS_TOO_LARGE): "`headers_too_large`: the headers are larger than it allows.",
    }
    for _, _, operation in _operations(document):
        for status, description in limits.items():
            operation["responses"].setdefault(
                status, {"description": description, "content": problem}
            )


def _share_schemas(document: dict[str, Any]) -> None:
    """A schema pydantic marked as shared (app.core.fields.SharedSchema) becomes a `$ref` to
    its one component; the field keeps its own keywords (title, default)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for value in node:
                visit(value)
        if not isinstance(node, dict):
            return
        name = node.pop(COMPONENT_KEY, None)
        if name is not None:
            shared = SHARED_SCHEMAS[name]
            own = {key: value for key, value in node.items() if shared.get(key) != value}
            node.clear()
            node.update({"$ref": f"#/components/schemas/{name}", **own})
            components[name] = shared
        for value in list(node.values()):
            visit(value)

    visit(document)
    document["components"]["schemas"] = dict(sorted(components.items()))


def _drop_generated_titles(document: dict[str, Any]) -> None:
    """Pydantic titles every property and parameter after its name ("start_local" → "Start
    Local"): noise that made up a tenth of the document. A title of its own stays."""

    def generated(name: str) -> str:
        return name.replace("_", " ").title()

    for schema in document["components"]["schemas"].values():
        for name, field_schema in schema.get("properties", {}).items():
            if field_schema.get("title") == generated(name):
                del field_schema["title"]
    for _, _, operation in _operations(document):
        for parameter in operation.get("parameters", ()):
            schema = parameter.get("schema", {})
            if schema.get("title") in (generated(parameter["name"]), parameter["name"]):
                del schema["title"]
            if schema.get("description") == parameter.get("description"):
                schema.pop("description", None)  # FastAPI writes it twice


def _component_name(text: str) -> str:
    """A component's name after what it names: If-Match → IfMatch, trip_id → TripId."""
    return "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z0-9]+", text))


def _share(
    document: dict[str, Any],
    section: str,
    places: list[tuple[Any, str | int, str]],
) -> None:
    """Move each object found at more than one of `places` (container, key, name) to
    `components/{section}`, named after `name` (and a number when variants share it)."""

    def canonical(place: tuple[Any, str | int, str]) -> str:
        container, key, _ = place
        return json.dumps(container[key], sort_keys=True)

    counts = Counter(canonical(place) for place in places)
    components = document["components"].setdefault(section, {})
    names: dict[str, str] = {}
    for place in places:
        container, key, name = place
        text = canonical(place)
        if counts[text] < 2:
            continue
        if text not in names:
            base = _component_name(name)
            candidate, number = base, 2
            while candidate in components:
                candidate, number = f"{base}{number}", number + 1
            components[candidate] = container[key]
            names[text] = candidate
        container[key] = {"$ref": f"#/components/{section}/{names[text]}"}
    document["components"][section] = dict(sorted(components.items()))


def _share_repeated_parts(document: dict[str, Any]) -> None:
    """Parameters, responses, response headers and links that several operations repeat are
    written once, under `components`, and referenced."""
    operations = _operations(document)
    parameters: list[tuple[Any, str | int, str]] = []
    responses: list[tuple[Any, str | int, str]] = []
    headers: list[tuple[Any, str | int, str]] = []
    links: list[tuple[Any, str | int, str]] = []
    for _, _, operation in operations:
        for index, parameter in enumerate(operation.get("parameters", ())):
            parameters.append((operation["parameters"], index, parameter["name"]))
        for status, response in operation["responses"].items():
            for name in response.get("headers", {}):
                headers.append((response["headers"], name, name))
            for name in response.get("links", {}):
                links.append((response["links"], name, name))
            responses.append((operation["responses"], status, _status_name(status, response)))
    # Headers and links first: a response shared afterwards holds their references.
    _share(document, "headers", headers)
    _share(document, "links", links)
    _share(document, "parameters", parameters)
    _share(document, "responses", responses)


def _status_name(status: str, response: dict[str, Any]) -> str:
    """A success after what it carries ("Health"), any other response after its status."""
    for media in response.get("content", {}).values():
        reference = media.get("schema", {}).get("$ref", "")
        if status.startswith("2") and reference.startswith("#/components/schemas/"):
            return str(reference.rsplit("/", 1)[-1])
    try:
        return HTTPStatus(int(status)).phrase
    except ValueError:
        return status
