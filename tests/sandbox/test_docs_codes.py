"""docs/sandbox.md and docs/sandbox-dmp.md name every error code and HTTP status the sandbox can answer.

The codes are collected from the source (string literals of the server and domain layers, and the
constants of ``sandbox/dmp/errors.py`` that are used), so a new refusal without documentation fails here."""

from __future__ import annotations

import ast
import re
from http import HTTPStatus
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "sandbox" / "server").glob("*.py")) + sorted((ROOT / "sandbox" / "dmp").glob("*.py"))
CODE = re.compile(r"(?:sandbox|wsa|wsse):[A-Z][A-Za-z0-9]+|(?:XDS|DMP)[A-Z][A-Za-z]+|INVALID_INS")
DOCS = ("docs/sandbox.md", "docs/sandbox-dmp.md")
# header and element names the docs write like codes
ELEMENT_NAMES = {"wsa:Action", "wsa:MessageID", "wsa:RelatesTo", "wsa:To", "wsa:ReplyTo", "wsse:Security"}


def _error_constants() -> dict[str, str]:
    tree = ast.parse((ROOT / "sandbox" / "dmp" / "errors.py").read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    out[target.id] = node.value.value
    return out


def collected() -> tuple[set[str], set[int]]:
    """(codes, HTTP statuses) the sandbox's source can answer."""
    constants = _error_constants()
    codes: set[str] = set()
    statuses: set[int] = set()
    for path in SOURCES:
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
                codes.add(node.value)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in ("E", "errors") and node.attr in constants:
                    value = constants[node.attr]
                    if CODE.fullmatch(value):
                        codes.add(value)
                elif node.value.id == "HTTPStatus" and path.parent.name == "server":
                    statuses.add(HTTPStatus[node.attr].value)
    return codes, statuses


def test_the_collector_finds_the_codes_it_should() -> None:
    codes, statuses = collected()
    assert {"XDSMetadataVersionError", "sandbox:ServerBusy", "wsse:FailedCheck", "DMPAccessBlocked"} <= codes
    assert {400, 404, 405, 408, 413, 500, 503} <= statuses


def test_every_code_and_http_status_is_documented() -> None:
    text = "\n".join((ROOT / d).read_text(encoding="utf-8") for d in DOCS)
    codes, statuses = collected()
    assert not sorted(c for c in codes if c not in text), "codes missing from the sandbox docs"
    assert not sorted(s for s in statuses if not re.search(rf"\b{s}\b", text)), "HTTP statuses missing"


def test_the_docs_name_no_code_the_sandbox_never_answers() -> None:
    codes, _ = collected()
    text = "\n".join((ROOT / d).read_text(encoding="utf-8") for d in DOCS)
    documented = {m for m in CODE.findall(text) if not m.startswith("XDSDocumentEntry")} - ELEMENT_NAMES
    assert not sorted(documented - codes), "documented codes the source never answers"
