"""Settings shared by every service: pydantic-settings with the `CF_` prefix.

Settings are built once in `create_app(settings)` and passed down; no module
reads the environment on import.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
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

    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        description="The service's own database (each service reads `CF_<SERVICE>_DATABASE_URL`).",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200, description="Connections per service process.")
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka brokers, comma-separated.")
    kafka_enable_idempotence: bool = Field(
        default=False, description="Idempotent producer; keep off against the embedded broker (it lacks support)."
    )
    kafka_topic_partitions: int = Field(default=6, ge=1, description="Partitions of the topics the platform creates.")
    kafka_fetch_max_wait_ms: int = Field(
        default=10, ge=1, description="Consumers' fetch wait; small, because the embedded broker never wakes early."
    )
    topic_prefix: str = Field(default="", description="Put in front of every topic name.")
    auth_secret: SecretStr = Field(
        default=SecretStr("change-me-in-production-this-is-not-a-secret"),
        description="HS256 secret that signs bearer tokens (`make run` generates one into .data/).",
    )
    departments: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_DEPARTMENTS), description="The departments, comma-separated."
    )
    idempotency_ttl_hours: int = Field(default=24, ge=24, description="How long Idempotency-Keys are kept.")
    outbox_sweep_interval_seconds: float = Field(
        default=1.0, gt=0, description="The relay's sweep between LISTEN/NOTIFY wake-ups."
    )
    consumer_max_attempts: int = Field(
        default=3, ge=1, description="Tries of a failing event before it goes to `<topic>.dlq`."
    )
    run_workers: bool = Field(default=True, description="Run the relay, consumers and schedulers in this process.")
    log_level: str = Field(default="INFO", description="Python log level.")
    log_json: bool = Field(default=True, description="Structured JSON logs (else plain text).")
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="Largest request body in bytes; a larger one is a 413, refused before parsing and authentication.",
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Origins whose pages may call the API (CORS), comma-separated; `*` for any.",
    )

    _split_departments = field_validator("departments", mode="before")(split_csv)
    _split_origins = field_validator("cors_allow_origins", mode="before")(split_csv)

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
        description=f"The {service} service's own database (`make run`: an embedded PostgreSQL unless set).",
    )


def settings_table(classes: list[type[PlatformSettings]]) -> str:
    """A Markdown table of every setting: environment variable, default, meaning."""
    rows: dict[str, tuple[str, str]] = {}
    for cls in classes:
        for name, field in cls.model_fields.items():
            variable = field.validation_alias if isinstance(field.validation_alias, str) else f"CF_{name.upper()}"
            default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
            if isinstance(default, list):
                default = ",".join(str(v) for v in default)
            if isinstance(default, SecretStr):
                default = "(generated by make run)"
            if isinstance(default, Path) and default.is_absolute():
                with contextlib.suppress(ValueError):
                    default = default.relative_to(Path(__file__).resolve().parents[1])
            rows.setdefault(variable, (f"`{default}`" if default != "" else "(empty)", field.description or ""))
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    lines += [f"| `{variable}` | {default} | {meaning} |" for variable, (default, meaning) in rows.items()]
    return "\n".join(lines)
