"""The request parts written as text (``ps_agent.dmp.xmltext``) are, byte for byte, what lxml writes for
the same elements built one by one: the ITI-41 body (``ebrim.provide_and_register_xml``) and the SOAP
envelope (``envelope.build``) on varied metadata, characters that are escaped included; a value that is
not XML text is refused as the element build refuses it."""

from __future__ import annotations

import copy
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from ps_agent.auth.software import SoftwareSigner
from ps_agent.dmp import ebrim, envelope, hl7, xades, xmltext
from ps_agent.dmp.ebrim import DepositItem
from ps_agent.dmp.model import Author, Code, PatientId, SubmissionSet
from ps_agent.dmp.vihf import LpsInfo
from ps_agent.dmp.xmlns import DS, XADES
from tests.fixtures.dmp_samples import CDA, entry
from tests.fixtures.xmlsec import xmlsec1

TRICKY = 'Lettre & <compte rendu> "urgent"\t(1)\n\r fin — é ü 😀 ]]> \x7f\x85'


def _submission(patient: PatientId, **kw: object) -> SubmissionSet:
    base: dict[str, object] = dict(
        unique_id="2.25.1234",
        source_id="1.2.250.1.999.1.1",
        patient_id=patient,
        submission_time=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
        authors=entry(patient).authors,
        content_type=Code("SA07", "1.2.250.1.71.4.2.4", "Cabinet"),
        title="Lot",
    )
    base.update(kw)
    return SubmissionSet(**base)  # type: ignore[arg-type]


def _cases(
    patient: PatientId,
) -> list[tuple[SubmissionSet, list[DepositItem], DepositItem | None, list[str]]]:
    plain = entry(patient)
    tricky_author = Author("899700000021", "D'ARC & <FILS>", 'JEANNE "J"', "", "", None, role="ROLE\t1")
    varied = replace(
        entry(patient, uid="1.2.250.1.999.1.1.78"),
        title=TRICKY,
        comments="Commentaire\r\nsur deux lignes & plus",
        authors=(plain.authors[0], tricky_author),
        event_codes=(Code("E&1", "1.2.3", 'Événement "un"'), Code("E2", "1.2.3", "")),
        service_start=datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        service_stop=datetime(2026, 11, 21, 18, 30, tzinfo=UTC),
        source_patient_info=("PID-5|O'BRIEN^ÉLODIE^^^^^L", "", "PID-8|F"),
        source_patient_id="",
        legal_authenticator="",
        language="",
        mime_type="text/xml",
        hash="",
        size=None,
    )
    signature = DepositItem(replace(plain, unique_id="1.2.250.1.999.1.1.99", title="Signature"), b"<sig/>")
    return [
        (_submission(patient), [DepositItem(plain, CDA)], signature, ["a@x", "b@x"]),
        (
            _submission(patient, title=TRICKY, comments="Lot\tcommenté", authors=(tricky_author,)),
            [
                DepositItem(plain, CDA),
                DepositItem(varied, CDA, replaces_entry_uuid="urn:uuid:0f6a2b7e-0000-4000-8000-00000000000&"),
            ],
            signature,
            ["1@x", "2 é&@x", "3@x"],
        ),
        (
            _submission(patient, title="", content_type=Code("", "", "")),
            [DepositItem(varied, CDA)],
            None,
            ["c"],
        ),
    ]


def test_iti41_text_is_the_element_build_byte_for_byte(patient: PatientId, shared_dir: Path) -> None:
    schema = etree.XMLSchema(file=str(shared_dir / "schemas/xds/offline-dmp.xsd"))
    for _ in range(2):  # fragments being cached, then reused
        for ss, items, signature, cids in _cases(patient):
            expected = etree.tostring(
                ebrim.provide_and_register(ss, items, signature, content_ids=cids), encoding="UTF-8"
            )
            written = ebrim.provide_and_register_xml(ss, items, signature, content_ids=cids)
            assert written == expected
    ss, items, signature, cids = _cases(patient)[1]
    sor = etree.fromstring(ebrim.provide_and_register_xml(ss, items, signature, content_ids=cids))[0]
    assert schema.validate(sor), schema.error_log
    title = sor.find(f".//{{{ebrim.RIM}}}RegistryPackage/{{{ebrim.RIM}}}Name/{{{ebrim.RIM}}}LocalizedString")
    assert title is not None and title.get("value") == TRICKY  # the escapes read back as the value


@pytest.mark.parametrize("bad", ["\x01", "\x0b", "\ufffe", "\ud800"])
def test_a_value_that_is_not_xml_text_is_refused_as_by_the_element_build(
    patient: PatientId, bad: str
) -> None:
    ss, items, signature, cids = _cases(patient)[0]
    items = [replace(items[0], entry=replace(items[0].entry, title=f"Lettre {bad}"))]
    with pytest.raises((ValueError, UnicodeError)) as by_elements:
        ebrim.provide_and_register(ss, items, signature, content_ids=cids)
    with pytest.raises((ValueError, UnicodeError)) as by_text:
        ebrim.provide_and_register_xml(ss, items, signature, content_ids=cids)
    assert type(by_text.value) is type(by_elements.value) and str(by_text.value) == str(by_elements.value)


def test_escapes_are_lxml_s(patient: PatientId) -> None:
    values = [TRICKY, "", "plain", "a\tb\nc\rd", "&amp;", "]]>", "\U0010ffff\ue000\ud7ff", '"\'"']
    for value in values:
        el = etree.Element("a", b=value)
        el.text = value
        assert (
            etree.tostring(el, encoding="UTF-8")
            == f'<a b="{xmltext.attr(value)}">{xmltext.text(value)}</a>'.encode()
        )
    for bad in ("\x00", "\x1f", "\uffff"):
        with pytest.raises(ValueError):
            xmltext.attr(bad)
        with pytest.raises(ValueError):
            xmltext.text(bad)


def _assertion() -> etree._Element:
    a = etree.Element(
        "{urn:oasis:names:tc:SAML:2.0:assertion}Assertion", {"ID": "_1"}, nsmap={"saml2": ebrim.RIM}
    )
    etree.SubElement(a, "{urn:oasis:names:tc:SAML:2.0:assertion}Issuer").text = "CN=é & co"
    return a


def test_envelope_text_is_the_tree_build_byte_for_byte(patient: PatientId) -> None:
    lps = LpsInfo("ps-agent", "0.1.0", "HOMOLOGATION-TEST", oid="1.2.250.1.999.1")
    ss, items, signature, cids = _cases(patient)[1]
    bodies: list[etree._Element] = [
        hl7.build_request(patient, lps),
        ebrim.find_documents(patient),
        ebrim.retrieve_request([("1.2.3", "4.5.6")]),
        ebrim.provide_and_register(ss, items, signature, content_ids=cids),
    ]
    for body in bodies:
        for assertion in (_assertion(), None):
            for action, to in (
                ("urn:ihe:iti:2007:RegistryStoredQuery", "https://h/x"),
                ('a&<>"b', "https://h/x?a=1&b=\r2"),
            ):
                expected = envelope.build_tree(
                    action,
                    to,
                    copy.deepcopy(assertion) if assertion is not None else None,
                    copy.deepcopy(body),
                    message_id="urn:uuid:fixed",
                )
                written, mid = envelope.build(action, to, assertion, body)
                assert written.replace(mid.encode(), b"urn:uuid:fixed") == expected
                as_bytes, mid = envelope.build(
                    action,
                    to,
                    etree.tostring(assertion, encoding="UTF-8") if assertion is not None else None,
                    etree.tostring(body, encoding="UTF-8"),
                )
                assert as_bytes.replace(mid.encode(), b"urn:uuid:fixed") == expected
    with pytest.raises(ValueError):
        envelope.build("urn:a\x01", "https://h/x", None, bodies[0])


def _xmlsec1_verify(signature: bytes, cert_pem: Path, work: Path) -> tuple[int, str]:
    path = work / "signature.xml"
    path.write_bytes(signature)
    run = subprocess.run(
        [xmlsec1(), "--verify", "--ignore-manifests", "--enabled-reference-uris", "same-doc",
         "--id-attr:Id", f"{DS}:Manifest", "--id-attr:Id", f"{XADES}:SignedProperties",
         "--pubkey-cert-pem", str(cert_pem), str(path)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    return run.returncode, run.stderr


def test_xades_signature_from_templates_verifies_with_xmlsec1(signer: SoftwareSigner, tmp_path: Path) -> None:
    """xmlsec1 checks SignedInfo's two references (the Manifest and the SignedProperties, canonicalised in
    their context) and the RSA signature (the Manifest's document digests: tests/dmp/test_xades_c14n.py)."""
    cert = tmp_path / "cert.pem"
    cert.write_bytes(signer.certificate.public_bytes(serialization.Encoding.PEM))
    for count in (1, 3):
        docs = [(f"1.2.250.1.999.{i}", CDA) for i in range(count)]
        signed = xades.sign_submission_set(signer, "2.25.77", docs)
        rc, err = _xmlsec1_verify(signed, cert, tmp_path)
        assert rc == 0 and "SignedInfo References (ok/all): 2/2" in err, err
        xades.verify(signed, dict(docs))
        digest = etree.fromstring(signed).findtext(
            f".//{{{DS}}}Manifest/{{{DS}}}Reference[2]/{{{DS}}}DigestValue"
        )
        assert digest
        for tampered in (
            re.sub(rb"<xades:SigningTime>[^<]*", b"<xades:SigningTime>2020-01-01T00:00:00Z", signed),
            signed.replace(digest.encode(), (b"B" if digest[0] == "A" else b"A") + digest[1:].encode()),
        ):
            assert tampered != signed
            assert _xmlsec1_verify(tampered, cert, tmp_path)[0] != 0


def test_post_request_is_the_one_httpx_builds() -> None:
    """``transport.build_post`` (no per-call merging) makes the request ``Client.build_request`` makes: same
    URL, headers in the same order (ours replacing the client's), body and timeout; with cookies in the
    client's jar, httpx's own merge is used and the Cookie header is sent."""
    import httpx

    from ps_agent.dmp.transport import build_post

    timeout = httpx.Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0)
    url = httpx.URL("https://127.0.0.1:8443/si-dmp-server/v2/services/repository")
    body = b"--boundary\r\n" + bytes(range(256)) * 40
    ctype = 'multipart/related; boundary="b"; type="application/xop+xml"; action="urn:x"'
    for client in (httpx.Client(), httpx.Client(headers={"X-Extra": "1", "accept-encoding": "gzip"})):
        with client:
            expected = client.build_request(
                "POST",
                url,
                content=body,
                headers={"Content-Type": ctype, "Accept-Encoding": "identity"},
                timeout=timeout,
            )
            for target in (url, str(url)):
                built = build_post(client, target, body, ctype, timeout)
                for attribute in ("method", "url", "extensions", "content"):
                    assert getattr(built, attribute) == getattr(expected, attribute)
                assert built.headers.raw == expected.headers.raw
            client.cookies.set("JSESSIONID", "abc", domain="127.0.0.1")
            with_cookie = build_post(client, url, body, ctype, timeout)
            assert with_cookie.headers["Cookie"] == "JSESSIONID=abc"


def _is_xml_char(cp: int) -> bool:
    """XML 1.0 (Fifth Edition) production [2] Char, written from the specification."""
    return (
        cp in (0x9, 0xA, 0xD) or 0x20 <= cp <= 0xD7FF or 0xE000 <= cp <= 0xFFFD or 0x10000 <= cp <= 0x10FFFF
    )


def test_character_classes_match_the_xml_char_production_over_all_of_unicode() -> None:
    from ps_agent.dmp import xmltext

    every = "".join(map(chr, range(0x110000)))
    not_xml = [c for c in every if not _is_xml_char(ord(c))]
    assert xmltext._NOT_XML_CHAR.findall(every) == not_xml
    assert xmltext._ATTR_ATTENTION.findall(every) == [
        c for c in every if not _is_xml_char(ord(c)) or c in '\t\n\r"&<>'
    ]
    assert xmltext._TEXT_ATTENTION.findall(every) == [
        c for c in every if not _is_xml_char(ord(c)) or c in "\r&<>"
    ]
