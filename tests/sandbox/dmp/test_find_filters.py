"""ITI-18 FindDocuments: each optional filter of dmp-protocol.md §7.6 (class, type, practice, facility,
format, confidentiality, eventCode, author, creation/service times, status), as an independent
client sends them."""

from __future__ import annotations

import datetime as dt

import pytest
from lxml import etree

from sandbox.dmp import build, xds
from sandbox.dmp.store import APPROVED, DEPRECATED, MASQUE_PS, StoredDocument
from sandbox.dmp.xds import RIM, q
from tests.sandbox.dmp.conftest import PATIENT, Dmp, caller, errors_of, status_of

UTC = dt.UTC
EVENT_SCHEME = "1.2.250.1.213.2.5"  # CCAM


def _deposit(
    dmp: Dmp,
    profile: str,
    type_code: str,
    when: dt.datetime,
    *,
    conf: tuple[str, ...] = ("N",),
    events: tuple[str, ...] = (),
) -> str:
    doc = build.DepositDocument(
        dmp.document(profile, type_code, "Document", effective=when), confidentiality=conf
    )
    dep = build.provide_and_register(
        [doc],
        signer=(dmp.pki.card(profile).sign_key, dmp.pki.card(profile).sign_cert, dmp.pki.card(profile).chain),
    )
    entry = next(e for e in dep.body.iter(q(RIM, "ExtrinsicObject")) if e.get("id") == "Document01")
    for code in events:  # eventCodeList Classification, as in dmp-protocol.md §8.2
        cl = etree.SubElement(
            entry,
            q(RIM, "Classification"),
            classificationScheme=xds.S_EVENT,
            classifiedObject=entry.get("id"),
            nodeRepresentation=code,
            id=f"ev-{code}",
        )
        slot = etree.SubElement(cl, q(RIM, "Slot"), name="codingScheme")
        etree.SubElement(etree.SubElement(slot, q(RIM, "ValueList")), q(RIM, "Value")).text = EVENT_SCHEME
        name = etree.SubElement(cl, q(RIM, "Name"))
        etree.SubElement(name, q(RIM, "LocalizedString"), value=f"Acte {code}")
        # the schema wants Classifications before ExternalIdentifiers
        first_ext = entry.find(q(RIM, "ExternalIdentifier"))
        if first_ext is not None:
            first_ext.addprevious(cl)
    resp = dmp.call("repository", dep.body, caller(profile), dep.attachments)
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
    return dep.unique_ids[0]


@pytest.fixture
def docs(dmp: Dmp) -> dict[str, str]:
    for profile in ("gp", "specialist"):
        dmp.store.set_authorisation(PATIENT.ins, caller(profile).id_nat)
    return {
        "gp_old": _deposit(
            dmp, "gp", "11488-4", dt.datetime(2024, 1, 10, 9, 0, tzinfo=UTC), events=("DEQP003",)
        ),
        "gp_bio": _deposit(
            dmp, "gp", "11502-2", dt.datetime(2024, 6, 15, 12, 0, tzinfo=UTC), events=("DEQP003", "YYYY001")
        ),
        "spe_masked": _deposit(
            dmp, "specialist", "11488-4", dt.datetime(2025, 3, 1, 8, 30, tzinfo=UTC), conf=("N", MASQUE_PS)
        ),
    }


def _find(dmp: Dmp, *, statuses=(APPROVED,), who: str = "gp", **slots: str | list[str]) -> set[str]:
    body = build.find_documents(PATIENT.ins, PATIENT.oid, statuses)
    adhoc = body.find(q(RIM, "AdhocQuery"))
    for name, values in slots.items():
        slot = etree.SubElement(adhoc, q(RIM, "Slot"), name=f"$XDSDocumentEntry{name}")
        vl = etree.SubElement(slot, q(RIM, "ValueList"))
        for v in [values] if isinstance(values, str) else values:
            etree.SubElement(vl, q(RIM, "Value")).text = v
    resp = dmp.call("registry", body, caller(who))
    assert resp.body.get("status") == xds.SUCCESS, errors_of(resp)
    return {
        e.get("value")
        for e in resp.body.iter(q(RIM, "ExternalIdentifier"))
        if e.get("identificationScheme") == xds.E_DOC_UNIQUE
    }


def _stored(dmp: Dmp, uid: str) -> StoredDocument:
    doc = dmp.store.document(unique_id=uid)
    assert doc is not None
    return doc


def test_no_filter_returns_everything_the_gp_may_see(dmp: Dmp, docs: dict[str, str]) -> None:
    # gp is not the author of the masked document and not médecin traitant: it is absent
    assert _find(dmp) == {docs["gp_old"], docs["gp_bio"]}
    assert _find(dmp, who="specialist") == set(docs.values())


@pytest.mark.parametrize(
    ("slot", "attr"),
    [
        ("ClassCode", "class_code"),
        ("TypeCode", "type_code"),
        ("PracticeSettingCode", "practice_code"),
        ("HealthcareFacilityTypeCode", "facility_code"),
        ("FormatCode", "format_code"),
    ],
)
def test_coded_filters(dmp: Dmp, docs: dict[str, str], slot: str, attr: str) -> None:
    stored = [_stored(dmp, uid) for uid in docs.values()]
    for doc in stored:
        code = getattr(doc, attr)
        expected = {d.unique_id for d in stored if getattr(d, attr) == code}
        assert _find(dmp, who="specialist", **{slot: f"('{code}^^any-scheme')"}) == expected
        # several codes in one value list are ORed; an unknown code selects nothing
        assert _find(dmp, who="specialist", **{slot: f"('{code}','NOPE')"}) == expected
    assert _find(dmp, who="specialist", **{slot: "('NOPE^^1.2.3')"}) == set()


def test_type_filter_selects_one_document(dmp: Dmp, docs: dict[str, str]) -> None:
    assert _find(dmp, TypeCode="('11502-2^^2.16.840.1.113883.6.1')") == {docs["gp_bio"]}


def test_confidentiality_filter(dmp: Dmp, docs: dict[str, str]) -> None:
    assert _find(dmp, who="specialist", ConfidentialityCode="('MASQUE_PS^^1.2.250.1.213.1.1.4.13')") == {
        docs["spe_masked"]
    }
    assert _find(dmp, who="specialist", ConfidentialityCode="('N^^2.16.840.1.113883.5.25')") == set(
        docs.values()
    )
    # two Value elements are ANDed (IHE ITI-18)
    assert _find(
        dmp,
        who="specialist",
        ConfidentialityCode=["('N^^2.16.840.1.113883.5.25')", "('MASQUE_PS^^1.2.250.1.213.1.1.4.13')"],
    ) == {docs["spe_masked"]}


def test_event_code_filter(dmp: Dmp, docs: dict[str, str]) -> None:
    assert _find(dmp, EventCodeList=f"('DEQP003^^{EVENT_SCHEME}')") == {docs["gp_old"], docs["gp_bio"]}
    assert _find(dmp, EventCodeList=f"('YYYY001^^{EVENT_SCHEME}')") == {docs["gp_bio"]}
    assert _find(dmp, EventCodeList="('YYYY001^^2.16.840.1.113883.6.3')") == set()  # other coding scheme
    assert _find(dmp, EventCodeList=[f"('DEQP003^^{EVENT_SCHEME}')", f"('YYYY001^^{EVENT_SCHEME}')"]) == {
        docs["gp_bio"]
    }
    assert _find(dmp, EventCodeList=f"('ZZZZ999^^{EVENT_SCHEME}','YYYY001^^{EVENT_SCHEME}')") == {
        docs["gp_bio"]
    }


def test_author_person_filter(dmp: Dmp, docs: dict[str, str]) -> None:
    gp, spe = caller("gp").id_nat, caller("specialist").id_nat
    assert _find(dmp, who="specialist", AuthorPerson=f"'{gp}%'") == {docs["gp_old"], docs["gp_bio"]}
    assert _find(dmp, who="specialist", AuthorPerson=f"'{spe}^%'") == {docs["spe_masked"]}
    assert _find(dmp, who="specialist", AuthorPerson=["'%^NOBODY^%'", f"'{spe}%'"]) == {docs["spe_masked"]}
    assert _find(dmp, who="specialist", AuthorPerson="'899999999999%'") == set()
    assert _find(dmp, who="specialist", AuthorPerson=f"'{gp[:-1]}_%'") == {docs["gp_old"], docs["gp_bio"]}


def test_creation_time_range(dmp: Dmp, docs: dict[str, str]) -> None:
    who = "specialist"
    assert _find(dmp, who=who, CreationTimeFrom="20240601") == {docs["gp_bio"], docs["spe_masked"]}
    assert _find(dmp, who=who, CreationTimeTo="20240601") == {docs["gp_old"]}
    assert _find(dmp, who=who, CreationTimeFrom="20240101", CreationTimeTo="20250101") == {
        docs["gp_old"],
        docs["gp_bio"],
    }
    # "To" is exclusive, "From" inclusive (IHE), to the second
    assert _find(dmp, who=who, CreationTimeFrom="20240615120000", CreationTimeTo="20240615120001") == {
        docs["gp_bio"]
    }
    assert _find(dmp, who=who, CreationTimeTo="20240615120000") == {docs["gp_old"]}


def test_service_time_ranges(dmp: Dmp, docs: dict[str, str]) -> None:
    stored = [_stored(dmp, uid) for uid in docs.values()]
    for slot, attr in (("ServiceStartTime", "service_start"), ("ServiceStopTime", "service_stop")):
        with_time = {d.unique_id: getattr(d, attr) for d in stored if getattr(d, attr)}
        cut = "20240601"
        assert _find(dmp, who="specialist", **{f"{slot}From": cut}) == {
            u for u, t in with_time.items() if t >= cut
        }
        assert _find(dmp, who="specialist", **{f"{slot}To": cut}) == {
            u for u, t in with_time.items() if t < cut
        }


def test_status_filter_deprecated_and_approved(dmp: Dmp, docs: dict[str, str]) -> None:
    from cda import build as cbuild
    from cda import parse

    first = dmp.document("gp", "11488-4", "Version 1")
    resp, dep = dmp.deposit(caller("gp"), build.DepositDocument(first))
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
    v1 = dep.unique_ids[0]
    second = dmp.document("gp", "11488-4", "Version 2", replaces=cbuild.Replacement.of(parse(first)))
    resp, dep = dmp.deposit(caller("gp"), build.DepositDocument(second, replaces=_stored(dmp, v1).entry_uuid))
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
    v2 = dep.unique_ids[0]
    assert _find(dmp) == {docs["gp_old"], docs["gp_bio"], v2}
    assert _find(dmp, statuses=(DEPRECATED,)) == {v1}
    assert _find(dmp, statuses=(APPROVED, DEPRECATED)) == {docs["gp_old"], docs["gp_bio"], v1, v2}


# -- FindSubmissionSets -> GetAssociations -> GetDocuments (DMPi: "what was submitted between two dates") ----
FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"


def _stored_query(dmp: Dmp, query_id: str, who: str = "gp", **slots: str) -> etree._Element:
    body = build.find_documents(PATIENT.ins, PATIENT.oid)
    adhoc = body.find(q(RIM, "AdhocQuery"))
    adhoc.set("id", query_id)
    for slot in list(adhoc):
        adhoc.remove(slot)
    for name, value in slots.items():
        slot = etree.SubElement(adhoc, q(RIM, "Slot"), name=name)
        etree.SubElement(etree.SubElement(slot, q(RIM, "ValueList")), q(RIM, "Value")).text = value
    return dmp.call("registry", body, caller(who)).body


def test_find_submission_sets_then_associations_then_documents(
    dmp: Dmp, docs: dict[str, str], shared_dir
) -> None:
    schema = etree.XMLSchema(file=str(shared_dir / "schemas" / "xds" / "offline-dmp.xsd"))
    patient = f"'{PATIENT.ins}^^^&{PATIENT.oid}&ISO^NH'"
    approved = "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"
    answer = _stored_query(
        dmp,
        FIND_SUBMISSION_SETS,
        **{"$XDSSubmissionSetPatientId": patient, "$XDSSubmissionSetStatus": approved},
    )
    assert answer.get("status") == xds.SUCCESS, errors_of_body(answer)
    assert schema.validate(etree.fromstring(etree.tostring(answer))), schema.error_log
    packages = list(answer.iter(q(RIM, "RegistryPackage")))
    # the gp sees two submission sets: the specialist's (masked document only) is absent
    assert len(packages) == 2
    assert all(
        any(c.get("classificationNode") == xds.SUBMISSION_SET_NODE for c in p.iter(q(RIM, "Classification")))
        for p in packages
    )
    # a time window: the submission sets were all registered now; a window in the past selects none
    none = _stored_query(
        dmp,
        FIND_SUBMISSION_SETS,
        **{
            "$XDSSubmissionSetPatientId": patient,
            "$XDSSubmissionSetStatus": approved,
            "$XDSSubmissionSetSubmissionTimeTo": "20200101",
        },
    )
    assert list(none.iter(q(RIM, "RegistryPackage"))) == []
    ss_uuid = packages[0].get("id")
    assoc = _stored_query(dmp, GET_ASSOCIATIONS, **{"$uuid": f"('{ss_uuid}')"})
    assert schema.validate(etree.fromstring(etree.tostring(assoc))), schema.error_log
    [link] = list(assoc.iter(q(RIM, "Association")))
    assert link.get("sourceObject") == ss_uuid and link.get("associationType") == xds.HAS_MEMBER
    got = dmp.call("registry", build.get_documents(entry_uuids=[link.get("targetObject")]), caller("gp")).body
    [entry] = list(got.iter(q(RIM, "ExtrinsicObject")))
    assert entry.get("id") == link.get("targetObject")
    # the specialist's masked document: its submission set and association are absent for the gp
    masked_uuid = _stored(dmp, docs["spe_masked"]).entry_uuid
    assert (
        list(
            _stored_query(dmp, GET_ASSOCIATIONS, **{"$uuid": f"('{masked_uuid}')"}).iter(
                q(RIM, "Association")
            )
        )
        == []
    )
    assert (
        len(
            list(
                _stored_query(
                    dmp, GET_ASSOCIATIONS, who="specialist", **{"$uuid": f"('{masked_uuid}')"}
                ).iter(q(RIM, "Association"))
            )
        )
        == 1
    )


def test_submission_queries_parameter_errors(dmp: Dmp, docs: dict[str, str]) -> None:
    answer = _stored_query(dmp, FIND_SUBMISSION_SETS)
    assert errors_of_body(answer)[0][0] == "XDSStoredQueryParamNumber"
    answer = _stored_query(
        dmp,
        FIND_SUBMISSION_SETS,
        **{"$XDSSubmissionSetPatientId": "'188075935022123^^^&1.2.250.1.213.1.4.10&ISO^NH'",
           "$XDSSubmissionSetStatus": "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"},
    )  # fmt: skip
    assert errors_of_body(answer)[0][0] == "XDSPatientIdDoesNotMatch"
    assert errors_of_body(_stored_query(dmp, GET_ASSOCIATIONS))[0][0] == "XDSStoredQueryParamNumber"


def errors_of_body(body: etree._Element) -> list[tuple[str, str]]:
    return [(e.get("errorCode", ""), e.get("codeContext", "")) for e in body.iter("{*}RegistryError")]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("2024-06-01", "XDSRegistryError"),
        ("20241", "XDSRegistryError"),
        (["2024", "2025"], "XDSStoredQueryParamNumber"),
    ],
)
def test_bad_time_parameter_is_a_registry_error(dmp: Dmp, docs: dict[str, str], value, code) -> None:
    body = build.find_documents(PATIENT.ins, PATIENT.oid)
    adhoc = body.find(q(RIM, "AdhocQuery"))
    slot = etree.SubElement(adhoc, q(RIM, "Slot"), name="$XDSDocumentEntryCreationTimeFrom")
    vl = etree.SubElement(slot, q(RIM, "ValueList"))
    for v in [value] if isinstance(value, str) else value:
        etree.SubElement(vl, q(RIM, "Value")).text = v
    resp = dmp.call("registry", body, caller("gp"))
    [(got, context)] = errors_of(resp)
    assert got == code and "CreationTimeFrom" in context


def test_entry_type_filter(dmp: Dmp, docs: dict[str, str]) -> None:
    stable, on_demand = xds.DOC_ENTRY_TYPE, "urn:uuid:34268e47-0d1d-4e1a-8f73-e8a5b0b8b2c7"
    assert _find(dmp, Type=f"('{stable}')") == {docs["gp_old"], docs["gp_bio"]}
    assert _find(dmp, Type=f"('{stable}','{on_demand}')") == {docs["gp_old"], docs["gp_bio"]}
    assert _find(dmp, Type=f"('{on_demand}')") == set()
