"""Wait until pcscd reports a reader with or without a card (SCardGetStatusChange).

Used by ``python -m sandbox.card insert|remove`` so the command returns only once every PC/SC client can
see the change (pcscd polls vpcd every 400 ms), and by the test fixtures.
"""

from __future__ import annotations

import time

from sandbox.errors import SandboxError


class ReaderStateTimeout(SandboxError, TimeoutError):
    """pcscd did not report the expected reader state in time."""


def wait_reader_state(reader: str, present: bool, timeout_s: float = 5.0) -> float:
    """Block until pcscd shows ``reader`` with (``present``) or without a card; return seconds waited."""
    from smartcard.scard import (
        SCARD_S_SUCCESS,
        SCARD_SCOPE_USER,
        SCARD_STATE_CHANGED,
        SCARD_STATE_EMPTY,
        SCARD_STATE_PRESENT,
        SCARD_STATE_UNAWARE,
        SCardEstablishContext,
        SCardGetStatusChange,
        SCardReleaseContext,
    )

    start = time.monotonic()
    hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
    if hr != SCARD_S_SUCCESS:
        raise ReaderStateTimeout("pcscd is not reachable (SCardEstablishContext failed)")
    try:
        state = SCARD_STATE_UNAWARE
        while True:
            left = timeout_s - (time.monotonic() - start)
            if left <= 0:
                raise ReaderStateTimeout(
                    f"pcscd did not see {reader} {'with' if present else 'without'} a card"
                )
            hr, states = SCardGetStatusChange(ctx, int(min(left, 0.5) * 1000), [(reader, state)])
            if hr == SCARD_S_SUCCESS:
                flags = states[0][1]
                if present and flags & SCARD_STATE_PRESENT:
                    return time.monotonic() - start
                if not present and flags & SCARD_STATE_EMPTY:
                    return time.monotonic() - start
                state = flags & ~SCARD_STATE_CHANGED
    finally:
        SCardReleaseContext(ctx)
