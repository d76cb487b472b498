"""Settings shared by every service: pydantic-settings with the `CF_` prefix.

Settings are built once in `create_app(settings)` and passed down; no module
reads the environment on import.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DEPARTMENTS = ("sales", "support", "production", "management")
SERVICES = ("feedback", "expectations", "commitments", "notifications")


def split_csv(value: object) -> object:
    """Accept `a,b,c` from the environment as well as a real list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class PlatformSettings(BaseSettings):
    """Settings every service reads; each service subclasses it with its own."""

    model_config = SettingsConfigDict(env_prefix="CF_", extra="ignore", frozen=True, populate_by_name=True)

    service_name: ClassVar[str] = "platform"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_enable_idempotence: bool = False
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_fetch_max_wait_ms: int = Field(default=10, ge=1)
    topic_prefix: str = ""
    auth_secret: SecretStr = SecretStr("change-me-in-production-this-is-not-a-secret")
    departments: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_DEPARTMENTS))
    idempotency_ttl_hours: int = Field(default=24, ge=24)
    outbox_sweep_interval_seconds: float = Field(default=1.0, gt=0)
    consumer_max_attempts: int = Field(default=3, ge=1)
    run_workers: bool = True
    log_level: str = "INFO"
    log_json: bool = True

    _split_departments = field_validator("departments", mode="before")(split_csv)

    @field_validator("departments")
    @classmethod
    def _departments_are_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one department is required")
        for name in value:
            if not name.replace("_", "").replace("-", "").isalnum() or name != name.lower():
                raise ValueError(f"department {name!r} must be lower-case letters, digits, '-' or '_'")
        return value

    def topic(self, name: str) -> str:
        """The Kafka topic `name` with `CF_TOPIC_PREFIX` in front."""
        return f"{self.topic_prefix}{name}"


def database_url_field(service: str) -> Any:
    """`CF_<SERVICE>_DATABASE_URL`, the service's own database."""
    return Field(
        default=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{service}",
        validation_alias=f"CF_{service.upper()}_DATABASE_URL",
    )
