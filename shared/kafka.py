"""Kafka clients built from settings, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.catalogue import all_topics
from shared.config import PlatformSettings

logger = logging.getLogger(__name__)


def create_producer(settings: PlatformSettings) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas; idempotence is a setting
    because the embedded broker does not support it (consumers dedup on event id)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=0,
        request_timeout_ms=10_000,
        retry_backoff_ms=100,
        metadata_max_age_ms=30_000,
        client_id=f"cf-{settings.service_name}",
    )


async def ensure_topics(
    settings: PlatformSettings, topics: Iterable[str] | None = None, *, within: float = 15.0
) -> list[str]:
    """Create the contract's topics (prefixed) that do not exist yet; return those created.

    Bounded by `within` seconds: an admin client can wait forever on a broker
    that was paused mid-request, and callers retry anyway.
    """
    async with asyncio.timeout(within):
        return await _create_missing_topics(settings, topics)


async def _create_missing_topics(settings: PlatformSettings, topics: Iterable[str] | None) -> list[str]:
    names = [settings.topic(t) for t in (topics if topics is not None else all_topics(settings.departments))]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            partitions, replicas = settings.kafka_topic_partitions, settings.kafka_replication_factor
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, partitions, replicas) for name in missing])
            logger.info("created topics: %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
