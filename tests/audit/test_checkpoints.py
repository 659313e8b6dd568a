"""Signed checkpoints: a tamperer with the user's file rights (sqlite3, the anchor, hash recomputation)
is caught once a checkpoint exists, and ``verify`` says which guarantee applied."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ps_agent.audit.checkpoint import Checkpoint
from ps_agent.audit.journal import GENESIS_HASH, AuditJournal
from ps_agent.auth.software import SoftwareSigner
from sandbox.pki import TestPki
from tests.audit.conftest import (
    FakeClock,
    append_events,
    do_nothing_triggers,
    finish,
    make_event,
    raw_connection,
    rechain,
    write_anchor,
)


@pytest.fixture
def clock() -> FakeClock:
    """Starts now: the test PKI's certificates are valid from their generation on, and checkpoints are
    checked against the CA at their signing time."""
    return FakeClock(datetime.now(UTC).replace(second=0, microsecond=0))


@pytest.fixture
def signer(test_pki: TestPki) -> SoftwareSigner:
    """The gp card's signature key and certificate (test IGC-Santé), held in memory."""
    card = test_pki.card("gp")
    return SoftwareSigner(card.sign_key, card.sign_cert, card.chain)


@pytest.fixture
def signed(journal_path: Path, clock: FakeClock, signer: SoftwareSigner) -> Path:
    """10 records, checkpoints every 5 (at 5 and 10), closed."""
    j = AuditJournal(journal_path, clock=clock, monotonic=clock.monotonic, checkpoint_every=5)
    j.set_checkpoint_signer(signer, "carte CPS")
    for n in range(10):
        j.append(make_event(n, reason=f"motif {n}"))
        clock.advance(seconds=1)
    j.close()
    return journal_path


def _verify(path: Path, **kwargs: object) -> object:
    with AuditJournal(path) as j:
        return j.verify(**kwargs)  # type: ignore[arg-type]


def test_checkpoints_are_signed_stored_and_copied(
    signed: Path, signer: SoftwareSigner, clock: FakeClock
) -> None:
    with AuditJournal(signed) as j:
        cps = j.checkpoints()
        records = j.records()
        result = j.verify()
        journal_id = j.journal_id
    assert [(c.number, c.seq) for c in cps] == [(1, 5), (2, 10)]
    assert [c.head for c in cps] == [records[4].hash, records[9].hash]
    assert all(c.journal_id == journal_id and c.label == "carte CPS" for c in cps)
    # The signature checks with the certificate alone (independently of our verify code).
    signer.certificate.public_key().verify(  # type: ignore[union-attr]
        cps[1].signature, cps[1].payload.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    payload = json.loads(cps[1].payload)
    assert payload["seq"] == 10 and payload["head"] == records[9].hash and payload["journal"] == journal_id
    copy = Checkpoint.from_json(signed.with_name(signed.name + ".checkpoint").read_text())
    assert copy.payload == cps[1].payload
    assert result.ok and result.guarantee == "signed" and result.signed_seq == 10
    assert "Garantie : signée" in result.guarantee_fr
    assert "n° 1 à 10 sont couverts par le point de contrôle n° 2 signé par" in result.guarantee_fr
    signed_at = clock.now - timedelta(seconds=1)  # the last record's time (close() signed right after)
    assert f"le {signed_at:%d/%m/%Y à %H:%M} UTC" in result.guarantee_fr


def test_guarantee_is_local_without_checkpoint(journal: AuditJournal) -> None:
    journal.append(make_event(1))
    result = journal.verify()
    assert result.ok and result.guarantee == "local"
    assert "Garantie : locale seulement" in result.guarantee_fr
    assert "aurait pu la réécrire entièrement" in result.guarantee_fr


def test_records_after_the_last_checkpoint_are_said_to_be_local_only(signed: Path, clock: FakeClock) -> None:
    with AuditJournal(signed, clock=clock) as j:
        j.append(make_event(11))
        result = j.verify()
    assert result.ok and result.guarantee == "signed"
    assert "Les enregistrements n° 11 à 11 ne sont protégés que localement." in result.guarantee_fr


def test_signer_certificate_checked_against_the_ca_bundle(
    signed: Path, test_pki: TestPki, foreign_pki: TestPki
) -> None:
    assert _verify(signed, signer_ca=test_pki.ca_bundle).ok  # type: ignore[attr-defined]
    bad = _verify(signed, signer_ca=foreign_pki.ca_bundle)
    assert not bad.ok and bad.first_bad_checkpoint == 1  # type: ignore[attr-defined]
    assert "n'est pas reconnu" in bad.message_fr  # type: ignore[attr-defined]


def test_automatic_checkpoints_and_signer_lifecycle(
    journal_path: Path, clock: FakeClock, signer: SoftwareSigner, test_pki: TestPki
) -> None:
    org = test_pki.establishment
    org_signer = SoftwareSigner(org.sign_key, org.sign_cert, org.chain)
    with AuditJournal(journal_path, clock=clock, monotonic=clock.monotonic, checkpoint_every=4) as j:
        j.append(make_event(1, outcome="refused", error_code="PIN_WRONG"))  # before any session
        j.set_checkpoint_signer(signer, "carte CPS")  # signs what came before the session
        assert [c.seq for c in j.checkpoints()] == [1]
        for n in range(2, 8):
            j.append(make_event(n))
        assert [c.seq for c in j.checkpoints()] == [1, 5]  # every 4 records
        j.set_checkpoint_signer(None)  # session closing: signs its last records
        assert [c.seq for c in j.checkpoints()] == [1, 5, 7]
        j.append(make_event(8))
        assert j.checkpoint() is None  # no signer
        j.set_checkpoint_signer(org_signer, "établissement (AIR)")
        last = j.checkpoints()[-1]
        assert (last.seq, last.label, last.number) == (8, "établissement (AIR)", 4)
        assert j.checkpoint() == last  # nothing new: no second signature
        j.append(make_event(9))
    with AuditJournal(journal_path) as j:
        cps = j.checkpoints()
        assert cps[-1].seq == 9  # close() signed the tail
        result = j.verify(signer_ca=test_pki.ca_bundle)
    assert result.ok and result.signed_seq == 9
    assert cps[-1].signer_name in result.guarantee_fr


def test_automatic_checkpoints_count_from_the_last_one_any_handle_signed(
    journal_path: Path, clock: FakeClock, signer: SoftwareSigner
) -> None:
    """Each handle remembers the last checkpoint it saw and asks the database only when that one says a
    checkpoint is due: one signed meanwhile by another handle (process) still defers the next."""
    with (
        AuditJournal(journal_path, clock=clock, checkpoint_every=4) as a,
        AuditJournal(journal_path, clock=clock, checkpoint_every=4) as b,
    ):
        a.set_checkpoint_signer(signer, "carte CPS")
        b.set_checkpoint_signer(signer, "carte CPS")
        append_events(a, 4)  # 1-4: a signs at 4
        append_events(b, 4)  # 5-8: b signs at 8
        append_events(a, 3)  # 9-11: a last saw 4, the database says 8: not due
        assert [c.seq for c in a.checkpoints()] == [4, 8]
        append_events(a, 1)  # 12
        assert [c.seq for c in b.checkpoints()] == [4, 8, 12]
        assert a.verify().ok


def test_a_failing_signer_never_breaks_an_append(journal: AuditJournal, signer: SoftwareSigner) -> None:
    class RemovedCard:
        certificate = signer.certificate
        chain = signer.chain

        def sign(self, data: bytes) -> bytes:
            raise RuntimeError("carte retirée")

    journal.checkpoint_every = 1
    journal.set_checkpoint_signer(RemovedCard(), "carte CPS")
    rec = journal.append(make_event(1))
    assert rec.seq == 1 and journal.checkpoints() == []
    with pytest.raises(RuntimeError, match="carte retirée"):
        journal.checkpoint()  # the explicit call reports it


# ------------------------------------------------------------------------------------------ attacks


def test_edit_rechain_and_new_anchor_is_caught(signed: Path) -> None:
    """On main this passed as « intègre »: every hash recomputed, anchor rewritten."""
    conn = raw_connection(signed)
    conn.execute("UPDATE audit_records SET reason = 'motif réécrit' WHERE seq = 7")
    head = rechain(conn, 7)
    finish(conn)
    write_anchor(signed, 10, head)
    result = _verify(signed)
    assert not result.ok and result.first_bad_checkpoint == 2  # type: ignore[attr-defined]
    assert "ne correspond plus à l'enregistrement n° 10" in result.message_fr  # type: ignore[attr-defined]
    assert "entre le n° 6 et le n° 10" in " ".join(result.problems)  # type: ignore[attr-defined]


def test_truncation_with_rolled_back_anchor_is_caught(signed: Path) -> None:
    conn = raw_connection(signed)
    h7 = conn.execute("SELECT hash FROM audit_records WHERE seq = 7").fetchone()[0]
    conn.execute("DELETE FROM audit_records WHERE seq > 7")
    finish(conn)
    write_anchor(signed, 7, h7)
    result = _verify(signed)
    assert not result.ok and result.first_bad_seq == 8  # type: ignore[attr-defined]
    assert "couvre les enregistrements n° 1 à 10, le journal s'arrête au n° 7" in result.message_fr  # type: ignore[attr-defined]


def test_truncation_with_checkpoints_deleted_from_the_database_is_caught(signed: Path) -> None:
    """The copy outside the database still holds the last checkpoint."""
    conn = raw_connection(signed)
    h7 = conn.execute("SELECT hash FROM audit_records WHERE seq = 7").fetchone()[0]
    conn.execute("DELETE FROM audit_records WHERE seq > 7")
    conn.execute("DELETE FROM audit_checkpoints")
    finish(conn)
    write_anchor(signed, 7, h7)
    result = _verify(signed)
    assert not result.ok and result.first_bad_seq == 8  # type: ignore[attr-defined]
    assert "copie audit.sqlite3.checkpoint" in result.message_fr  # type: ignore[attr-defined]


def test_older_copy_of_the_database_with_its_anchor_is_caught(
    signed: Path, clock: FakeClock, signer: SoftwareSigner, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for name in (signed.name, signed.name + ".anchor"):
        shutil.copy(signed.with_name(name), old / name)
    with AuditJournal(signed, clock=clock, checkpoint_every=5) as j:
        j.set_checkpoint_signer(signer, "carte CPS")
        for n in range(10, 15):
            j.append(make_event(n))
    for suffix in ("-wal", "-shm"):
        Path(str(signed) + suffix).unlink(missing_ok=True)
    for name in (signed.name, signed.name + ".anchor"):  # restored, consistent with each other
        shutil.copy(old / name, signed.with_name(name))
    result = _verify(signed)
    assert not result.ok and result.first_bad_seq == 11  # type: ignore[attr-defined]
    assert "le journal s'arrête au n° 10" in result.message_fr  # type: ignore[attr-defined]


def test_emptied_journal_with_anchor_at_zero_is_caught(signed: Path) -> None:
    conn = raw_connection(signed)
    conn.execute("DELETE FROM audit_records")
    conn.execute("DELETE FROM audit_checkpoints")
    finish(conn)
    write_anchor(signed, 0, GENESIS_HASH)
    result = _verify(signed)
    assert not result.ok and result.first_bad_seq == 1  # type: ignore[attr-defined]
    assert "le journal s'arrête au n° 0" in result.message_fr  # type: ignore[attr-defined]


def test_replaced_journal_is_caught(signed: Path, clock: FakeClock) -> None:
    """A brand-new journal put in place of the old one (new database, new anchor)."""
    for suffix in ("", "-wal", "-shm", ".anchor"):
        Path(str(signed) + suffix).unlink(missing_ok=True)
    with AuditJournal(signed, clock=clock) as j:
        j.append(make_event(1))
        result = j.verify()
    assert not result.ok and result.first_bad_checkpoint == 2
    assert "appartient à un autre journal" in result.message_fr


def test_anchor_reset_to_zero_is_caught(signed: Path) -> None:
    conn = raw_connection(signed)
    conn.execute("DELETE FROM audit_records WHERE seq > 1")
    finish(conn)
    write_anchor(signed, 0, GENESIS_HASH)
    result = _verify(signed)
    assert not result.ok and result.first_bad_seq == 2  # type: ignore[attr-defined]


def test_anchor_reset_to_zero_is_caught_locally_when_records_remain(journal: AuditJournal) -> None:
    """Without any checkpoint: an anchor at 0 under several records is not a crash."""
    for n in range(3):
        journal.append(make_event(n))
    write_anchor(journal.path, 0, GENESIS_HASH)
    result = journal.verify()
    assert not result.ok and "remise à zéro" in result.message_fr


def test_forged_insert_with_rechain_is_caught(signed: Path) -> None:
    conn = raw_connection(signed)
    for seq in range(10, 5, -1):
        conn.execute("UPDATE audit_records SET seq = ? WHERE seq = ?", (seq + 1, seq))
    conn.execute(
        "INSERT INTO audit_records SELECT 6, timestamp, clock_note, 'dmp.consent', outcome, actor_id_nat, "
        "actor_name, actor_profession, auth_mode, card_serial, structure_id, patient_ins, transaction_code, "
        "document_ids, access_mode, reason, error_code, detail, on_behalf_of, rule_id, prev_hash, hash "
        "FROM audit_records WHERE seq = 5"
    )
    head = rechain(conn, 6)
    finish(conn)
    write_anchor(signed, 11, head)
    result = _verify(signed)
    assert not result.ok and result.first_bad_checkpoint == 2  # type: ignore[attr-defined]


def test_do_nothing_triggers_with_the_same_names_are_caught(signed: Path) -> None:
    """On main the triggers were checked by name only."""
    conn = sqlite3.connect(signed)
    do_nothing_triggers(conn)
    conn.commit()
    conn.close()
    result = _verify(signed)
    assert not result.ok
    assert "remplacées par des déclencheurs qui ne protègent plus" in result.message_fr  # type: ignore[attr-defined]
    assert "audit_no_update" in result.message_fr  # type: ignore[attr-defined]


def test_edited_checkpoint_is_caught(signed: Path) -> None:
    conn = raw_connection(signed)
    data = json.loads(conn.execute("SELECT data FROM audit_checkpoints WHERE number = 1").fetchone()[0])
    payload = json.loads(data["payload"])
    payload["seq"] = 4
    data["payload"] = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    conn.execute("UPDATE audit_checkpoints SET data = ? WHERE number = 1", (json.dumps(data),))
    finish(conn)
    result = _verify(signed)
    assert not result.ok and result.first_bad_checkpoint == 1  # type: ignore[attr-defined]
    assert "signature invalide" in result.message_fr  # type: ignore[attr-defined]


def test_checkpoint_signed_by_someone_else_fails_against_the_ca(
    signed: Path, foreign_pki: TestPki, test_pki: TestPki, clock: FakeClock
) -> None:
    """A tamperer rewrites everything and signs his own checkpoint: the CA bundle refuses his key."""
    other = foreign_pki.card("gp")
    conn = raw_connection(signed)
    conn.execute("UPDATE audit_records SET reason = 'réécrit' WHERE seq = 2")
    rechain(conn, 2)
    conn.execute("DELETE FROM audit_checkpoints")
    finish(conn)
    signed.with_name(signed.name + ".checkpoint").unlink()
    with AuditJournal(signed, clock=clock) as j:
        j.set_checkpoint_signer(SoftwareSigner(other.sign_key, other.sign_cert, other.chain), "carte CPS")
    bad = _verify(signed, signer_ca=test_pki.ca_bundle)
    assert not bad.ok and "n'est pas reconnu" in bad.message_fr  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ crash and durability


def test_crash_right_after_creation_gives_no_false_alarm(journal_path: Path, clock: FakeClock) -> None:
    anchor = journal_path.with_name(journal_path.name + ".anchor")
    with AuditJournal(journal_path, clock=clock) as j:
        assert json.loads(anchor.read_text())["seq"] == 0  # written at creation
    anchor.write_bytes(b"")  # power lost right after the file was created
    with AuditJournal(journal_path, clock=clock) as j:
        assert j.verify().ok
        j.append(make_event(1))
    anchor.write_bytes(b"\0" * 128)  # a crash before the first anchor write reached the disk
    with AuditJournal(journal_path, clock=clock) as j:
        result = j.verify()
        assert result.ok, result.message_fr
        j.append(make_event(2))  # the next append repairs it
        assert json.loads(anchor.read_text())["seq"] == 2
        assert j.verify().ok


def test_anchor_is_fsynced(journal: AuditJournal, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    synced: list[int] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name, None)
        if real is None:
            continue

        def spy(fd: int, real: object = real) -> None:
            synced.append(os.fstat(fd).st_ino)
            real(fd)  # type: ignore[operator]

        monkeypatch.setattr(os, name, spy)
    journal.append(make_event(1))
    journal.append(make_event(2))
    assert synced.count(journal.anchor_path.stat().st_ino) >= 2  # after each commit


# ------------------------------------------------------------------------------------------ CLI


def test_cli_verify_prints_the_guarantee_and_names_the_bad_checkpoint(
    signed: Path, test_pki: TestPki, capsys: pytest.CaptureFixture[str]
) -> None:
    from ps_agent.cli import main

    args = ["audit", "verify", "--journal", str(signed), "--ca-signataires", str(test_pki.ca_bundle)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "10 enregistrement(s) vérifié(s)" in out and "Garantie : signée" in out
    conn = raw_connection(signed)
    conn.execute("UPDATE audit_records SET reason = 'réécrit' WHERE seq = 8")
    head = rechain(conn, 8)
    finish(conn)
    write_anchor(signed, 10, head)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Premier point de contrôle en cause : n° 2" in err
    assert "entre le n° 6 et le n° 10" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ the emulated card


@pytest.mark.pcsc
def test_checkpoint_signed_by_the_card_in_the_reader(
    virtual_card: object, journal_path: Path, clock: FakeClock, test_pki: TestPki
) -> None:
    """The real path: the emulated CPS card in pcscd's vpcd reader signs the checkpoint."""
    from ps_agent.auth.session import AuthSession

    virtual_card.insert("gp")  # type: ignore[attr-defined]
    session = AuthSession.open(virtual_card.reader_name, "1234")  # type: ignore[attr-defined]
    try:
        with AuditJournal(journal_path, clock=clock) as j:
            j.set_checkpoint_signer(session.vihf_signer(), "carte CPS")
            for n in range(3):
                j.append(make_event(n))
            cp = j.checkpoint()
            assert cp is not None and cp.seq == 3
            assert cp.certificate == test_pki.card("gp").sign_cert
            j.set_checkpoint_signer(None)
            result = j.verify(signer_ca=test_pki.ca_bundle)
    finally:
        session.close()
    assert result.ok and result.guarantee == "signed", result.message_fr


def test_signer_certificate_is_checked_at_each_checkpoint_time(
    journal_path: Path, test_pki: TestPki, signer: SoftwareSigner
) -> None:
    """A checkpoint made while the card's certificate is valid passes, one made after it expired does not."""
    clock = FakeClock(datetime.now(UTC))
    with AuditJournal(journal_path, clock=clock, checkpoint_every=100) as j:
        j.set_checkpoint_signer(signer, "carte CPS")
        j.append(make_event(1))
        assert j.checkpoint() is not None
        clock.now = signer.certificate.not_valid_after_utc + timedelta(days=1)
        j.append(make_event(2))
        assert j.checkpoint() is not None
        assert j.verify().ok  # the signatures themselves are fine
        result = j.verify(signer_ca=test_pki.ca_bundle)
    assert not result.ok and result.first_bad_checkpoint == 2
    assert "non valide à cette date" in result.message_fr


def test_deleted_journal_with_its_checkpoint_left_is_a_failed_verification(
    signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ps_agent.cli import main

    for suffix in ("", "-wal", "-shm"):
        Path(str(signed) + suffix).unlink(missing_ok=True)
    assert main(["audit", "verify", "--journal", str(signed)]) == 1
    err = capsys.readouterr().err
    assert "Journal d'audit introuvable" in err and "couvre 10 enregistrement(s)" in err
    assert "le journal a été supprimé" in err
    assert not signed.exists()  # verify did not recreate it


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_checkpoint_signature_verifies_with_the_openssl_command(signed: Path, tmp_path: Path) -> None:
    """An independent implementation (OpenSSL's CLI) accepts the signature over the payload bytes."""
    import subprocess

    from cryptography.hazmat.primitives import serialization

    with AuditJournal(signed) as j:
        cp = j.checkpoints()[-1]
    (tmp_path / "payload").write_bytes(cp.payload.encode("utf-8"))
    (tmp_path / "sig").write_bytes(cp.signature)
    (tmp_path / "pub.pem").write_bytes(
        cp.certificate.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    cmd = ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig", "payload"]
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "Verified OK" in ok.stdout
    (tmp_path / "payload").write_bytes(cp.payload.replace('"seq":10', '"seq":11').encode("utf-8"))
    bad = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0


def test_the_copy_another_journal_wrote_meanwhile_is_read_again_and_kept(
    journal_path: Path, clock: FakeClock, signer: SoftwareSigner, tmp_path: Path
) -> None:
    """The handle remembers the copy it wrote last (not parsed again while the file holds exactly it);
    a copy replaced in between by another journal's is parsed and kept as evidence, not overwritten."""
    j = AuditJournal(journal_path, clock=clock, monotonic=clock.monotonic, checkpoint_every=2)
    j.set_checkpoint_signer(signer, "carte CPS")
    for n in range(4):
        j.append(make_event(n))
    copy_path = journal_path.with_name(journal_path.name + ".checkpoint")
    mine = Checkpoint.from_json(copy_path.read_text())
    assert mine.journal_id == j.journal_id and mine.seq == 4
    other_path = tmp_path / "other" / "audit.sqlite3"
    other_path.parent.mkdir()
    with AuditJournal(other_path, checkpoint_every=1) as other:
        other.set_checkpoint_signer(signer, "carte CPS")
        other.append(make_event(0))
    foreign = other_path.with_name(other_path.name + ".checkpoint").read_text()
    copy_path.write_text(foreign)
    for n in range(4, 6):
        j.append(make_event(n))
    assert copy_path.read_text() == foreign  # kept: evidence that the journal was replaced
    assert [c.seq for c in j.checkpoints()] == [2, 4, 6]
    j.close()
