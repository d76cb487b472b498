"""A tiny service built on the shared library, to test the library itself.

It stores "probes" in the feedback database (a table the fixture creates),
so auth, idempotency, paging and problems are exercised through real HTTP
handling on real PostgreSQL, without depending on any service's domain.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import DateTime, func, select, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.auth import Principal, require_scope
from shared.config import PlatformSettings
from shared.db import Base, DbSession
from shared.errors import NotFound
from shared.idempotency import IdempotencyKey, idempotent
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, keyset_page, page_of
from shared.service import build_service_app

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS probe (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class ProbeRow(Base):
    __tablename__ = "probe"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())


class ProbeIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    delay_seconds: float = Field(default=0, ge=0, le=5)


class ProbeOut(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: uuid.UUID
    name: str
    created_at: datetime


router = APIRouter(prefix="/probes")
Writer = Annotated[Principal, Depends(require_scope("feedback:write"))]
Reader = Annotated[Principal, Depends(require_scope("feedback:read"))]


@router.post("", status_code=201, response_model=ProbeOut)
async def create_probe(
    payload: ProbeIn, request: Request, session: DbSession, principal: Writer, key: IdempotencyKey = None
) -> Response:
    async def create() -> ProbeOut:
        await asyncio.sleep(payload.delay_seconds)
        row = ProbeRow(id=uuid.uuid4(), name=payload.name)
        session.add(row)
        await session.flush()
        await session.refresh(row)
        return ProbeOut.model_validate(row)

    return await idempotent(
        session=session, principal=principal, key=key, route=request.url.path, body=payload, create=create
    )


@router.get("", response_model=Page[ProbeOut])
async def list_probes(
    session: DbSession, _: Reader, name: str | None = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[ProbeOut]:
    statement = select(ProbeRow)
    if name is not None:
        statement = statement.where(ProbeRow.name == name)
    rows = (
        await session.scalars(
            keyset_page(statement, created_at=ProbeRow.created_at, item_id=ProbeRow.id, cursor=cursor, limit=limit)
        )
    ).all()
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    return Page[ProbeOut](items=[ProbeOut.model_validate(r) for r in items], next_cursor=next_cursor)


@router.get("/{probe_id}", response_model=ProbeOut)
async def get_probe(probe_id: uuid.UUID, session: DbSession, _: Reader) -> ProbeOut:
    row = await session.get(ProbeRow, probe_id)
    if row is None:
        raise NotFound(f"No probe {probe_id}.")
    return ProbeOut.model_validate(row)


@router.get("/departments/{department}/inbox")
async def department_inbox(
    department: str, principal: Annotated[Principal, Depends(require_scope("notifications:read"))]
) -> dict[str, str]:
    principal.require_department(department)
    return {"department": department}


@router.post("/crash")
async def crash(_: Writer, session: DbSession, name: str = "crash") -> dict[str, str]:
    session.add(ProbeRow(id=uuid.uuid4(), name=name))
    await session.flush()
    await session.execute(text("SELECT 1"))
    raise RuntimeError("a bug, not the client's fault")


@router.post("/public/size")
async def public_size(request: Request) -> dict[str, int]:
    """A route without security that reads its body: the body limit holds, no token is asked for."""
    return {"bytes": len(await request.body())}


def create_probe_app(settings: PlatformSettings) -> FastAPI:
    return build_service_app(
        settings=settings, title="Probe", description="Tests the shared library.", routers=[router]
    )
