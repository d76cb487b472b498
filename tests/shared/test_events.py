"""The CloudEvent envelope: what `build_event` writes is what the CloudEvents SDK writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel

from shared.catalogue import FEEDBACK_RECEIVED, EventSpec
from shared.events import build_event


class _Resource(BaseModel):
    id: uuid.UUID
    text: str
    score: float
    at: datetime
    tags: list[str]


def test_the_envelope_equals_the_sdk_writing_the_same_event() -> None:
    resource = _Resource(id=uuid.uuid4(), text="Late again — «très» déçu", score=-0.61, at=datetime.now(UTC), tags=[])
    record = build_event(FEEDBACK_RECEIVED, data=resource, subject=str(resource.id), customer_id="c-1")

    read = JSONFormat().read(CloudEvent, record.value)
    by_sdk = JSONFormat().write(CloudEvent(dict(read.get_attributes()), resource.model_dump(mode="json")))
    assert orjson.loads(record.value) == orjson.loads(by_sdk)
    assert read.get_data() == resource.model_dump(mode="json")
    assert read.get_attributes()["customerid"] == "c-1"
    assert orjson.loads(record.value)["time"].endswith("Z")


def test_dict_data_is_written_as_given() -> None:
    data = {"id": "x", "when": datetime(2026, 11, 22, 9, 30, tzinfo=UTC), "n": [1, 2]}
    record = build_event(FEEDBACK_RECEIVED, data=data, subject="x", customer_id="c-2")
    assert orjson.loads(record.value)["data"] == {"id": "x", "when": "2026-11-22T09:30:00Z", "n": [1, 2]}


def test_an_attribute_that_breaks_cloudevents_is_refused() -> None:
    bad = EventSpec(type="", service="feedback", description="no type")
    with pytest.raises(CloudEventValidationError):
        build_event(bad, data={}, subject="x", customer_id="c-3")
