"""`make clients`: generate API clients from the OpenAPI document and type-check them.

- Python: `openapi-python-client generate` with its default settings (`--fail-on-warning`:
  a schema it had to skip fails the run), then `mypy --strict` on the generated package, an
  import of every module, and a round trip of a few models through the generated classes.
- TypeScript: `openapi-typescript` writes `schema.d.ts` (with `--default-non-nullable=false`,
  see below); `tsc --noEmit --strict` compiles it with `clients_check.ts`, which uses the
  types as a client would.

The generators are pinned and installed once into a cache directory (CLIENT_TOOLS_DIR, else
~/.cache/tripsync/client-tools), never into the repository; the clients are written to a
temporary directory, removed afterwards unless `--keep DIR` names one to keep them in.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from collections.abc import Sequence
from pathlib import Path

from devtools.openapi import openapi_document

PYTHON_TOOLS = ("openapi-python-client==0.29.1", "mypy==2.4.1")
NODE_TOOLS = ("openapi-typescript@7.13.0", "typescript@5.9.3")
PACKAGE = (
    "trip_sync_api_client"  # openapi-python-client's name for a document titled "TripSync API"
)
HERE = Path(__file__).resolve().parent

# Run by the generated client's interpreter: every module imports, the shared enums hold every
# value of the document, and models round-trip through their classes.
_PYTHON_SMOKE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(module.name)
from trip_sync_api_client.models import ItemPublic, TimeZone, TripCreate
document = json.load(open(sys.argv[2]))
zones = document["components"]["schemas"]["TimeZone"]["enum"]
assert sorted(zone.value for zone in TimeZone) == sorted(zones), "TimeZone lost members"
assert TimeZone("GMT+0") is TimeZone.GMT_PLUS_0 and TimeZone("GMT0") is TimeZone.GMT0
trip = {"name": "Lisbon", "start_date": "2027-05-01", "end_date": "2027-05-03",
        "timezone": "GMT-0", "base_currency": "EUR"}
assert TripCreate.from_dict(trip).to_dict() == trip
item = {"id": "0b5d6a4e-7a43-4c1e-9f4e-1b1f7b0f2a10", "kind": "activity", "title": "Tram",
        "notes": "", "day": None, "order_key": "a0", "start_local": "2027-05-01T10:00:00",
        "start_timezone": "Europe/Lisbon", "start_utc": "2027-05-01T09:00:00Z",
        "end_local": None, "end_timezone": None, "end_utc": None, "place": None,
        "booking_reference": "", "participant_ids": [], "created_by": None,
        "created_at": "2027-01-01T00:00:00Z", "updated_at": "2027-01-01T00:00:00Z",
        "version": 1}
assert ItemPublic.from_dict(item).start_local == "2027-05-01T10:00:00"
print("python client: every module imports; TimeZone has", len(zones), "members")
"""


def _run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    shown = ("<script>" if "\n" in str(part) else str(part) for part in command)
    print("$", " ".join(shown), flush=True)
    subprocess.run([str(part) for part in command], check=True, cwd=cwd, env=env)  # noqa: S603


def _tools_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tripsync"
    return Path(os.environ.get("CLIENT_TOOLS_DIR", default / "client-tools"))


def _pinned_dir(kind: str, pins: Sequence[str]) -> Path:
    """One directory per set of pins, so a change of version installs afresh."""
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    return _tools_dir() / f"{kind}-{digest}"


def python_tools() -> Path:
    """The virtual environment holding the Python generator and mypy; returns its bin/."""
    home = _pinned_dir("python", PYTHON_TOOLS)
    if not (home / ".installed").exists():
        shutil.rmtree(home, ignore_errors=True)
        venv.create(home, with_pip=True)
        _run(home / "bin" / "python", "-m", "pip", "install", "--quiet", *PYTHON_TOOLS)
        (home / ".installed").touch()
    return home / "bin"


def node_tools() -> Path:
    """The npm prefix holding openapi-typescript and tsc; returns its node_modules/.bin/."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is missing: install Node.js (Debian: apt-get install nodejs npm)")
    home = _pinned_dir("node", NODE_TOOLS)
    if not (home / ".installed").exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        _run(
            npm,
            "install",
            "--prefix",
            home,
            "--no-save",
            "--no-package-lock",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            *NODE_TOOLS,
        )
        (home / ".installed").touch()
    return home / "node_modules" / ".bin"


def python_client(document: Path, out: Path) -> None:
    tools = python_tools()
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    _run(
        tools / "openapi-python-client",
        "generate",
        "--path",
        document,
        "--output-path",
        out,
        "--overwrite",
        "--fail-on-warning",
        env=env,
    )
    _run(tools / "mypy", "--strict", "--no-incremental", PACKAGE, cwd=out, env=env)
    _run(tools / "python", "-c", _PYTHON_SMOKE, PACKAGE, document, cwd=out, env=env)


def typescript_types(document: Path, out: Path) -> None:
    tools = node_tools()
    out.mkdir(exist_ok=True)
    # Its one non-default setting: by default a property with a `default` is typed as always
    # present, right for responses but not for request bodies (TripCreate.description may be
    # left out); this document lists what a response always carries in `required`.
    _run(
        tools / "openapi-typescript",
        document,
        "--output",
        out / "schema.d.ts",
        "--default-non-nullable=false",
    )
    shutil.copy(HERE / "clients_check.ts", out / "check.ts")
    _run(
        tools / "tsc",
        "--noEmit",
        "--strict",
        "--target",
        "es2022",
        "--module",
        "esnext",
        "--moduleResolution",
        "bundler",
        out / "schema.d.ts",
        out / "check.ts",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", type=Path, help="write the clients here and keep them")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="tripsync-clients-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        document = work / "openapi.json"
        schema = openapi_document()
        document.write_text(json.dumps(schema), encoding="utf-8")
        print(f"OpenAPI document: {len(json.dumps(schema))} characters", flush=True)
        python_client(document, work / "python")
        typescript_types(document, work / "typescript")
    except subprocess.CalledProcessError as error:
        print(f"make clients failed: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("clients: the Python client and the TypeScript types generate and type-check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
