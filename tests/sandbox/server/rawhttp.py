"""Plain sockets against the sandbox: one TLS connection per request (no client pool), hand-written HTTP/1.1,
process figures from /proc, and the sandbox in a subprocess (``python -m sandbox serve``) for the tests
that measure the server's own memory."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from tests.fixtures.sandbox import ACTIONS, VihfSpec, Wire, envelope

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def client_context(pki: Any, who: str = "gp") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_bundle))
    holder = pki.card(who)
    ctx.load_cert_chain(str(holder.auth_cert_path), str(holder.auth_key_path))
    return ctx


def soap_request(wire: Wire, td: str, body: etree._Element, spec: VihfSpec | None = None) -> bytes:
    """A complete HTTP/1.1 request (``Connection: close``) with a fresh VIHF."""
    service, action = ACTIONS[td]
    env = envelope(action, body, wire.vihf(spec or VihfSpec()), to=wire.sandbox.url(service))
    return http_request(
        "POST",
        urlsplit(wire.sandbox.url(service)).path,
        env,
        {"Content-Type": f'application/soap+xml; charset=UTF-8; action="{action}"'},
    )


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def connect(ctx: ssl.SSLContext, port: int, timeout: float = 30.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def read_reply(sock: socket.socket) -> Reply:
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the headers ({bytes(data)[:80]!r})")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Reply(status, headers, bytes(body))


def exchange(ctx: ssl.SSLContext, port: int, raw: bytes) -> Reply:
    """One request on a new TLS connection, closed afterwards."""
    with connect(ctx, port) as sock:
        sock.sendall(raw)
        return read_reply(sock)


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def status_kib(field: str, pid: int | str = "self") -> int:
    """``VmRSS`` / ``VmHWM`` (peak) of a process, in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert m, field
    return int(m.group(1))


def start_subprocess(
    data: Path, pki_dir: Path, *extra: str, prelude: str = ""
) -> tuple[subprocess.Popen[str], str, int]:
    """``python -m sandbox serve`` on a free port; returns (process, base URL, port). ``prelude``: Python code
    run in the server process first (tests that need to crash it at a precise point)."""
    args = ["serve", "--data", str(data), "--port", "0", "--pki", str(pki_dir), *extra]
    if prelude:
        code = f"{prelude}\nimport runpy, sys\nsys.argv = ['sandbox', *{args!r}]\n"
        code += "runpy.run_module('sandbox', run_name='__main__', alter_sys=True)\n"
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, "-m", "sandbox", *args]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"à l'écoute sur (\S+)", line)
        if m:
            base = m.group(1)
            port = urlsplit(base).port
            assert port is not None
            return proc, base, port
    proc.kill()
    raise RuntimeError("the sandbox did not start")
