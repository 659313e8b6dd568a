"""Hand a rendered document to the system's web browser without writing it to disk (issue 11 §5,
dmp-ui-requirements 7.2 « Ouvrir dans le navigateur », 7.3 « nothing kept »).

A one-shot HTTP server on the loopback interface (127.0.0.1 or ::1 only, a random free port) serves the
HTML held in memory at one path carrying an unguessable token (``secrets.token_urlsafe``), **once**, then
stops; when nobody fetches it, it stops after ``lifetime_s``. Any other path (or a wrong ``Host``) gets
404 and does not use up the answer. The answer says ``Cache-Control: no-store`` so the browser keeps no
copy on disk, and a restrictive ``Content-Security-Policy`` (no script, no network, inline style and
``data:`` images only) since the narrative comes from a third-party document.

Standard library only (``http.server`` in a daemon thread, ``select``-based waits): the same on Windows
and Linux, no Qt, so the window and any other front-end can use it.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from ps_agent.errors import ConfigurationError

# [I] How long an unfetched page stays available: the browser starts within seconds; a minute covers a
# cold start of a heavy browser on a slow workstation without leaving the door open for long.
DEFAULT_LIFETIME_S = 60.0
LOOPBACK_BIND = ("127.0.0.1", "::1")
# Per-connection socket timeout: a client that connects and says nothing cannot hold the server.
_REQUEST_TIMEOUT_S = 5.0
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


class ShareError(ConfigurationError):
    """The page could not be offered (a non-loopback address asked for, no free port)."""

    def __init__(self, message_fr: str, *, code: str = "VIEWER_SHARE") -> None:
        super().__init__(message_fr, code=code)


class _Server(HTTPServer):
    allow_reuse_address = False  # a random port, never shared with another process

    def __init__(self, address: tuple[str, int], share: OneShotPage) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.share = share
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _REQUEST_TIMEOUT_S
    server_version = "ps-agent"
    sys_version = ""

    def do_GET(self) -> None:
        share = self.server.share
        body = share._take(self.path, self.headers.get("Host", ""))
        if body is None:
            self._answer(404, b"Not found", "text/plain; charset=utf-8")
            return
        self._answer(200, body, "text/html; charset=utf-8")

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, status: int, body: bytes, media: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class OneShotPage:
    """Serve ``html`` once at ``url`` (loopback, random port, random token), then stop.

    ``OneShotPage(html).start()`` returns the URL to open; ``served`` tells whether the browser fetched
    it; ``wait(timeout)`` waits for the server to stop; ``close()`` stops it early. Usable as a context
    manager."""

    def __init__(self, html: str | bytes, *, host: str = "127.0.0.1", lifetime_s: float = DEFAULT_LIFETIME_S):
        if host not in LOOPBACK_BIND:
            raise ShareError(
                f"Adresse « {host} » refusée : la page n'est servie que sur la boucle locale "
                f"({' ou '.join(LOOPBACK_BIND)}).",
                code="VIEWER_SHARE_NOT_LOOPBACK",
            )
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be positive")
        self._body = html.encode("utf-8") if isinstance(html, str) else bytes(html)
        self._host = host
        self._lifetime_s = lifetime_s
        self._token = secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._served = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- public ----------------------------------------------------------------------------
    def start(self) -> str:
        try:
            self._server = _Server((self._host, 0), self)
        except OSError as exc:
            raise ShareError(
                f"Impossible d'ouvrir un port local pour le navigateur : {exc.strerror or exc}."
            ) from exc
        port = self._server.server_address[1]
        netloc = f"[{self._host}]:{port}" if ":" in self._host else f"{self._host}:{port}"
        self._netloc = netloc
        self.url = f"http://{netloc}/{self._token}"
        self._thread = threading.Thread(target=self._serve, name="viewer-share", daemon=True)
        self._thread.start()
        return self.url

    @property
    def served(self) -> bool:
        with self._lock:
            return self._served

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the server stopped (answered, expired or closed); True when it did."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def close(self, *, wait: bool = True) -> None:
        """Stop serving (``wait=False``: only ask, for a GUI thread; the server stops within 0.2 s)."""
        self._stop.set()
        if wait:
            self.wait(2 * _REQUEST_TIMEOUT_S)

    def __enter__(self) -> OneShotPage:
        if not self.url:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server side -----------------------------------------------------------------------
    def _take(self, path: str, host: str) -> bytes | None:
        """The body for the one right request, None for anything else (wrong path/host, already served)."""
        if host != self._netloc or not secrets.compare_digest(path, "/" + self._token):
            return None
        with self._lock:
            if self._served:
                return None
            self._served = True
        body, self._body = self._body, b""  # nothing kept once handed over
        self._stop.set()
        return body

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        deadline = time.monotonic() + self._lifetime_s
        try:
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                server.timeout = min(left, 0.2)  # wake up to see close()/expiry
                server.handle_request()
        finally:
            server.server_close()
            self._body = b""


def share_html(html: str | bytes, *, lifetime_s: float = DEFAULT_LIFETIME_S) -> OneShotPage:
    """Start a :class:`OneShotPage` for ``html``; its ``url`` is ready to open."""
    page = OneShotPage(html, lifetime_s=lifetime_s)
    page.start()
    return page


__all__ = ["DEFAULT_LIFETIME_S", "LOOPBACK_BIND", "OneShotPage", "ShareError", "share_html"]
