"""The department dashboard: one static page per department, built on the public APIs only.

The page holds no data when served; in the browser it reads a bearer token
from the URL fragment (never sent to a server) and calls the notifications,
feedback and commitments APIs itself; each customer links to its page on the
customers service. The server only fills in where those APIs are and a
Content-Security-Policy that allows exactly them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Path as PathParameter
from fastapi.responses import HTMLResponse

from services.notifications.config import Settings
from shared.errors import NotFound
from shared.pages import StaticPage
from shared.settings_dependency import app_settings

router = APIRouter(include_in_schema=False)

PAGE = StaticPage(Path(__file__).with_name("static") / "dashboard.html", "/*DASHBOARD_CONFIG*/{}")


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
    return PAGE.response(config, apis=[settings.dashboard_feedback_url, settings.dashboard_commitments_url])
