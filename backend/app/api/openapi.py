"""The OpenAPI document: FastAPI's, made exact about parameters and linked resource to resource.

- A parameter (or form field) is text on the wire or absent, never JSON null: FastAPI
  describes an optional one (`str | None`) as "string or null"; here it is a string that is
  not required.
- Links (OpenAPI 3.1 `links`) tell a client, and a stateful test, how responses chain: the
  `id` a create returns is the path id of the resource's own operations and of everything
  under it, and the `ETag` of a create, read or update is the `If-Match` of the next write.
- The `Location` of a 201 says what it leads to: the created resource, `P/{x}` under the
  collection `P` posted to, and which methods reach it there (some have no GET of their own).
"""

import re
from typing import Any

from fastapi import FastAPI

from app.api.routing import CREATED_LOCATION

_METHODS = ("get", "put", "post", "patch", "delete")
_NULL = {"type": "null"}
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def install_openapi(app: FastAPI) -> None:
    """Serve the adjusted document as `app.openapi()` and at /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)  # FastAPI's, cached on the app: adjusted in place
            _parameters_are_never_null(document)
            _link_resources(document)
            _describe_locations(document)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    ]


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
    """Collection `P` (POST creates) and resource `P/{x}` (its GET, PATCH, DELETE and below)."""
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
                if target_path == resource or target_path.startswith(resource + "/")
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
