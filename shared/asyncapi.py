"""The AsyncAPI 3.0 document, generated from the event catalogue.

Every topic is a channel, every event type a message whose payload is the
CloudEvent envelope around the REST representation (the pydantic payload
model, handed in by the caller). Nothing here is written by hand per event: add an
`EventSpec` to the catalogue and its payload model to the caller's mapping, and it appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.catalogue import (
    CATALOGUE,
    CUSTOMERS_TOPIC,
    OPERATIONS_TOPIC,
    ROUTED_SOURCE_TOPICS,
    ROUTED_TOPICS,
    EventSpec,
    dead_letter_topic,
    department_topic,
)
from shared.config import DEFAULT_DEPARTMENTS

REF = "#/components/schemas/{model}"


def _camel(name: str) -> str:
    parts = name.replace("-", ".").replace("_", ".").split(".")
    return parts[0] + "".join(p.capitalize() for p in parts[1:])


def _envelope(spec: EventSpec, data_ref: str, *, department: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "specversion": {"type": "string", "const": "1.0"},
        "id": {"type": "string", "format": "uuid", "description": "The same on every re-delivery."},
        "source": {"type": "string", "const": spec.source},
        "type": {"type": "string", "const": spec.type},
        "subject": {"type": "string", "description": "The id of the resource the event is about."},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string", "const": "application/json"},
        "customerid": {"type": "string", "description": "The customer's id; also the Kafka message key."},
        "correlationid": {"type": "string"},
        "causationid": {"type": "string", "description": "The id of the event that caused this one, if any."},
        "traceparent": {"type": "string", "description": "W3C trace context, where a trace exists."},
        "data": {"$ref": data_ref},
    }
    required = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "customerid", "data"]
    if department:
        properties["department"] = {"type": "string", "description": "The department this copy was routed to."}
        required.append("department")
    return {"type": "object", "properties": properties, "required": required}


def _asyncapi_schema(node: Any) -> Any:
    """Pydantic writes OpenAPI-style discriminators; AsyncAPI's are the property name alone."""
    if isinstance(node, dict):
        converted = {key: _asyncapi_schema(value) for key, value in node.items()}
        if isinstance(converted.get("discriminator"), dict):
            converted["discriminator"] = converted["discriminator"]["propertyName"]
        return converted
    if isinstance(node, list):
        return [_asyncapi_schema(item) for item in node]
    return node


def build_asyncapi(
    payloads: Mapping[EventSpec, type[BaseModel]], departments: list[str] | None = None, *, topic_prefix: str = ""
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for every topic and event type of the platform; `payloads` has each event's model."""
    departments = list(departments or DEFAULT_DEPARTMENTS)
    specs = list(CATALOGUE.values())
    missing = [spec.type for spec in specs if spec not in payloads]
    if missing:
        raise ValueError(f"no payload model for {', '.join(missing)}")
    models = {payloads[spec] for spec in specs}
    keys, definitions = models_json_schema(
        [(model, "serialization") for model in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    schemas: dict[str, Any] = _asyncapi_schema(definitions.get("$defs", {}))
    messages: dict[str, Any] = {}
    for spec in specs:
        data_ref = keys[(payloads[spec], "serialization")]["$ref"]
        for routed in (False, True):
            name = f"{spec.type}.routed" if routed else spec.type
            schema_name = f"{name}.envelope"
            schemas[schema_name] = _envelope(spec, data_ref, department=routed)
            messages[name] = {
                "name": name,
                "title": spec.type,
                "summary": spec.description + (" Routed copy, with the `department` extension." if routed else ""),
                "contentType": "application/cloudevents+json",
                "headers": {
                    "type": "object",
                    "properties": {"content-type": {"type": "string", "const": "application/cloudevents+json"}},
                },
                "payload": {"$ref": f"#/components/schemas/{schema_name}"},
                "bindings": {"kafka": {"key": {"type": "string", "description": "customer_id"}}},
            }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def channel(topic: str, description: str, message_names: list[str]) -> None:
        channel_id = _camel(topic)
        channels[channel_id] = {
            "address": f"{topic_prefix}{topic}",
            "description": description,
            "messages": {_camel(m): {"$ref": f"#/components/messages/{m}"} for m in message_names},
        }
        operations[f"publish{channel_id[0].upper()}{channel_id[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{_camel(m)}"} for m in message_names],
        }

    for topic in (*ROUTED_SOURCE_TOPICS, CUSTOMERS_TOPIC, OPERATIONS_TOPIC):
        owned = [spec.type for spec in specs if spec.topic == topic]
        channel(topic, f"Events of the {topic.split('.')[0]} service.", owned)
    routed_messages = [f"{spec.type}.routed" for spec in specs if spec.topic in ROUTED_TOPICS]
    for department in departments:
        channel(
            department_topic(department),
            f"Every event routed to {department}, exactly once, keyed by customer_id.",
            routed_messages,
        )
    for topic in ROUTED_TOPICS:
        owned = [spec.type for spec in specs if spec.topic == topic]
        channel(
            dead_letter_topic(topic),
            f"Messages of {topic} that could not be processed, with `cf-error` headers.",
            owned,
        )

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Customer Focus Platform events",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 in structured JSON mode over Kafka; the message key is the customer id, "
            "so one customer's events stay in order. Topics take the optional CF_TOPIC_PREFIX.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "production": {"host": "kafka:9092", "protocol": "kafka", "description": "Apache Kafka (docker-compose)"},
            "local": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "The embedded broker of make run"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
