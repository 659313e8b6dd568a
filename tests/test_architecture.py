"""The import direction is the architecture: ui -> ps_agent -> cda; sandbox may use cda only.

Scans every module's imports (top level and inside functions) with ``ast``, so a lazy import
cannot sneak past. Also checks ``cda`` stays free of Qt and network libraries.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import
FORBIDDEN: dict[str, set[str]] = {
    "cda": {
        "ps_agent",
        "ui",
        "sandbox",
        "PySide6",
        "httpx",
        "httpcore",
        "requests",
        "urllib3",
        "socket",
        "smartcard",
        "PyKCS11",
    },
    "ps_agent": {"ui", "sandbox", "PySide6", "tests"},
    "sandbox": {"ps_agent", "ui", "PySide6", "tests"},
    "ui": {"sandbox", "httpx", "httpcore", "smartcard", "PyKCS11", "tests"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    offences = [
        f"{f.relative_to(ROOT)}:{line} imports {mod}"
        for f in files
        for line, mod in _imports(f)
        if mod in FORBIDDEN[package]
    ]
    assert not offences, "import direction broken:\n" + "\n".join(offences)


def test_scanner_sees_imports(tmp_path: Path) -> None:
    """The scanner itself must catch a forbidden import, or the test above proves nothing."""
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    import PySide6.QtWidgets\n    from sandbox import card\n", encoding="utf-8")
    assert {m for _, m in _imports(bad)} == {"PySide6", "sandbox"}
