"""The AsyncAPI document: generated from the catalogue, valid, complete, committed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from ops.asyncapi import rendered_document
from services.notifications.app import create_app as create_notifications_app
from services.notifications.asyncapi import EVENT_PAYLOADS
from services.notifications.config import Settings as NotificationsSettings
from shared.asyncapi import build_asyncapi
from shared.catalogue import CATALOGUE, CUSTOMERS_TOPIC
from tests.support.platform import Platform, serve

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_EVENT_TYPES = {
    "feedback.received", "feedback.status_changed", "meeting.recorded", "expectation.recorded",
    "expectation.confirmed", "expectation.gap_identified", "commitment.created", "commitment.rescheduled",
    "commitment.due_soon", "commitment.overdue", "commitment.met", "commitment.cancelled",
    "feedback.verdict_given", "question.created", "feedback.theme_spiking",
}  # fmt: skip
CONTRACT_TOPICS = {
    "feedback.events", "expectations.events", "commitments.events",
    "notifications.sales", "notifications.support", "notifications.production", "notifications.management",
}  # fmt: skip


def test_document_validates_against_the_asyncapi_3_schema() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "asyncapi-3.0.0.schema.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(build_asyncapi(EVENT_PAYLOADS)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_document_lists_every_topic_and_event_type_of_the_contract() -> None:
    document = build_asyncapi(EVENT_PAYLOADS)
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses >= CONTRACT_TOPICS
    titles = {message["title"] for message in document["components"]["messages"].values()}
    assert titles >= CONTRACT_EVENT_TYPES
    support = next(c for c in document["channels"].values() if c["address"] == "notifications.support")
    routed = {document["components"]["messages"][m["$ref"].rsplit("/", 1)[-1]]["title"]
              for m in support["messages"].values()}  # fmt: skip
    # The departments get the customers service's events too (a health turning red).
    assert routed == CONTRACT_EVENT_TYPES | {spec.type for spec in CATALOGUE.values() if spec.topic == CUSTOMERS_TOPIC}


def test_payloads_are_the_rest_representations() -> None:
    document = build_asyncapi(EVENT_PAYLOADS)
    envelope = document["components"]["schemas"]["feedback.received.envelope"]
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/Feedback"}
    assert "customer_id" in document["components"]["schemas"]["Feedback"]["properties"]


def test_an_event_type_without_a_payload_model_is_refused() -> None:
    payloads = {spec: model for spec, model in EVENT_PAYLOADS.items() if spec.type != "meeting.recorded"}
    with pytest.raises(ValueError, match=r"no payload model for meeting\.recorded"):
        build_asyncapi(payloads)


def test_committed_document_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == rendered_document(), "run `python -m ops.asyncapi` and commit docs/asyncapi.yaml"
    assert yaml.safe_load(committed)["asyncapi"] == "3.0.0"


async def test_notifications_serves_the_document_for_its_departments_and_prefix(platform: Platform) -> None:
    settings = platform.settings("notifications", run_workers=False, departments="sales,legal")
    assert isinstance(settings, NotificationsSettings)
    async with serve(create_notifications_app(settings)) as client:
        response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document == build_asyncapi(EVENT_PAYLOADS, ["sales", "legal"], topic_prefix=platform.topic_prefix)
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert f"{platform.topic_prefix}notifications.legal" in addresses
