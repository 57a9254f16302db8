"""Write the app's OpenAPI document to a file (or stdout): `python -m devtools.openapi [PATH]`.

It is `app.openapi()`, exactly what `/openapi.json` serves; building it needs no database.
"""

import json
import sys
from pathlib import Path
from typing import Any


def openapi_document() -> dict[str, Any]:
    from app.main import app

    return app.openapi()


def main(argv: list[str]) -> int:
    text = json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
        print(f"OpenAPI document: {argv[0]} ({len(text.encode())} bytes)")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
