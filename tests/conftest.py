"""Root fixtures. Area-specific fixtures live in tests/fixtures/*.py, loaded as plugins here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.shared",
    "tests.fixtures.pki",
    "tests.fixtures.card",
    "tests.fixtures.sandbox",
]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def pytest_report_header(config: pytest.Config) -> str:
    return f"PS_AGENT_SHARED={os.environ.get('PS_AGENT_SHARED', '(default ../shared)')}"
