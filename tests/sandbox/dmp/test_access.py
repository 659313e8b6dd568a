"""TD0.2, TD0.3, TD0.4, TD1.6, ITI-18, ITI-43, ITI-57 and the DMP access rules, through DmpService.handle."""

from __future__ import annotations

import pytest
from lxml import etree

from sandbox import demo
from sandbox.dmp import build, xds
from sandbox.dmp.store import APPROVED, ARCHIVED, DELETED, MASQUE_PS, Store
from sandbox.profiles import PROFILES
from sandbox.server.context import SoapFault
from tests.sandbox.dmp.conftest import PATIENT, Dmp, caller, dmp_status, errors_of, status_of

GP, SPECIALIST, NURSE, PHARMACIST = (PROFILES[p].id_nat for p in ("gp", "specialist", "nurse", "pharmacist"))


def _authorise(dmp: Dmp, *profiles: str) -> None:
    for p in profiles:
        resp = dmp.call("habilitations", build.set_authorization("AJOUT"), caller(p))
        assert dmp_status(resp)[0] == "DMPOk", dmp_status(resp)


def _deposit(
    dmp: Dmp,
    profile: str = "gp",
    type_code: str = "11488-4",
    title: str = "Consultation",
    conf: tuple[str, ...] = ("N",),
) -> str:
    resp, dep = dmp.deposit(
        caller(profile), build.DepositDocument(dmp.document(profile, type_code, title), confidentiality=conf)
    )
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
    return dep.unique_ids[0]


def _find(dmp: Dmp, who, statuses=(APPROVED,), **kw) -> tuple[list[str], object]:
    resp = dmp.call("registry", build.find_documents(PATIENT.ins, PATIENT.oid, statuses, **kw), who)
    uids = [
        e.get("value")
        for e in resp.body.iter(f"{{{xds.RIM}}}ExternalIdentifier")
        if e.get("identificationScheme") == xds.E_DOC_UNIQUE
    ]
    return uids, resp


# -- TD0.2 ---------------------------------------------------------------------------------------------------
def _td02(dmp: Dmp, who, ins: str = PATIENT.ins, oid: str = PATIENT.oid) -> etree._Element:
    resp = dmp.call("patients", build.existence_query(ins, oid), who)
    assert resp.action == "urn:hl7-org:v3:PRPA_IN201308UV02"
    return resp.body


def _attention(body: etree._Element, key: str) -> str:
    for line in body.iter("{urn:hl7-org:v3}attentionLine"):
        if line.find("{*}keyWordText").get("code") == key:
            val = line.find("{*}value")
            return val.get("code") or val.get("value")
    return ""


def test_td02_existence_and_authorisation(dmp: Dmp) -> None:
    body = _td02(dmp, caller("gp"))
    assert body.find(".//{*}acknowledgement").get("typeCode") == "AA"
    assert body.find(".//{*}queryResponseCode").get("code") == "OK"
    assert body.find(".//{*}patient/{*}statusCode").get("code") == "active"
    assert _attention(body, "AUTORISATION") == "NON_EXISTE"
    assert _attention(body, "STATUT_MT") == "false"
    _authorise(dmp, "gp")
    dmp.store.set_medecin_traitant(PATIENT.ins, GP)
    body = _td02(dmp, caller("gp"))
    assert _attention(body, "AUTORISATION") == "VALIDE"
    assert _attention(body, "STATUT_MT") == "true"
    dmp.store.block(PATIENT.ins, NURSE)
    assert _attention(_td02(dmp, caller("nurse")), "AUTORISATION") == "INTERDIT"


def test_td02_unknown_patient_and_closed_dmp(dmp: Dmp) -> None:
    other = demo.DEMO_OPPOSED
    body = _td02(dmp, caller("gp", patient=other), other.ins, other.oid)
    assert body.find(".//{*}queryResponseCode").get("code") == "NF"
    dmp.store.set_status(PATIENT.ins, "CLOSED")
    body = _td02(dmp, caller("gp"))
    assert body.find(".//{*}patient/{*}statusCode").get("code") == "terminated"
    assert "fermé" in body.findtext(".//{*}acknowledgementDetail/{*}text")


def test_td02_bad_ins_key_is_ae(dmp: Dmp) -> None:
    body = _td02(dmp, caller("gp", patient_ins="279037505612300"), "279037505612300")
    ack = body.find(".//{*}acknowledgement")
    assert ack.get("typeCode") == "AE"
    assert ack.find("{*}acknowledgementDetail/{*}code").get("code") == "INVALID_INS"
    assert "clé" in ack.findtext("{*}acknowledgementDetail/{*}text")


# -- TD0.3 / TD1.6 / TD0.4 ---------------------------------------------------------------------------------
def test_td03_add_twice_then_remove(dmp: Dmp) -> None:
    _authorise(dmp, "gp")
    resp = dmp.call("habilitations", build.set_authorization("AJOUT"), caller("gp"))
    assert dmp_status(resp) == ("DMPOk", "Autorisation déjà présente aucune action effectuée")
    resp = dmp.call("habilitations", build.set_authorization("SUPPRESSION"), caller("gp"))
    assert dmp_status(resp)[0] == "DMPOk"
    assert dmp.store.authorisation(PATIENT.ins, GP) is None


def test_td03_medecin_traitant_and_refusals(dmp: Dmp) -> None:
    resp = dmp.call("habilitations", build.set_authorization("AJOUT", "MEDECIN_TRAITANT"), caller("gp"))
    assert dmp_status(resp)[0] == "DMPOk"
    assert dmp.store.patient(PATIENT.ins).medecin_traitant == GP
    resp = dmp.call("habilitations", build.set_authorization("AJOUT", "MEDECIN_TRAITANT"), caller("nurse"))
    assert dmp_status(resp)[0] == "DMPAccessDenied"
    dmp.store.block(PATIENT.ins, NURSE)
    resp = dmp.call("habilitations", build.set_authorization("AJOUT"), caller("nurse"))
    assert dmp_status(resp)[0] == "DMPAccessBlocked"
    resp = dmp.call("habilitations", build.set_authorization("AJOUT"), caller("secretary", mode="INDIRECTE"))
    assert dmp_status(resp)[0] == "DMPAccessDenied"
    resp = dmp.call("habilitations", build.set_authorization("PEUTETRE"), caller("gp"))
    assert dmp_status(resp)[0] == "DMPInvalidData"
    dmp.store.set_status(PATIENT.ins, "CLOSED")
    resp = dmp.call("habilitations", build.set_authorization("AJOUT"), caller("specialist"))
    assert dmp_status(resp)[0] == "DMPClosed"


def test_td16_lists_authorised_and_blocked(dmp: Dmp) -> None:
    _authorise(dmp, "gp", "specialist")
    dmp.store.block(PATIENT.ins, NURSE)
    resp = dmp.call("habilitations", build.list_authorizations("TOUTE"), caller("gp"))
    items = {
        i.findtext("{*}nationalId"): i.findtext("{*}mode")
        for i in resp.body.iter("{*}listOfAuthorizationByPatient")
    }
    assert items == {GP: "ACTIVE", SPECIALIST: "ACTIVE", NURSE: "INTERDITE"}
    resp = dmp.call("habilitations", build.list_authorizations("INTERDITE"), caller("gp"))
    assert [i.findtext("{*}nationalId") for i in resp.body.iter("{*}listOfAuthorizationByPatient")] == [NURSE]
    resp = dmp.call("habilitations", build.list_authorizations(), caller("pharmacist"))
    assert dmp_status(resp)[0] == "DMPAccessNotAuthorized"


def test_td04_patient_list(dmp: Dmp) -> None:
    _authorise(dmp, "gp")
    resp = dmp.call("patientsSpecific", build.patient_list(), caller("gp", patient=None))
    assert dmp_status(resp)[0] == "DMPOk"
    assert [e.text for e in resp.body.iter("{*}nationalId")] == [PATIENT.ins]
    resp = dmp.call("patientsSpecific", build.patient_list("20990101000000"), caller("gp", patient=None))
    assert list(resp.body.iter("{*}nationalId")) == []
    resp = dmp.call("patientsSpecific", build.patient_list("hier"), caller("gp", patient=None))
    assert dmp_status(resp)[0] == "DMPInvalidData"


# -- ITI-18 / ITI-43 -----------------------------------------------------------------------------------------
def test_find_and_retrieve_success(dmp: Dmp) -> None:
    uid = _deposit(dmp)
    _authorise(dmp, "gp")
    uids, resp = _find(dmp, caller("gp"))
    assert resp.action == "urn:ihe:iti:2007:RegistryStoredQueryResponse"
    assert uids == [uid]
    entry = resp.body.find(f".//{{{xds.RIM}}}ExtrinsicObject")
    assert entry.get("status") == APPROVED and entry.get("id").startswith("urn:uuid:")
    slots = {s.get("name"): s.findtext(".//{*}Value") for s in entry.findall(f"{{{xds.RIM}}}Slot")}
    assert slots["repositoryUniqueId"] == xds.REPOSITORY_UNIQUE_ID and len(slots["hash"]) == 40
    resp = dmp.call("repository", build.retrieve([uid]), caller("gp"))
    assert resp.action == "urn:ihe:iti:2007:RetrieveDocumentSetResponse"
    assert status_of(resp) == xds.SUCCESS
    [(cid, (data, mime))] = resp.attachments.items()
    include = resp.body.find(".//{*}Document/{http://www.w3.org/2004/08/xop/include}Include")
    assert include.get("href") == f"cid:{cid}" and mime == "text/xml"
    assert data == dmp.store.content(dmp.store.document(unique_id=uid).entry_uuid)


def test_get_documents_by_unique_id_and_uuid(dmp: Dmp) -> None:
    uid = _deposit(dmp)
    _authorise(dmp, "gp")
    resp = dmp.call("registry", build.get_documents(unique_ids=[uid]), caller("gp"))
    [entry] = resp.body.iter(f"{{{xds.RIM}}}ExtrinsicObject")
    resp = dmp.call("registry", build.get_documents(entry_uuids=[entry.get("id")]), caller("gp"))
    assert len(list(resp.body.iter(f"{{{xds.RIM}}}ExtrinsicObject"))) == 1


def test_find_filters_and_object_ref(dmp: Dmp) -> None:
    _deposit(dmp)
    bio = _deposit(dmp, type_code="11502-2", title="Biologie")
    _authorise(dmp, "gp")
    uids, _ = _find(
        dmp, caller("gp"), extra={"$XDSDocumentEntryTypeCode": "('11502-2^^2.16.840.1.113883.6.1')"}
    )
    assert uids == [bio]
    _, resp = _find(dmp, caller("gp"), return_type="ObjectRef")
    assert len(list(resp.body.iter(f"{{{xds.RIM}}}ObjectRef"))) == 2


def test_consultation_refusals(dmp: Dmp) -> None:
    _deposit(dmp)
    uids, resp = _find(dmp, caller("gp"))
    assert errors_of(resp)[0][0] == "DMPAccessNotAuthorized" and uids == []
    dmp.store.block(PATIENT.ins, NURSE)
    _, resp = _find(dmp, caller("nurse"))
    assert errors_of(resp)[0] == (
        "DMPAccessBlocked",
        "Le patient a bloqué votre accès à son dossier. Vous pouvez toujours y déposer des documents.",
    )
    _, resp = _find(dmp, caller("secretary", mode="INDIRECTE"))
    assert errors_of(resp)[0][0] == "DMPAccessDenied"
    resp = dmp.call("repository", build.retrieve(["1.2.3"]), caller("nurse"))
    assert errors_of(resp)[0][0] == "DMPAccessBlocked"
    dmp.store.set_status(PATIENT.ins, "OPPOSED")
    _authorise_direct(dmp.store, GP)
    _, resp = _find(dmp, caller("gp"))
    assert errors_of(resp)[0][0] == "DMPOpposed"


def _authorise_direct(store: Store, ps_id: str) -> None:
    store.set_authorisation(PATIENT.ins, ps_id)


def test_query_parameter_errors(dmp: Dmp) -> None:
    _authorise(dmp, "gp")
    _, resp = _find(dmp, caller("gp"), statuses=())
    body = build.find_documents(PATIENT.ins, PATIENT.oid)
    for slot in body.iter(f"{{{xds.RIM}}}Slot"):
        if slot.get("name") == "$XDSDocumentEntryStatus":
            slot.getparent().remove(slot)
    resp = dmp.call("registry", body, caller("gp"))
    assert errors_of(resp)[0][0] == "XDSStoredQueryParamNumber"
    body = build.find_documents("188075935022123", PATIENT.oid)
    resp = dmp.call("registry", body, caller("gp"))
    assert errors_of(resp)[0][0] == "XDSPatientIdDoesNotMatch"
    body = build.find_documents(PATIENT.ins, PATIENT.oid)
    body.find(f"{{{xds.RIM}}}AdhocQuery").set("id", "urn:uuid:00000000-0000-0000-0000-000000000000")
    resp = dmp.call("registry", body, caller("gp"))
    assert errors_of(resp)[0][0] == "XDSUnknownStoredQuery"


def test_masked_document_visible_to_author_and_medecin_traitant_only(dmp: Dmp) -> None:
    masked = _deposit(dmp, "specialist", "11505-5", "Acte", ("N", MASQUE_PS))
    plain = _deposit(dmp, "specialist", "11488-4", "Consultation")
    _authorise(dmp, "gp", "specialist", "nurse")
    assert set(_find(dmp, caller("specialist"))[0]) == {masked, plain}
    assert _find(dmp, caller("nurse"))[0] == [plain]
    assert _find(dmp, caller("gp"))[0] == [plain]
    dmp.store.set_medecin_traitant(PATIENT.ins, GP)
    assert set(_find(dmp, caller("gp"))[0]) == {masked, plain}
    # retrieving a masked document is answered like an unknown one
    resp = dmp.call("repository", build.retrieve([masked]), caller("nurse"))
    assert errors_of(resp) == [("XDSDocumentUniqueIdError", f"Document introuvable : {masked}.")]
    assert resp.attachments == {}


def test_matrix_read_hides_documents_from_a_profession(dmp: Dmp) -> None:
    img = _deposit(dmp, "specialist", "18748-4", "Imagerie")
    cr = _deposit(dmp, "specialist", "11488-4", "Consultation")
    _authorise(dmp, "pharmacist")
    assert _find(dmp, caller("pharmacist"))[0] == [cr]
    resp = dmp.call("repository", build.retrieve([img]), caller("pharmacist"))
    assert errors_of(resp)[0][0] == "XDSDocumentUniqueIdError"


def test_bris_de_glace_and_centre_15(dmp: Dmp) -> None:
    masked = _deposit(dmp, "specialist", "11505-5", "Acte", ("N", MASQUE_PS))
    plain = _deposit(dmp, "specialist", "11488-4", "Consultation")
    btg = caller(
        "specialist",
        purpose="bris_de_glace",
        reason="Patient inconscient",
        id_nat="899700000070",
        structure_id="1990000099",
    )
    assert _find(dmp, btg)[0] == [plain]  # not authorised but emergency; masked hidden (MASKED=deny)
    dmp.store.set_emergency(PATIENT.ins, masked_in_emergency=True)
    assert set(_find(dmp, btg)[0]) == {masked, plain}
    dmp.store.set_emergency(PATIENT.ins, bris_de_glace=False)
    assert errors_of(_find(dmp, btg)[1])[0][0] == "DMPEmergencyAccessRefused"
    samu = caller("regulator", purpose="centre_15")
    assert set(_find(dmp, samu)[0]) == {masked, plain}
    dmp.store.set_emergency(PATIENT.ins, centre_15=False)
    assert "centre 15" in errors_of(_find(dmp, samu)[1])[0][1]
    trace = dmp.store.traces(PATIENT.ins)[-1]
    assert trace.purpose == "centre_15" and trace.result.startswith("DMPEmergencyAccessRefused")
    btg_traces = [t for t in dmp.store.traces(PATIENT.ins) if t.purpose == "bris_de_glace"]
    assert btg_traces and btg_traces[0].reason == "Patient inconscient"


def test_blocked_professional_stays_blocked_in_emergency(dmp: Dmp) -> None:
    _deposit(dmp)
    dmp.store.block(PATIENT.ins, NURSE)
    _, resp = _find(dmp, caller("nurse", purpose="bris_de_glace", reason="urgence"))
    assert errors_of(resp)[0][0] == "DMPAccessBlocked"


def test_deleted_documents_only_seen_by_author(dmp: Dmp) -> None:
    uid = _deposit(dmp, "specialist")
    _authorise(dmp, "gp", "specialist")
    entry = dmp.store.document(unique_id=uid)
    dmp.store.set_document_status(entry.entry_uuid, DELETED)
    assert _find(dmp, caller("specialist"), statuses=(DELETED,))[0] == [uid]
    assert _find(dmp, caller("gp"), statuses=(DELETED,))[0] == []


# -- ITI-57 ------------------------------------------------------------------------------------------
def _entry(dmp: Dmp, who, uid: str) -> etree._Element:
    resp = dmp.call("registry", build.get_documents(unique_ids=[uid]), who)
    return next(resp.body.iter(f"{{{xds.RIM}}}ExtrinsicObject"))


def test_mask_unmask_and_make_visible(dmp: Dmp) -> None:
    uid = _deposit(dmp, conf=("N", "INVISIBLE_PATIENT"))
    _authorise(dmp, "gp", "specialist")
    body = build.update_confidentiality(PATIENT.ins, PATIENT.oid, _entry(dmp, caller("gp"), uid), ["N"])
    resp = dmp.call("registry", body, caller("gp"))
    assert resp.action == "urn:ihe:iti:2010:UpdateDocumentSet-Response"
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
    assert dmp.store.document(unique_id=uid).confidentiality == ("N",)
    assert uid in [d.unique_id for d in dmp.store.documents_for_patient_view(PATIENT.ins)]
    body = build.update_confidentiality(
        PATIENT.ins, PATIENT.oid, _entry(dmp, caller("gp"), uid), ["N", "MASQUE_PS"]
    )
    assert status_of(dmp.call("registry", body, caller("gp"))) == xds.SUCCESS
    assert _find(dmp, caller("specialist"))[0] == []  # other structure: hidden
    # making it invisible to the patient again is refused (TD3.3b is one-way)
    body = build.update_confidentiality(
        PATIENT.ins, PATIENT.oid, _entry(dmp, caller("gp"), uid), ["N", "MASQUE_PS", "INVISIBLE_PATIENT"]
    )
    assert errors_of(dmp.call("registry", body, caller("gp")))[0][0] == "XDSMetadataUpdateError"
    # a stale version is refused
    stale = _entry(dmp, caller("gp"), uid)
    assert (
        status_of(
            dmp.call(
                "registry", build.update_confidentiality(PATIENT.ins, PATIENT.oid, stale, ["N"]), caller("gp")
            )
        )
        == xds.SUCCESS
    )
    resp = dmp.call(
        "registry", build.update_confidentiality(PATIENT.ins, PATIENT.oid, stale, ["N"]), caller("gp")
    )
    assert errors_of(resp)[0][0] == "XDSMetadataVersionError"


def test_archive_unarchive_delete(dmp: Dmp) -> None:
    uid = _deposit(dmp, "specialist")
    _authorise(dmp, "gp", "specialist")
    euuid = dmp.store.document(unique_id=uid).entry_uuid
    resp = dmp.call(
        "registry", build.update_status(PATIENT.ins, PATIENT.oid, euuid, APPROVED, ARCHIVED), caller("gp")
    )
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
    assert dmp.store.document(unique_id=uid).status == ARCHIVED
    resp = dmp.call(
        "registry", build.update_status(PATIENT.ins, PATIENT.oid, euuid, APPROVED, ARCHIVED), caller("gp")
    )
    assert errors_of(resp)[0][0] == "XDSMetadataUpdateError"  # original status does not match
    resp = dmp.call(
        "registry", build.update_status(PATIENT.ins, PATIENT.oid, euuid, ARCHIVED, DELETED), caller("gp")
    )
    assert errors_of(resp)[0] == ("DMPAccessDenied", "Seul l'auteur d'un document peut le supprimer.")
    resp = dmp.call(
        "registry",
        build.update_status(PATIENT.ins, PATIENT.oid, euuid, ARCHIVED, DELETED),
        caller("specialist"),
    )
    assert status_of(resp) == xds.SUCCESS
    assert dmp.store.document(unique_id=uid).status == DELETED


def test_centre_15_cannot_update(dmp: Dmp) -> None:
    uid = _deposit(dmp)
    euuid = dmp.store.document(unique_id=uid).entry_uuid
    resp = dmp.call(
        "registry",
        build.update_status(PATIENT.ins, PATIENT.oid, euuid, APPROVED, ARCHIVED),
        caller("regulator", purpose="centre_15"),
    )
    assert "centre 15" in errors_of(resp)[0][1]


# -- SOAP level ---------------------------------------------------------------------------------------------
def test_unknown_operation_is_a_soap_fault_and_traced(dmp: Dmp) -> None:
    with pytest.raises(SoapFault) as info:
        dmp.call("registry", build.retrieve(["1.2"]), caller("gp"))
    assert "Opération inconnue" in info.value.reason_fr
    assert dmp.store.traces()[-1].result.startswith("REFUS SOAP")


def test_trace_refusal_from_server_layer(dmp: Dmp) -> None:
    dmp.service.trace_refusal(
        caller("gp"), "registry", "urn:ihe:iti:2007:RegistryStoredQuery", "VIHF non signé"
    )
    dmp.service.trace_refusal(None, "repository", "", "certificat inconnu")
    last = dmp.store.traces()[-2:]
    assert last[0].patient_ins == PATIENT.ins and last[0].result == "REFUS : VIHF non signé"
    assert last[1].ps_id == "" and last[1].result == "REFUS : certificat inconnu"


def test_update_of_a_replaced_document_uses_the_shared_logical_id(dmp: Dmp) -> None:
    from cda import build as cbuild
    from cda import parse

    first = dmp.document()
    assert status_of(dmp.deposit(caller("gp"), build.DepositDocument(first))[0]) == xds.SUCCESS
    old = dmp.store.documents(PATIENT.ins)[0]
    second = dmp.document(replaces=cbuild.Replacement.of(parse(first)), title="V2")
    resp, dep = dmp.deposit(caller("gp"), build.DepositDocument(second, replaces=old.entry_uuid))
    assert status_of(resp) == xds.SUCCESS
    _authorise(dmp, "gp")
    entry = _entry(dmp, caller("gp"), dep.unique_ids[0])
    assert entry.get("lid") == old.lid != entry.get("id")
    body = build.update_confidentiality(PATIENT.ins, PATIENT.oid, entry, ["N", "MASQUE_PS"])
    assert status_of(dmp.call("registry", body, caller("gp"))) == xds.SUCCESS
    assert dmp.store.document(unique_id=dep.unique_ids[0]).masked


# -- TD1.x (patients) ----------------------------------------------------------------------------------------
def _td13a(dmp: Dmp, who, ins: str = PATIENT.ins, oid: str = PATIENT.oid) -> etree._Element:
    resp = dmp.call("patients", build.existence_query(ins, oid, reason="CNSLT_DATA"), who)
    assert resp.action == "urn:hl7-org:v3:PRPA_IN201308UV02"
    return resp.body


def test_td13a_reads_administrative_data_with_consultation_rights(dmp: Dmp) -> None:
    body = _td13a(dmp, caller("gp"))
    ack = body.find(".//{*}acknowledgement")
    assert ack.get("typeCode") == "AE"
    assert ack.find("{*}acknowledgementDetail/{*}code").get("code") == "DMPAccessNotAuthorized"
    assert body.find(".//{*}patientPerson") is None  # nothing leaks before the authorisation
    _authorise(dmp, "gp")
    body = _td13a(dmp, caller("gp"))
    assert body.find(".//{*}acknowledgement").get("typeCode") == "AA"
    person = body.find(".//{*}patient/{*}patientPerson")
    assert person.findtext("{*}name/{*}family") == PATIENT.family_name
    assert person.find("{*}birthTime").get("value") == PATIENT.birth_date
    assert person.find("{*}administrativeGenderCode").get("code") == PATIENT.sex
    assert body.find(".//{*}patient/{*}id").get("extension") == PATIENT.ins
    [trace] = [t for t in dmp.store.traces(PATIENT.ins) if t.transaction == "TD1.3a" and "OK" in t.result]
    assert trace.ps_id == GP
    dmp.store.block(PATIENT.ins, NURSE)
    body = _td13a(dmp, caller("nurse"))
    assert body.find(".//{*}acknowledgementDetail/{*}code").get("code") == "DMPAccessBlocked"


def test_td13a_unknown_dmp_and_bad_reason(dmp: Dmp) -> None:
    other = demo.DEMO_OPPOSED
    body = _td13a(dmp, caller("gp", patient=other), other.ins, other.oid)
    assert body.find(".//{*}acknowledgementDetail/{*}code").get("code") == "XDSUnknownPatientId"
    body = dmp.call(
        "patients", build.existence_query(PATIENT.ins, PATIENT.oid, reason="AUTRE"), caller("gp")
    ).body
    assert body.find(".//{*}acknowledgementDetail/{*}code").get("code") == "INVALID_REASON"


@pytest.mark.parametrize("message", ["PRPA_IN201311UV02", "PRPA_IN201314UV02"])
def test_td1x_create_update_close_are_a_clear_soap_fault(dmp: Dmp, message: str) -> None:
    body = etree.Element(f"{{urn:hl7-org:v3}}{message}")
    with pytest.raises(SoapFault) as err:
        dmp.call("patients", body, caller("gp"))
    assert err.value.subcode == "sandbox:UnsupportedTransaction"
    assert "console patient" in err.value.reason_fr
    assert any(t.transaction == "TD1.x" for t in dmp.store.traces(PATIENT.ins))


# -- ITI-57 versions (dmp-protocol.md §7.8, §8.5) ------------------------------------------------------------
def _version(entry: etree._Element) -> str:
    return entry.find(f"{{{xds.RIM}}}VersionInfo").get("versionName")


def test_update_creates_a_new_version_entry_and_deprecates_the_previous(dmp: Dmp) -> None:
    uid = _deposit(dmp)
    _authorise(dmp, "gp")
    v1 = _entry(dmp, caller("gp"), uid)
    body = build.update_confidentiality(PATIENT.ins, PATIENT.oid, v1, ["N", "MASQUE_PS"])
    assert status_of(dmp.call("registry", body, caller("gp"))) == xds.SUCCESS
    v2 = _entry(dmp, caller("gp"), uid)  # GetDocuments by uniqueId: the latest version
    assert v2.get("id") != v1.get("id")
    assert v2.get("lid") == v1.get("lid") == v1.get("id")
    assert (_version(v1), _version(v2)) == ("1", "2")
    assert v2.get("status") == APPROVED
    # every object inside the new entry points at it, with ids of its own
    inner = list(v2.iter(f"{{{xds.RIM}}}Classification", f"{{{xds.RIM}}}ExternalIdentifier"))
    assert all(c.get("classifiedObject", c.get("registryObject")) == v2.get("id") for c in inner)
    assert not {c.get("id") for c in inner} & {c.get("id") for c in v1.iter()}
    old = dmp.store.document(entry_uuid=v1.get("id"))
    assert old.status == "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated" and not old.masked
    # FindDocuments (Approved) lists the document once, as its new version; Deprecated lists the old one
    uids, resp = _find(dmp, caller("gp"))
    entries = list(resp.body.iter(f"{{{xds.RIM}}}ExtrinsicObject"))
    assert uids == [uid] and [e.get("id") for e in entries] == [v2.get("id")]
    _, resp = _find(dmp, caller("gp"), statuses=("urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated",))
    assert [e.get("id") for e in resp.body.iter(f"{{{xds.RIM}}}ExtrinsicObject")] == [v1.get("id")]
    # the bytes are the same document
    resp = dmp.call("repository", build.retrieve([uid]), caller("gp"))
    assert status_of(resp) == xds.SUCCESS
    assert dmp.store.content(v2.get("id")) == dmp.store.content(v1.get("id"))
    assert dmp.store.document_count(PATIENT.ins) == 1


def test_an_update_naming_a_stale_entry_uuid_is_a_version_error(dmp: Dmp) -> None:
    uid = _deposit(dmp)
    _authorise(dmp, "gp")
    v1 = _entry(dmp, caller("gp"), uid)
    body = build.update_confidentiality(PATIENT.ins, PATIENT.oid, v1, ["N", "MASQUE_PS"])
    assert status_of(dmp.call("registry", body, caller("gp"))) == xds.SUCCESS
    # archive the old entry: it is no longer the current version
    resp = dmp.call(
        "registry",
        build.update_status(PATIENT.ins, PATIENT.oid, v1.get("id"), APPROVED, ARCHIVED),
        caller("gp"),
    )
    assert errors_of(resp)[0][0] == "XDSMetadataVersionError"
    assert "version courante" in errors_of(resp)[0][1]
    # a new version must not reuse a registered entryUUID as its id
    again = build.update_confidentiality(PATIENT.ins, PATIENT.oid, _entry(dmp, caller("gp"), uid), ["N"])
    for el in again.iter(f"{{{xds.RIM}}}ExtrinsicObject", f"{{{xds.RIM}}}Association"):
        for attr in ("id", "targetObject"):
            if el.get(attr) == "Document01":
                el.set(attr, v1.get("id"))
    assert errors_of(dmp.call("registry", again, caller("gp")))[0][0] == "XDSMetadataVersionError"
    # the current entry is archived in place (no new version for a status change)
    v2 = _entry(dmp, caller("gp"), uid)
    resp = dmp.call(
        "registry",
        build.update_status(PATIENT.ins, PATIENT.oid, v2.get("id"), APPROVED, ARCHIVED),
        caller("gp"),
    )
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
    assert dmp.store.document(entry_uuid=v2.get("id")).status == ARCHIVED
