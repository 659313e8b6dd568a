"""One overall deadline per network exchange, seen by the agent's network streams.

httpx/httpcore timeouts apply to each read or write (and the response headers are read with one timeout
value fetched once): a server that trickles one byte every 2 s never trips them and holds the caller
forever. The DMP client opens ``exchange_deadline(seconds)`` around a whole exchange (connection, TLS
handshake, request, response headers and body); the network streams of ``ps_agent.auth.tls`` cap every
socket operation to the time left (``cap``) and fail as a timeout once none is left.

Thread- and context-local (a ``ContextVar``): concurrent exchanges in other threads have their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("ps_agent_exchange_deadline", default=None)


class DeadlinePassed(TimeoutError):
    """No time is left for the current exchange (a ``TimeoutError``: streams map it to their timeout)."""


@contextmanager
def exchange_deadline(seconds: float) -> Iterator[float]:
    """Run the body under a deadline ``seconds`` from now (an enclosing, earlier deadline still wins).

    Yields the absolute deadline on the ``time.monotonic`` clock.
    """
    deadline = time.monotonic() + seconds
    outer = _DEADLINE.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def current() -> float | None:
    """The absolute deadline of the current exchange (``time.monotonic`` clock), None outside one."""
    return _DEADLINE.get()


def cap(timeout: float | None) -> float | None:
    """The timeout for one socket operation: ``timeout`` but at most the time left in the exchange.

    Raises ``DeadlinePassed`` when the exchange has no time left. Outside an exchange: ``timeout``.
    """
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed("overall exchange deadline passed")
    return left if timeout is None else min(timeout, left)
