"""A loopback TLS syslog collector for the tests: RFC 5425 octet-counted frames, RFC 5424 parsing."""

from __future__ import annotations

import datetime as dt
import ipaddress
import queue
import re
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_server_cert(directory: Path) -> tuple[Path, Path]:
    """Self-signed collector certificate (SAN localhost + 127.0.0.1); returns (cert, key) PEM paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "collecteur-syslog-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "collector.pem", directory / "collector.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class SyslogMessage:
    raw: bytes
    pri: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, str]
    msg: str


_HEADER = re.compile(rb"^<(\d{1,3})>(\d) (\S+) (\S+) (\S+) (\S+) (\S+) (\[.*?(?<!\\)\]|-) ?(.*)$", re.DOTALL)
_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(raw: bytes) -> SyslogMessage:
    m = _HEADER.match(raw)
    if not m:
        raise ValueError(f"not an RFC 5424 message: {raw[:80]!r}")
    sd_text = m.group(8).decode("utf-8")
    sd = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _PARAM.findall(sd_text)}
    sd["_id"] = sd_text[1:].split(" ", 1)[0] if sd_text != "-" else ""
    return SyslogMessage(
        raw,
        int(m.group(1)),
        int(m.group(2)),
        m.group(3).decode(),
        m.group(4).decode(),
        m.group(5).decode(),
        m.group(6).decode(),
        m.group(7).decode(),
        sd,
        m.group(9).decode("utf-8"),
    )


class SyslogTlsCollector:
    """Accepts TLS connections on 127.0.0.1 and queues every framed message it receives."""

    def __init__(self, cert: Path, key: Path, port: int = 0) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages: queue.Queue[SyslogMessage] = queue.Queue()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            buf = b""
            while not self._stop.is_set():
                try:
                    chunk = tls.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buf += chunk
                while b" " in buf:
                    length_text, _, rest = buf.partition(b" ")
                    if not length_text.isdigit():
                        self.errors.append(f"bad frame length {length_text[:20]!r}")
                        return
                    length = int(length_text)
                    if len(rest) < length:
                        break
                    self.messages.put(parse(rest[:length]))
                    buf = rest[length:]
        except (OSError, ValueError) as exc:
            self.errors.append(str(exc))
        finally:
            conn.close()

    def get(self, timeout: float = 10.0) -> SyslogMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)
