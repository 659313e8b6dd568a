"""Identity records: statuses and transitions of insi.md §5.3–5.4 on a real SQLite file, INSi answers from
the INSi sandbox over TLS, every call and status change in a real audit journal, the DMP gate."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ps_agent.audit.journal import AuditJournal
from ps_agent.identity.errors import InsiAccessDenied, InsiInputError
from ps_agent.identity.model import InsNumber, InsTraits, TraitsQuery
from ps_agent.identity.records import (
    NOT_QUALIFIED_MESSAGE,
    Actor,
    IdentityNotFound,
    IdentityNotQualified,
    IdentityRecordError,
    IdentityRecords,
    IdentityStatus,
)
from tests.fixtures.insi import certificate_auth

ACTOR = Actor("899700000013", "JEAN MEDECIN-GENERALISTE", "10", "DIRECTE", "380000000100017")
TOUSSAINT = TraitsQuery("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01", "2B020")


@pytest.fixture
def journal(tmp_path: Path) -> AuditJournal:
    j = AuditJournal(tmp_path / "home" / "audit.sqlite3")
    yield j  # type: ignore[misc]
    j.close()


@pytest.fixture
def records(tmp_path: Path, journal: AuditJournal) -> IdentityRecords:
    r = IdentityRecords.open(tmp_path / "home", journal=journal, actor=ACTOR)
    yield r  # type: ignore[misc]
    r.close()


def _actions(journal: AuditJournal) -> list[tuple[str, str, str]]:
    return [(r.event.action, r.event.outcome, r.event.detail) for r in journal.records()]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_file_and_folder_modes(records: IdentityRecords) -> None:
    assert records.path.name == "identities.sqlite3"
    assert os.stat(records.path).st_mode & 0o777 == 0o600
    assert os.stat(records.path.parent).st_mode & 0o777 == 0o700


def test_traits_search_gives_recup_then_document_gives_qual(
    records: IdentityRecords, journal: AuditJournal, insi_client
) -> None:  # type: ignore[no-untyped-def]
    client, _ = insi_client("certificat")
    outcome, ident = records.search_traits(client, TOUSSAINT)
    assert outcome.found and ident is not None
    assert ident.status is IdentityStatus.RECUP and ident.source == "traits"
    assert ident.ins is not None and ident.ins.value == "160012B02077713"
    assert ident.ins.oid == "1.2.250.1.213.1.4.8"
    # the answer envelope it came from is kept, raw
    assert b"160012B020777" in records.insi_answer(ident.id)
    with pytest.raises(IdentityNotQualified) as err:
        records.qualified_ref(ident.id)
    assert err.value.message_fr.startswith(NOT_QUALIFIED_MESSAGE)
    assert err.value.code == "DENIED_INS"

    qual = records.validate(ident.id, "passeport", actor=ACTOR)
    assert qual.status is IdentityStatus.QUAL
    assert qual.document is not None and qual.document.high_trust and qual.document.kind == "passeport"
    assert qual.document.checked_by.startswith("899700000013")
    ref = records.qualified_ref(ident.id)
    assert (ref.ins, ref.oid, ref.ins_status) == ("160012B02077713", "1.2.250.1.213.1.4.8", "QUAL")

    acts = _actions(journal)
    assert ("insi.search", "success") in [a[:2] for a in acts]
    status_lines = [d for a, _, d in acts if a == "identity.status"]
    assert any("∅ → RECUP" in d for d in status_lines)
    assert any("RECUP → QUAL" in d for d in status_lines)
    assert [c.to_status for c in qual.changes] == ["RECUP", "QUAL"]


def test_prov_then_document_vali_then_insi_qual(records: IdentityRecords, insi_client) -> None:  # type: ignore[no-untyped-def]
    prov = records.create("ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    assert prov.status is IdentityStatus.PROV
    vali = records.validate(prov.id, "cni")
    assert vali.status is IdentityStatus.VALI
    with pytest.raises(IdentityNotQualified):
        records.qualified_ref(vali.id)
    client, _ = insi_client("certificat")
    _, qual = records.search_traits(client, TOUSSAINT, identity_id=vali.id)
    assert qual is not None and qual.id == vali.id and qual.status is IdentityStatus.QUAL
    assert records.qualified_ref(qual.id).ins_status == "QUAL"


def test_vali_with_other_traits_goes_recup(records: IdentityRecords, insi_client) -> None:  # type: ignore[no-untyped-def]
    # the document was checked against "ADRTROIS TOUSSAINT JEAN": INSi returns TOUSSAINT only
    vali = records.validate(records.create("ADRTROIS", "TOUSSAINT JEAN", "M", "1960-01-01").id, "passeport")
    client, _ = insi_client("certificat")
    _, got = records.search_traits(client, TOUSSAINT, identity_id=vali.id)
    assert got is not None and got.status is IdentityStatus.RECUP and got.document is None


def test_manual_edit_of_a_strict_trait_drops_the_status(
    records: IdentityRecords, journal: AuditJournal, insi_client
) -> None:  # type: ignore[no-untyped-def]
    client, _ = insi_client("certificat")
    _, ident = records.search_traits(client, TOUSSAINT)
    assert ident is not None
    # used name: no drop
    same = records.edit_traits(ident.id, used_name="DUPONT")
    assert same.status is IdentityStatus.RECUP and same.used_name == "DUPONT"
    prov = records.edit_traits(ident.id, first_names="TOUSSAINT PAUL")
    assert prov.status is IdentityStatus.PROV  # RECUP -> PROV
    qual = records.validate(records.search_traits(client, TOUSSAINT)[1].id, "passeport")  # type: ignore[union-attr]
    assert qual.status is IdentityStatus.QUAL
    vali = records.edit_traits(qual.id, birth_date="1960-01-02")
    assert vali.status is IdentityStatus.VALI  # QUAL -> VALI (ID-03)
    with pytest.raises(IdentityNotQualified):
        records.qualified_ref(vali.id)
    assert any(r.event.rule_id == "ID-03" for r in journal.records(action="identity.edit"))


def test_low_trust_and_unknown_documents_refused_nothing_changed(records: IdentityRecords) -> None:
    prov = records.create("MARTIN", "ÉLODIE", "F", "1990-05-04")
    for doc, code in (("permis", "identity_low_trust"), ("carte-vitale", "identity_low_trust"),
                      ("bibliotheque", "identity_document")):  # fmt: skip
        with pytest.raises(IdentityRecordError) as err:
            records.validate(prov.id, doc)
        assert err.value.code == code
    again = records.get(prov.id)
    assert again.status is IdentityStatus.PROV and again.document is None
    assert again.birth_name == "MARTIN" and again.first_names == "ÉLODIE"  # stored as typed


def test_bad_traits_refused_and_no_record(
    records: IdentityRecords, journal: AuditJournal, insi_client
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InsiInputError) as err:
        records.create("DUP0NT", "JEAN", "M", "1980-01-01")
    assert err.value.code == "traits_characters" and "« 0 »" in err.value.message_fr
    client, frames = insi_client("certificat")
    with pytest.raises(InsiInputError) as err2:
        records.search_traits(client, TraitsQuery("ADRTROIS", ("TOUSS@INT",), "M", "1960-01-01"))
    assert err2.value.code == "traits_characters"
    assert frames.out() == []  # nothing sent
    assert records.list() == []
    assert [(a, o) for a, o, _ in _actions(journal)] == [("insi.search", "refused")]
    prov = records.create("DUPONT", "JEAN", "M", "1980-01-01")
    with pytest.raises(InsiInputError):
        records.edit_traits(prov.id, birth_name="DUPONT_")
    assert records.get(prov.id).birth_name == "DUPONT"


def test_wrong_certificate_name_changes_no_record(
    records: IdentityRecords, journal: AuditJournal, insi_client, test_pki
) -> None:  # type: ignore[no-untyped-def]
    from ps_agent.identity.errors import InsiConfigurationError

    with pytest.raises(InsiConfigurationError) as err:
        certificate_auth(test_pki, "INSI-AUTRE")
    assert err.value.code == "insi_certificate_name"
    # the service's own refusal (DESIR_560) is journaled and changes nothing
    client, _ = insi_client("certificat", auth=certificate_auth(test_pki, "INSI-AUTRE", check_name=False))
    prov = records.create("ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
    with pytest.raises(InsiAccessDenied):
        records.search_traits(client, TOUSSAINT, identity_id=prov.id)
    assert records.get(prov.id).status is IdentityStatus.PROV
    assert ("insi.search", "error") in [(a, o) for a, o, _ in _actions(journal)]


def test_not_found_records_nothing(records: IdentityRecords, insi_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = insi_client("certificat")
    outcome, ident = records.search_traits(client, TraitsQuery("HOUILLES", ("PIERRE",), "M", "1993-01-27"))
    assert not outcome.found and ident is None and records.list() == []


def test_douteux_forces_prov_and_blocks_insi(records: IdentityRecords, insi_client) -> None:  # type: ignore[no-untyped-def]
    client, frames = insi_client("certificat")
    _, ident = records.search_traits(client, TOUSSAINT)
    assert ident is not None
    d = records.set_attributes(ident.id, douteux=True)
    assert d.status is IdentityStatus.PROV and d.ins is None
    before = len(frames.out())
    with pytest.raises(IdentityRecordError) as err:
        records.search_traits(client, TOUSSAINT, identity_id=ident.id)
    assert err.value.code == "identity_insi_blocked" and len(frames.out()) == before


def test_external_identity_rechecked_before_first_use(records: IdentityRecords, journal, insi_client) -> None:  # type: ignore[no-untyped-def]
    ins = InsNumber("160012B020777", "13", "1.2.250.1.213.1.4.8")
    traits = InsTraits("ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    ext = records.import_external(ins, traits, status="QUAL", document="cni")
    assert ext.status is IdentityStatus.QUAL and not ext.external_verified
    with pytest.raises(IdentityNotQualified) as err:
        records.qualified_ref(ext.id)
    assert "pas encore vérifié" in err.value.message_fr
    client, _ = insi_client("certificat")
    verification, ok = records.verify_external(ext.id, client)
    assert verification.valid and verification.interim and ok.external_verified
    assert records.qualified_ref(ext.id).ins == "160012B02077713"
    assert ("insi.verify", "success") in [(a, o) for a, o, _ in _actions(journal)]


def test_external_identity_with_wrong_traits_dropped(records: IdentityRecords, insi_client) -> None:  # type: ignore[no-untyped-def]
    ins = InsNumber("160012B020777", "13", "1.2.250.1.213.1.4.8")
    traits = InsTraits("ADRTROIS", "TOUSSAINT", "M", "1960-01-02", "2B020")  # wrong date -> not found
    ext = records.import_external(ins, traits, status="QUAL", document="passeport")
    client, _ = insi_client("certificat")
    verification, got = records.verify_external(ext.id, client)
    assert not verification.valid and got.status is IdentityStatus.VALI and not got.external_verified
    with pytest.raises(IdentityNotQualified):
        records.qualified_ref(got.id)


def test_unknown_identity(records: IdentityRecords) -> None:
    with pytest.raises(IdentityNotFound) as err:
        records.qualified_ref(42)
    assert "n° 42" in err.value.message_fr


def test_no_dmp_call_with_a_non_qualified_identity(records: IdentityRecords) -> None:
    """The gate is before any DMP call: qualified_ref refuses, so no PatientRef exists to call with."""
    prov = records.create("DUPONT", "JEAN", "M", "1980-01-01")
    with pytest.raises(IdentityNotQualified) as err:
        records.qualified_ref(prov.id)
    assert err.value.rule_id == "ID-05" and "provisoire" in err.value.message_fr


def test_service_failures_change_no_record(records: IdentityRecords, journal: AuditJournal, test_pki) -> None:  # type: ignore[no-untyped-def]
    """A Receiver fault (siram_40/insi_102) and an HTTP 500 without a SOAP fault (a malformed answer)
    are typed French errors, journaled, and the identity keeps its status."""
    from ps_agent.identity.errors import InsiTransportError, InsiUnavailable
    from ps_agent.identity.insi import InsiClient
    from sandbox.insi.server import start_insi
    from sandbox.insi.service import InsiSettings
    from sandbox.server.faults import FaultConfig
    from tests.fixtures.insi import LPS

    prov = records.create("ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    from ps_agent.identity.environments import insi_environment

    settings = InsiSettings(fault_birth_names=("ADRTROIS",))
    with start_insi(test_pki, settings=settings) as running:
        env = insi_environment("sandbox-certificat", ca_file=test_pki.ca_bundle).with_url(running.mtls_url)
        with InsiClient(env, certificate_auth(test_pki), LPS) as client:
            with pytest.raises(InsiUnavailable) as err:
                records.search_traits(client, TOUSSAINT, identity_id=prov.id)
    assert err.value.code == "insi_102" and err.value.retryable
    with start_insi(test_pki, faults=FaultConfig(seed=1, http_500_rate=1.0)) as running:
        env = insi_environment("sandbox-certificat", ca_file=test_pki.ca_bundle).with_url(running.mtls_url)
        with InsiClient(env, certificate_auth(test_pki), LPS) as client:
            with pytest.raises(InsiTransportError) as err2:
                records.search_traits(client, TOUSSAINT, identity_id=prov.id)
    assert err2.value.code == "HTTP_500" and "HTTP 500" in err2.value.message_fr
    after = records.get(prov.id)
    assert after.status is IdentityStatus.PROV and after.ins is None
    assert [(a, o) for a, o, _ in _actions(journal) if a == "insi.search"] == [
        ("insi.search", "error"),
        ("insi.search", "error"),
    ]


def test_journal_failure_rolls_the_change_back(tmp_path: Path) -> None:
    from ps_agent.errors import AuditError

    journal = AuditJournal(tmp_path / "j" / "audit.sqlite3")
    records = IdentityRecords.open(tmp_path / "j", journal=journal, actor=ACTOR)
    prov = records.create("DUPONT", "JEAN", "M", "1980-01-01")
    journal.close()  # the journal can no longer be written
    with pytest.raises(AuditError):
        records.validate(prov.id, "passeport")
    again = records.get(prov.id)
    assert again.status is IdentityStatus.PROV and again.document is None
    records.close()
