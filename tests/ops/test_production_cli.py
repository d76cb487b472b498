"""The service image's CLI: without the `ops` dependency group, the production commands run and `up` says why not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ops.embedded import OPS_GROUP_MODULES

ROOT = Path(__file__).resolve().parents[2]
# As in the image (`uv sync --no-dev`): importing any module of the `ops` group fails.
WITHOUT_OPS_GROUP = f"""
import sys
for name in {OPS_GROUP_MODULES!r}:
    sys.modules[name] = None
from ops.cli import app
app(sys.argv[1:], prog_name="customer-focus")
"""
UNREACHABLE = "postgresql://cf:cf@127.0.0.1:1/feedback"


def customer_focus(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "CF_LOG_LEVEL": "WARNING", **environment}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_OPS_GROUP, *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_reaches_the_database_without_the_ops_group() -> None:
    done = customer_focus("migrate", "--service", "feedback", CF_FEEDBACK_DATABASE_URL=UNREACHABLE)
    assert done.returncode == 1
    assert done.stderr.startswith("error: migration failed: "), done.stderr
    assert "dependency group" not in done.stderr


def test_outbox_dead_reaches_the_database_without_the_ops_group() -> None:
    done = customer_focus("outbox", "dead", "--service", "feedback", CF_FEEDBACK_DATABASE_URL=UNREACHABLE)
    assert done.returncode == 1
    assert done.stderr.startswith("error: feedback's database is unreachable"), done.stderr


def test_up_without_the_ops_group_says_what_to_install_in_one_line() -> None:
    done = customer_focus("up")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: `customer-focus up` needs the `ops` dependency group"), done.stderr
    assert "make install" in done.stderr


def test_a_command_without_database_urls_and_the_ops_group_names_both() -> None:
    done = customer_focus("outbox", "status", "--service", "feedback")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "CF_FEEDBACK_DATABASE_URL" in done.stderr
    assert "`ops` dependency group" in done.stderr
