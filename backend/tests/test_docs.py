"""The README and docs/ stay true: their relative links resolve, every setting is documented.

Needs no database: it reads Markdown files and the settings class, nothing else.
"""

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

from app.core.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
OPERATIONS = DOCS / "operations.md"
MAX_README_LINES = 250

DOCUMENTS = [README, *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+\1")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
# Inline links and images: [text](target "title") and ![alt](target).
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
# Reference definitions: [label]: target
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(_INLINE_CODE.sub("", line))
    return lines


def slugify(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): lower case, punctuation dropped,
    spaces to hyphens. Letters, digits, marks, `_` and `-` are kept."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "").lower()
    kept = (
        char
        for char in text
        if char in "-_ "
        or unicodedata.category(char)[0] in "LNM"
        or unicodedata.category(char) == "Pc"
    )
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, duplicates numbered as GitHub does."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match is None:
            continue
        slug = slugify(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    """The targets of the file's links and images that point inside the repository."""
    targets: list[str] = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        targets += _INLINE_LINK.findall(line)
        targets += _REFERENCE.findall(line)
        targets += _HTML_LINK.findall(line)
    return [t for t in targets if t and not _SCHEME.match(t) and not t.startswith("//")]


def broken_link(source: Path, target: str) -> str | None:
    """Why `target`, linked from `source`, does not resolve; None when it does."""
    location, _, fragment = unquote(target).partition("#")
    if not location:
        resolved = source
    elif location.startswith("/"):
        resolved = REPO_ROOT / location.lstrip("/")
    else:
        resolved = source.parent / location
    resolved = resolved.resolve()
    if not resolved.is_relative_to(REPO_ROOT):
        return "points outside the repository"
    if not resolved.exists():
        return f"{resolved.relative_to(REPO_ROOT)} does not exist"
    if fragment:
        if resolved.suffix != ".md":
            return "has an anchor but is not a Markdown file"
        if fragment not in anchors(resolved):
            return f"no heading of {resolved.relative_to(REPO_ROOT)} has the anchor #{fragment}"
    return None


def test_the_documents_are_there() -> None:
    names = {path.name for path in DOCUMENTS}
    expected = {"architecture.md", "sync-protocol.md", "operations.md", "benchmark.md"}
    assert {"README.md", "reliability.md", *expected} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves(document: Path) -> None:
    links = relative_links(document)
    broken = [
        f"{target}: {reason}"
        for target in links
        if (reason := broken_link(document, target)) is not None
    ]
    where = document.relative_to(REPO_ROOT)
    assert not broken, f"broken links in {where}:\n" + "\n".join(broken)


def _configuration_rows() -> list[str]:
    """First cells of the table under `## Configuration` in docs/operations.md."""
    lines = OPERATIONS.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Configuration") + 1
    cells: list[str] = []
    for line in lines[start:]:
        if _HEADING.match(line):
            break
        if line.startswith("|") and not re.fullmatch(r"\|[\s|:-]+\|?", line):
            cells.append(line.split("|")[1].strip())
    return cells[1:]  # the header row names the columns


def test_every_setting_has_one_row_in_the_configuration_table() -> None:
    rows = _configuration_rows()
    documented = [re.fullmatch(r"`([A-Z][A-Z0-9_]*)`", cell) for cell in rows]
    assert all(documented), f"rows that are not one `SETTING`: {rows}"
    names = [match.group(1) for match in documented if match]
    settings = set(Settings.model_fields)
    assert sorted(settings - set(names)) == [], "settings missing from docs/operations.md"
    assert sorted(set(names) - settings) == [], "rows for settings that do not exist"
    assert len(names) == len(set(names)), "a setting documented twice"


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Libraries, and why", "libraries-and-why"),
        ("Load test (`make bench`)", "load-test-make-bench"),
        ("PgBouncer, transaction pooling", "pgbouncer-transaction-pooling"),
        ("Retries: Idempotency-Key", "retries-idempotency-key"),
        ("`DB_POOL_SIZE` and *friends*", "db_pool_size-and-friends"),
        ("Errors a [sync](x.md) client can get", "errors-a-sync-client-can-get"),
        ("Café — déjà vu", "café--déjà-vu"),
    ],
)
def test_slugs_follow_github(heading: str, slug: str) -> None:
    assert slugify(heading) == slug


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    page = DOCS / "operations.md"
    assert broken_link(page, "architecture.md") is None
    assert broken_link(page, "architecture.md#layers") is None
    assert broken_link(page, "#configuration") is None
    assert broken_link(page, "../README.md#frontend") is None
    assert broken_link(page, "no-such-page.md") is not None
    assert broken_link(page, "architecture.md#no-such-heading") is not None
    assert broken_link(page, "../../outside.md") is not None
    assert broken_link(page, "walkthrough.sh#top") is not None
    sample = tmp_path / "sample.md"
    sample.write_text(
        "# Title\n\n## Twice\n\n## Twice\n\n```\n# not a heading\n[x](in-code.md)\n```\n"
        "A [link](a.md), `[code](b.md)`, ![image](c.png), <https://example.com>, "
        "[web](https://example.com) and [here](#twice-1).\n\n[ref]: d.md\n",
        encoding="utf-8",
    )
    assert relative_links(sample) == ["a.md", "c.png", "#twice-1", "d.md"]
    assert anchors(sample) == {"title", "twice", "twice-1"}


def test_the_route_list_is_the_apps() -> None:
    # docs/routes.md is generated from the OpenAPI document: regenerate it on any route change.
    from devtools.openapi import openapi_document
    from devtools.routes_doc import DEFAULT_PATH, routes_markdown

    expected = routes_markdown(openapi_document())
    assert DEFAULT_PATH.read_text(encoding="utf-8") == expected, "run `make routes-doc`"
