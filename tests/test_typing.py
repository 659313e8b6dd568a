"""Typing contract: the lazy exports of ``ps_agent`` are visible to type checkers (the ``TYPE_CHECKING``
block names exactly the ``_EXPORTS`` table, each from its module), and both packages ship ``py.typed``.
mypy itself runs in installer/test.sh (configuration in pyproject.toml)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import ps_agent

ROOT = Path(__file__).resolve().parent.parent


def _type_checking_imports(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module
                for alias in imp.names:
                    assert alias.asname == alias.name, f"{alias.name}: re-export as itself"
                    out[alias.name] = imp.module
    return out


def test_lazy_exports_are_visible_to_type_checkers() -> None:
    assert _type_checking_imports(ROOT / "ps_agent" / "__init__.py") == ps_agent._EXPORTS


def test_packages_are_marked_typed() -> None:
    for package in ("cda", "ps_agent"):
        assert (ROOT / package / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = data["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["cda"] and "py.typed" in package_data["ps_agent"]
    assert data["tool"]["mypy"]["files"] == ["cda", "ps_agent", "ui"]
