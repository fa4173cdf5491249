"""Writes (or checks) what is generated from the models: the JSON Schema files under ``schemas/json/`` and the
ingest's msgspec frames ``schemas/frames.py``.

``python -m schemas.export`` rewrites them; ``python -m schemas.export --check`` exits 1 when they drift.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from pydantic import TypeAdapter

from schemas import framegen
from schemas.alert import AlertNotice
from schemas.codec import ADAPTERS
from schemas.topics import Channel

JSON_DIR: Final = Path(__file__).with_name("json")

ALERT: Final = "alert"
"""Name of the controller's alert channel (``lockerfleet/v1/alerts/<site>``) among the schema files."""

SCHEMAS: Final[dict[str, TypeAdapter[Any]]] = {
    **{c.value: ADAPTERS[c] for c in Channel},
    ALERT: TypeAdapter(AlertNotice),
}
"""Every message's schema by file name: the node channels' and the alert channel's."""


def schema_file(name: Channel | str) -> Path:
    """Path of the committed JSON Schema of one channel's message."""
    return JSON_DIR / f"{name}.schema.json"


def render(name: Channel | str) -> str:
    """JSON Schema text of one channel's message, as committed."""
    schema = SCHEMAS[str(name)].json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://lockerfleet.dev/schemas/v1/{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def drifted() -> list[Path]:
    """Committed generated files that differ from what the models generate."""
    stale = [schema_file(n) for n in SCHEMAS if not schema_file(n).exists() or schema_file(n).read_text() != render(n)]
    frames = framegen.FRAMES_FILE
    if not frames.exists() or frames.read_text() != framegen.render():
        stale.append(frames)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Write the schema files, or with ``--check`` report drift."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed files differ from the models")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted()
        for path in stale:
            print(f"{path} is out of date: run `python -m schemas.export`", file=sys.stderr)
        return 1 if stale else 0
    JSON_DIR.mkdir(exist_ok=True)
    for name in SCHEMAS:
        schema_file(name).write_text(render(name))
    framegen.FRAMES_FILE.write_text(framegen.render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
