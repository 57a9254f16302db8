"""Write docs/routes.md, every route of the API in one table per tag, from the OpenAPI
document: `python -m devtools.routes_doc [PATH]` (`make routes-doc`).

tests/test_docs.py regenerates it and compares, so the list can never miss a route.
"""

import sys
from pathlib import Path
from typing import Any

from devtools.openapi import openapi_document

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "routes.md"
_METHODS = ("get", "post", "put", "patch", "delete")
_TABLE_HEAD = "| Method | Path | Who | What | Statuses |\n|---|---|---|---|---|"
_HEADER = """# Routes

Every route of the API, generated from its OpenAPI document by `make routes-doc` (a test fails
when this file is out of date). Each row gives the first sentence of the route's description;
[api.md](api.md) explains the rules they share (errors, pagination, preconditions, sync), and
`/docs` serves the whole document. **Who** is the caller a route needs: `account` (a bearer
token), or `public` (no account; some of these take a token of their own in the path or query).
"""


def _first_sentence(operation: dict[str, Any]) -> str:
    text = " ".join((operation.get("description") or operation.get("summary") or "").split())
    end = text.find(". ")
    sentence = text if end < 0 else text[: end + 1]
    return sentence.replace("|", "\\|")


def _statuses(operation: dict[str, Any]) -> str:
    # 414 and 431 may answer any request (request line and headers too long): left out.
    codes = sorted(code for code in operation.get("responses", {}) if code not in ("414", "431"))
    return " ".join(codes)


def routes_markdown(document: dict[str, Any]) -> str:
    by_tag: dict[str, list[str]] = {}
    for path, operations in document["paths"].items():
        for method in _METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            who = "account" if operation.get("security") else "public"
            row = (
                f"| `{method.upper()}` | `{path}` | {who} | {_first_sentence(operation)} "
                f"| {_statuses(operation)} |"
            )
            by_tag.setdefault((operation.get("tags") or ["other"])[0], []).append(row)
    parts = [_HEADER.rstrip("\n")]
    for tag in sorted(by_tag):
        parts.append(f"\n## {tag}\n\n{_TABLE_HEAD}")
        parts.extend(by_tag[tag])
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_PATH
    path.write_text(routes_markdown(openapi_document()), encoding="utf-8")
    print(f"routes: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
