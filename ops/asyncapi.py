"""Keep docs/asyncapi.yaml true: `python -m ops.asyncapi`.

The document is the one notifications serves at `GET /asyncapi.json`, with the
default departments and no topic prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.notifications.asyncapi import EVENT_PAYLOADS
from shared.asyncapi import build_asyncapi

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"


def render_yaml(document: dict[str, Any]) -> str:
    header = "# Generated from shared/catalogue.py by `python -m ops.asyncapi`; do not edit by hand.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def rendered_document() -> str:
    return render_yaml(build_asyncapi(EVENT_PAYLOADS))


def main() -> None:
    DOCUMENT.write_text(rendered_document())
    print(f"wrote {DOCUMENT}")  # noqa: T201


if __name__ == "__main__":
    main()
