"""The bases of every service's request and response models, and the types the contract shares between them."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Input(BaseModel):
    """A request body: unknown fields are refused (a 422 naming them), the model is read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Output(BaseModel):
    """A response: read-only, built from a row's attributes (`Model.model_validate(row)`)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)


class CustomerKind(StrEnum):
    """Whom the record is about: a customer outside the company, or a department served by another (§1)."""

    EXTERNAL = "external"
    INTERNAL = "internal"
