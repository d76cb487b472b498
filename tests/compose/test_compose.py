"""docker-compose.yml, the Dockerfile and .env.example agree with the code.

No Docker engine runs here: `make compose-check` validates the file with
docker-compose itself; these tests check that every setting it passes is one
the services read (names taken from the settings classes at test time), that
every setting can be set, and that the contract's services and topics are
all there.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from ops.platform import SERVICES
from shared.catalogue import all_topics
from shared.config import DEFAULT_DEPARTMENTS, PlatformSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
INIT_SCRIPT = ROOT / "deploy" / "postgres" / "initdb" / "10-service-databases.sh"
CADDYFILE = ROOT / "deploy" / "proxy" / "Caddyfile"
CONTRACT_PORTS = {"feedback": 8001, "expectations": 8002, "commitments": 8003, "notifications": 8004, "customers": 8005}
REQUIRED_SECRETS = ("CF_AUTH_SECRET", "POSTGRES_PASSWORD", "DATABASE_PASSWORD")
ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def settings_class(service: str) -> type[PlatformSettings]:
    settings: type[PlatformSettings] = importlib.import_module(f"services.{service}.config").Settings
    return settings


def variables(cls: type[PlatformSettings]) -> dict[str, str]:
    """Each environment variable `cls` reads, and the field it sets."""
    return {
        field.validation_alias if isinstance(field.validation_alias, str) else f"CF_{name.upper()}": name
        for name, field in cls.model_fields.items()
    }


def all_variables() -> dict[str, tuple[type[PlatformSettings], str]]:
    found: dict[str, tuple[type[PlatformSettings], str]] = {}
    for service in SERVICES:
        cls = settings_class(service)
        for variable, name in variables(cls).items():
            found.setdefault(variable, (cls, name))
    return found


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def container(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = compose()["services"][name]
    return definition


def environment(name: str) -> dict[str, str | None]:
    given = container(name).get("environment", {})
    if isinstance(given, list):
        return {item.partition("=")[0]: item.partition("=")[2] or None for item in given}
    return {key: None if value is None else str(value) for key, value in given.items()}


def env_example() -> dict[str, tuple[bool, str]]:
    """Each variable in .env.example: (commented out, value)."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            found[match.group(2)] = (match.group(1) is not None, match.group(3).strip())
    return found


@pytest.mark.parametrize(("name", "service"), [*((s, s) for s in SERVICES), ("webhook-worker", "notifications")])
def test_every_setting_compose_passes_to_a_service_is_one_it_reads(name: str, service: str) -> None:
    passed = {key for key in environment(name) if key.startswith("CF_")}

    assert passed - set(variables(settings_class(service))) == set()


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_of_a_service_can_be_set_through_compose(service: str) -> None:
    passed = set(environment(service))

    missing = set(variables(settings_class(service))) - passed
    assert missing == set(), f"add {sorted(missing)} to the {service} service in docker-compose.yml"


@pytest.mark.parametrize("job", ["migrate", "kafka-topics"])
def test_the_one_shot_jobs_pass_only_real_settings(job: str) -> None:
    passed = {key for key in environment(job) if key.startswith("CF_")}

    assert passed
    assert passed - set(all_variables()) == set()


def test_env_example_lists_every_setting_and_no_other() -> None:
    listed = {name for name in env_example() if name.startswith("CF_")}

    assert listed == set(all_variables()), "keep .env.example in step with the settings classes"


def test_env_example_shows_each_built_in_default_as_it_is() -> None:
    for variable, (commented, value) in env_example().items():
        if not (commented and value and variable.startswith("CF_")):
            continue
        cls, name = all_variables()[variable]
        field = cls.model_fields[name]
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        # CF_AUTH_SECRET has no default: the services refuse to start without one.
        settings = cls.model_validate({name: value, "auth_secret": secrets.token_urlsafe(32)})
        assert getattr(settings, name) == default, variable


def test_every_variable_compose_interpolates_is_in_env_example() -> None:
    interpolated = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE_FILE.read_text()))

    assert interpolated
    assert interpolated - set(env_example()) == set()


def test_compose_refuses_to_start_without_the_secrets() -> None:
    text = COMPOSE_FILE.read_text()
    for secret in REQUIRED_SECRETS:
        assert re.search(rf"\$\{{{secret}:\?", text), secret
        assert env_example()[secret] == (False, ""), f"{secret} must be given, never defaulted"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_serves_on_its_contract_port_after_migrations_and_topics(service: str) -> None:
    definition = container(service)
    port = CONTRACT_PORTS[service]

    assert f"services.{service}.app:create_app" in definition["command"]
    # No host port of its own, so that `--scale` can run several; the proxy publishes the contract's port
    # and spreads it over every replica of the service (found by name in Docker's DNS).
    assert "ports" not in definition
    assert "container_name" not in definition
    assert f"{port}:{port}" in container("proxy")["ports"]
    assert caddy_sites()[port] == service
    assert definition["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "kafka": {"condition": "service_healthy"},
        "kafka-topics": {"condition": "service_completed_successfully"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert "/readyz" in " ".join(definition["healthcheck"]["test"])
    assert container("migrate")["command"] == ["customer-focus", "migrate"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_and_the_migrations_use_the_service_s_own_database(service: str) -> None:
    variable = f"CF_{service.upper()}_DATABASE_URL"
    url = make_url(str(environment(service)[variable]))

    assert (url.host, url.database, url.username) == ("postgres", service, service)
    assert environment("migrate")[variable] == environment(service)[variable]


def test_kafka_runs_in_kraft_mode_and_is_health_checked() -> None:
    kafka = container("kafka")
    settings = environment("kafka")

    assert kafka["image"].startswith("apache/kafka:")
    assert set(str(settings["KAFKA_PROCESS_ROLES"]).split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in settings)
    assert "kafka-broker-api-versions" in " ".join(kafka["healthcheck"]["test"])
    assert "kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093" in COMPOSE_FILE.read_text()


def test_postgres_18_like_the_tests_creates_a_database_per_service_on_first_start() -> None:
    postgres = container("postgres")

    assert postgres["image"] == "postgres:18"
    # PostgreSQL 18's images keep their data in 18/docker below this folder, and refuse a mount at .../data.
    assert any(volume.endswith(":/var/lib/postgresql") for volume in postgres["volumes"])
    assert "./deploy/postgres/initdb:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    loop = re.search(r"for service in ([\w ]+); do", INIT_SCRIPT.read_text())
    assert loop is not None
    assert loop.group(1).split() == list(SERVICES)
    assert os.access(INIT_SCRIPT, os.X_OK)


def test_every_topic_of_the_contract_is_created_before_the_services_start() -> None:
    script = " ".join(container("kafka-topics")["command"])
    named = set(re.findall(r"[a-z]+\.[a-z.]+", script))

    assert set(all_topics(list(DEFAULT_DEPARTMENTS))) <= named
    partitions = PlatformSettings.model_fields["kafka_topic_partitions"].default
    assert environment("kafka-topics")["CF_KAFKA_TOPIC_PARTITIONS"] == f"${{CF_KAFKA_TOPIC_PARTITIONS:-{partitions}}}"


def test_the_image_is_multi_stage_unprivileged_and_installed_from_the_lock() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    final_stage = lines[lines.index(stages[-1]) :]
    users = [line.split()[1] for line in final_stage if line.startswith("USER ")]

    assert len(stages) >= 2
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any(line.startswith("COPY --from=build") for line in final_stage)
    assert "uv sync --frozen --no-dev --no-editable" in DOCKERFILE.read_text()


def test_the_image_gets_every_package_of_the_wheel_but_not_the_ops_group() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    dockerfile = DOCKERFILE.read_text()
    allowed = (ROOT / ".dockerignore").read_text().splitlines()

    assert "ops" in packages
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
        assert f"!{package}/" in allowed
    # `uv sync` installs the default groups only: `--no-dev` leaves out dev, and ops is not one.
    assert "ops" in project["dependency-groups"]
    assert "ops" not in project.get("tool", {}).get("uv", {}).get("default-groups", [])


def caddy_sites() -> dict[int, str]:
    """Each port the proxy serves, and the service name whose replicas it reaches."""
    text = CADDYFILE.read_text()
    sites = re.findall(r"^:(\d+) \{\n\treverse_proxy \{\n\t\tdynamic a \{\n\t\t\tname (\w[\w-]*)\n", text, re.M)
    return {int(port): name for port, name in sites}


def test_the_proxy_sends_each_port_to_every_replica_of_its_service_on_8000() -> None:
    text = CADDYFILE.read_text()

    assert caddy_sites() == {port: service for service, port in CONTRACT_PORTS.items()}
    assert text.count("port 8000") == len(CONTRACT_PORTS)
    # Docker's DNS, asked again often enough to see a replica that was just started.
    assert text.count("resolvers 127.0.0.11") == len(CONTRACT_PORTS)
    assert "./deploy/proxy/Caddyfile:/etc/caddy/Caddyfile:ro" in container("proxy")["volumes"]


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed (Debian: apt-get install caddy)")
def test_the_caddyfile_is_one_caddy_accepts() -> None:
    adapted = subprocess.run(
        ["caddy", "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=True,
    )
    servers = json.loads(adapted.stdout)["apps"]["http"]["servers"].values()
    assert sorted(server["listen"][0] for server in servers) == [f":{port}" for port in sorted(CONTRACT_PORTS.values())]


def long_running() -> list[str]:
    return [name for name, definition in compose()["services"].items() if definition.get("restart") != "no"]


def test_every_container_rotates_its_logs() -> None:
    for name, definition in compose()["services"].items():
        assert definition["logging"]["driver"] == "json-file", name
        assert definition["logging"]["options"]["max-size"], name
        assert int(definition["logging"]["options"]["max-file"]) >= 2, name


def test_every_long_running_container_has_cpu_and_memory_limits() -> None:
    assert {"postgres", "kafka", "proxy", "webhook-worker", *SERVICES} <= set(long_running())
    for name in long_running():
        assert float(container(name)["cpus"]) > 0, name
        assert container(name)["mem_limit"], name


def test_webhook_workers_send_the_webhooks_and_report_their_health() -> None:
    worker = container("webhook-worker")

    assert worker["entrypoint"] == ["python", "-m", "services.notifications.webhook_worker"]
    assert environment("notifications")["CF_WEBHOOKS_IN_PROCESS"] == "false"
    assert "ports" not in worker
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"] == container("notifications")["depends_on"]
    assert (
        environment("webhook-worker")["CF_NOTIFICATIONS_DATABASE_URL"]
        == environment("notifications")["CF_NOTIFICATIONS_DATABASE_URL"]
    )


def compose_default(variable: str, service: str = "feedback") -> str:
    match = re.fullmatch(rf"\$\{{{variable}:-(.*)\}}", str(environment(service)[variable]))
    assert match, f"{variable} has no default in docker-compose.yml"
    return match.group(1)


def test_apache_kafka_gets_the_idempotent_producer_and_a_normal_fetch_wait() -> None:
    assert compose_default("CF_KAFKA_ENABLE_IDEMPOTENCE") == "true"
    assert int(compose_default("CF_KAFKA_FETCH_MAX_WAIT_MS")) >= 100
    assert env_example()["CF_KAFKA_ENABLE_IDEMPOTENCE"] == (False, "true")
    assert env_example()["CF_KAFKA_FETCH_MAX_WAIT_MS"] == (False, compose_default("CF_KAFKA_FETCH_MAX_WAIT_MS"))
    assert "CF_KAFKA_REPLICATION_FACTOR" in environment("feedback")
    assert environment("kafka-topics")["CF_KAFKA_REPLICATION_FACTOR"] == "${CF_KAFKA_REPLICATION_FACTOR:-1}"


# What one replica opens at most, with P = CF_DATABASE_POOL_SIZE (docs/SCALING.md, measured by
# tests/shared/test_connections_per_replica.py): the SQLAlchemy pool P + overflow P and the outbox relay 1;
# commitments' scheduler and notifications' live stream one more each; a webhook worker 5.
def connections_per_replica(pool_size: int) -> dict[str, int]:
    service = 2 * pool_size + 1
    return {
        "feedback": service,
        "expectations": service,
        "commitments": service + 1,
        "notifications": service + 1,
        "customers": service,
        "webhook-worker": 5,
    }


def test_postgres_max_connections_hold_several_replicas_of_every_service() -> None:
    command = container("postgres")["command"]
    max_connections = int(next(arg.split("=")[1] for arg in command if arg.startswith("max_connections=")))
    pool_size = int(compose_default("CF_DATABASE_POOL_SIZE"))
    assert env_example()["CF_DATABASE_POOL_SIZE"] == (False, str(pool_size))
    per_replica = connections_per_replica(pool_size)

    # The example in docker-compose.yml's comment, and three of everything, fit beside the superuser's 3.
    example = {
        "feedback": 6,
        "expectations": 3,
        "commitments": 3,
        "notifications": 3,
        "customers": 2,
        "webhook-worker": 4,
    }
    for replicas in (example, dict.fromkeys(per_replica, 3)):
        needed = sum(per_replica[name] * count for name, count in replicas.items())
        assert needed <= max_connections - 3, replicas
    assert f"= {sum(per_replica[n] * c for n, c in example.items())}," in COMPOSE_FILE.read_text()
    assert f"max_connections {max_connections}" in COMPOSE_FILE.read_text()
