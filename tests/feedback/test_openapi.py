"""POST /v1/feedback documents what it takes: its body, the bearer token and the Idempotency-Key header."""

from __future__ import annotations

import httpx

from services.feedback.schemas import FeedbackDraft


async def test_capture_documents_its_body_token_header_and_problems(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/feedback"]["post"]

    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FeedbackDraft"}
    draft = spec["components"]["schemas"]["FeedbackDraft"]
    assert set(draft["required"]) == {"customer_id", "channel", "kind"}
    assert set(draft["properties"]) == set(FeedbackDraft.model_fields)
    # The models the draft refers to are in the components too, so every $ref resolves.
    for name in ("Channel", "FeedbackKind", "CustomerKind", "NpsRating", "CsatRating", "CesRating"):
        assert name in spec["components"]["schemas"], name

    assert operation["security"] == [{"HTTPBearer": []}]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    [key] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header"
    [text] = [schema for schema in key["schema"]["anyOf"] if schema["type"] == "string"]
    assert text["maxLength"] == 255
    assert {"201", "401", "403", "409", "422", "503"} <= set(operation["responses"])
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Feedback"
    }
