"""A loopback HTTPS server that REQUIRES a client certificate and reports which one it saw.

Real ``ssl`` + ``http.server`` in a thread: it answers every request with JSON
``{"client_subject": ..., "client_cert_sha256": ..., "cipher": ..., "version": ..., "body_len": ...}``.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509

from ps_agent.auth.tls import DMP_SUITES_OPENSSL


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body are separate writes: without NODELAY, Nagle + delayed ACK add ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sock = self.connection
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der) if der else None
        payload = json.dumps(
            {
                "client_subject": cert.subject.rfc4514_string() if cert else None,
                "client_cert_sha256": hashlib.sha256(der).hexdigest() if der else None,
                "cipher": sock.cipher()[0] if sock.cipher() else None,
                "version": sock.version(),
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextmanager
def mtls_server(
    server_cert: Path,
    server_key: Path,
    client_ca: Path,
    *,
    tls12_dmp_only: bool = True,
    cert_chain: Path | None = None,
) -> Iterator[str]:
    """Yield the base URL ``https://127.0.0.1:<port>`` of a server requiring a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(client_ca))
    ctx.load_cert_chain(str(cert_chain or server_cert), str(server_key))
    if tls12_dmp_only:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(DMP_SUITES_OPENSSL)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
