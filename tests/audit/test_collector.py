"""The remote collector over real TLS: records and signed checkpoints forwarded, the head service queried
by ``verify``, and the attacks only the collector can reveal (every local file rolled back or replaced)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ps_agent.audit.collector import (
    CollectorConfig,
    CollectorError,
    fetch_head,
    forwarder_from_config,
    forwarder_from_home,
)
from ps_agent.audit.journal import GENESIS_HASH, AuditJournal
from ps_agent.audit.syslog import SyslogForwarder
from ps_agent.auth.software import SoftwareSigner
from ps_agent.cli import main
from sandbox.pki import TestPki
from tests.audit.conftest import FakeClock, finish, make_event, raw_connection, rechain, write_anchor
from tests.audit.syslog_server import SyslogTlsCollector, make_server_cert

SOURCE = "poste-accueil-1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(second=0, microsecond=0))


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "collector-pki"
    d.mkdir()
    return make_server_cert(d)


@pytest.fixture
def collector(cert: tuple[Path, Path]) -> Iterator[SyslogTlsCollector]:
    c = SyslogTlsCollector(*cert)
    yield c
    c.close()


@pytest.fixture
def config(collector: SyslogTlsCollector, cert: tuple[Path, Path]) -> CollectorConfig:
    return CollectorConfig(
        "127.0.0.1", collector.port, ca_file=str(cert[0]), head_url=collector.head_url, source=SOURCE
    )


@pytest.fixture
def signer(test_pki: TestPki) -> SoftwareSigner:
    card = test_pki.card("gp")
    return SoftwareSigner(card.sign_key, card.sign_cert, card.chain)


def _fill(
    path: Path,
    clock: FakeClock,
    config: CollectorConfig,
    collector: SyslogTlsCollector,
    n: int,
    signer: SoftwareSigner | None = None,
) -> None:
    fwd = forwarder_from_config(config)
    with AuditJournal(path, clock=clock, forwarder=fwd, checkpoint_every=5) as j:
        if signer is not None:
            j.set_checkpoint_signer(signer, "carte CPS")
        start = j.last_seq()
        for k in range(start, start + n):
            j.append(make_event(k))
            clock.advance(seconds=1)
        cp = j.checkpoint()
        assert fwd.flush(10)
        collector.wait_for(config.source_name, j.last_seq(), cp.seq if cp else 0)


def _verify(path: Path, config: CollectorConfig) -> object:
    with AuditJournal(path) as j:
        return j.verify(remote=fetch_head(config, j.journal_id))


def test_records_and_checkpoints_reach_the_collector_and_confirm_the_chain(
    journal_path: Path,
    clock: FakeClock,
    config: CollectorConfig,
    collector: SyslogTlsCollector,
    signer: SoftwareSigner,
) -> None:
    _fill(journal_path, clock, config, collector, 7, signer)
    with AuditJournal(journal_path) as j:
        head = fetch_head(config, j.journal_id)
        last = j.records()[-1]
        assert (head.seq, head.hash) == (7, last.hash)
        assert head.checkpoint is not None and head.checkpoint.seq == 7
        assert head.checkpoint.payload == j.checkpoints()[-1].payload
        result = j.verify(remote=head)
    assert result.ok and result.guarantee == "remote" and result.remote_seq == 7
    assert (
        f"Le collecteur 127.0.0.1:{collector.port} détient la même chaîne jusqu'au n° 7"
        in result.guarantee_fr
    )
    messages = [collector.get() for _ in range(collector.messages.qsize())]
    cps = [m for m in messages if m.msgid == "audit.checkpoint"]
    assert [m.sd["seq"] for m in cps] == ["5", "7"] and cps[0].sd["_id"] == "checkpoint@32473"
    assert all(m.hostname == SOURCE and m.sd["journal"] for m in messages)


def test_every_local_file_rolled_back_is_caught_by_the_collector(
    journal_path: Path,
    clock: FakeClock,
    config: CollectorConfig,
    collector: SyslogTlsCollector,
    signer: SoftwareSigner,
    tmp_path: Path,
) -> None:
    """Database, anchor and checkpoint copy all restored from an older backup: consistent locally."""
    _fill(journal_path, clock, config, collector, 10, signer)
    backup = tmp_path / "backup"
    backup.mkdir()
    names = [journal_path.name + s for s in ("", ".anchor", ".checkpoint")]
    for name in names:
        shutil.copy(journal_path.with_name(name), backup / name)
    _fill(journal_path, clock, config, collector, 5, signer)
    for suffix in ("-wal", "-shm"):
        Path(str(journal_path) + suffix).unlink(missing_ok=True)
    for name in names:
        shutil.copy(backup / name, journal_path.with_name(name))
    with AuditJournal(journal_path) as j:
        assert j.verify().ok  # nothing local can tell
    result = _verify(journal_path, config)
    assert not result.ok and result.first_bad_seq == 11  # type: ignore[attr-defined]
    assert "collecteur" in result.message_fr and "s'arrête au n° 10" in result.message_fr  # type: ignore[attr-defined]


def test_rewrite_without_any_checkpoint_is_caught_by_the_collector(
    journal_path: Path, clock: FakeClock, config: CollectorConfig, collector: SyslogTlsCollector
) -> None:
    _fill(journal_path, clock, config, collector, 6)  # no signer: only the collector
    conn = raw_connection(journal_path)
    conn.execute("UPDATE audit_records SET outcome = 'refused' WHERE seq = 3")
    head = rechain(conn, 3)
    finish(conn)
    write_anchor(journal_path, 6, head)
    with AuditJournal(journal_path) as j:
        assert j.verify().guarantee == "local"
    result = _verify(journal_path, config)
    assert not result.ok and result.first_bad_seq == 6  # type: ignore[attr-defined]
    assert "ne correspond pas à celui que détient le collecteur" in result.message_fr  # type: ignore[attr-defined]


def test_emptied_journal_is_caught_by_the_collector(
    journal_path: Path, clock: FakeClock, config: CollectorConfig, collector: SyslogTlsCollector
) -> None:
    _fill(journal_path, clock, config, collector, 4)
    conn = raw_connection(journal_path)
    conn.execute("DELETE FROM audit_records")
    finish(conn)
    write_anchor(journal_path, 0, GENESIS_HASH)
    result = _verify(journal_path, config)
    assert not result.ok and result.first_bad_seq == 1  # type: ignore[attr-defined]


def test_replaced_journal_is_caught_by_the_collector(
    journal_path: Path, clock: FakeClock, config: CollectorConfig, collector: SyslogTlsCollector
) -> None:
    _fill(journal_path, clock, config, collector, 4)
    for suffix in ("", "-wal", "-shm", ".anchor", ".checkpoint"):
        Path(str(journal_path) + suffix).unlink(missing_ok=True)
    with AuditJournal(journal_path, clock=clock) as j:
        j.append(make_event(1))
    result = _verify(journal_path, config)
    assert not result.ok
    assert "détient pour ce poste un autre journal" in result.message_fr  # type: ignore[attr-defined]


def test_untrusted_head_service_is_refused(
    journal_path: Path, clock: FakeClock, config: CollectorConfig, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    wrong_ca, _ = make_server_cert(other)
    bad = CollectorConfig(config.host, config.port, ca_file=str(wrong_ca), head_url=config.head_url)
    with pytest.raises(CollectorError) as info:
        fetch_head(bad, "x")
    assert info.value.code == "COLLECTOR_UNREACHABLE" and "CERTIFICATE_VERIFY_FAILED" in info.value.message_fr


# ------------------------------------------------------------------------------------- configuration


def test_cli_sets_the_collector_and_verify_reports_the_remote_guarantee(
    tmp_path: Path,
    clock: FakeClock,
    collector: SyslogTlsCollector,
    cert: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    code = main(
        [
            "audit", "collector", "--hote", "127.0.0.1", "--port", str(collector.port), "--ca", str(cert[0]),
            "--tete", collector.head_url, "--source", SOURCE, "--dossier", str(home),
        ]
    )  # fmt: skip
    assert code == 0
    saved = home / "collector.json"
    assert json.loads(saved.read_text())["port"] == collector.port
    if os.name != "nt":
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    fwd = forwarder_from_home(home)
    assert isinstance(fwd, SyslogForwarder) and fwd.hostname == SOURCE
    journal = home / "audit.sqlite3"
    with AuditJournal(journal, clock=clock, forwarder=fwd) as j:
        for n in range(3):
            j.append(make_event(n))
        assert fwd.flush(10)
    collector.wait_for(SOURCE, 3)
    capsys.readouterr()
    assert main(["audit", "verify", "--journal", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "Garantie : confirmée à distance" in out and "jusqu'au n° 3" in out
    assert main(["audit", "collector", "--dossier", str(home)]) == 0
    assert f"Collecteur : 127.0.0.1, port {collector.port}" in capsys.readouterr().out
    assert main(["audit", "collector", "--supprimer", "--dossier", str(home)]) == 0
    assert not saved.exists() and forwarder_from_home(home) is None


def test_unreachable_collector_is_said_and_the_guarantee_falls_back(
    tmp_path: Path, clock: FakeClock, cert: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    CollectorConfig(
        "127.0.0.1", 9, ca_file=str(cert[0]), head_url="https://127.0.0.1:9/ps-agent/audit/head"
    ).save(home)
    with AuditJournal(home / "audit.sqlite3", clock=clock) as j:
        j.append(make_event(1))
    assert main(["audit", "verify", "--journal", str(home / "audit.sqlite3")]) == 0
    captured = capsys.readouterr()
    assert "Garantie : locale seulement" in captured.out
    assert "n'a pas pu être interrogé" in captured.err and "confirmation à distance" in captured.err


def test_bad_collector_configuration_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "collector.json").write_text(json.dumps({"host": "c.local", "prot": 6514}))
    with pytest.raises(CollectorError, match="Clé\\(s\\) inconnue\\(s\\)"):
        CollectorConfig.load(home)
    assert main(["audit", "collector", "--hote", "c.local", "--ca", str(tmp_path / "absent.pem"),
                 "--dossier", str(home)]) == 1  # fmt: skip
    assert "Fichier introuvable pour le collecteur" in capsys.readouterr().err
