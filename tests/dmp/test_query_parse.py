"""The fast TD3.1 parser (ebrim.parse_document_entry, one C-level walk; ebrim.QueryEntries, the same walk
entry by entry while the answer is parsed) against a plain reference parse and the previous parser.

The reference below is written the obvious way (find/findall per field, no caches, no state machine), so a
shortcut in the fast path that drops, reorders or misattributes a field shows up as a difference. The
previous parser (tests/fixtures/td31_oracle.py) is the oracle of the varied 2,000-entry answer of
benchmarks/bench_agent.py; tests/e2e/test_find_parse_oracle.py does the same on the sandbox's answers.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from ps_agent.dmp import ebrim, envelope
from ps_agent.dmp.errors import ProtocolError, RegistryRefusal
from ps_agent.dmp.model import (
    Author,
    Code,
    DocumentEntry,
    PatientId,
    Status,
    Visibility,
    parse_xds_time,
)
from ps_agent.dmp.xmlns import QUERY, RIM, q, safe_parse, safe_parse_taking
from tests.fixtures import td31, td31_oracle

R = {"rim": RIM}


def _slot_values(el: etree._Element) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for s in el.findall("rim:Slot", R):
        out[s.get("name", "")] = tuple(v.text or "" for v in s.findall("rim:ValueList/rim:Value", R))
    return out


def _name(el: etree._Element, tag: str = "Name") -> str:
    ls = el.find(f"rim:{tag}/rim:LocalizedString", R)
    return ls.get("value", "") if ls is not None else ""


def reference_parse(eo: etree._Element) -> DocumentEntry:
    slots = _slot_values(eo)

    def first(name: str) -> str:
        return (slots.get(name) or ("",))[0]

    authors, codes = [], {}
    for cl in eo.findall("rim:Classification", R):
        cs = _slot_values(cl)
        scheme = cl.get("classificationScheme", "")
        if scheme == ebrim.DE_AUTHOR:
            specialty = None
            spec = (cs.get("authorSpecialty") or ("",))[0]
            if spec:
                p = [*spec.split("^"), "", ""]
                specialty = Code(p[0], p[2], p[1])
            authors.append(
                Author.from_xcn(
                    (cs.get("authorPerson") or ("",))[0],
                    (cs.get("authorInstitution") or ("",))[0],
                    specialty,
                    (cs.get("authorRole") or ("",))[0],
                )
            )
        else:
            code = Code(cl.get("nodeRepresentation", ""), (cs.get("codingScheme") or ("",))[0], _name(cl))
            codes.setdefault(scheme, []).append(code)
    ext = {x.get("identificationScheme"): x.get("value", "") for x in eo.findall("rim:ExternalIdentifier", R)}
    vi = eo.find("rim:VersionInfo", R)

    def one(scheme: str) -> Code:
        return codes.get(scheme, [Code("", "")])[0]

    known = {
        "creationTime", "languageCode", "legalAuthenticator", "serviceStartTime", "serviceStopTime",
        "sourcePatientId", "sourcePatientInfo", "hash", "size", "repositoryUniqueId",
    }  # fmt: skip
    return DocumentEntry(
        unique_id=ext[ebrim.DE_UNIQUE_ID],
        patient_id=PatientId.parse_cx(ext[ebrim.DE_PATIENT_ID]),
        type_code=one(ebrim.DE_TYPE),
        class_code=one(ebrim.DE_CLASS),
        format_code=one(ebrim.DE_FORMAT),
        healthcare_facility_type=one(ebrim.DE_FACILITY),
        practice_setting=one(ebrim.DE_PRACTICE),
        creation_time=parse_xds_time(first("creationTime")) or datetime(1970, 1, 1, tzinfo=UTC),
        title=_name(eo),
        comments=_name(eo, "Description"),
        mime_type=eo.get("mimeType", ""),
        language=first("languageCode"),
        authors=tuple(authors),
        confidentiality=tuple(codes.get(ebrim.DE_CONFIDENTIALITY, ())),
        event_codes=tuple(codes.get(ebrim.DE_EVENT, ())),
        service_start=parse_xds_time(first("serviceStartTime")),
        service_stop=parse_xds_time(first("serviceStopTime")),
        legal_authenticator=first("legalAuthenticator"),
        source_patient_id=first("sourcePatientId"),
        source_patient_info=slots.get("sourcePatientInfo", ()),
        entry_uuid=eo.get("id", ""),
        logical_id=eo.get("lid", ""),
        status=eo.get("status", ""),
        version=vi.get("versionName", "") if vi is not None else "",
        repository_unique_id=first("repositoryUniqueId"),
        hash=first("hash"),
        size=int(first("size")) if first("size").isdecimal() else None,
        extra_slots={k: v for k, v in slots.items() if k not in known},
    )


GP = Author(
    "899700000013",
    "MEDECIN-GENERALISTE",
    "JEAN",
    "CABINET MEDICAL DU PARC",
    "380000000100017",
    Code("G15_10/SM26", "1.2.250.1.213.1.1.4.5", "Médecin - Qualifié en Médecine Générale (SM)"),
)
NURSE = Author("899700000054", "INFIRMIER", "PAUL", role="ATTSOIN")  # no institution, no specialty
SPECIALIST = Author("899700000021", "CARDIO", "ANNE", "CLINIQUE", "380000000200015", Code("SM04", "x", ""))
EVENTS = (Code("11488-4", "2.16.840.1.113883.6.1", "CR"), Code("GLB", "1.2.250.1.213.2.5", "Événement"))


def varied_entries(patient: PatientId) -> list[tuple[DocumentEntry, str]]:
    """(entry, status) pairs covering the variations a real DMP answer mixes."""
    base = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    out = []
    for n in range(40):
        kw: dict = dict(
            unique_id=f"1.2.250.1.999.1.1.{n}",
            patient_id=patient,
            type_code=Code(f"{11000 + n % 3}-0", "2.16.840.1.113883.6.1", f"Type {n % 3}"),
            class_code=Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
            format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "PDF"),
            healthcare_facility_type=Code("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
            practice_setting=Code("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
            creation_time=base + timedelta(days=n, seconds=n),
            title=f"Document n° {n} — « accentué »",
            authors=((GP,), (GP, NURSE), (SPECIALIST, GP, NURSE), ())[n % 4],
            confidentiality=Visibility(
                masked_to_professionals=n % 3 == 0, invisible_to_patient=n % 5 == 0
            ).codes(),
            event_codes=EVENTS[: n % 3],
            source_patient_info=("PID-5|DUPONT^MARIE^^^^^L", "PID-7|19770501", "PID-8|F")[: n % 4],
            hash=f"{n:040x}" if n % 7 else "",
            size=n * 100 if n % 6 else None,
            repository_unique_id="1.2.250.1.213.4.1.1.1.2",
        )
        if n % 2:
            kw["comments"] = f"Commentaire {n}"
            kw["service_start"] = base + timedelta(days=n - 1)
        if n % 4 == 1:
            kw["service_stop"] = base + timedelta(days=n)
            kw["legal_authenticator"] = GP.xcn
        if n % 9 == 0:
            kw["language"] = ""
            kw["mime_type"] = "application/pdf"
        status = Status.DEPRECATED if n % 8 == 3 else Status.APPROVED
        out.append((DocumentEntry(**kw), status))
    return out


def varied_answer(patient: PatientId) -> etree._Element:
    root = etree.Element(q(QUERY, "AdhocQueryResponse"), status=ebrim.SUCCESS)
    rol = etree.SubElement(root, q(RIM, "RegistryObjectList"))
    ids = ebrim._Ids()
    for n, (e, status) in enumerate(varied_entries(patient)):
        eo = ebrim.document_entry_element(rol, ids, e, f"urn:uuid:{n}", lid=f"urn:uuid:l{n}", status=status)
        if n % 3:
            anchor = eo.find(q(RIM, "Description"))
            anchor = anchor if anchor is not None else eo.find(q(RIM, "Name"))
            anchor.addnext(etree.Element(q(RIM, "VersionInfo"), versionName=str(1 + n % 3)))
        if n == 13:  # a size that is not a decimal number ("²" is a digit for str.isdigit, not for int)
            for slot in eo.iterchildren(q(RIM, "Slot")):
                if slot.get("name") == "size":
                    slot[0][0].text = "²"
        if n % 5 == 2:  # registry-specific slot, kept in extra_slots
            slot = etree.Element(q(RIM, "Slot"), name="urn:asip:ci-sis:2010:documentStatus")
            vl = etree.SubElement(slot, q(RIM, "ValueList"))
            for v in ("a", "b"):
                etree.SubElement(vl, q(RIM, "Value")).text = v
            eo.insert(0, slot)
        if n % 11 == 4:  # a Classification without Name nor codingScheme (missing optional parts)
            for cl in eo.findall(q(RIM, "Classification")):
                if cl.get("classificationScheme") == ebrim.DE_PRACTICE:
                    for child in list(cl):
                        cl.remove(child)
    # through bytes, as a real answer arrives
    return etree.fromstring(etree.tostring(root))


def _assert_same(parsed: DocumentEntry, ref: DocumentEntry) -> None:
    for f in fields(DocumentEntry):
        assert getattr(parsed, f.name) == getattr(ref, f.name), (ref.entry_uuid, f.name)
    assert parsed == ref


def test_fast_parse_equals_reference_parse_on_a_varied_answer(patient):
    answer = varied_answer(patient)
    parsed = ebrim.parse_query_response(answer)
    eos = answer.findall("rim:RegistryObjectList/rim:ExtrinsicObject", R)
    assert len(parsed) == len(eos) == 40
    for p, eo in zip(parsed, eos, strict=True):
        _assert_same(p, reference_parse(eo))
    # The variations are really there (a test that cannot fail is a defect).
    assert {len(p.authors) for p in parsed} == {0, 1, 2, 3}
    assert {len(p.event_codes) for p in parsed} == {0, 1, 2}
    assert any(p.visibility.masked_to_professionals for p in parsed)
    assert any(p.status == Status.DEPRECATED for p in parsed)
    assert any(p.extra_slots for p in parsed) and any(p.size is None for p in parsed)
    assert parsed[13].size is None and parsed[14].size == 1400
    assert any(p.practice_setting == Code("AMBULATOIRE", "", "") for p in parsed)
    assert {p.version for p in parsed} == {"", "2", "3"}


def _harden(answer: etree._Element) -> bytes:
    """The registry rendering made as awkward as a well-formed ebRIM answer may be: comments everywhere,
    pretty-printing whitespace, the rim namespace as the default one, CDATA and character references,
    other registry objects between the entries, objects nested where the document's must not be read
    (a Classification in a Classification, Slots and Names in an ExternalIdentifier), a Classification
    with its Name before its Slot, an empty ValueList, a second Name/Description/VersionInfo (the first
    wins), a repeated Slot name (the last wins), Slots after the Classifications."""
    rol = answer.find(q(RIM, "RegistryObjectList"))
    eos = list(rol)

    def el(tag: str, parent: etree._Element | None = None, **attrs: str) -> etree._Element:
        e = (
            etree.Element(q(RIM, tag), attrs)
            if parent is None
            else etree.SubElement(parent, q(RIM, tag), attrs)
        )
        return e

    def slot(parent: etree._Element, name: str, *values: str) -> etree._Element:
        s = el("Slot", parent, name=name)
        vl = el("ValueList", s)
        for v in values:
            el("Value", vl).text = v
        return s

    for n, eo in enumerate(eos):
        cls = eo.findall(q(RIM, "Classification"))
        if n % 3 == 0:
            eo.insert(0, etree.Comment(f" entrée {n} "))
            cls[0].insert(0, etree.Comment("<rim:Slot name='codingScheme'>faux</rim:Slot>"))
            first_slot = eo.find(q(RIM, "Slot"))
            first_slot[0].insert(0, etree.Comment("valeur"))
        if n % 4 == 1:  # a Classification nested in a Classification, with a Slot, a Name and a Value
            inner = el("Classification", None, classificationScheme=ebrim.DE_TYPE, nodeRepresentation="FAUX")
            slot(inner, "codingScheme", "faux")
            el("LocalizedString", el("Name", inner), value="Faux type")
            cls[-1].append(inner)
        if n % 5 == 2:  # Slots and a Classification in an ExternalIdentifier
            xid = eo.find(q(RIM, "ExternalIdentifier"))
            xid.insert(0, slot(xid, "creationTime", "19990101000000"))
            el("Classification", xid, classificationScheme=ebrim.DE_CLASS, nodeRepresentation="FAUX")
        if n % 6 == 3:  # Name before Slot in a Classification; an empty ValueList; a repeated Slot
            code_cl = next(c for c in cls if c.get("classificationScheme") != ebrim.DE_AUTHOR)
            name = code_cl.find(q(RIM, "Name"))
            if name is not None:
                code_cl.insert(0, name)
            el("ValueList", el("Slot", eo, name="urn:vide"))
            slot(eo, "languageCode", "de-DE")  # after the Classifications, the last one of the name
        if n % 7 == 4:  # a second Name, Description and VersionInfo: the first ones win
            anchor = eo.find(q(RIM, "VersionInfo"))
            anchor.addnext(el("VersionInfo", None, versionName="99"))
            el("LocalizedString", el("Name", None), value="Second titre").getparent()
            second = el("Name", None)
            el("LocalizedString", second, value="Second titre")
            anchor.addnext(second)
        if n % 8 == 5:  # other registry objects of the list between the entries
            pkg = el("RegistryPackage", None, id=f"urn:uuid:pkg{n}")
            slot(pkg, "submissionTime", "20200101000000")
            el("LocalizedString", el("Name", pkg), value="Lot")
            el("Classification", pkg, classificationScheme=ebrim.DE_TYPE, nodeRepresentation="FAUX")
            eo.addnext(pkg)
            pkg.addnext(el("Association", None, id=f"urn:uuid:as{n}", sourceObject="a", targetObject="b"))
            eo.addprevious(el("ObjectRef", None, id=f"urn:uuid:ref{n}"))
    for v in answer.iter(q(RIM, "Value")):
        if v.text and v.text.startswith("PID-8"):
            v.text = etree.CDATA(v.text)
    data = etree.tostring(answer, pretty_print=True, encoding="UTF-8")
    # the rim namespace as the default one, and character references instead of two letters
    data = data.replace(b"<rim:", b"<").replace(b"</rim:", b"</").replace(b'xmlns:rim="', b'xmlns="')
    data = data.replace("é".encode(), b"&#233;").replace("È".encode(), b"&#xC8;")
    return data


def test_fast_parse_equals_reference_parse_on_a_hard_registry_answer(patient):
    entries = td31.varied_entries(patient, 400, seed=43)
    data = _harden(td31.answer_element(entries, seed=43))
    assert b"<!--" in data and b"CDATA" in data and b"&#233;" in data and b"<rim:" not in data
    answer = safe_parse(data)
    parsed = ebrim.parse_query_response(answer)
    eos = answer.findall("rim:RegistryObjectList/rim:ExtrinsicObject", R)
    assert len(parsed) == len(eos) == 400
    for p, eo in zip(parsed, eos, strict=True):
        _assert_same(p, reference_parse(eo))
    # the model is the registry's: what was deposited, with the awkward parts read as a tree walk would
    for n, (p, (e, status)) in enumerate(zip(parsed, entries, strict=True)):
        assert (p.unique_id, p.title, p.status) == (e.unique_id, e.title, status)
        assert sorted(map(repr, p.authors)) == sorted(map(repr, e.authors))  # Classifications shuffled
        assert p.creation_time == e.creation_time and p.source_patient_info == e.source_patient_info
        assert p.type_code == e.type_code, n  # the nested "FAUX" type is not the document's
        assert p.language == ("de-DE" if n % 6 == 3 else e.language)
        assert p.version == ("2" if n % 5 == 0 else "1")
        assert p.extra_slots.get("urn:vide", ("absent",)) == (() if n % 6 == 3 else ("absent",))
    assert len({p.authors for p in parsed}) > 100 and len({p.type_code for p in parsed}) > 20


def test_fast_parse_round_trips_the_built_entries(patient):
    """What the agent deposits is what it reads back (registry fields aside)."""
    parsed = ebrim.parse_query_response(varied_answer(patient))
    for p, (e, status) in zip(parsed, varied_entries(patient), strict=True):
        assert p.status == status
        for name in (
            "unique_id", "patient_id", "type_code", "class_code", "format_code", "healthcare_facility_type",
            "title", "comments", "mime_type", "language", "authors", "confidentiality", "event_codes",
            "creation_time", "service_start", "service_stop", "legal_authenticator", "source_patient_info",
            "hash", "size", "repository_unique_id",
        ):  # fmt: skip
            expected = None if (name, e.unique_id) == ("size", "1.2.250.1.999.1.1.13") else getattr(e, name)
            assert getattr(p, name) == expected, (e.unique_id, name)


def test_xds_time_fast_path_matches_the_general_path():
    assert parse_xds_time("20261125215604") == datetime(2026, 11, 25, 21, 56, 4, tzinfo=UTC)
    assert parse_xds_time("20261125215604").tzinfo == UTC
    assert parse_xds_time("20240229000000") == datetime(2024, 2, 29, tzinfo=UTC)
    for bad in ("20261125240000", "20261325000000", "20230229000000", "2026112521560x", "2026-11-25T21"):
        assert parse_xds_time(bad) is None, bad
    assert parse_xds_time("202611252156041234") == datetime(2026, 11, 25, 21, 56, 4, tzinfo=UTC)
    assert parse_xds_time("２０２６１１２５２１５６０４") == datetime(2026, 11, 25, 21, 56, 4, tzinfo=UTC)


# ------------------------------------------------------------------ the new parser against the previous one

ANSWER = q(QUERY, "AdhocQueryResponse")


def _streamed(data: bytes) -> tuple[list[DocumentEntry], etree._Element]:
    """What DmpClient.find_documents does from the answer's bytes: entries read while parsing."""
    taken = ebrim.QueryEntries()
    resp = envelope.parse(
        data, request_id="urn:uuid:req", expected_body=[ANSWER], expected_actions=[], take=taken.taker
    )
    return ebrim.parse_query_response(resp.body, taken), resp.body


def _assert_all_same(parsed: list[DocumentEntry], oracle: list[DocumentEntry]) -> None:
    assert len(parsed) == len(oracle)
    for p, o in zip(parsed, oracle, strict=True):
        _assert_same(p, o)
        assert p.extra_slots == o.extra_slots  # compare=False in the dataclass: checked apart
        assert type(p) is DocumentEntry and vars(p).keys() == vars(o).keys()


def test_parsers_equal_the_previous_parser_on_the_benchmark_answer(patient):
    """The 2,000 varied entries of benchmarks/bench_agent.py, field by field, read whole and streamed."""
    entries = td31.varied_entries(patient, 2000)
    data = td31.soap_answer(td31.answer_element(entries))
    rol = safe_parse(data).find(f"*/{ANSWER}/{q(RIM, 'RegistryObjectList')}")
    oracle = td31_oracle.parse_document_entries(rol)
    assert len(oracle) == 2000 and len({o.unique_id for o in oracle}) == 2000
    _assert_all_same(ebrim.parse_document_entries(rol), oracle)
    streamed, body = _streamed(data)
    _assert_all_same(streamed, oracle)
    assert body.find(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ExtrinsicObject')}") is None  # dropped
    # the answer's variety is really there
    assert len({o.authors for o in oracle}) > 500 and len({o.type_code for o in oracle}) > 20
    assert {o.status for o in oracle} >= {str(Status.APPROVED), str(Status.DEPRECATED)}


def test_streamed_parse_equals_reference_on_a_hard_registry_answer(patient):
    entries = td31.varied_entries(patient, 200, seed=44)
    answer = td31.answer_element(entries, seed=44)
    hard = _harden(answer)  # the rim namespace as default, comments, nested and foreign objects
    root = safe_parse(hard)
    data = td31.soap_answer(root)
    whole = ebrim.parse_query_response(safe_parse(data).find(f"*/{ANSWER}"))
    streamed, _ = _streamed(data)
    _assert_all_same(streamed, whole)
    eos = root.findall("rim:RegistryObjectList/rim:ExtrinsicObject", R)
    for p, eo in zip(streamed, eos, strict=True):
        _assert_same(p, reference_parse(eo))


def test_document_entry_built_without_init_is_the_same_instance(patient):
    """The parser fills DocumentEntry's __dict__ instead of calling the generated __init__: only sound
    while the dataclass computes nothing in __init__."""
    assert not hasattr(DocumentEntry, "__post_init__") and not hasattr(DocumentEntry, "__slots__")
    [parsed] = ebrim.parse_query_response(varied_answer(patient))[:1]
    rebuilt = DocumentEntry(**{f.name: getattr(parsed, f.name) for f in fields(DocumentEntry)})
    assert vars(rebuilt) == vars(parsed) and rebuilt == parsed and hash(rebuilt) == hash(parsed)
    assert dataclasses.replace(parsed, title="x").title == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.title = "x"  # type: ignore[misc]


def _answer_bytes(patient, n: int = 3, *, status: str = ebrim.SUCCESS) -> tuple[bytes, etree._Element]:
    answer = td31.answer_element(td31.varied_entries(patient, n))
    answer.set("status", status)
    return td31.soap_answer(answer), answer


def test_streamed_bad_entry_error_comes_after_the_envelope_and_status_checks(patient):
    _, answer = _answer_bytes(patient)
    eo = answer.find(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ExtrinsicObject')}")
    for x in eo.findall(q(RIM, "ExternalIdentifier")):
        if x.get("identificationScheme") == ebrim.DE_UNIQUE_ID:
            eo.remove(x)
    bad = td31.soap_answer(answer)
    with pytest.raises(ProtocolError, match="sans identifiant unique") as whole:
        ebrim.parse_query_response(safe_parse(bad).find(f"*/{ANSWER}"))
    with pytest.raises(ProtocolError, match="sans identifiant unique") as streamed:
        _streamed(bad)
    assert streamed.value.detail == whole.value.detail == eo.get("id")
    # the same entry in a refusal: the refusal wins, as with the whole-tree parse
    answer.set("status", ebrim.FAILURE)
    err = etree.SubElement(
        etree.SubElement(answer, q(ebrim.RS, "RegistryErrorList")), q(ebrim.RS, "RegistryError")
    )
    err.set("errorCode", "XDSRegistryError")
    err.set("codeContext", "refus")
    with pytest.raises(RegistryRefusal):
        _streamed(td31.soap_answer(answer))
    # an answer about another request: the envelope check wins
    with pytest.raises(ProtocolError, match="ne correspond pas"):
        taken = ebrim.QueryEntries()
        envelope.parse(
            bad, request_id="urn:uuid:autre", expected_body=[ANSWER], expected_actions=[], take=taken.taker
        )


def test_streamed_parse_takes_only_the_answer_list_entries(patient):
    """ExtrinsicObjects outside soap:Body/*[1]/rim:RegistryObjectList[1] stay in the tree and are not
    entries (a second list, one nested in another object), as with the whole-tree parse."""
    data, answer = _answer_bytes(patient, 4)
    rol = answer.find(q(RIM, "RegistryObjectList"))
    second = etree.SubElement(answer, q(RIM, "RegistryObjectList"))
    second.append(copy.deepcopy(rol[0]))
    pkg = etree.SubElement(rol, q(RIM, "RegistryPackage"), id="urn:uuid:pkg")
    pkg.append(copy.deepcopy(rol[1]))
    data = td31.soap_answer(answer)
    whole = ebrim.parse_query_response(safe_parse(data).find(f"*/{ANSWER}"))
    streamed, body = _streamed(data)
    assert len(whole) == 4
    _assert_all_same(streamed, whole)
    assert len(body.findall(f".//{q(RIM, 'ExtrinsicObject')}")) == 2  # left where they were


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "vide"),
        (b"<soap:Envelope", "pas un XML valide"),
        (
            b'<!DOCTYPE e [<!ENTITY x "y">]><e xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">'
            b"<ExtrinsicObject>&x;</ExtrinsicObject></e>",
            "DOCTYPE",
        ),
    ],
)
def test_streamed_parse_keeps_the_hardened_parser_refusals(data, message):
    taken = ebrim.QueryEntries()
    with pytest.raises(ProtocolError, match=message):
        envelope.parse(data, request_id="r", expected_body=[ANSWER], expected_actions=[], take=taken.taker)
    assert taken.entries == []


def test_taking_hands_over_each_element_whole_in_document_order():
    """xmlns.safe_parse_taking asks lxml for "start" events only: an element is handed over once an element
    outside it starts (or at the end), so always whole; one nested in another comes after it."""
    data = (
        b'<r><a n="1"><b/><b/></a><x><a n="2"><a n="3"><b/></a><b/></a></x>'
        b'<a n="4"><b/><b/><b/></a><a n="5"/></r>'
    )
    seen: list[tuple[str, int, bool]] = []

    def take(el: etree._Element) -> bool:
        seen.append((el.get("n", ""), len(el), el.getparent() is not None))
        return el.get("n") != "5"  # kept in the tree

    root = safe_parse_taking(data, "a", take)
    assert seen == [("1", 2, True), ("2", 2, True), ("3", 1, False), ("4", 3, True), ("5", 0, True)]
    assert etree.tostring(root) == b'<r><x/><a n="5"/></r>'


def test_elements_of_another_namespace_are_not_read(patient):
    """The walk takes Values, Slots, LocalizedStrings and Names in any namespace and skips the foreign
    ones: same entries as a rim-only findall parse, even with foreign ones among the rim ones."""
    answer = varied_answer(patient)
    other = "urn:autre"
    for n, eo in enumerate(answer.iter(q(RIM, "ExtrinsicObject"))):
        foreign = etree.Element(f"{{{other}}}Slot", name="creationTime")
        etree.SubElement(
            etree.SubElement(foreign, f"{{{other}}}ValueList"), f"{{{other}}}Value"
        ).text = "19990101"
        eo.insert(n % 3, foreign)
        first_values = eo.find(f"{q(RIM, 'Slot')}/{q(RIM, 'ValueList')}")
        first_values.insert(0, etree.Element(f"{{{other}}}Value"))  # before the rim Value: not a value
        first_values[0].text = "faux"
        cl = eo.find(q(RIM, "Classification"))
        fname = etree.Element(f"{{{other}}}Name")
        etree.SubElement(fname, q(RIM, "LocalizedString"), value="Faux nom")  # a rim one in a foreign Name
        cl.insert(0, fname)
    data = etree.tostring(answer)
    assert data.count(b"urn:autre") >= 40
    parsed = ebrim.parse_query_response(safe_parse(data))
    streamed, _ = _streamed(td31.soap_answer(safe_parse(data)))
    eos = safe_parse(data).findall("rim:RegistryObjectList/rim:ExtrinsicObject", R)
    assert len(parsed) == len(streamed) == len(eos) == 40
    for p, s, eo in zip(parsed, streamed, eos, strict=True):
        _assert_same(p, reference_parse(eo))
        _assert_same(s, p)
    assert all(p.creation_time.year == 2026 for p in parsed)


def test_streamed_runs_of_entries_and_their_fallback_read_as_the_whole_tree(patient, monkeypatch):
    """QueryEntries reads ``_RUN`` entries with one walk over the list when nothing else lies in it before
    the entry after them, and each entry alone otherwise (a comment or another object among the entries,
    which stays in the list, so for every later run too): both ways, and the last, short run, give the
    whole-tree entries, and both ways are really taken."""
    run = ebrim._RUN
    entries = td31.varied_entries(patient, 3 * run + 3, seed=45)
    answer = td31.answer_element(entries, seed=45)
    eos = list(answer.find(q(RIM, "RegistryObjectList")))
    eos[2 * run + 2].addnext(etree.Comment(" entre deux entrées "))
    eos[3 * run + 1].addprevious(etree.Element(q(RIM, "ObjectRef"), id="urn:uuid:ref"))
    data = td31.soap_answer(answer)
    whole = ebrim.parse_query_response(safe_parse(data).find(f"*/{ANSWER}"))
    calls: list[int] = []
    walk = ebrim._walk

    def spy(container: etree._Element, rol: etree._Element, out: list, limit: int = -1) -> None:
        calls.append(limit)
        walk(container, rol, out, limit)

    monkeypatch.setattr(ebrim, "_walk", spy)
    streamed, body = _streamed(data)
    assert len(whole) == 3 * run + 3
    _assert_all_same(streamed, whole)
    # two runs walked whole, then one entry at a time; last, parse_query_response's walk of what is left
    assert calls == [run, run] + [-1] * (run + 3) + [-1]
    rol = body.find(q(RIM, "RegistryObjectList"))
    assert rol.find(q(RIM, "ExtrinsicObject")) is None and rol.find(q(RIM, "ObjectRef")) is not None
    # without anything else in the list, the last, short run is walked whole too
    calls.clear()
    clean = td31.soap_answer(td31.answer_element(entries[: run + 3], seed=45))
    streamed, _ = _streamed(clean)
    assert calls == [run, 3, -1]
    _assert_all_same(streamed, ebrim.parse_query_response(safe_parse(clean).find(f"*/{ANSWER}")))


def test_streamed_bad_entry_inside_a_run_gives_the_whole_tree_error(patient):
    """A bad entry in the middle of a run (read with one walk) stops the reading there, with the error of
    the whole-tree parse: the first bad entry's, not a later one's."""
    run = ebrim._RUN
    answer = td31.answer_element(td31.varied_entries(patient, 2 * run + 1, seed=46), seed=46)
    eos = list(answer.find(q(RIM, "RegistryObjectList")))
    for n in (run + 2, run + 5):  # two bad entries in the second run
        for x in eos[n].findall(q(RIM, "ExternalIdentifier")):
            if x.get("identificationScheme") == ebrim.DE_UNIQUE_ID:
                eos[n].remove(x)
    data = td31.soap_answer(answer)
    with pytest.raises(ProtocolError, match="sans identifiant unique") as whole:
        ebrim.parse_query_response(safe_parse(data).find(f"*/{ANSWER}"))
    with pytest.raises(ProtocolError, match="sans identifiant unique") as streamed:
        _streamed(data)
    assert streamed.value.detail == whole.value.detail == eos[run + 2].get("id")
