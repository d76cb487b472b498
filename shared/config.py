"""Settings shared by every service: pydantic-settings with the `CF_` prefix.

Settings are built once in `create_app(settings)` and passed down; no module
reads the environment on import.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shared.ratelimit import parse_rate_limit

DEFAULT_DEPARTMENTS = ("sales", "support", "production", "management")

DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
MIN_SECRET_BYTES = 32
# SHA-256 of every secret this repository has published (the old built-in default of
# CF_AUTH_SECRET, the test, CLI-test and benchmark secrets), so none of them can sign
# tokens; kept as hashes so that this list does not publish them again.
PUBLISHED_SECRETS = frozenset(
    {
        "2e09aaeb791a616f423ee2020e0278394e7758184db578c1d6e9967ceefac181",
        "802dbfd9e5fa1e3442a783792d98c458ee49df0720c3e3b15170815256a0d6a5",
        "509b75e5643109454c0f1fcca6eb272979df7e2a79c93cdf0eaeaf4e1fecb501",
        "931704abecd450fb5d3752db7f7ac9575f3d9db9bfbc8ebdd3adc88b9ec84db7",
        "321ee7033eb5048b5ed59c3f93bb80f78c0fe1265154ed7929d447d2a9913d89",
        "a866399531f28a066b1d1b86e8cbf9e03d4df838db979dc0a1333dc0d6b847a6",
        "9dfd23615894f2a1c64345228d9d50b596933b9f60221835e3edc6aecbb58b81",
    }
)


def split_csv(value: object) -> object:
    """Accept `a,b,c` from the environment as well as a real list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def asyncpg_url(url: str) -> str:
    """`url` written `postgresql://`, `postgres://` or `postgresql+asyncpg://` (a socket as
    `?host=<folder>`) as the `postgresql+asyncpg://` URL SQLAlchemy connects with; a ValueError otherwise."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator or scheme.lower() not in DATABASE_SCHEMES:
        # Only the scheme is shown: the rest may hold a password.
        given = f"{scheme}://" if separator else "no scheme"
        raise ValueError(
            f"a database URL must start with postgresql://, postgres:// or postgresql+asyncpg:// (this one: {given})"
        )
    try:
        parsed = make_url(f"postgresql+asyncpg://{rest}")
    except ArgumentError:
        raise ValueError("the database URL cannot be parsed") from None
    if "sslmode" not in parsed.query:
        return f"postgresql+asyncpg://{rest}"
    # libpq's `sslmode` (in the URLs hosts hand out) is the asyncpg driver's `ssl`.
    query = {key: value for key, value in parsed.query.items() if key != "sslmode"}
    return parsed.set(query={**query, "ssl": parsed.query["sslmode"]}).render_as_string(hide_password=False)


def check_auth_secret(secret: str) -> str:
    """`secret` if it may sign tokens: at least 32 bytes and never a value this repository published."""
    if not secret:
        raise ValueError("empty")
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        raise ValueError(
            f"too short ({size} bytes; at least {MIN_SECRET_BYTES}, for example from `openssl rand -base64 48`)"
        )
    if hashlib.sha256(secret.encode()).hexdigest() in PUBLISHED_SECRETS:
        raise ValueError("a value published in this repository; generate your own (`openssl rand -base64 48`)")
    return secret


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
    kafka_replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replicas of each topic the platform creates (3 on a three-broker cluster; 1 for one broker).",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=10, ge=1, description="Consumers' fetch wait; small, because the embedded broker never wakes early."
    )
    kafka_idle_fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        description=(
            "Consumers' fetch wait after a second with nothing fetched, until something comes: fewer idle "
            "fetches on a broker that never wakes early (no longer than CF_KAFKA_FETCH_MAX_WAIT_MS turns it off)."
        ),
    )
    topic_prefix: str = Field(default="", description="Put in front of every topic name.")
    auth_secret: SecretStr = Field(
        description=(
            "HS256 secret that signs bearer tokens: required, at least 32 bytes, never a value published "
            "in this repository (`make run` generates one into .data/)."
        ),
    )
    departments: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_DEPARTMENTS), description="The departments, comma-separated."
    )
    idempotency_ttl_hours: int = Field(default=24, ge=24, description="How long Idempotency-Keys are kept.")
    purge_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between purges of the rows past their age (`CF_PURGE_*_DAYS`, idempotency keys).",
    )
    purge_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Rows the purge deletes per transaction (short locks)."
    )
    purge_processed_event_days: int = Field(
        default=30,
        ge=1,
        description=(
            "Days a consumed event's id is kept to drop a redelivery (exactly-once); keep it well above the topics' "
            "retention (Kafka's default: 7 days)."
        ),
    )
    purge_dead_event_days: int = Field(
        default=30,
        ge=1,
        description="Days an event the broker refused for good is kept for `customer-focus outbox retry`.",
    )
    outbox_sweep_interval_seconds: float = Field(
        default=1.0, gt=0, description="The relay's sweep between LISTEN/NOTIFY wake-ups."
    )
    consumer_max_attempts: int = Field(
        default=3, ge=1, description="Tries of a failing event before it goes to `<topic>.dlq`."
    )
    run_workers: bool = Field(default=True, description="Run the relay, consumers and schedulers in this process.")
    log_level: str = Field(default="INFO", description="Python log level.")
    log_json: bool = Field(default=True, description="Structured JSON logs (else plain text).")
    access_log: bool = Field(
        default=False,
        description="Log every HTTP request (uvicorn's access log: method, path, status, client) like the other lines.",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="Largest request body in bytes; a larger one is a 413, refused before parsing and authentication.",
    )
    max_event_bytes: int = Field(
        default=262_144,
        ge=1024,
        le=1_000_000,
        description="Largest CloudEvent (key and value) a write may make; a larger one is a 422 `event-too-large`.",
    )
    rate_limit: str = Field(
        default="",
        description=(
            "Requests per token `sub` in each process, in the `limits` notation (`100/second;2000/minute`); "
            "the excess is a 429 with `Retry-After`. Empty: no limit."
        ),
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Origins whose pages may call the API (CORS), comma-separated; `*` for any.",
    )

    _split_departments = field_validator("departments", mode="before")(split_csv)
    _split_origins = field_validator("cors_allow_origins", mode="before")(split_csv)
    # Also each service's own `database_url` field (`database_url_field`): validators apply by name.
    _asyncpg_url = field_validator("database_url")(asyncpg_url)

    @field_validator("auth_secret")
    @classmethod
    def _secret_may_sign(cls, value: SecretStr) -> SecretStr:
        check_auth_secret(value.get_secret_value())
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        if value.strip():
            parse_rate_limit(value)
        return value.strip()

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
        description=(
            f"The {service} service's own database: `postgresql://`, `postgres://` or `postgresql+asyncpg://`, "
            "a socket as `?host=<folder>` (`make run`: an embedded PostgreSQL unless set)."
        ),
    )


SettingsT = TypeVar("SettingsT", bound=PlatformSettings)


def setting_variable(name: str, field: FieldInfo) -> str:
    """The environment variable that sets the field `name`."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        # The first choice is the setting's name; the others are older names still read.
        return alias.choices[0]
    return alias if isinstance(alias, str) else f"CF_{name.upper()}"


def settings_problem(error: ValidationError, cls: type[PlatformSettings]) -> str:
    """What is wrong with the settings, on one line, by environment variable, never showing a value."""
    variables = {name: setting_variable(name, field) for name, field in cls.model_fields.items()}
    problems = []
    for found in error.errors(include_url=False, include_input=False):
        located = str(found["loc"][0]) if found["loc"] else ""
        variable = variables.get(located, located)
        if found["type"] == "missing":
            problems.append(f"{variable}: not set")
        else:
            problems.append(f"{variable}: {found['msg'].removeprefix('Value error, ')}")
    return " ".join("; ".join(problems).split())


def load_settings(cls: type[SettingsT], **values: Any) -> SettingsT:
    """`cls` from the environment (then `values`); if a setting is wrong, one line on stderr and exit 2.

    Every way a service starts (the uvicorn factory, the webhook worker) builds its settings here,
    so a missing or weak `CF_AUTH_SECRET` stops it before it serves anything, without a traceback.
    """
    try:
        return cls(**values)
    except ValidationError as exc:
        sys.stderr.write(f"{cls.service_name}: refusing to start: {settings_problem(exc, cls)}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None


def settings_table(classes: list[type[PlatformSettings]]) -> str:
    """A Markdown table of every setting: environment variable, default, meaning."""
    rows: dict[str, tuple[str, str]] = {}
    for cls in classes:
        for name, field in cls.model_fields.items():
            variable = setting_variable(name, field)
            if field.is_required():
                rows.setdefault(variable, ("(required)", field.description or ""))
                continue
            default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
            if isinstance(default, list):
                default = ",".join(str(v) for v in default)
            if isinstance(default, Path) and default.is_absolute():
                with contextlib.suppress(ValueError):
                    default = default.relative_to(Path(__file__).resolve().parents[1])
            rows.setdefault(variable, (f"`{default}`" if default != "" else "(empty)", field.description or ""))
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    lines += [f"| `{variable}` | {default} | {meaning} |" for variable, (default, meaning) in rows.items()]
    return "\n".join(lines)
