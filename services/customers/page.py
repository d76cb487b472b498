"""The page of one customer: its timeline, health with reasons and the meeting brief, built on the public API.

Like the department dashboard (services/notifications/dashboard.py) the page holds no data when served: in the
browser it reads a bearer token from the URL fragment (never sent to a server) and calls this service's
`GET /v1/customers/{id}`, `/timeline` and `/brief` itself, on its own origin. The server fills in only the
customer's id and a Content-Security-Policy that allows nothing else.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.customers.router import CustomerIdPath
from shared.pages import StaticPage

router = APIRouter(include_in_schema=False)

PAGE = StaticPage(Path(__file__).with_name("static") / "customer.html", "/*CUSTOMER_CONFIG*/{}")


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_page(customer_id: CustomerIdPath) -> HTMLResponse:
    return PAGE.response({"customer_id": customer_id})
