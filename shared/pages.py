"""A static HTML page served with its configuration and a Content-Security-Policy made for each response.

The page holds no data: a service fills in a small JSON configuration (where the APIs are, which id to show)
and a fresh nonce, the only way its own `<script>` and `<style>` may run; the policy allows connections to
its own origin and the APIs named, and nothing else.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi.responses import HTMLResponse

NONCE_PLACEHOLDER = "__NONCE__"


class StaticPage:
    """The page at `path`, whose `config_placeholder` (a `{}` in a script) receives the configuration."""

    def __init__(self, path: Path, config_placeholder: str) -> None:
        self.path = path
        self.config_placeholder = config_placeholder

    @cached_property
    def template(self) -> str:
        template = self.path.read_text(encoding="utf-8")
        if self.config_placeholder not in template or NONCE_PLACEHOLDER not in template:
            raise RuntimeError(f"{self.path} lost its placeholders")
        return template

    def response(self, config: dict[str, Any], *, apis: Iterable[str] = ()) -> HTMLResponse:
        """The page with `config` and a new nonce; `apis` (URLs) are the other origins it may call."""
        # JSON inside <script>: "<" escaped so that no value can close the element.
        config_json = orjson.dumps(config).decode().replace("<", "\\u003c")
        nonce = secrets.token_urlsafe(16)
        page = self.template.replace(self.config_placeholder, config_json).replace(NONCE_PLACEHOLDER, nonce)
        connect = " ".join(["'self'", *sorted({origin(url) for url in apis})])
        policy = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src {connect}; "
            "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": policy,
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
