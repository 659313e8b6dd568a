"""Root of the sandbox exception tree."""

from __future__ import annotations


class SandboxError(Exception):
    """Anything the sandbox raises on purpose (configuration, PKI, card emulator, server)."""
