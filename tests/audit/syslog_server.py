"""A loopback TLS syslog collector for the tests: RFC 5425 octet-counted frames, RFC 5424 parsing, a
store of what it received per (source, journal) and the HTTPS "head" service that ``audit verify``
queries (protocol in ``ps_agent.audit.collector``)."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import queue
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


GENESIS = "0" * 64


@dataclass
class JournalCopy:
    """What the collector holds of one journal."""

    records: dict[int, tuple[str, str]] = field(default_factory=dict)  # seq -> (hash, prev_hash)
    conflicts: set[int] = field(default_factory=set)
    checkpoint: dict[str, Any] | None = None
    checkpoint_seq: int = 0

    def head(self) -> tuple[int, str]:
        """Last seq reached from record 1 by an unbroken chain."""
        seq, prev = 0, GENESIS
        while seq + 1 in self.records and self.records[seq + 1][1] == prev:
            seq += 1
            prev = self.records[seq][0]
        return seq, (prev if seq else "")


class CollectorStore:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.journals: dict[tuple[str, str], JournalCopy] = {}

    def add(self, msg: SyslogMessage) -> None:
        journal = msg.sd.get("journal", "")
        with self.lock:
            copy = self.journals.setdefault((msg.hostname, journal), JournalCopy())
            if msg.msgid == "audit.checkpoint":
                seq = int(msg.sd["seq"])
                if seq > copy.checkpoint_seq:
                    copy.checkpoint = json.loads(msg.msg.lstrip("\ufeff"))
                    copy.checkpoint_seq = seq
                return
            seq = int(msg.sd["seq"])
            entry = (msg.sd["hash"], msg.sd["prevHash"])
            if seq in copy.records and copy.records[seq] != entry:
                copy.conflicts.add(seq)  # keep the first one received
                return
            copy.records.setdefault(seq, entry)

    def head(self, source: str) -> dict[str, Any]:
        with self.lock:
            out = []
            for (host, journal), copy in sorted(self.journals.items()):
                if host != source:
                    continue
                seq, digest = copy.head()
                out.append(
                    {
                        "journal": journal,
                        "seq": seq,
                        "hash": digest,
                        "conflicts": sorted(copy.conflicts),
                        "checkpoint": copy.checkpoint,
                    }
                )
        return {"source": source, "journals": out}


class _HeadHandler(http.server.BaseHTTPRequestHandler):
    store: CollectorStore

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/ps-agent/audit/head" or "source" not in query:
            self.send_error(404)
            return
        body = json.dumps(self.server.store.head(query["source"][0])).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SyslogTlsCollector:
    """Accepts TLS connections on 127.0.0.1, queues every framed message it receives, keeps a store of
    them and serves the head endpoint over HTTPS (``head_url``)."""

    def __init__(self, cert: Path, key: Path, port: int = 0, *, store: CollectorStore | None = None) -> None:
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
        self.store = store or CollectorStore()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeadHandler)
        self._http.store = self.store  # type: ignore[attr-defined]
        self._http.socket = self.ctx.wrap_socket(self._http.socket, server_side=True)
        self.head_url = f"https://127.0.0.1:{self._http.server_address[1]}/ps-agent/audit/head"
        self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.1})
        self._http_thread.daemon = True
        self._http_thread.start()

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
                    msg = parse(rest[:length])
                    self.store.add(msg)
                    self.messages.put(msg)
                    buf = rest[length:]
        except Exception as exc:  # recorded for the test to see, never a silent thread death
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def wait_for(self, source: str, seq: int, checkpoint_seq: int = 0, timeout: float = 10.0) -> None:
        """Poll (with a deadline) until the store holds, for ``source``, a journal whose chain reaches
        ``seq`` and whose last checkpoint covers ``checkpoint_seq`` (TCP delivery is not reception)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.store.lock:
                done = any(
                    host == source and copy.head()[0] >= seq and copy.checkpoint_seq >= checkpoint_seq
                    for (host, _), copy in self.store.journals.items()
                )
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"collector did not receive up to seq {seq} from {source}")
            time.sleep(0.01)

    def get(self, timeout: float = 10.0) -> SyslogMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)
        self._http.shutdown()
        self._http.server_close()
        self._http_thread.join(2)
