"""Layers: `shared/` depends on no service and no tooling, the services depend on no tooling.

Strings count too: a module path in a string (`"services.feedback.schemas:Feedback"`,
`f"services.{name}:migrations"`) is an import that only happens later.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _references(path: Path, packages: tuple[str, ...]) -> list[str]:
    """Where `path` imports one of `packages`, or names a module or file of one in a string."""
    alternatives = "|".join(packages)
    named = re.compile(rf"(?<![\w.])({alternatives})[./](\w|\{{)")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        text = ""
        if isinstance(node, ast.JoinedStr):
            text = "".join(str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        found += [f"line {node.lineno}: import {m}" for m in modules if m.split(".")[0] in packages]
        if text and named.search(text):
            found.append(f"line {node.lineno}: {text.strip()[:80]!r}")
    return found


@pytest.mark.parametrize("path", _modules("shared"), ids=lambda path: path.name)
def test_the_library_names_no_service_and_no_tooling(path: Path) -> None:
    assert _references(path, ("services", "ops")) == []


@pytest.mark.parametrize("path", _modules("services"), ids=lambda path: str(path.relative_to(ROOT / "services")))
def test_a_service_names_no_tooling(path: Path) -> None:
    assert _references(path, ("ops",)) == []


def test_a_string_naming_a_service_module_is_found(tmp_path: Path) -> None:
    module = tmp_path / "hidden.py"
    module.write_text('import importlib\nSPEC = f"services.{1}:migrations"\nimportlib.import_module("ops.stack")\n')
    assert _references(module, ("services", "ops")) == [
        "line 2: 'services.{}:migrations'",
        "line 3: 'ops.stack'",
    ]
