"""Per-request context carried into events: correlation id and W3C trace."""

from __future__ import annotations

from contextvars import ContextVar

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)
causation_id_var: ContextVar[str | None] = ContextVar("causation_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)
