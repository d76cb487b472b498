"""`customer-focus --version` names the installed package's version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ops.cli import app


def test_version_option_prints_the_package_version_and_exits() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.output == f"customer-focus {importlib.metadata.version('customer-focus-platform')}\n"


def test_the_installed_command_answers_version() -> None:
    command = Path(sys.executable).parent / "customer-focus"
    done = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=60, check=True)

    assert done.stdout.startswith("customer-focus ")
    assert done.stdout.split()[1][0].isdigit()
