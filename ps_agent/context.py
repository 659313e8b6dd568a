"""The per-call context of an operation: why (purpose, background, emergency reason), until when
(deadline), how to stop it (``CancelToken``) and how to report progress.

``Context`` is a frozen value: build one per user action and pass it to the session's operations
(``ctx=``). Every field has a default, so ``Context()`` is a foreground care access with no deadline.

Cancellation: ``token.cancel()`` from any thread (the UI's "Annuler" button). Long operations check the
token between their steps and wait on it instead of sleeping; a DMP call in flight is abandoned (its
thread finishes on its own, its answer is dropped), so the operation raises ``Cancelled`` within
``CANCEL_LATENCY_S``. A deposit abandoned in flight stays in the deposit queue: it is resolved later by
resending the same submission (idempotent), never lost and never reported refused.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ps_agent.errors import PsAgentError

T = TypeVar("T")

Progress = Callable[[str, int, int], None]
"""``cb(step_fr, done, total)``: French label of the step, steps done, steps in all."""

CANCEL_LATENCY_S = 0.2
"""Promise of the API: a cancelled operation returns (raises ``Cancelled``) within this time."""


class Cancelled(PsAgentError):
    """The user cancelled the operation (or its deadline passed). Nothing was returned."""

    def __init__(self, message_fr: str = "Opération annulée.", *, code: str = "CANCELLED") -> None:
        super().__init__(message_fr, code=code)


class DeadlineExceeded(Cancelled):
    def __init__(self) -> None:
        super().__init__(
            "Le délai accordé à l'opération est dépassé : elle est interrompue.", code="DEADLINE"
        )


class CancelToken:
    """Thread-safe, one-way: once cancelled, always cancelled. Callbacks run once, on the cancelling
    thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # noqa: S110 - a listener must never break cancellation
                pass

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (at once if already). Returns a function that unregisters it."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)

                def remove() -> None:
                    with self._lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)

                return remove
        callback()
        return lambda: None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds passed; True when cancelled."""
        return self._event.wait(timeout)


@dataclass(frozen=True)
class Context:
    """Why and how one operation runs.

    ``purpose``: the declared purpose of the access when it is not care (GEN-03 refuses insurance,
    employment, third-party expertise); "" = care of the patient.
    ``background``: unattended work (hot folder, batch, queue resumed at start-up): consultation is then
    refused (AUTH-03), deposits are allowed.
    ``reason``: the emergency reason for this call (else the patient handle's current one).
    ``deadline``: ``time.monotonic()`` value after which the operation stops (``DeadlineExceeded``).
    """

    purpose: str = ""
    background: bool = False
    reason: str = ""
    deadline: float | None = None
    cancel: CancelToken | None = None
    progress: Progress | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def with_timeout(cls, seconds: float, **kw: object) -> Context:
        return cls(deadline=time.monotonic() + seconds, **kw)  # type: ignore[arg-type]

    def check(self) -> None:
        """Raise ``Cancelled`` / ``DeadlineExceeded`` when the operation must stop."""
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineExceeded()

    def report(self, step_fr: str, done: int, total: int) -> None:
        if self.progress is not None:
            try:
                self.progress(step_fr, done, total)
            except Exception:  # noqa: S110 - a progress display must never break the operation
                pass

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


DEFAULT_CONTEXT = Context()

__all__ = [
    "CANCEL_LATENCY_S",
    "DEFAULT_CONTEXT",
    "CancelToken",
    "Cancelled",
    "Context",
    "DeadlineExceeded",
    "Progress",
]


def run_interruptible(fn: Callable[[], T], ctx: Context, *, name: str = "ps-agent-call") -> T:
    """Run ``fn`` (a DMP or INSi call) so that a cancellation or the deadline stops the wait within
    ``CANCEL_LATENCY_S``: the call runs in a worker thread, with the caller's context variables (its
    exchange recorder), and is abandoned (its answer dropped) when the caller stops waiting."""
    ctx.check()
    if ctx.cancel is None and ctx.deadline is None:
        return fn()
    wake = threading.Event()
    box: dict[str, Any] = {}
    run_ctx = contextvars.copy_context()

    def work() -> None:
        try:
            box["value"] = run_ctx.run(fn)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            wake.set()

    remove = ctx.cancel.on_cancel(wake.set) if ctx.cancel is not None else (lambda: None)
    try:
        threading.Thread(target=work, name=name, daemon=True).start()
        wake.wait(ctx.remaining())
    finally:
        remove()
    if "value" in box:
        return box["value"]  # type: ignore[no-any-return]
    if ctx.cancel is not None and ctx.cancel.cancelled:  # a failure caused by the cancellation is one
        raise Cancelled() from box.get("error")
    if "error" in box:
        raise box["error"]
    ctx.check()
    raise Cancelled()
