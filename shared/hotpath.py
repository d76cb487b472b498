"""Endpoints that read their own request, for the hottest paths.

FastAPI solves an endpoint's parameters on every request: the body through
the standard library's json and then validation, the bearer scheme, each
header, a generator dependency with its exit stack. On `POST /v1/feedback`
that was about a fifth of the request's CPU (bench/feedback_ingest.py). A hot
endpoint instead takes `request: Request`, reads the rest with these helpers
and `shared.auth.authenticate`, and declares with `documented_request` what
it reads, so its OpenAPI operation is the one its parameters would have given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

# Body models of hot endpoints, by name: their schemas join the OpenAPI components.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


async def json_body(request: Request, model: type[Model]) -> Model:
    """The request body parsed and validated as `model` in one pass (pydantic-core)."""
    body = await request.body()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=body) from None


def documented_request(body: type[BaseModel], *, parameters: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """`openapi_extra` for an endpoint that reads `body`, a bearer token and `parameters` itself."""
    _BODY_MODELS[body.__name__] = body
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}},
        },
        "security": [{"HTTPBearer": []}],
        "parameters": list(parameters),
    }


def add_body_schemas(components: dict[str, Any]) -> None:
    """Put the schemas of `documented_request` bodies (and the models they use) into `components`."""
    for name, model in _BODY_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for nested, definition in schema.pop("$defs", {}).items():
            components.setdefault(nested, definition)
        components.setdefault(name, schema)
