"""Test hygiene: no test module imports from another test module (shared helpers live in tests/fixtures/
or a conftest.py), so each test module can be read, run and changed on its own."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(source: str, package: str) -> list[str]:
    """Modules named by the imports of ``source``, relative ones resolved against ``package``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                if node.module:
                    out.append(f"{base}.{node.module}")
                else:
                    out += [f"{base}.{a.name}" for a in node.names]
            else:
                out.append(node.module or "")
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def test_no_test_module_imports_another_test_module() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("test_*.py")):
        package = ".".join(path.relative_to(TESTS.parent).parent.parts)
        for module in imported_modules(path.read_text(encoding="utf-8"), package):
            if module.startswith("tests.") and module.rsplit(".", 1)[-1].startswith("test_"):
                offenders.append(f"{path.relative_to(TESTS.parent)} imports {module}")
    assert offenders == []


def test_the_check_sees_relative_and_absolute_imports() -> None:
    source = "from .test_wire import entry\nfrom tests.cda.test_build import x\nfrom . import test_cli\n"
    assert imported_modules(source, "tests.dmp") == [
        "tests.dmp.test_wire",
        "tests.cda.test_build",
        "tests.dmp.test_cli",
    ]
