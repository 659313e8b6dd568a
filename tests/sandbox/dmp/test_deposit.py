"""ITI-41 (TD2.1) through DmpService.handle with real ebRIM + MTOM messages built from real CDA documents."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from lxml import etree

from sandbox.dmp import build, xds
from sandbox.dmp.store import APPROVED, DEPRECATED
from sandbox.server.context import SoapFault
from tests.sandbox.dmp.conftest import PATIENT, Dmp, caller, errors_of, status_of

SUCCESS = xds.SUCCESS
FAILURE = xds.FAILURE


def test_deposit_success_registers_document_and_traces(dmp: Dmp) -> None:
    data = dmp.document()
    resp, dep = dmp.deposit(caller("gp"), build.DepositDocument(data))
    assert resp.action == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
    assert status_of(resp) == SUCCESS, errors_of(resp)
    [doc] = dmp.store.documents(PATIENT.ins)
    assert doc.unique_id == dep.unique_ids[0]
    assert doc.status == APPROVED
    assert doc.type_code == "11488-4" and doc.class_code == "10"
    assert doc.author_id == "899700000013"
    assert dmp.store.content(doc.entry_uuid) == data
    trace = dmp.store.traces(PATIENT.ins)[-1]
    assert trace.transaction == "TD2.1" and trace.result == "OK"
    assert trace.ps_id == "899700000013" and doc.unique_id in trace.what


def test_deposit_inline_base64_is_accepted(dmp: Dmp) -> None:
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(dmp.document()), inline=True)
    assert status_of(resp) == SUCCESS, errors_of(resp)


def test_deposit_without_authorisation_is_allowed_acc07(dmp: Dmp) -> None:
    assert dmp.store.authorisation(PATIENT.ins, "899700000013") is None
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(dmp.document()))
    assert status_of(resp) == SUCCESS


def test_blocked_professional_may_still_deposit_pat01(dmp: Dmp) -> None:
    dmp.store.block(PATIENT.ins, "899700000047")
    resp, _ = dmp.deposit(caller("nurse"), build.DepositDocument(dmp.document("nurse", "11506-3", "Soins")))
    assert status_of(resp) == SUCCESS, errors_of(resp)


def test_duplicate_unique_id_is_refused(dmp: Dmp) -> None:
    data = dmp.document()
    assert status_of(dmp.deposit(caller("gp"), build.DepositDocument(data))[0]) == SUCCESS
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(data))
    assert status_of(resp) == FAILURE
    assert errors_of(resp)[0][0] == "XDSDocumentUniqueIdError"
    assert "déjà enregistré" in errors_of(resp)[0][1]
    assert len(dmp.store.documents(PATIENT.ins)) == 1


def test_missing_mtom_part_is_xds_missing_document(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    first_cid = next(iter(dep.attachments))
    del dep.attachments[first_cid]
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert errors_of(resp)[0][0] == "XDSMissingDocument"
    assert dmp.store.documents(PATIENT.ins) == []


def test_hash_mismatch_is_repository_metadata_error(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    for slot in dep.body.iter(f"{{{xds.RIM}}}Slot"):
        if slot.get("name") == "hash":
            slot[0][0].text = "0" * 40
            break
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    code, context = errors_of(resp)[0]
    assert code == "XDSRepositoryMetadataError" and "hash" in context


def test_size_mismatch_is_repository_metadata_error(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    for slot in dep.body.iter(f"{{{xds.RIM}}}Slot"):
        if slot.get("name") == "size":
            slot[0][0].text = "12"
            break
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert errors_of(resp)[0][0] == "XDSRepositoryMetadataError"


def _set_code(dep: build.Deposit, scheme: str, code: str) -> None:
    for cl in dep.body.iter(f"{{{xds.RIM}}}Classification"):
        if cl.get("classificationScheme") == scheme and cl.get("classifiedObject") == "Document01":
            cl.set("nodeRepresentation", code)
            return
    raise AssertionError(scheme)


def test_class_code_inconsistent_with_type(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    _set_code(dep, xds.S_CLASS, "11")
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    code, context = errors_of(resp)[0]
    assert code == "XDSRegistryMetadataError" and "classCode 11" in context


def test_type_code_not_in_dmp_value_set(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    _set_code(dep, xds.S_TYPE, "99999-9")
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert errors_of(resp)[0][0] == "XDSRegistryMetadataError"


def test_type_code_differs_from_cda(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    _set_code(dep, xds.S_TYPE, "11490-0")
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    code, context = errors_of(resp)[0]
    assert code == "XDSRegistryMetadataError" and "code du CDA" in context


def test_format_code_must_match_the_volet(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    _set_code(dep, xds.S_FORMAT, "urn:ihe:iti:xds-sd:pdf:2008")
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert "formatCode" in errors_of(resp)[0][1]


def test_unknown_facility_and_practice_codes(dmp: Dmp) -> None:
    for scheme, label in (
        (xds.S_FACILITY, "healthcareFacilityTypeCode"),
        (xds.S_PRACTICE, "practiceSettingCode"),
    ):
        dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
        _set_code(dep, scheme, "NIMPORTE")
        resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
        assert label in errors_of(resp)[0][1]


def test_patient_id_must_match_vihf(dmp: Dmp) -> None:
    other = "188075935022123"
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    resp = dmp.call("repository", dep.body, caller("gp", patient_ins=other), dep.attachments)
    assert errors_of(resp)[0][0] == "XDSPatientIdDoesNotMatch"


def test_cda_of_another_patient_is_refused(dmp: Dmp) -> None:
    from sandbox.demo import DEMO_OPPOSED

    data = dmp.document(patient=DEMO_OPPOSED)
    meta = build.derive(data)
    meta = dataclasses.replace(meta, patient_id=PATIENT.cx, source_patient_id=PATIENT.cx)
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(data, meta=meta))
    assert errors_of(resp)[0][0] == "XDSPatientIdDoesNotMatch"
    assert "INS du CDA" in errors_of(resp)[0][1]


def test_unique_id_must_be_the_cda_id(dmp: Dmp) -> None:
    data = dmp.document()
    meta = dataclasses.replace(build.derive(data), unique_id="1.2.3.4.5")
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(data, meta=meta))
    assert "identifiant du CDA" in errors_of(resp)[0][1]


def test_unsigned_submission_is_refused(dmp: Dmp) -> None:
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(dmp.document()), sign=False)
    code, context = errors_of(resp)[0]
    assert code == "XDSRegistryMetadataError" and "signature XAdES" in context
    assert dmp.store.documents(PATIENT.ins) == []


def test_tampered_document_breaks_the_xades_signature(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    cid = next(c for c in dep.attachments if c.startswith("document01"))
    tampered = dep.attachments[cid].replace(b"Consultation", b"Consultatiom")
    dep.attachments[cid] = tampered
    # keep hash/size consistent so that only the signature can catch it
    import hashlib

    for slot in dep.body.iter(f"{{{xds.RIM}}}Slot"):
        if slot.get("name") == "hash" and slot.getparent().get("id") == "Document01":
            slot[0][0].text = hashlib.sha1(tampered).hexdigest()  # noqa: S324
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    code, context = errors_of(resp)[0]
    assert code == "XDSRegistryMetadataError" and "signature" in context


def test_tampered_signature_value(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    cid = next(c for c in dep.attachments if c.startswith("signature01"))
    sig = etree.fromstring(dep.attachments[cid])
    sig.find(".//{*}SigningTime").text = "2001-01-01T00:00:00Z"
    dep.attachments[cid] = etree.tostring(sig)
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert "signature" in errors_of(resp)[0][1].lower()


def test_signature_with_authentication_certificate_is_refused(dmp: Dmp) -> None:
    holder = dmp.pki.card("gp")
    dep = build.provide_and_register(
        [build.DepositDocument(dmp.document())], signer=(holder.auth_key, holder.auth_cert, holder.chain)
    )
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert "certificat de signature" in errors_of(resp)[0][1]


def test_signature_from_another_pki_is_refused(dmp: Dmp, foreign_pki) -> None:
    holder = foreign_pki.card("gp")
    dep = build.provide_and_register(
        [build.DepositDocument(dmp.document())], signer=(holder.sign_key, holder.sign_cert, holder.chain)
    )
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert "autorité de confiance" in errors_of(resp)[0][1]


def test_replacement_deprecates_previous_version(dmp: Dmp) -> None:
    from cda import build as cbuild
    from cda import parse

    first = dmp.document()
    assert status_of(dmp.deposit(caller("gp"), build.DepositDocument(first))[0]) == SUCCESS
    [old] = dmp.store.documents(PATIENT.ins)
    second = dmp.document(replaces=cbuild.Replacement.of(parse(first)), title="Consultation corrigée")
    resp, dep = dmp.deposit(caller("gp"), build.DepositDocument(second, replaces=old.entry_uuid))
    assert status_of(resp) == SUCCESS, errors_of(resp)
    docs = {d.unique_id: d for d in dmp.store.documents(PATIENT.ins)}
    assert docs[old.unique_id].status == DEPRECATED
    new = docs[dep.unique_ids[0]]
    assert new.status == APPROVED and new.lid == old.lid and new.version == 2
    # replacing the deprecated version again is refused, nothing registered
    third = dmp.document(replaces=cbuild.Replacement.of(parse(first)), title="Autre")
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(third, replaces=old.entry_uuid))
    assert errors_of(resp)[0][0] == "XDSMetadataVersionError"
    assert len(dmp.store.documents(PATIENT.ins)) == 2


def test_replacement_with_another_set_id_is_refused(dmp: Dmp) -> None:
    first = dmp.document()
    assert status_of(dmp.deposit(caller("gp"), build.DepositDocument(first))[0]) == SUCCESS
    [old] = dmp.store.documents(PATIENT.ins)
    unrelated = dmp.document(title="Autre document")
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(unrelated, replaces=old.entry_uuid))
    assert "setId" in errors_of(resp)[0][1]
    assert dmp.store.document(entry_uuid=old.entry_uuid).status == APPROVED


def test_deposit_is_atomic_when_one_document_fails(dmp: Dmp) -> None:
    good = dmp.document(title="Bon")
    taken = dmp.document(title="Déjà là")
    assert status_of(dmp.deposit(caller("gp"), build.DepositDocument(taken))[0]) == SUCCESS
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(good), build.DepositDocument(taken))
    assert errors_of(resp)[0][0] == "XDSDocumentUniqueIdError"
    assert [d.title for d in dmp.store.documents(PATIENT.ins)] == ["Déjà là"]
    # no orphan file left in the repository folder
    assert len(list(dmp.store.docs_dir.iterdir())) == 1  # only the registered document


def test_store_failure_during_commit_leaves_nothing(dmp: Dmp, monkeypatch) -> None:
    """A crash inside the registry transaction: no row, no file."""
    from sandbox.dmp import store as store_mod

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_mod.Store, "_insert_submission", boom)
    with pytest.raises(SoapFault, match="interne"):
        dmp.deposit(caller("gp"), build.DepositDocument(dmp.document()))
    assert dmp.store.documents(PATIENT.ins) == []
    assert list(dmp.store.docs_dir.iterdir()) == []


def test_closed_opposed_and_unknown_dmp_refuse_deposit(dmp: Dmp) -> None:
    dmp.store.set_status(PATIENT.ins, "CLOSED")
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(dmp.document()))
    assert errors_of(resp)[0][0] == "DMPClosed"
    dmp.store.set_status(PATIENT.ins, "OPPOSED")
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(dmp.document()))
    assert errors_of(resp)[0][0] == "DMPOpposed"
    from sandbox.demo import DEMO_BLOCKING

    resp, _ = dmp.deposit(
        caller("gp", patient=DEMO_BLOCKING), build.DepositDocument(dmp.document(patient=DEMO_BLOCKING))
    )
    assert errors_of(resp)[0] == ("XDSUnknownPatientId", "Ce patient n'a pas de DMP.")


def test_centre_15_cannot_deposit(dmp: Dmp) -> None:
    who = caller("regulator", purpose="centre_15")
    resp, _ = dmp.deposit(who, build.DepositDocument(dmp.document("regulator")))
    code, context = errors_of(resp)[0]
    assert code == "DMPAccessDenied" and "centre 15" in context


def test_habilitation_matrix_write_is_enforced(dmp: Dmp) -> None:
    """A nurse may not deposit a dispensation (class 43 row of the matrix, inferred rows enforced too)."""
    from cda import habilitations

    assert not habilitations.can_write("60", "", "60593-1")
    data = dmp.document("nurse", "60593-1", "Dispensation")
    resp, _ = dmp.deposit(caller("nurse"), build.DepositDocument(data))
    code, context = errors_of(resp)[0]
    assert code == "DMPHabilitationRefused" and context.startswith("Dépôt refusé")


def test_masque_ps_with_invisible_patient_is_refused_pat03(dmp: Dmp) -> None:
    resp, _ = dmp.deposit(
        caller("gp"),
        build.DepositDocument(dmp.document(), confidentiality=("N", "MASQUE_PS", "INVISIBLE_PATIENT")),
    )
    assert "à la fois" in errors_of(resp)[0][1]


def test_confidentiality_n_is_mandatory(dmp: Dmp) -> None:
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(dmp.document(), confidentiality=("MASQUE_PS",)))
    assert "N est obligatoire" in errors_of(resp)[0][1]


def test_invisible_to_legal_representatives_only_for_minors(dmp: Dmp) -> None:
    resp, _ = dmp.deposit(
        caller("gp"),
        build.DepositDocument(dmp.document(), confidentiality=("N", "INVISIBLE_REPRESENTANTS_LEGAUX")),
    )
    assert "mineurs" in errors_of(resp)[0][1]


def test_missing_metadata_for_a_part(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    extra = etree.SubElement(dep.body, f"{{{xds.XDSB}}}Document", id="Document99")
    extra.text = "PHg+PC94Pg=="
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert errors_of(resp)[0][0] == "XDSMissingDocumentMetadata"


def test_malformed_cda_is_refused(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    cid = next(c for c in dep.attachments if c.startswith("document01"))
    dep.attachments[cid] = b"<ClinicalDocument"
    for slot in list(dep.body.iter(f"{{{xds.RIM}}}Slot")):
        if slot.get("name") in ("hash", "size"):
            slot.getparent().remove(slot)
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert errors_of(resp)[0][0] in ("XDSRegistryMetadataError",)


def test_cda_with_doctype_is_refused_and_nothing_read(dmp: Dmp, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    evil = (
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>'
        '<ClinicalDocument xmlns="urn:hl7-org:v3">&e;</ClinicalDocument>'
    ).encode()
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    cid = next(c for c in dep.attachments if c.startswith("document01"))
    dep.attachments[cid] = evil
    for slot in list(dep.body.iter(f"{{{xds.RIM}}}Slot")):
        if slot.get("name") in ("hash", "size"):
            slot.getparent().remove(slot)
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    code, context = errors_of(resp)[0]
    assert code == "XDSRegistryMetadataError" and "SECRET" not in context
    assert dmp.store.documents(PATIENT.ins) == []


def test_secretary_deposits_for_an_author_in_indirect_mode(dmp: Dmp) -> None:
    """INDIRECTE: a non-PS user deposits for the specialist (matrix applied to the author's profession)."""
    who = caller("secretary", mode="INDIRECTE")
    data = dmp.document("specialist", "11490-0", "Lettre de liaison")
    org = dmp.pki.establishment
    dep = build.provide_and_register(
        [build.DepositDocument(data)], signer=(org.sign_key, org.sign_cert, org.chain)
    )
    resp = dmp.call("repository", dep.body, who, dep.attachments)
    assert status_of(resp) == SUCCESS, errors_of(resp)


def test_direct_mode_deposits_only_own_documents_dep02(dmp: Dmp) -> None:
    data = dmp.document("specialist", "11488-4", "Consultation d'un autre")
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(data), signer_profile="gp")
    assert "doit être le professionnel authentifié" in errors_of(resp)[0][1]


def test_minor_secret_connection_forces_invisible_to_legal_representatives(dmp: Dmp) -> None:
    from sandbox.demo import DEMO_MINOR

    p = DEMO_MINOR
    dmp.store.create_patient(p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place)
    secret = caller("gp", patient=p, confidentiality="INVISIBLE_REPRESENTANTS_LEGAUX")
    resp, _ = dmp.deposit(secret, build.DepositDocument(dmp.document(patient=p)))
    assert "Connexion secrète" in errors_of(resp)[0][1]
    resp, dep = dmp.deposit(
        secret,
        build.DepositDocument(
            dmp.document(patient=p), confidentiality=("N", "INVISIBLE_REPRESENTANTS_LEGAUX")
        ),
    )
    assert status_of(resp) == SUCCESS, errors_of(resp)
    seen = {d.unique_id for d in dmp.store.documents_for_patient_view(p.ins, legal_representative=True)}
    assert dep.unique_ids[0] not in seen


def test_unique_id_longer_than_64_characters_is_refused(dmp: Dmp) -> None:
    long_root = "2.25." + "1" * 60
    data = dmp.document()
    data = data.replace(build.derive(data).unique_id.encode(), long_root.encode(), 1)
    assert long_root.encode() in data
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(data))
    [(code, context)] = errors_of(resp)
    assert code == "XDSRegistryMetadataError" and "64 caractères" in context
    assert dmp.store.documents(PATIENT.ins) == []


def test_cda_ins_with_a_bad_key_is_refused(dmp: Dmp) -> None:
    bad = PATIENT.ins[:-2] + f"{(int(PATIENT.ins[-2:]) + 1) % 100:02d}"
    good = dmp.document()
    data = good.replace(PATIENT.ins.encode(), bad.encode())
    meta = dataclasses.replace(build.derive(good), hash=hashlib.sha1(data).hexdigest(), size=len(data))  # noqa: S324
    resp, _ = dmp.deposit(caller("gp"), build.DepositDocument(data, meta=meta))
    [(code, context)] = errors_of(resp)
    assert code in ("XDSRegistryMetadataError", "XDSPatientIdDoesNotMatch")
    assert "clé" in context or bad in context, context
    assert dmp.store.documents(PATIENT.ins) == []
