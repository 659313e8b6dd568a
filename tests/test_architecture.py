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


# Inside ps_agent: the lower layers never reach up. sub-package -> ps_agent sub-packages/modules it must
# never import (issue 9: card never imports dmp; dmp never imports the agent).
UPPER = {"agent", "session", "services", "identities", "cli", "api", "hotfolder", "__main__"}
SUBPACKAGE_FORBIDDEN: dict[str, set[str]] = {
    "card": UPPER | {"dmp", "audit", "access", "outbox", "identity", "config"},
    "auth": UPPER | {"dmp", "audit", "access", "outbox", "identity"},
    "dmp": UPPER | {"card", "audit", "access", "outbox", "identity"},
    "audit": UPPER | {"dmp", "card", "access", "outbox", "identity"},
    "access": UPPER | {"dmp", "card", "audit", "outbox", "identity"},
    "outbox": UPPER | {"dmp", "card", "audit", "access", "identity"},
    "identity": UPPER | {"outbox"},
    "context": UPPER | {"dmp", "card", "auth", "audit", "access", "outbox", "identity"},
    "events": UPPER | {"dmp", "card", "auth", "audit", "access", "outbox", "identity"},
}


def _ps_agent_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "ps_agent":  # from ps_agent import session
                names = [f"ps_agent.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import (use absolute ps_agent.… imports)")
        found.extend((node.lineno, n.split(".")[1]) for n in names if n.startswith("ps_agent."))
    return found


@pytest.mark.parametrize("sub", sorted(SUBPACKAGE_FORBIDDEN))
def test_subpackage_layers(sub: str) -> None:
    base = ROOT / "ps_agent" / sub
    files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert files and files[0].exists(), f"ps_agent.{sub} not found"
    offences = [
        f"{f.relative_to(ROOT)}:{line} imports ps_agent.{mod}"
        for f in files
        for line, mod in _ps_agent_imports(f)
        if mod in SUBPACKAGE_FORBIDDEN[sub]
    ]
    assert not offences, "layering inside ps_agent broken:\n" + "\n".join(offences)


def test_subpackage_scanner_sees_imports(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text(
        "def f():\n    from ps_agent import session\n    import ps_agent.dmp.client\n", encoding="utf-8"
    )
    assert {m for _, m in _ps_agent_imports(bad)} == {"session", "dmp"}
