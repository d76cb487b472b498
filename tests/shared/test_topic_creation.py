"""Topics are created with `CF_KAFKA_TOPIC_PARTITIONS` partitions and `CF_KAFKA_REPLICATION_FACTOR` replicas."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.kafka import ensure_topics
from tests.support.platform import Platform


async def test_topics_are_created_with_the_configured_replication_factor_and_partitions(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One broker here cannot hold three replicas, so what is asked of it is recorded on the way.
    asked: list[NewTopic] = []
    real = AIOKafkaAdminClient.create_topics

    async def recording(self: Any, new_topics: list[NewTopic], *args: Any, **kwargs: Any) -> Any:
        asked.extend(new_topics)
        one_replica = [NewTopic(t.name, t.num_partitions, 1) for t in new_topics]
        return await real(self, one_replica, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaAdminClient, "create_topics", recording)
    settings = platform.settings(
        "feedback", topic_prefix=f"r{uuid.uuid4().hex[:8]}.", kafka_replication_factor=3, kafka_topic_partitions=2
    )

    created = await ensure_topics(settings, ["feedback.events"])

    assert created == [settings.topic("feedback.events")]
    assert [(t.name, t.num_partitions, t.replication_factor) for t in asked] == [
        (settings.topic("feedback.events"), 2, 3)
    ]


def test_the_replication_factor_defaults_to_one_for_the_embedded_broker(platform: Platform) -> None:
    assert platform.settings("feedback").kafka_replication_factor == 1
