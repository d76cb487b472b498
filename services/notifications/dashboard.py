"""The department dashboard: one static page per department, built on the public APIs only.

The page holds no data when served; in the browser it reads a bearer token
from the URL fragment (never sent to a server) and calls the notifications,
feedback and commitments APIs itself; each customer links to its page on the
customers service. The server only fills in where those APIs are and a
Content-Security-Policy that allows exactly them.
"""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends
from fastapi import Path as PathParameter
from fastapi.responses import HTMLResponse

from services.notifications.config import Settings
from shared.errors import NotFound
from shared.settings_dependency import app_settings

router = APIRouter(include_in_schema=False)

PAGE = Path(__file__).with_name("static") / "dashboard.html"
CONFIG_PLACEHOLDER = "/*DASHBOARD_CONFIG*/{}"
NONCE_PLACEHOLDER = "__NONCE__"


@cache
def _template() -> str:
    template = PAGE.read_text(encoding="utf-8")
    if CONFIG_PLACEHOLDER not in template or NONCE_PLACEHOLDER not in template:
        raise RuntimeError(f"{PAGE} lost its placeholders")
    return template


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@router.get("/dashboard/{department}", response_class=HTMLResponse)
async def department_dashboard(
    settings: Annotated[Settings, Depends(app_settings)], department: Annotated[str, PathParameter(max_length=64)]
) -> HTMLResponse:
    if department not in settings.departments:
        raise NotFound(f"There is no department {department!r}; the departments are {', '.join(settings.departments)}.")
    config = {
        "department": department,
        "departments": settings.departments,
        "feedback_url": settings.dashboard_feedback_url.rstrip("/"),
        "commitments_url": settings.dashboard_commitments_url.rstrip("/"),
        "customers_url": settings.dashboard_customers_url.rstrip("/"),
        "stream_ping_seconds": settings.sse_ping_seconds,
    }
    # JSON inside <script>: "<" escaped so that no value can close the element.
    config_json = orjson.dumps(config).decode().replace("<", "\\u003c")
    nonce = secrets.token_urlsafe(16)
    page = _template().replace(CONFIG_PLACEHOLDER, config_json).replace(NONCE_PLACEHOLDER, nonce)
    apis = " ".join(sorted({_origin(settings.dashboard_feedback_url), _origin(settings.dashboard_commitments_url)}))
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        f"connect-src 'self' {apis}; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
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
