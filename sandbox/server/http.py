"""HTTPS server: ``ThreadingHTTPServer`` + ``ssl`` (client certificate required, TLS 1.2+), HTTP/1.1
keep-alive, request size limit, SOAP/MTOM decoding, VIHF verification, fault injection, dispatch to the
domain layer, SOAP 1.2 (MTOM) responses and faults. Loopback only.

The TLS handshake runs in the connection's worker thread (not in the accept loop), so a slow or hostile
client never blocks other clients. A client certificate that does not chain to the test PKI, or that has
expired, fails the handshake itself (TLS alert), as on the real DMP front end.

Hostile or broken clients (:class:`ServerLimits`): a connection cap (connections beyond it are closed at
once by the accept loop), deadlines for the TLS handshake, for the request line and headers (from the
first byte of a request: slowloris gets a 408 and a closed connection) and for the body (a minimum rate),
and a global budget of request bytes in flight (bodies being read or handled): beyond it a request gets
HTTP 503 with a SOAP ``Receiver`` fault (``sandbox:ServerBusy``) and ``Retry-After``, so a client retries.
Methods other than POST on a SOAP endpoint get HTTP 405 (``Allow: POST``) with a SOAP fault.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from lxml import etree

from sandbox.server import mtom, soap, xmlsafe
from sandbox.server.context import Caller, Service, SoapFault, SoapRequest, SoapResponse
from sandbox.server.faults import INJECTED_FAULT_REASON, NORMAL, FaultConfig, FaultConfigError, FaultInjector
from sandbox.server.vihf import VihfVerifier, partial_caller

log = logging.getLogger("sandbox.server")

# [I] Request size limit: a deposit carries CDA documents (with embedded PDF) of a few MB; 20 MiB leaves
# room for several documents per submission while bounding memory per connection.
MAX_REQUEST_BYTES = 20 * 1024 * 1024
# An oversize body up to this many times the limit is read and thrown away (bounded memory) so that the
# client gets the 413 fault; a larger one gets the fault and a closed connection.
DISCARD_LIMIT_FACTOR = 8
# Idle keep-alive connections are closed after this many seconds.
IDLE_TIMEOUT_S = 30.0
# [I] Limits against hostile or broken clients (values for a loopback test server; one place):
# the TLS handshake must end within HANDSHAKE_TIMEOUT_S of the connection,
HANDSHAKE_TIMEOUT_S = 10.0
# the request line and headers within HEADER_TIMEOUT_S of the request's first byte (slowloris: 408, closed),
HEADER_TIMEOUT_S = 10.0
# the body within BODY_TIMEOUT_S plus its length at BODY_MIN_RATE bytes/s (20 MiB: 10 s + 80 s),
BODY_TIMEOUT_S = 10.0
BODY_MIN_RATE = 256 * 1024
# at most MAX_CONNECTIONS connections at once (a thread each); more are closed by the accept loop,
MAX_CONNECTIONS = 128
# and at most MAX_BYTES_IN_FLIGHT bytes of request bodies read or being handled at once (a deposit is held
# in memory a few times over while it is parsed, verified and stored): beyond it, HTTP 503 + SOAP fault.
MAX_BYTES_IN_FLIGHT = 48 * 1024 * 1024
# Methods a SOAP endpoint answers (SOAP 1.2 part 2 §7: the request-response pattern is a POST; the DMP
# services offer no SOAP-response pattern, so no GET): others get 405 with a SOAP fault.
SOAP_METHODS = ("POST",)
ADMIN_METHODS = ("GET", "PUT", "POST")
# TLS 1.2 suites of PDT-INF-579v4 (dmp-protocol.md §5); TLS 1.3 stays enabled with OpenSSL's defaults.
DMP_TLS12_CIPHERS = ":".join(
    [
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES256-SHA384",
    ]
)
ADMIN_FAULTS_PATH = "/si-dmp-server/admin/faults"


class _ResetConnection(Exception):
    pass


@dataclass(frozen=True)
class ServerLimits:
    """Deadlines and caps of the server (defaults: the module constants above)."""

    max_request_bytes: int = MAX_REQUEST_BYTES
    max_connections: int = MAX_CONNECTIONS
    max_bytes_in_flight: int = MAX_BYTES_IN_FLIGHT
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S
    header_timeout: float = HEADER_TIMEOUT_S
    idle_timeout: float = IDLE_TIMEOUT_S
    body_timeout: float = BODY_TIMEOUT_S
    body_min_rate: int = BODY_MIN_RATE

    def body_deadline(self, length: int) -> float:
        return time.monotonic() + self.body_timeout + length / self.body_min_rate


class ByteBudget:
    """The global budget of request bytes in flight (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.refused = 0

    def try_reserve(self, n: int) -> bool:
        with self._lock:
            if self.in_flight + n > self.limit:
                self.refused += 1
                return False
            self.in_flight += n
            self.peak = max(self.peak, self.in_flight)
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.in_flight -= n


class _DeadlineReader(io.RawIOBase):
    """The connection's raw input with a deadline: each read waits at most until the deadline (or the idle
    timeout when there is none), so a client trickling one byte at a time cannot stretch a phase."""

    def __init__(self, sock: Any, idle_timeout: float) -> None:
        super().__init__()
        self.sock = sock
        self.idle_timeout = idle_timeout
        self.deadline: float | None = None
        self.expired = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self.idle_timeout
        if self.deadline is not None:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                self.expired = True
                raise TimeoutError("deadline passed")
        self.sock.settimeout(timeout)
        try:
            return int(self.sock.recv_into(buffer))
        except TimeoutError:
            if self.deadline is not None:
                self.expired = True
            raise


def make_tls_context(server_cert: str, server_key: str, ca_bundle: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(DMP_TLS12_CIPHERS)
    ctx.load_cert_chain(server_cert, server_key)
    ctx.load_verify_locations(cafile=ca_bundle)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        *,
        tls: ssl.SSLContext,
        service: Service,
        verifier: VihfVerifier,
        faults: FaultInjector,
        limits: ServerLimits | None = None,
    ) -> None:
        self.tls = tls
        self.service = service
        self.verifier = verifier
        self.faults = faults
        self.limits = limits or ServerLimits()
        self.max_request_bytes = self.limits.max_request_bytes
        self.budget = ByteBudget(self.limits.max_bytes_in_flight)
        self.active_connections = 0
        self.refused_connections = 0
        self.cert_cache: dict[bytes, x509.Certificate] = {}
        self.cert_cache_lock = threading.Lock()
        self.requests_served = 0
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SoapHandler)

    def close_connections(self) -> None:
        """Shut down every open client connection (keep-alive ones included) so stop() is prompt."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Accept loop: beyond the connection cap, close at once (no thread, no TLS handshake)."""
        with self._connections_lock:
            refuse = self.active_connections >= self.limits.max_connections
            if refuse:
                self.refused_connections += 1
            else:
                self.active_connections += 1
        if refuse:
            log.info(
                "connexion refusée (%s) : %d connexions ouvertes",
                client_address[0],
                self.limits.max_connections,
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._connections_lock:
                self.active_connections -= 1
            raise

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake here, in the worker thread; the socket timeout bounds the whole handshake.
        request.settimeout(self.limits.handshake_timeout)
        with self._connections_lock:
            self._connections.add(request)
        try:
            self._serve_connection(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)
                self.active_connections -= 1

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        # responses are written in one piece; no Nagle delay waiting for the client's delayed ACK
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls_sock = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("poignée de main TLS refusée (%s) : %s", client_address[0], exc)
            with contextlib.suppress(OSError):
                request.close()
            return
        with self._connections_lock:
            self._connections.discard(request)
            self._connections.add(tls_sock)
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(tls_sock)
            with contextlib.suppress(OSError):
                tls_sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("unexpected error while serving %s", client_address)

    def peer_certificate(self, der: bytes) -> x509.Certificate:
        with self.cert_cache_lock:
            cert = self.cert_cache.get(der)
        if cert is None:
            cert = x509.load_der_x509_certificate(der)
            with self.cert_cache_lock:
                if len(self.cert_cache) > 1024:
                    self.cert_cache.clear()
                self.cert_cache[der] = cert
        return cert


class SoapHandler(BaseHTTPRequestHandler):
    server: SandboxHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "ps-agent-sandbox-DMP/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stdlib's reader: replaced by one with deadlines
        limits = self.server.limits
        self._reader = _DeadlineReader(self.connection, limits.idle_timeout)
        self._input = io.BufferedReader(self._reader, 65536)
        self.rfile = self._input
        self._reserved = 0
        self._responded = False
        self._served = 0  # requests begun on this connection

    # -- low-level helpers -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self._responded = True
        if self.command == "HEAD":  # the headers a GET would get, no body
            body_out = b""
        else:
            body_out = body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        # headers and body in a single write (one TLS record run, no small-segment stall)
        self._headers_buffer.append(b"\r\n")
        self.connection.settimeout(self.server.limits.idle_timeout)
        self.wfile.write(b"".join(self._headers_buffer) + body_out)
        self._headers_buffer = []

    def _send_fault(
        self,
        fault: SoapFault,
        relates_to: str | None,
        status: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        log.info(
            "%s %s -> faute SOAP %s : %s",
            self.address_string(),
            self.path,
            fault.subcode or fault.code,
            fault.reason_fr,
        )
        body = soap.build_fault(fault, relates_to)
        self._send(
            status or soap.fault_http_status(fault),
            body,
            f'{mtom.SOAP_CT}; charset=UTF-8; action="{soap.WSA_FAULT_ACTION}"',
            extra,
        )

    def _reset(self) -> None:
        """Drop the connection with a TCP RST and no response."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raise _ResetConnection

    def handle_one_request(self) -> None:
        reader = self._reader
        reader.deadline = None
        reader.expired = False
        self._responded = False
        # attributes send_response needs even when the request line never arrives
        self.request_version = "HTTP/1.1"
        self.requestline = ""
        self.command = ""
        self.path = ""
        limits = self.server.limits
        try:
            # wait for the first byte of the next request (a new connection: its first request must come
            # within the header deadline; between keep-alive requests: the idle timeout); then the header
            # deadline runs
            reader.idle_timeout = limits.idle_timeout if self._served else limits.header_timeout
            if not self._input.peek(1):
                self.close_connection = True
                return
            self._served += 1
            reader.idle_timeout = limits.idle_timeout
            reader.deadline = time.monotonic() + limits.header_timeout
            super().handle_one_request()  # catches TimeoutError itself (then closes)
            if reader.expired and not self._responded:
                self._timed_out()
        except _ResetConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.close()
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError) as exc:
            log.debug("connection dropped: %s", exc)
            self.close_connection = True
        finally:
            if self._reserved:
                self.server.budget.release(self._reserved)
                self._reserved = 0

    def _timed_out(self) -> None:
        """Headers or body not received in time: 408 with a SOAP fault, connection closed."""
        self.close_connection = True
        limits = self.server.limits
        with contextlib.suppress(OSError, ssl.SSLError):
            self._send_fault(
                SoapFault(
                    "Requête incomplète : en-têtes ou corps non reçus dans le délai imparti "
                    f"({limits.header_timeout:g} s pour les en-têtes, {limits.body_timeout:g} s + "
                    f"{limits.body_min_rate // 1024} Kio/s pour le corps). Connexion fermée.",
                    subcode="sandbox:RequestTimeout",
                ),
                None,
                HTTPStatus.REQUEST_TIMEOUT,
            )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors of the HTTP layer itself (bad request line, headers too long, unknown method): a SOAP
        fault too, never the stdlib's HTML page."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            reason = f"Méthode HTTP inconnue : « {self.command} » (le DMP attend POST)."
            subcode = "sandbox:MethodNotAllowed"
        else:
            reason = f"Requête HTTP invalide ({code} {phrase})."
            subcode = "sandbox:BadHttpRequest"
        fault = SoapFault(reason, subcode=subcode, detail=message or None)
        with contextlib.suppress(OSError, ssl.SSLError):
            self._send_fault(fault, None, code, {"Allow": ", ".join(SOAP_METHODS)} if code == 501 else None)

    def _not_allowed(self) -> None:
        """A method other than POST on a SOAP endpoint (GET/PUT only on the admin one)."""
        path = unquote(urlsplit(self.path).path)
        # a body we do not read cannot stay on a keep-alive connection
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") or self.headers.get(
            "Transfer-Encoding"
        ):
            self.close_connection = True
        service = path[len(soap.BASE_PATH) :].strip("/") if path.startswith(soap.BASE_PATH) else ""
        if path != ADMIN_FAULTS_PATH and service not in soap.ACTIONS:
            self._send_fault(
                SoapFault(f"Service inconnu : « {path} ».", subcode="sandbox:UnknownService"),
                None,
                HTTPStatus.NOT_FOUND,
            )
            return
        allowed = ADMIN_METHODS if path == ADMIN_FAULTS_PATH else SOAP_METHODS
        self._send_fault(
            SoapFault(
                f"Méthode HTTP {self.command} non autorisée sur « {path} » : "
                f"{', '.join(allowed)} attendu (SOAP 1.2 sur HTTP).",
                subcode="sandbox:MethodNotAllowed",
            ),
            None,
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"Allow": ", ".join(allowed)},
        )

    do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    # -- HTTP verbs ------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if urlsplit(self.path).path == ADMIN_FAULTS_PATH:
            self._admin_get()
            return
        self._not_allowed()

    def do_PUT(self) -> None:
        if urlsplit(self.path).path == ADMIN_FAULTS_PATH:
            self._admin_put()
            return
        self._not_allowed()

    def _read_body(self) -> bytes | None:
        """Read the body under the size limit; answer the error and return None when refused."""
        te = self.headers.get("Transfer-Encoding", "").lower().strip()
        if te == "chunked":
            return self._read_chunked()
        if te not in ("", "identity"):
            self.close_connection = True
            self._refuse_early(
                SoapFault(f"Transfer-Encoding non pris en charge : {te}.", subcode="sandbox:LengthRequired"),
                None,
                HTTPStatus.NOT_IMPLEMENTED,
            )
            return None
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text) if length_text is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._refuse_early(
                SoapFault("En-tête Content-Length absent ou invalide.", subcode="sandbox:LengthRequired"),
                None,
                HTTPStatus.LENGTH_REQUIRED,
            )
            return None
        if length > self.server.max_request_bytes:
            # Never stored: discarded in small chunks (so the client reads the answer instead of a TCP
            # reset), or, beyond DISCARD_LIMIT_FACTOR x the limit, the connection is simply closed.
            self._reader.deadline = self.server.limits.body_deadline(length)
            self.close_connection = not self._discard(length)
            self._too_large(length)
            return None
        if not self._reserve(length):
            self._reader.deadline = self.server.limits.body_deadline(length)
            self.close_connection = not self._discard(length)
            self._busy()
            return None
        self._reader.deadline = self.server.limits.body_deadline(length)
        body = self.rfile.read(length)  # one allocation of the body's size
        self._reader.deadline = None
        if len(body) < length:  # the client went away in the middle of its body
            raise ConnectionError("request body truncated")
        return body

    def _reserve(self, n: int) -> bool:
        if not self.server.budget.try_reserve(n):
            return False
        self._reserved += n
        return True

    def _busy(self) -> None:
        budget = self.server.budget
        self._refuse_early(
            SoapFault(
                "Le DMP de test est momentanément surchargé (trop de données de requêtes en cours de "
                f"traitement, limite {budget.limit} octets) : réessayez dans un instant.",
                code="Receiver",
                subcode="sandbox:ServerBusy",
            ),
            None,
            HTTPStatus.SERVICE_UNAVAILABLE,
            {"Retry-After": "1"},
        )

    def _too_large(self, length: int | None) -> None:
        size = f"{length} octets ; " if length is not None else ""
        self._refuse_early(
            SoapFault(
                f"Requête trop volumineuse ({size}limite {self.server.max_request_bytes} octets).",
                subcode="sandbox:RequestTooLarge",
            ),
            None,
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )

    def _read_chunked(self) -> bytes | None:
        """HTTP/1.1 chunked body, refused as soon as it passes the size limit."""
        out = bytearray()
        limit = self.server.max_request_bytes
        # the whole chunked body within the deadline of a body of the size limit
        self._reader.deadline = self.server.limits.body_deadline(limit)
        try:
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers are ignored
                    self._reader.deadline = None
                    return bytes(out)
                if len(out) + size > limit:
                    self.close_connection = True
                    self._too_large(None)
                    return None
                if not self._reserve(size):
                    self.close_connection = True
                    self._busy()
                    return None
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise ConnectionError("chunked request body truncated")
                out += chunk
                self.rfile.readline(8)
        except ValueError:
            self.close_connection = True
            self._refuse_early(
                SoapFault("Corps HTTP « chunked » mal formé.", subcode="sandbox:LengthRequired"),
                None,
                HTTPStatus.BAD_REQUEST,
            )
            return None

    def _discard(self, length: int) -> bool:
        if length > DISCARD_LIMIT_FACTOR * self.server.max_request_bytes:
            return False
        remaining = length
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    return False
                remaining -= len(chunk)
        except (OSError, ssl.SSLError):
            return False
        return True

    def _admin_get(self) -> None:
        payload = {"config": self.server.faults.config.to_dict(), "counts": self.server.faults.counts()}
        self._send(HTTPStatus.OK, json.dumps(payload).encode(), "application/json")

    def _admin_put(self) -> None:
        self._early_service = "admin"
        body = self._read_body()
        if body is None:
            return
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise FaultConfigError("Un objet JSON est attendu.")
            self.server.faults.configure(FaultConfig.from_dict(data))
        except (ValueError, FaultConfigError) as exc:
            msg = exc.args[0] if isinstance(exc, FaultConfigError) else f"JSON invalide : {exc}"
            self._send(HTTPStatus.BAD_REQUEST, json.dumps({"erreur": msg}).encode(), "application/json")
            return
        self._admin_get()

    def do_POST(self) -> None:
        received_at = datetime.now(UTC)
        path = unquote(urlsplit(self.path).path)
        if path == ADMIN_FAULTS_PATH:
            self._admin_put()
            return
        service = path[len(soap.BASE_PATH) :].strip("/") if path.startswith(soap.BASE_PATH) else ""
        self._early_service = service or path
        body = self._read_body()
        if body is None:
            return
        if service not in soap.ACTIONS:
            self._refuse_early(
                SoapFault(f"Service inconnu : « {path} ».", subcode="sandbox:UnknownService"),
                None,
                HTTPStatus.NOT_FOUND,
            )
            return
        self.server.requests_served += 1
        envelope: soap.Envelope | None = None
        tls_cert: x509.Certificate | None = None
        security = None
        try:
            der = self.connection.getpeercert(binary_form=True)
            if not der:  # cannot happen with CERT_REQUIRED; defensive
                raise SoapFault("Certificat client TLS absent.", subcode="wsse:FailedAuthentication")
            tls_cert = self.server.peer_certificate(der)
            root_bytes, parts, http_action = self._decode(body)
            root = xmlsafe.parse(root_bytes)
            envelope = soap.check_envelope(root, service, http_action)
            security = envelope.security
            caller = self.server.verifier.verify(envelope.security, tls_cert, service)
            attachments = _resolve_xop(envelope.body, parts)
        except SoapFault as fault:
            caller_guess = partial_caller(security, tls_cert)
            action = envelope.action if envelope is not None else ""
            self._trace_refusal(caller_guess, service, action, fault.reason_fr)
            self._send_fault(fault, envelope.message_id if envelope is not None else None)
            return
        except Exception:  # a server-layer bug must still get an answer, and the server keeps serving
            log.exception("unexpected error while checking a %s request", service)
            self._send_fault(
                SoapFault(
                    "Erreur interne du DMP (bac à sable).", code="Receiver", subcode="sandbox:InternalError"
                ),
                envelope.message_id if envelope is not None else None,
            )
            return
        request = SoapRequest(
            service=service,
            action=envelope.action,
            message_id=envelope.message_id,
            body=envelope.body,
            attachments=attachments,
            caller=caller,
            received_at=received_at,
        )
        self._dispatch(request)

    def _decode(self, body: bytes) -> tuple[bytes, dict[str, bytes], str | None]:
        ctype = mtom.parse_content_type(self.headers.get("Content-Type", ""))
        action = ctype.params.get("action")
        if ctype.mime == "multipart/related":
            root, parts = mtom.parse_multipart(body, ctype)
            return root, parts, action
        if ctype.mime == "text/xml":
            raise SoapFault(
                "Content-Type text/xml (SOAP 1.1) refusé : le DMP attend application/soap+xml (SOAP 1.2).",
                code="VersionMismatch",
            )
        if ctype.mime != mtom.SOAP_CT:
            raise SoapFault(
                f"Content-Type non pris en charge : « {ctype.mime} » (application/soap+xml ou MTOM attendu).",
                subcode="sandbox:UnsupportedMediaType",
            )
        return body, {}, action

    def _refuse_early(
        self,
        fault: SoapFault,
        relates_to: str | None,
        status: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """A refusal before the envelope is read (size, length, unknown service): traced with the caller
        known from the TLS certificate, then answered."""
        tls_cert = None
        try:
            der = self.connection.getpeercert(binary_form=True)
            tls_cert = self.server.peer_certificate(der) if der else None
        except Exception:  # tracing is best effort; the refusal is answered anyway
            tls_cert = None
        service = getattr(self, "_early_service", "")
        self._trace_refusal(partial_caller(None, tls_cert), service, "", fault.reason_fr)
        self._send_fault(fault, relates_to, status, extra)

    def _trace_refusal(self, caller: Caller | None, service: str, action: str, reason: str) -> None:
        trace = getattr(self.server.service, "trace_refusal", None)
        if trace is None:
            return
        try:
            trace(caller, service, action, reason)
        except Exception:
            log.exception("trace_refusal failed")

    def _dispatch(self, request: SoapRequest) -> None:
        decision = self.server.faults.decide(request.action)
        if decision.latency_ms:
            time.sleep(decision.latency_ms / 1000.0)
        outcome = decision.outcome
        if outcome == "reset_before_commit":
            self._reset()
        if outcome == "http_500":
            self._send(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "Erreur interne simulée (injection de panne).\n".encode(),
                "text/plain; charset=UTF-8",
            )
            return
        if outcome == "http_503":
            self._send(
                HTTPStatus.SERVICE_UNAVAILABLE,
                b"Service temporairement indisponible (injection de panne).\n",
                "text/plain; charset=UTF-8",
                {"Retry-After": "1"},
            )
            return
        if outcome == "soap_fault":
            self._send_fault(
                SoapFault(INJECTED_FAULT_REASON, code="Receiver", subcode="sandbox:InjectedFault"),
                request.message_id,
            )
            return
        try:
            response = self.server.service.handle(request)
        except SoapFault as fault:
            if outcome == "reset_after_commit":
                self._reset()
            self._send_fault(fault, request.message_id)
            return
        except Exception:
            log.exception("domain layer failed on %s", request.action)
            self._send_fault(
                SoapFault(
                    "Erreur interne du DMP (bac à sable).", code="Receiver", subcode="sandbox:InternalError"
                ),
                request.message_id,
            )
            return
        if outcome == "reset_after_commit":
            self._reset()
        assert outcome == NORMAL or outcome == "reset_after_commit"
        self._send_response(response, request.message_id)

    def _send_response(self, response: SoapResponse, relates_to: str) -> None:
        log.info("%s %s -> %s", self.address_string(), self.path, response.action)
        envelope = soap.build_envelope(response.action, relates_to, response.body)
        if response.attachments:
            body, ctype = mtom.build_multipart(envelope, response.attachments, response.action)
        else:
            body, ctype = envelope, f'{mtom.SOAP_CT}; charset=UTF-8; action="{response.action}"'
        self._send(HTTPStatus.OK, body, ctype)


def _resolve_xop(body: etree._Element, parts: dict[str, bytes]) -> dict[str, bytes]:
    """Check every xop:Include names an MTOM part; normalise inline base64 ``xdsb:Document`` content into an
    attachment referenced by an ``xop:Include`` so the domain layer sees one shape."""
    attachments: dict[str, bytes] = {}
    for include in body.iter(f"{{{soap.XOP_NS}}}Include"):
        cid = mtom.normalise_cid(include.get("href", ""))
        if cid not in parts:
            raise SoapFault(
                f"Pièce MTOM manquante : la référence xop:Include « cid:{cid} » ne désigne "
                "aucune partie du message.",
                subcode="sandbox:MissingMtomPart",
            )
        attachments[cid] = parts[cid]
        include.set("href", f"cid:{cid}")
    for n, doc in enumerate(body.iter(f"{{{soap.XDSB_NS}}}Document")):
        if doc.find(f"{{{soap.XOP_NS}}}Include") is not None:
            continue
        text = "".join((doc.text or "").split())
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise SoapFault(
                f"Contenu base64 invalide dans xdsb:Document « {doc.get('id', '')} ».",
                subcode="sandbox:InvalidBase64",
            ) from None
        cid = f"inline-{n}-{doc.get('id', '')}@sandbox"
        attachments[cid] = data
        doc.text = None
        etree.SubElement(doc, f"{{{soap.XOP_NS}}}Include", href=f"cid:{cid}")
    return attachments
