"""Build real DMP messages on the sandbox side: CDA documents (through ``cda.build``), XDS.b metadata,
the XAdES signature of a submission set, and whole ITI-41 / ITI-18 / ITI-43 / ITI-57 / TD0.x bodies.

Used by the demo data set, the tests and the benchmark (the sandbox may not import the agent's client).
The XAdES form follows dmp-protocol.md §7.5 and the agent's signer: enveloping ``ds:Signature``,
RSA-SHA256, C14N 1.0 WithComments transforms, Manifest with a placeholder digest for the submission set.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

import cda
from cda import build as cbuild
from cda import metadata as cmeta
from cda.model import Code
from sandbox.dmp import hl7, xds
from sandbox.dmp.xades import document_c14n
from sandbox.dmp.xds import LCM, RIM, XDSB, XOP, q
from sandbox.profiles import CardProfile, Situation

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.1.1#"
C14N_WC = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SANDBOX_OID = "1.2.250.1.213.4.1.9.99"  # [I] fictitious sourceId / message root of sandbox-built messages


def author_input(profile: CardProfile, situation: Situation | None = None) -> cbuild.AuthorInput:
    """The ``cda.build`` author of a test card profile (JDV_J01 code from profession + specialty)."""
    sit = situation or profile.situations[0]
    if profile.profession_code == "10":
        spec = f"G15_10/{profile.specialty_code}"
    elif profile.specialty_code.startswith("G15_"):
        spec = profile.specialty_code.split("/")[0]
    else:
        spec = f"G15_{profile.profession_code}"
    return cbuild.AuthorInput(
        id_nat=profile.id_nat,
        family_name=profile.family_name,
        given_name=profile.given_name,
        specialty_code=spec,
        organization_id=sit.structure_id,
        organization_name=sit.structure_name,
        facility_type_code=sit.sector,
        practice_setting_code="AMBULATOIRE" if sit.mode == "L" else "ETABLISSEMENT",
    )


def patient_input(
    ins: str, oid: str, family_name: str, given_names: str, birth_date: str, sex: str, birth_place: str
) -> cbuild.PatientInput:
    return cbuild.PatientInput(
        ins=ins,
        birth_family_name=family_name,
        given_names=given_names,
        birth_date=f"{birth_date[:4]}-{birth_date[4:6]}-{birth_date[6:8]}",
        sex=sex,
        birth_place_code=birth_place,
        ins_oid=oid,
    )


def text_document(
    patient: cbuild.PatientInput,
    author: cbuild.AuthorInput,
    type_code: str,
    title: str,
    text: str,
    *,
    effective: dt.datetime | None = None,
    replaces: cbuild.Replacement | None = None,
) -> bytes:
    """A level-1 CDA wrapping a short text (text/plain)."""
    return cbuild.level1(
        type_code=type_code,
        content=text.encode("utf-8"),
        title=title,
        patient=patient,
        author=author,
        media_type="text/plain",
        effective_time=effective,
        replaces=replaces,
    )


def padded_text(size: int) -> str:
    """Filler text of about ``size`` bytes (benchmarks: 50 KB documents)."""
    line = "Examen clinique sans particularité. Constantes normales. Pas de traitement modifié.\n"
    return (line * (size // len(line) + 1))[:size]


# -- metadata ---------------------------------------------------------------------------------------------
def _slot(parent: etree._Element, name: str, values: Iterable[str]) -> None:
    slot = etree.SubElement(parent, q(RIM, "Slot"), name=name)
    vl = etree.SubElement(slot, q(RIM, "ValueList"))
    for v in values:
        etree.SubElement(vl, q(RIM, "Value")).text = v


def _name(parent: etree._Element, text: str, tag: str = "Name") -> None:
    el = etree.SubElement(parent, q(RIM, tag))
    etree.SubElement(el, q(RIM, "LocalizedString"), value=text, charset="UTF-8")
    el[0].set("{http://www.w3.org/XML/1998/namespace}lang", "fr-FR")


def _new_classification(
    parent: etree._Element, scheme: str, obj: str, node: str, id_prefix: str
) -> etree._Element:
    return etree.SubElement(
        parent,
        q(RIM, "Classification"),
        id=f"{id_prefix}{uuid.uuid4().hex[:12]}",
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation=node,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification",
    )


def _classification(
    parent: etree._Element, scheme: str, obj: str, code: str, system: str, display: str
) -> None:
    cl = _new_classification(parent, scheme, obj, code, "cl")
    _slot(cl, "codingScheme", [system])
    _name(cl, display or code)


def _author(parent: etree._Element, scheme: str, obj: str, author: cmeta.AuthorMetadata) -> None:
    cl = _new_classification(parent, scheme, obj, "", "au")
    _slot(cl, "authorPerson", [author.person])
    if author.institution:
        _slot(cl, "authorInstitution", [author.institution])
    if author.specialty:
        _slot(cl, "authorSpecialty", [author.specialty])


def _external(parent: etree._Element, scheme: str, obj: str, value: str, name: str) -> None:
    ext = etree.SubElement(
        parent,
        q(RIM, "ExternalIdentifier"),
        id=f"ei{uuid.uuid4().hex[:12]}",
        identificationScheme=scheme,
        registryObject=obj,
        value=value,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier",
    )
    _name(ext, name)


def document_entry(
    meta: cmeta.DocumentMetadata,
    entry_id: str,
    confidentiality: Sequence[str] = ("N",),
    *,
    with_hash: bool = True,
) -> etree._Element:
    """The ``rim:ExtrinsicObject`` of a CDA, from ``cda.metadata.derive`` (dmp-protocol.md §8.2)."""
    eo = etree.Element(
        q(RIM, "ExtrinsicObject"),
        nsmap={"rim": RIM},
        id=entry_id,
        mimeType="text/xml",
        objectType=xds.DOC_ENTRY_TYPE,
    )
    _slot(eo, "creationTime", [meta.creation_time])
    _slot(eo, "languageCode", ["fr-FR"])
    if meta.service_start_time:
        _slot(eo, "serviceStartTime", [meta.service_start_time])
    if meta.service_stop_time:
        _slot(eo, "serviceStopTime", [meta.service_stop_time])
    _slot(eo, "sourcePatientId", [meta.source_patient_id])
    _slot(eo, "sourcePatientInfo", list(meta.source_patient_info))
    if with_hash:
        _slot(eo, "hash", [meta.hash])
        _slot(eo, "size", [str(meta.size)])
    _name(eo, meta.title)
    for author in meta.authors:
        _author(eo, xds.S_AUTHOR_DOC, entry_id, author)
    _classification(
        eo,
        xds.S_CLASS,
        entry_id,
        meta.class_code.code,
        meta.class_code.code_system,
        meta.class_code.display_name,
    )
    for code in confidentiality:
        _classification(eo, xds.S_CONFIDENTIALITY, entry_id, code, xds.CONFIDENTIALITY_SYSTEMS[code], code)
    _classification(
        eo,
        xds.S_FORMAT,
        entry_id,
        meta.format_code.code,
        meta.format_code.code_system,
        meta.format_code.display_name,
    )
    fac = meta.healthcare_facility_type
    if fac is not None:
        _classification(eo, xds.S_FACILITY, entry_id, fac.code, fac.code_system, fac.display_name)
    prac = meta.practice_setting
    if prac is not None:
        _classification(eo, xds.S_PRACTICE, entry_id, prac.code, prac.code_system, prac.display_name)
    _classification(
        eo, xds.S_TYPE, entry_id, meta.type_code.code, meta.type_code.code_system, meta.type_code.display_name
    )
    _external(eo, xds.E_DOC_PATIENT, entry_id, meta.patient_id, "XDSDocumentEntry.patientId")
    _external(eo, xds.E_DOC_UNIQUE, entry_id, meta.unique_id, "XDSDocumentEntry.uniqueId")
    return eo


def derive(data: bytes) -> cmeta.DocumentMetadata:
    return cmeta.derive(cda.parse(data), data)


# -- XAdES ------------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n", with_comments=True)


def _ref(parent: etree._Element, uri: str, digest: bytes, ref_type: str | None = None) -> etree._Element:
    ref = etree.SubElement(parent, f"{{{DS}}}Reference", URI=uri)
    if ref_type:
        ref.set("Type", ref_type)
    tr = etree.SubElement(ref, f"{{{DS}}}Transforms")
    etree.SubElement(tr, f"{{{DS}}}Transform", Algorithm=C14N_WC)
    etree.SubElement(ref, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
    etree.SubElement(ref, f"{{{DS}}}DigestValue").text = _b64(digest)
    return ref


def sign_submission(
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    submission_set_uid: str,
    documents: Sequence[tuple[str, bytes]],
) -> bytes:
    """XAdES-BES enveloping signature of a submission set (IHE DSG Manifest) as the DMP expects."""
    sig_id = f"sig{uuid.uuid4().hex}"
    sig = etree.Element(f"{{{DS}}}Signature", Id=sig_id, nsmap={"ds": DS})
    si = etree.SubElement(sig, f"{{{DS}}}SignedInfo")
    etree.SubElement(si, f"{{{DS}}}CanonicalizationMethod", Algorithm=C14N_WC)
    etree.SubElement(si, f"{{{DS}}}SignatureMethod", Algorithm=RSA_SHA256)
    ref_manifest = _ref(si, "#IHEManifest", b"", "http://www.w3.org/2000/09/xmldsig#Manifest")
    ref_props = _ref(si, "#S0-SignedProperties", b"", "http://uri.etsi.org/01903/v1.1.1#SignedProperties")
    value = etree.SubElement(sig, f"{{{DS}}}SignatureValue")
    x509data = etree.SubElement(etree.SubElement(sig, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
    etree.SubElement(x509data, f"{{{DS}}}X509Certificate").text = _b64(
        cert.public_bytes(serialization.Encoding.DER)
    )
    manifest = etree.SubElement(
        etree.SubElement(sig, f"{{{DS}}}Object"), f"{{{DS}}}Manifest", Id="IHEManifest"
    )
    ss_ref = etree.SubElement(manifest, f"{{{DS}}}Reference", URI=f"urn:oid:{submission_set_uid}")
    etree.SubElement(ss_ref, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
    etree.SubElement(ss_ref, f"{{{DS}}}DigestValue").text = "AA=="
    for uid, content in documents:
        _ref(manifest, f"urn:oid:{uid}", hashlib.sha256(document_c14n(content)).digest())
    props = etree.SubElement(etree.SubElement(sig, f"{{{DS}}}Object"), "SignatureProperties")
    etree.SubElement(
        props, "SignatureProperty", Id="purposeOfSignature", Target=f"#{sig_id}"
    ).text = "1.2.840.10065.1.12.1.14"
    qp = etree.SubElement(
        etree.SubElement(sig, f"{{{DS}}}Object"),
        f"{{{XADES}}}QualifyingProperties",
        Target=f"#{sig_id}",
        nsmap={"xades": XADES},
    )
    sp = etree.SubElement(qp, f"{{{XADES}}}SignedProperties", Id="S0-SignedProperties")
    ssp = etree.SubElement(sp, f"{{{XADES}}}SignedSignatureProperties")
    etree.SubElement(ssp, f"{{{XADES}}}SigningTime").text = dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    sc = etree.SubElement(ssp, f"{{{XADES}}}SigningCertificate")
    for c in [cert, *chain]:
        ce = etree.SubElement(sc, f"{{{XADES}}}Cert")
        cd = etree.SubElement(ce, f"{{{XADES}}}CertDigest")
        etree.SubElement(cd, f"{{{XADES}}}DigestMethod", Algorithm=SHA256)
        etree.SubElement(cd, f"{{{XADES}}}DigestValue").text = _b64(
            hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).digest()
        )
        iss = etree.SubElement(ce, f"{{{XADES}}}IssuerSerial")
        etree.SubElement(iss, f"{{{DS}}}X509IssuerName").text = c.issuer.rfc4514_string()
        etree.SubElement(iss, f"{{{DS}}}X509SerialNumber").text = str(c.serial_number)
    spi = etree.SubElement(ssp, f"{{{XADES}}}SignaturePolicyIdentifier")
    etree.SubElement(spi, f"{{{XADES}}}SignaturePolicyImplied")
    ref_manifest.find(f"{{{DS}}}DigestValue").text = _b64(hashlib.sha256(_c14n(manifest)).digest())  # type: ignore[union-attr]
    ref_props.find(f"{{{DS}}}DigestValue").text = _b64(hashlib.sha256(_c14n(sp)).digest())  # type: ignore[union-attr]
    value.text = _b64(key.sign(_c14n(si), padding.PKCS1v15(), hashes.SHA256()))
    return etree.tostring(sig, xml_declaration=True, encoding="UTF-8")


# -- whole messages ---------------------------------------------------------------------------------------
@dataclass
class DepositDocument:
    content: bytes
    confidentiality: tuple[str, ...] = ("N",)
    replaces: str | None = None  # entryUUID of the replaced version
    meta: cmeta.DocumentMetadata | None = None


@dataclass
class Deposit:
    body: etree._Element
    attachments: dict[str, bytes]
    submission_set_uid: str
    unique_ids: list[str] = field(default_factory=list)


def provide_and_register(
    docs: Sequence[DepositDocument],
    *,
    signer: tuple[rsa.RSAPrivateKey, x509.Certificate, Sequence[x509.Certificate]] | None,
    inline: bool = False,
    submission_set_uid: str | None = None,
) -> Deposit:
    """An ITI-41 ``ProvideAndRegisterDocumentSetRequest`` + MTOM parts (``inline``: base64 body)."""
    metas = [d.meta or derive(d.content) for d in docs]
    first = metas[0]
    ss_uid = submission_set_uid or f"2.25.{uuid.uuid4().int}"
    root = etree.Element(
        q(XDSB, "ProvideAndRegisterDocumentSetRequest"), nsmap={"xdsb": XDSB, "lcm": LCM, "rim": RIM}
    )
    lst = etree.SubElement(
        etree.SubElement(root, q(LCM, "SubmitObjectsRequest")), q(RIM, "RegistryObjectList")
    )
    ss = etree.SubElement(
        lst,
        q(RIM, "RegistryPackage"),
        id="SubmissionSet01",
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage",
    )
    _slot(ss, "submissionTime", [dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")])
    _name(ss, "Dépôt bac à sable")
    if first.authors:
        _author(ss, xds.S_AUTHOR_SS, "SubmissionSet01", first.authors[0])
    _classification(
        ss, xds.S_CONTENT_TYPE, "SubmissionSet01", "04", "1.2.250.1.213.2.2", "Hospitalisation de jour"
    )
    etree.SubElement(
        ss,
        q(RIM, "Classification"),
        id="ssmarker",
        classificationNode=xds.SUBMISSION_SET_NODE,
        classifiedObject="SubmissionSet01",
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification",
    )
    _external(ss, xds.E_SS_UNIQUE, "SubmissionSet01", ss_uid, "XDSSubmissionSet.uniqueId")
    _external(ss, xds.E_SS_SOURCE, "SubmissionSet01", SANDBOX_OID, "XDSSubmissionSet.sourceId")
    _external(ss, xds.E_SS_PATIENT, "SubmissionSet01", first.patient_id, "XDSSubmissionSet.patientId")
    parts: dict[str, bytes] = {}
    contents: list[tuple[str, bytes]] = []
    for n, (doc, meta) in enumerate(zip(docs, metas, strict=True), 1):
        entry_id = f"Document{n:02d}"
        lst.append(document_entry(meta, entry_id, doc.confidentiality))
        contents.append((entry_id, doc.content))
    associations: list[etree._Element] = []
    for n, (entry_id, _content) in enumerate(contents, 1):
        a = etree.Element(
            q(RIM, "Association"),
            id=f"as{n}",
            associationType=xds.HAS_MEMBER,
            sourceObject="SubmissionSet01",
            targetObject=entry_id,
        )
        _slot(a, "SubmissionSetStatus", ["Original"])
        associations.append(a)
        if docs[n - 1].replaces:
            associations.append(
                etree.Element(
                    q(RIM, "Association"),
                    id=f"rp{n}",
                    associationType=xds.RPLC,
                    sourceObject=entry_id,
                    targetObject=docs[n - 1].replaces,
                )
            )
    if signer is not None:
        key, cert, chain = signer
        signature = sign_submission(
            key, cert, chain, ss_uid, [(m.unique_id, d.content) for m, d in zip(metas, docs, strict=True)]
        )
        sig_meta = dataclasses.replace(
            first,
            unique_id=f"2.25.{uuid.uuid4().int}",
            type_code=Code("E1762", "ASTM", "Full Document"),
            class_code=Code("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature"),
            format_code=Code("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style"),
            title="Signature du lot",
            hash=hashlib.sha1(signature).hexdigest(),  # noqa: S324 - XDS hash
            size=len(signature),
        )
        lst.append(document_entry(sig_meta, "Signature01", ("N", "MASQUE_PS", "INVISIBLE_PATIENT")))
        contents.append(("Signature01", signature))
        a = etree.Element(
            q(RIM, "Association"),
            id="assig",
            associationType=xds.HAS_MEMBER,
            sourceObject="SubmissionSet01",
            targetObject="Signature01",
        )
        _slot(a, "SubmissionSetStatus", ["Original"])
        associations.append(a)
        associations.append(
            etree.Element(
                q(RIM, "Association"),
                id="signs",
                associationType=xds.SIGNS,
                sourceObject="Signature01",
                targetObject="SubmissionSet01",
            )
        )
    lst.extend(associations)
    for entry_id, content in contents:
        el = etree.SubElement(root, q(XDSB, "Document"), id=entry_id)
        if inline:
            el.text = _b64(content)
        else:
            cid = f"{entry_id.lower()}.{uuid.uuid4().hex}@sandbox"
            etree.SubElement(el, q(XOP, "Include"), nsmap={"xop": XOP}, href=f"cid:{cid}")
            parts[cid] = content
    return Deposit(root, parts, ss_uid, [m.unique_id for m in metas])


def existence_query(ins: str, oid: str, reason: str = "TEST_EXST") -> etree._Element:
    """PRPA_IN201307UV02: TD0.2 (reason ``TEST_EXST``) or TD1.3a (``CNSLT_DATA``)."""
    h = hl7.h
    root = etree.Element(h("PRPA_IN201307UV02"), nsmap={None: hl7.HL7}, ITSVersion="XML_1.0")
    etree.SubElement(root, h("id"), root=SANDBOX_OID, extension=str(uuid.uuid4()))
    etree.SubElement(root, h("creationTime"), value=dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S"))
    etree.SubElement(root, h("interactionId"), root="2.16.840.1.113883.1.6", extension="PRPA_IN201307UV02")
    etree.SubElement(root, h("processingCode"), code="P")
    etree.SubElement(root, h("processingModeCode"), code="T")
    etree.SubElement(root, h("acceptAckCode"), code="AL")
    cap = etree.SubElement(root, h("controlActProcess"), classCode="CACT", moodCode="EVN")
    etree.SubElement(cap, h("reasonCode"), code=reason, codeSystem="1.2.250.1.213.1.1.4.11")
    qbp = etree.SubElement(cap, h("queryByParameter"))
    etree.SubElement(qbp, h("queryId"), root=SANDBOX_OID, extension=str(uuid.uuid4()))
    etree.SubElement(qbp, h("statusCode"), code="new")
    pi = etree.SubElement(etree.SubElement(qbp, h("parameterList")), h("patientIdentifier"))
    etree.SubElement(pi, h("value"), root=oid, extension=ins)
    etree.SubElement(pi, h("semanticsText")).text = "Patient.id"
    return root


def set_authorization(action: str = "AJOUT", role: str | None = None) -> etree._Element:
    ns = hl7.HABILITATIONS
    root = etree.Element(f"{{{ns}}}setAuthorization", nsmap={None: ns})
    etree.SubElement(root, f"{{{ns}}}action").text = action
    if role:
        etree.SubElement(root, f"{{{ns}}}role").text = role
    return root


def list_authorizations(mode: str = "TOUTE") -> etree._Element:
    ns = hl7.HABILITATIONS
    root = etree.Element(f"{{{ns}}}listAuthorizationByPatient", nsmap={None: ns})
    etree.SubElement(root, f"{{{ns}}}mode").text = mode
    return root


def patient_list(start: str = "", date_type: str = "LASTAUTORIZATION") -> etree._Element:
    ns = hl7.PATIENTS_SPECIFIC
    root = etree.Element(f"{{{ns}}}patientList", nsmap={None: ns})
    if start:
        etree.SubElement(root, f"{{{ns}}}startDate").text = start
    etree.SubElement(root, f"{{{ns}}}dateType").text = date_type
    return root


def find_documents(
    ins: str,
    oid: str,
    statuses: Sequence[str] = ("urn:oasis:names:tc:ebxml-regrep:StatusType:Approved",),
    *,
    return_type: str = "LeafClass",
    extra: dict[str, str] | None = None,
) -> etree._Element:
    root = etree.Element(q(xds.QUERY, "AdhocQueryRequest"), nsmap={"query": xds.QUERY, "rim": RIM})
    etree.SubElement(
        root, q(xds.QUERY, "ResponseOption"), returnComposedObjects="true", returnType=return_type
    )
    aq = etree.SubElement(root, q(RIM, "AdhocQuery"), id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d")
    _slot(aq, "$XDSDocumentEntryPatientId", [f"'{ins}^^^&{oid}&ISO^NH'"])
    _slot(aq, "$XDSDocumentEntryStatus", ["(" + ",".join(f"'{s}'" for s in statuses) + ")"])
    for name, value in (extra or {}).items():
        _slot(aq, name, [value])
    return root


def get_documents(unique_ids: Sequence[str] = (), entry_uuids: Sequence[str] = ()) -> etree._Element:
    root = etree.Element(q(xds.QUERY, "AdhocQueryRequest"), nsmap={"query": xds.QUERY, "rim": RIM})
    etree.SubElement(
        root, q(xds.QUERY, "ResponseOption"), returnComposedObjects="true", returnType="LeafClass"
    )
    aq = etree.SubElement(root, q(RIM, "AdhocQuery"), id="urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4")
    if unique_ids:
        _slot(aq, "$XDSDocumentEntryUniqueId", ["(" + ",".join(f"'{u}'" for u in unique_ids) + ")"])
    if entry_uuids:
        _slot(aq, "$XDSDocumentEntryEntryUUID", ["(" + ",".join(f"'{u}'" for u in entry_uuids) + ")"])
    return root


def retrieve(unique_ids: Sequence[str], repository: str = xds.REPOSITORY_UNIQUE_ID) -> etree._Element:
    root = etree.Element(q(XDSB, "RetrieveDocumentSetRequest"), nsmap={"xdsb": XDSB})
    for uid in unique_ids:
        dr = etree.SubElement(root, q(XDSB, "DocumentRequest"))
        etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = repository
        etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = uid
    return root


def _update_set(ins: str, oid: str) -> tuple[etree._Element, etree._Element]:
    root = etree.Element(q(LCM, "SubmitObjectsRequest"), nsmap={"lcm": LCM, "rim": RIM})
    lst = etree.SubElement(root, q(RIM, "RegistryObjectList"))
    ss = etree.SubElement(lst, q(RIM, "RegistryPackage"), id="SubmissionSet01")
    _slot(ss, "submissionTime", [dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")])
    etree.SubElement(
        ss,
        q(RIM, "Classification"),
        id="ssmarker",
        classificationNode=xds.SUBMISSION_SET_NODE,
        classifiedObject="SubmissionSet01",
    )
    _external(ss, xds.E_SS_UNIQUE, "SubmissionSet01", f"2.25.{uuid.uuid4().int}", "XDSSubmissionSet.uniqueId")
    _external(ss, xds.E_SS_SOURCE, "SubmissionSet01", SANDBOX_OID, "XDSSubmissionSet.sourceId")
    _external(ss, xds.E_SS_PATIENT, "SubmissionSet01", f"{ins}^^^&{oid}&ISO^NH", "XDSSubmissionSet.patientId")
    return root, lst


def update_status(ins: str, oid: str, entry_uuid: str, original: str, new: str) -> etree._Element:
    """ITI-57 UpdateAvailabilityStatus (TD3.3c/d: archive, unarchive, delete)."""
    root, lst = _update_set(ins, oid)
    a = etree.SubElement(
        lst,
        q(RIM, "Association"),
        id="association1",
        associationType=xds.UPDATE_AVAILABILITY,
        sourceObject="SubmissionSet01",
        targetObject=entry_uuid,
    )
    _slot(a, "OriginalStatus", [original])
    _slot(a, "NewStatus", [new])
    return root


def update_confidentiality(
    ins: str, oid: str, stored_entry: etree._Element, codes: Sequence[str]
) -> etree._Element:
    """ITI-57 DocumentEntry update (TD3.3a/b) of a TD3.1 entry, new confidentiality codes."""
    root, lst = _update_set(ins, oid)
    entry = etree.fromstring(etree.tostring(stored_entry))
    lid = entry.get("lid", "")
    version = entry.find(q(RIM, "VersionInfo"))
    previous = version.get("versionName", "1") if version is not None else "1"
    entry.set("id", "Document01")
    entry.set("lid", lid)
    for cl in entry.findall(q(RIM, "Classification")):
        if cl.get("classificationScheme") == xds.S_CONFIDENTIALITY:
            entry.remove(cl)
    anchor = entry.find(q(RIM, "ExternalIdentifier"))
    for code in codes:
        cl = etree.Element(
            q(RIM, "Classification"),
            id=f"cf{code}",
            classificationScheme=xds.S_CONFIDENTIALITY,
            classifiedObject="Document01",
            nodeRepresentation=code,
        )
        _slot(cl, "codingScheme", [xds.CONFIDENTIALITY_SYSTEMS[code]])
        if anchor is not None:
            anchor.addprevious(cl)
        else:
            entry.append(cl)
    lst.append(entry)
    a = etree.SubElement(
        lst,
        q(RIM, "Association"),
        id="as1",
        associationType=xds.HAS_MEMBER,
        sourceObject="SubmissionSet01",
        targetObject="Document01",
    )
    _slot(a, "SubmissionSetStatus", ["Original"])
    _slot(a, "PreviousVersion", [previous])
    return root
