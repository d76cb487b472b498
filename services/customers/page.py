"""The page of one customer: its timeline, health with reasons and the meeting brief, built on the public API.

Like the department dashboard (services/notifications/dashboard.py) the page holds no data when served: in the
browser it reads a bearer token from the URL fragment (never sent to a server) and calls this service's
`GET /v1/customers/{id}`, `/timeline` and `/brief` itself, on its own origin. The server fills in only the
customer's id and a Content-Security-Policy that allows nothing else.
"""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path

import orjson
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.customers.router import CustomerIdPath

router = APIRouter(include_in_schema=False)

PAGE = Path(__file__).with_name("static") / "customer.html"
CONFIG_PLACEHOLDER = "/*CUSTOMER_CONFIG*/{}"
NONCE_PLACEHOLDER = "__NONCE__"


@cache
def _template() -> str:
    template = PAGE.read_text(encoding="utf-8")
    if CONFIG_PLACEHOLDER not in template or NONCE_PLACEHOLDER not in template:
        raise RuntimeError(f"{PAGE} lost its placeholders")
    return template


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_page(customer_id: CustomerIdPath) -> HTMLResponse:
    # JSON inside <script>: "<" escaped so that no id can close the element.
    config_json = orjson.dumps({"customer_id": customer_id}).decode().replace("<", "\\u003c")
    nonce = secrets.token_urlsafe(16)
    page = _template().replace(CONFIG_PLACEHOLDER, config_json).replace(NONCE_PLACEHOLDER, nonce)
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
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
