"""Background work off the GUI thread, the shape of Anki's ``QueryOp``.

``Op(parent, fn)`` describes one core call: ``fn(ctx)`` runs on the session's worker thread with a
``Context`` whose ``cancel`` token the UI can trigger and whose ``progress`` reaches the GUI thread;
``.success(cb)`` / ``.failure(cb)`` / ``.finally_(cb)`` run on the GUI thread (queued through a Qt signal).
``fn`` must never touch a widget. ``Worker`` owns ONE thread (one per session, so a session's calls run
in order); ``Worker.run(op)`` returns an ``OpHandle`` whose ``cancel()`` stops the call within the
core's promise (``ps_agent.context.CANCEL_LATENCY_S``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal, Slot

from ps_agent.context import Cancelled, CancelToken, Context

log = logging.getLogger(__name__)
T = TypeVar("T")


class _MainThreadRelay(QObject):
    """Runs callables on the thread this object lives in (the GUI thread), via a queued signal."""

    posted = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.posted.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("callback on the GUI thread failed")


_relay: _MainThreadRelay | None = None


def run_on_main(fn: Callable[[], None]) -> None:
    """Queue ``fn`` for the GUI thread (call once from the GUI thread first: ``install_relay()``)."""
    assert _relay is not None, "install_relay() must be called on the GUI thread first"
    _relay.posted.emit(fn)


def install_relay() -> None:
    global _relay
    if _relay is None or not shiboken6.isValid(_relay):
        _relay = _MainThreadRelay()


class OpHandle:
    """A submitted operation: ``cancel()`` (any thread), ``done``, ``label``."""

    def __init__(self, label: str, token: CancelToken) -> None:
        self.label = label
        self.token = token
        self.done = threading.Event()

    def cancel(self) -> None:
        self.token.cancel()


class Op(Generic[T]):
    """One core call to run in the background (see the module docstring)."""

    def __init__(self, parent: QObject | None, fn: Callable[[Context], T], *, label: str = "") -> None:
        self.parent = parent
        self.fn = fn
        self.label = label
        self._success: Callable[[T], None] | None = None
        self._failure: Callable[[BaseException], None] | None = None
        self._finally: Callable[[], None] | None = None
        self._progress: Callable[[str, int, int], None] | None = None

    def success(self, cb: Callable[[T], None]) -> Op[T]:
        self._success = cb
        return self

    def failure(self, cb: Callable[[BaseException], None]) -> Op[T]:
        self._failure = cb
        return self

    def finally_(self, cb: Callable[[], None]) -> Op[T]:
        self._finally = cb
        return self

    def with_progress(self, cb: Callable[[str, int, int], None]) -> Op[T]:
        self._progress = cb
        return self

    def _alive(self) -> bool:
        return self.parent is None or shiboken6.isValid(self.parent)


class Worker(QObject):
    """One background thread for one session (or for the services). Signals (GUI thread):
    ``busy(label, handle)`` when an operation starts, ``idle()`` when the queue is empty,
    ``progress(step_fr, done, total)``, ``failed(exc)`` for failures no ``.failure`` handled."""

    busy = Signal(str, object)
    idle = Signal()
    progress = Signal(str, int, int)
    failed = Signal(object)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        install_relay()
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ui-{name}")
        self._pending = 0
        self._current: OpHandle | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def current(self) -> OpHandle | None:
        return self._current

    def run(self, op: Op[Any]) -> OpHandle:
        token = CancelToken()
        handle = OpHandle(op.label, token)
        if self._closed:
            raise RuntimeError("worker closed")
        self._pending += 1

        def report(step: str, done: int, total: int) -> None:
            def show() -> None:
                if shiboken6.isValid(self):
                    self.progress.emit(step, done, total)
                if op._progress is not None and op._alive():
                    op._progress(step, done, total)

            run_on_main(show)

        ctx = Context(cancel=token, progress=report)

        def started() -> None:
            if shiboken6.isValid(self):
                self._current = handle
                self.busy.emit(op.label, handle)

        def job() -> None:
            run_on_main(started)
            try:
                value = op.fn(ctx)
            except BaseException as exc:  # delivered to the GUI thread, never lost
                error: BaseException | None = exc
                value = None
            else:
                error = None
            handle.done.set()
            run_on_main(lambda: self._finish(op, handle, value, error))

        self._pool.submit(job)
        return handle

    def _finish(self, op: Op[Any], handle: OpHandle, value: Any, error: BaseException | None) -> None:
        if not shiboken6.isValid(self):
            return
        self._pending -= 1
        if self._current is handle:
            self._current = None
        try:
            if op._alive():
                if error is None:
                    if op._success is not None:
                        op._success(value)
                elif op._failure is not None:
                    op._failure(error)
                elif not isinstance(error, Cancelled):
                    self.failed.emit(error)
                if op._finally is not None:
                    op._finally()
        finally:
            if self._pending == 0:
                self.idle.emit()

    def cancel_all(self) -> None:
        if self._current is not None:
            self._current.cancel()

    def close(self, *, wait: bool = False) -> None:
        """Cancel the running operation and stop accepting new ones. ``wait``: let the queued operations
        run (e.g. closing the session) and wait for them; otherwise they are dropped."""
        self._closed = True
        self.cancel_all()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
