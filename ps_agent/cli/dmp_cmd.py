"""`ps-agent dmp ...` commands (placeholder until its issue lands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    subparsers.add_parser("dmp", help="(pas encore disponible)")
