"""The INSi sandbox listeners: two HTTPS endpoints on loopback, path ``/lps`` (insi.md §7.1).

- *mTLS* (mode A): a client certificate of the test PKI is required at the handshake (unknown or absent
  certificate: the handshake fails); a valid certificate whose CN is not ``INSI-MANU``/``INSI-AUTO`` gets
  the ``DESIR_560`` fault.
- *CPx* (mode B): server-only TLS; the caller is the signed PS assertion.

POST only with ``application/soap+xml`` (else HTTP 405/415, outside the protocol); ``GET /_sandbox/state``
(outside ``/lps``) returns counters for tests. ``start_insi(pki)`` returns a :class:`RunningInsi`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from sandbox.errors import SandboxError
from sandbox.insi.data import InsiStore
from sandbox.insi.service import MODE_CPX, MODE_MTLS, InsiService, InsiSettings
from sandbox.pki import TestPki
from sandbox.server.certs import TrustStore
from sandbox.server.faults import FaultConfig, FaultInjector

log = logging.getLogger("sandbox.insi")

LPS_PATH = "/lps"
STATE_PATH = "/_sandbox/state"
MAX_REQUEST_BYTES = 1024 * 1024  # an INSi request is a few KB


class InsiServerError(SandboxError):
    """The INSi sandbox cannot start (non-loopback host, port in use)."""


def _tls_context(pki: TestPki, *, client_auth: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    if client_auth:
        ctx.load_verify_locations(cafile=str(pki.ca_bundle))
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], tls: ssl.SSLContext, service: InsiService, mode: str
    ) -> None:
        self.tls = tls
        self.service = service
        self.mode = mode
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            tls_sock = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("INSi %s: TLS handshake refused (%s): %s", self.mode, client_address[0], exc)
            with contextlib.suppress(OSError):
                request.close()
            return
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                tls_sock.close()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "ps-agent-sandbox-INSi/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == STATE_PATH:
            self._send(200, json.dumps(self.server.service.state()).encode(), "application/json")
            return
        if urlsplit(self.path).path == LPS_PATH:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"POST attendu.\n", "text/plain; charset=utf-8")
            return
        self._send(HTTPStatus.NOT_FOUND, b"Ressource inconnue.\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != LPS_PATH:
            self._send(HTTPStatus.NOT_FOUND, b"Ressource inconnue.\n", "text/plain; charset=utf-8")
            return
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else HTTPStatus.LENGTH_REQUIRED,
                b"Longueur de requete refusee.\n",
                "text/plain; charset=utf-8",
            )
            return
        body = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/soap+xml":
            self._send(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                b"application/soap+xml attendu.\n",
                "text/plain; charset=utf-8",
            )
            return
        cert: x509.Certificate | None = None
        der = self.connection.getpeercert(binary_form=True)
        if der:
            cert = x509.load_der_x509_certificate(der)
        try:
            answer = self.server.service.handle(body, ctype, cert, self.server.mode)
        except ConnectionAbortedError:  # injected reset: no answer at all
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(answer.status, answer.body, answer.content_type)


@dataclass
class RunningInsi:
    host: str
    mtls_port: int
    cpx_port: int
    service: InsiService
    faults: FaultInjector
    _servers: list[_Server] = field(repr=False)
    _threads: list[threading.Thread] = field(repr=False)

    def _url(self, port: int, path: str = LPS_PATH) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{port}{path}"

    @property
    def mtls_url(self) -> str:
        return self._url(self.mtls_port)

    @property
    def cpx_url(self) -> str:
        return self._url(self.cpx_port)

    @property
    def state_url(self) -> str:
        return self._url(self.cpx_port, STATE_PATH)

    def configure(self, settings: InsiSettings) -> None:
        self.service.configure(settings)

    def stop(self) -> None:
        for server, thread in zip(self._servers, self._threads, strict=True):
            if thread.is_alive():
                server.shutdown()
                thread.join(timeout=10)
            server.server_close()

    def __enter__(self) -> RunningInsi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_insi(
    pki: TestPki,
    *,
    host: str = "127.0.0.1",
    mtls_port: int = 0,
    cpx_port: int = 0,
    store: InsiStore | None = None,
    settings: InsiSettings | None = None,
    faults: FaultConfig | None = None,
    clock: Callable[[], datetime] | None = None,
) -> RunningInsi:
    """Start both INSi listeners (port 0 = any free port) and return once they accept connections."""
    if host == "localhost":
        host = "127.0.0.1"
    if host not in ("127.0.0.1", "::1"):
        raise InsiServerError(
            f"Adresse d'écoute refusée : {host} (le bac à sable INSi n'écoute qu'en local)."
        )
    injector = FaultInjector(faults)
    service = InsiService(
        store or InsiStore.default(),
        TrustStore(pki.roots, pki.intermediates),
        settings=settings,
        faults=injector,
        clock=clock,
    )
    servers: list[_Server] = []
    port = mtls_port
    try:
        for port, mode in ((mtls_port, MODE_MTLS), (cpx_port, MODE_CPX)):
            cls: type[_Server] = _Server6 if ":" in host else _Server
            servers.append(cls((host, port), _tls_context(pki, client_auth=mode == MODE_MTLS), service, mode))
    except OSError as exc:
        for s in servers:
            s.server_close()
        raise InsiServerError(f"Impossible d'écouter sur {host}:{port} : {exc.strerror or exc}.") from None
    threads = []
    for s in servers:
        t = threading.Thread(
            target=s.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name=f"insi-{s.mode}-{s.server_address[1]}",
        )
        t.start()
        threads.append(t)
    return RunningInsi(
        host, servers[0].server_address[1], servers[1].server_address[1], service, injector, servers, threads
    )
