"""Optional forwarding of audit records to a syslog collector: RFC 5424 messages over TLS (RFC 5425).

Off by default; an establishment that centralises audit configures host, port and its CA. Design:

- **Never blocks the journal.** ``notify`` only wakes a background thread. The thread reads the records
  to send *from the journal itself* (``seq`` > the last forwarded one, kept in the journal's
  ``audit_forward_state`` table), so the queue survives restarts and a collector outage: records are
  sent when the collector comes back (retry with exponential back-off, ``retry_initial_s`` ..
  ``retry_max_s``). Failures are counted in ``stats`` and logged through ``logging`` (not in the journal,
  which would loop).
- **Framing**: RFC 5425 octet counting, ``MSG-LEN SP SYSLOG-MSG``.
- **Message**: ``<PRI>1 TIMESTAMP HOSTNAME ps-agent PROCID MSGID [audit@32473 ...] BOM{json}`` where PRI
  uses facility authpriv (10), severity notice (success/pending), warning (refused) or error (error);
  MSGID is the action; the structured data carries seq, hash and prev_hash so the collector holds the
  chain outside this machine (a rewritten local journal no longer matches it); MSG is the record as JSON.
  32473 is the IANA example enterprise number (RFC 5612) [I]: replace it with the editor's PEN.
- The structured data also carries ``journal`` (the journal's id), so a collector tells the journals
  of one workstation apart and notices a replaced one.
- **Signed checkpoints** (``ps_agent.audit.checkpoint``) are forwarded too, from the journal's
  ``audit_checkpoints`` table (progress kept under ``<name>:checkpoints``): MSGID ``audit.checkpoint``,
  ``[checkpoint@32473 journal= n= seq= head= signer=]``, MSG = BOM + the checkpoint JSON (signed payload,
  signature, certificate): the collector keeps a copy the workstation cannot rewrite.
- Delivery is at-least-once across reconnections (a record whose write failed is resent); a collector
  can de-duplicate on ``seq`` + ``hash``.
- Configuration from the agent's home: ``ps_agent.audit.collector`` (``collector.json``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ps_agent.audit.checkpoint import Checkpoint
from ps_agent.audit.journal import AuditRecord, record_to_dict

if TYPE_CHECKING:
    from ps_agent.audit.journal import AuditJournal

log = logging.getLogger(__name__)

FACILITY_AUTHPRIV = 10
SEVERITY = {"success": 5, "pending": 5, "refused": 4, "error": 3}
PEN = "32473"  # [I] example PEN (RFC 5612); one place to change
SD_ID = f"audit@{PEN}"
SD_CHECKPOINT = f"checkpoint@{PEN}"
CHECKPOINT_MSGID = "audit.checkpoint"
APP_NAME = "ps-agent"
BOM = "\ufeff"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _ascii_token(value: str, limit: int) -> str:
    token = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return token or "-"


def format_message(
    record: AuditRecord, *, hostname: str, procid: str | None = None, journal_id: str = ""
) -> bytes:
    """One RFC 5424 message (without the octet-count frame)."""
    ev = record.event
    pri = FACILITY_AUTHPRIV * 8 + SEVERITY.get(ev.outcome, 3)
    params = {
        "journal": journal_id,
        "seq": str(record.seq),
        "hash": record.hash,
        "prevHash": record.prev_hash,
        "outcome": ev.outcome,
        "actor": ev.actor_id_nat,
        "authMode": ev.auth_mode,
        "patient": ev.patient_ins,
        "accessMode": ev.access_mode,
        "transaction": ev.transaction,
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items() if v) + "]"
    header = " ".join(
        (
            f"<{pri}>1",
            record.timestamp,
            _ascii_token(hostname, 255),
            APP_NAME,
            _ascii_token(procid or str(os.getpid()), 128),
            _ascii_token(ev.action, 32),
            sd,
        )
    )
    body = json.dumps(record_to_dict(record), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return (header + " " + BOM + body).encode("utf-8")


def format_checkpoint(
    cp: Checkpoint, *, hostname: str, procid: str | None = None, timestamp: str | None = None
) -> bytes:
    """The RFC 5424 message carrying a signed checkpoint."""
    pri = FACILITY_AUTHPRIV * 8 + 5
    params = {
        "journal": cp.journal_id,
        "n": str(cp.number),
        "seq": str(cp.seq),
        "head": cp.head,
        "signer": cp.signer_name,
    }
    sd = "[" + SD_CHECKPOINT + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items() if v) + "]"
    header = " ".join(
        (
            f"<{pri}>1",
            timestamp or cp.timestamp,
            _ascii_token(hostname, 255),
            APP_NAME,
            _ascii_token(procid or str(os.getpid()), 128),
            CHECKPOINT_MSGID,
            sd,
        )
    )
    return (header + " " + BOM + cp.to_json()).encode("utf-8")


def frame(message: bytes) -> bytes:
    """RFC 5425 octet-counting frame."""
    return str(len(message)).encode("ascii") + b" " + message


@dataclass
class ForwarderStats:
    sent: int = 0
    failures: int = 0
    last_error: str = ""
    last_seq: int = 0
    checkpoints_sent: int = 0
    last_checkpoint_id: int = 0
    connected: bool = False


class SyslogForwarder:
    """Forward the journal's records to ``host:port`` over TLS; attach by passing it to ``AuditJournal``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        server_hostname: str | None = None,
        hostname: str | None = None,
        name: str = "syslog",
        timeout_s: float = 5.0,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
        batch: int = 200,
    ) -> None:
        self.host, self.port = host, int(port)
        if ssl_context is None:
            ssl_context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
            if client_cert:
                ssl_context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
        self._ctx = ssl_context
        self._server_hostname = server_hostname or host
        self.hostname = hostname or socket.gethostname()
        self.name = name
        self.timeout_s = timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.batch = batch
        self.stats = ForwarderStats()
        self._cp_state = f"{name}:checkpoints"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._sock: ssl.SSLSocket | None = None
        self._thread: threading.Thread | None = None
        self._journal: AuditJournal | None = None

    # -- Forwarder protocol ------------------------------------------------------------------------
    def attach(self, journal: AuditJournal) -> None:
        self._journal = journal
        self._thread = threading.Thread(target=self._run, name=f"audit-{self.name}", daemon=True)
        self._thread.start()
        self._wake.set()  # send any backlog left by a previous run

    def notify(self, record: AuditRecord) -> None:
        self._wake.set()

    def notify_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is left while the collector is reachable (the journal's final checkpoint), then stop."""
        if self.stats.connected and self._thread is not None and self._thread.is_alive():
            self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._disconnect(graceful=True)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every committed record and checkpoint has been sent (True) or the timeout expires."""
        if self._journal is None:
            return True
        deadline = time.monotonic() + timeout_s
        target = self._journal.last_seq()
        cp_target = self._journal.last_checkpoint_id()
        self._wake.set()
        with self._idle:
            while self.stats.last_seq < target or self.stats.last_checkpoint_id < cp_target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.1))
        return True

    # -- internals ----------------------------------------------------------------------------------
    def _run(self) -> None:
        assert self._journal is not None
        conn = self._journal.connect_reader()
        try:
            row = conn.execute(
                "SELECT last_seq FROM audit_forward_state WHERE name = ?", (self.name,)
            ).fetchone()
            self.stats.last_seq = int(row[0]) if row else 0
            row = conn.execute(
                "SELECT last_seq FROM audit_forward_state WHERE name = ?", (self._cp_state,)
            ).fetchone()
            self.stats.last_checkpoint_id = int(row[0]) if row else 0
            delay = self.retry_initial_s
            while not self._stop.is_set():
                self._wake.wait()
                self._wake.clear()
                while not self._stop.is_set():
                    pending = list(
                        self._journal.iter_records(after_seq=self.stats.last_seq, limit=self.batch, conn=conn)
                    )
                    checkpoints = self._journal.iter_checkpoint_rows(self.stats.last_checkpoint_id, conn)
                    if not pending and not checkpoints:
                        with self._idle:
                            self._idle.notify_all()
                        break
                    try:
                        if pending:
                            self._send(pending)
                        if checkpoints:
                            self._send_checkpoints([cp for _, cp in checkpoints])
                    except (OSError, ssl.SSLError) as exc:
                        self.stats.failures += 1
                        self.stats.last_error = f"{type(exc).__name__}: {exc}"
                        log.warning("audit forwarding to %s:%s failed: %s", self.host, self.port, exc)
                        self._disconnect()
                        if self._stop.wait(delay):
                            return
                        delay = min(delay * 2, self.retry_max_s)
                        continue
                    delay = self.retry_initial_s
                    if pending:
                        self.stats.last_seq = pending[-1].seq
                        conn.execute(
                            "INSERT OR REPLACE INTO audit_forward_state(name, last_seq) VALUES (?, ?)",
                            (self.name, self.stats.last_seq),
                        )
                    if checkpoints:
                        self.stats.last_checkpoint_id = checkpoints[-1][0]
                        conn.execute(
                            "INSERT OR REPLACE INTO audit_forward_state(name, last_seq) VALUES (?, ?)",
                            (self._cp_state, self.stats.last_checkpoint_id),
                        )
                    with self._idle:
                        self._idle.notify_all()
        finally:
            conn.close()

    def _connect(self) -> ssl.SSLSocket:
        if self._sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            try:
                self._sock = self._ctx.wrap_socket(raw, server_hostname=self._server_hostname)
            except BaseException:
                raw.close()
                raise
            self.stats.connected = True
        return self._sock

    def _disconnect(self, *, graceful: bool = False) -> None:
        """Close the connection. ``graceful``: end our side (FIN after the data) and read what the collector
        still sends (TLS 1.3 session tickets) before closing - closing with unread data makes the kernel
        send a reset, and a collector that had not read the last messages yet would lose them."""
        sock = self._sock
        self._sock = None
        self.stats.connected = False
        if sock is None:
            return
        if graceful:
            try:
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(1.0)
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline and sock.recv(4096):
                    pass
            except (OSError, ValueError):
                pass
        try:
            sock.close()
        except OSError:
            pass

    def _send(self, records: list[AuditRecord]) -> None:
        sock = self._connect()
        journal_id = self._journal.journal_id if self._journal is not None else ""
        payload = b"".join(
            frame(format_message(r, hostname=self.hostname, journal_id=journal_id)) for r in records
        )
        sock.sendall(payload)
        self.stats.sent += len(records)

    def _send_checkpoints(self, checkpoints: list[Checkpoint]) -> None:
        sock = self._connect()
        sock.sendall(b"".join(frame(format_checkpoint(cp, hostname=self.hostname)) for cp in checkpoints))
        self.stats.checkpoints_sent += len(checkpoints)
