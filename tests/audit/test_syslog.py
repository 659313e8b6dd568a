"""Forwarding to a syslog collector, RFC 5424 over TLS with RFC 5425 framing, against a loopback listener."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ps_agent.audit.journal import AuditJournal
from ps_agent.audit.syslog import SyslogForwarder, format_message, frame
from tests.audit.conftest import FakeClock, make_event
from tests.audit.syslog_server import SyslogTlsCollector, make_server_cert, parse


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_server_cert(tmp_path)


@pytest.fixture
def collector(cert: tuple[Path, Path]) -> Iterator[SyslogTlsCollector]:
    c = SyslogTlsCollector(*cert)
    yield c
    c.close()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_message_format_and_framing(journal: AuditJournal) -> None:
    rec = journal.append(
        make_event(
            1,
            outcome="refused",
            error_code="PAT-01",
            reason='motif "cité" ] fin',
            access_mode="bris_de_glace",
        )
    )
    raw = format_message(rec, hostname="poste-accueil", procid="4242")
    framed = frame(raw)
    assert framed.startswith(str(len(raw)).encode() + b" <84>1 ")  # authpriv(10)*8 + warning(4)
    msg = parse(raw)
    assert (msg.version, msg.timestamp, msg.hostname, msg.app_name, msg.procid, msg.msgid) == (
        1,
        rec.timestamp,
        "poste-accueil",
        "ps-agent",
        "4242",
        "dmp.retrieve",
    )
    assert msg.sd["_id"] == "audit@32473"
    assert msg.sd["seq"] == "1" and msg.sd["hash"] == rec.hash and msg.sd["accessMode"] == "bris_de_glace"
    assert msg.msg.startswith("\ufeff")
    body = json.loads(msg.msg[1:])
    assert body["reason"] == 'motif "cité" ] fin' and body["hash"] == rec.hash


def test_records_reach_the_collector_over_tls(
    journal_path: Path, clock: FakeClock, collector: SyslogTlsCollector, cert: tuple[Path, Path]
) -> None:
    fwd = SyslogForwarder("127.0.0.1", collector.port, ca_file=cert[0], hostname="poste-1")
    with AuditJournal(journal_path, clock=clock, forwarder=fwd) as j:
        sent = [j.append(make_event(n, outcome=("success", "refused", "error")[n % 3])) for n in range(5)]
        assert fwd.flush(10)
        got = [collector.get() for _ in range(5)]
    assert [m.sd["seq"] for m in got] == ["1", "2", "3", "4", "5"]
    assert [m.sd["hash"] for m in got] == [r.hash for r in sent]
    assert [m.pri for m in got] == [85, 84, 83, 85, 84]
    assert collector.errors == []
    assert fwd.stats.sent == 5 and fwd.stats.failures == 0


def test_collector_outage_never_blocks_and_backlog_is_sent_later(
    journal_path: Path, clock: FakeClock, cert: tuple[Path, Path]
) -> None:
    port = _free_port()  # nobody listens yet
    fwd = SyslogForwarder(
        "127.0.0.1", port, ca_file=cert[0], retry_initial_s=0.05, retry_max_s=0.2, timeout_s=1
    )
    with AuditJournal(journal_path, clock=clock, forwarder=fwd) as j:
        started = time.monotonic()
        for n in range(3):
            j.append(make_event(n))
        # Appends do not wait for the network: three records well under the connect timeout.
        assert time.monotonic() - started < 1.0
        deadline = time.monotonic() + 5
        while fwd.stats.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fwd.stats.failures >= 1 and "Connection refused" in fwd.stats.last_error
        assert j.verify().ok and j.count() == 3
        collector = SyslogTlsCollector(*cert, port=port)
        try:
            j.append(make_event(3))
            assert fwd.flush(10)
            seqs = sorted({int(collector.get().sd["seq"]) for _ in range(4)})
            assert seqs == [1, 2, 3, 4]
        finally:
            collector.close()


def test_backlog_survives_a_restart(journal_path: Path, clock: FakeClock, cert: tuple[Path, Path]) -> None:
    """Records written while no forwarder ran are sent by the next one; already sent ones are not resent."""
    with AuditJournal(journal_path, clock=clock) as j:
        j.append(make_event(1))
        j.append(make_event(2))
    collector = SyslogTlsCollector(*cert)
    try:
        fwd = SyslogForwarder("127.0.0.1", collector.port, ca_file=cert[0])
        with AuditJournal(journal_path, clock=clock, forwarder=fwd) as j:
            assert fwd.flush(10)
        assert [collector.get().sd["seq"] for _ in range(2)] == ["1", "2"]
        fwd2 = SyslogForwarder("127.0.0.1", collector.port, ca_file=cert[0])
        with AuditJournal(journal_path, clock=clock, forwarder=fwd2) as j:
            j.append(make_event(3))
            assert fwd2.flush(10)
        assert collector.get().sd["seq"] == "3"
        assert collector.messages.empty()
    finally:
        collector.close()


def test_untrusted_collector_certificate_is_refused(
    journal_path: Path, clock: FakeClock, collector: SyslogTlsCollector, tmp_path: Path
) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_cert, _ = make_server_cert(other_dir)  # a CA that did not sign the collector's certificate
    fwd = SyslogForwarder(
        "127.0.0.1", collector.port, ca_file=other_cert, retry_initial_s=0.05, retry_max_s=0.1
    )
    with AuditJournal(journal_path, clock=clock, forwarder=fwd) as j:
        j.append(make_event(1))
        deadline = time.monotonic() + 5
        while fwd.stats.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert fwd.stats.failures >= 1 and "CERTIFICATE_VERIFY_FAILED" in fwd.stats.last_error
    assert fwd.stats.sent == 0 and collector.messages.empty()
