"""Hardened XML parsing: DOCTYPE refused, no entity expansion, no network, malformed input named."""

from __future__ import annotations

import pytest

import cda
from cda.errors import UnreadableInput, XmlSecurityError, XmlSyntaxError
from cda.xml import safe_parse

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>"""

NETWORK_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument SYSTEM "http://127.0.0.1:9/evil.dtd"><ClinicalDocument xmlns="urn:hl7-org:v3"/>"""


@pytest.mark.parametrize("data", [XXE, LAUGHS, NETWORK_DTD], ids=["xxe", "billion-laughs", "external-dtd"])
def test_doctype_is_refused_with_a_clear_error(data: bytes) -> None:
    with pytest.raises(XmlSecurityError) as exc:
        safe_parse(data)
    assert exc.value.field == "DOCTYPE"
    assert "DOCTYPE" in exc.value.message_fr
    assert exc.value.exit_code == 2


def test_doctype_in_utf16_is_refused() -> None:
    data = XXE.decode().replace('version="1.0"?>', 'version="1.0" encoding="UTF-16"?>').encode("utf-16")
    with pytest.raises(XmlSecurityError):
        safe_parse(data)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("keyword", ["DOCTYPE", "doctype", "DocType"])
def test_a_utf16_doctype_in_any_letter_case_is_refused_by_the_prolog_scan(
    encoding: str, keyword: str
) -> None:
    # libxml2 alone would call a lower-case keyword a syntax error: the prolog scan names the DOCTYPE
    text = (
        XXE.decode()
        .replace("DOCTYPE", keyword)
        .replace('version="1.0"?>', 'version="1.0" encoding="UTF-16"?>')
    )
    with pytest.raises(XmlSecurityError):
        safe_parse(text.encode(encoding))


def test_doctype_after_a_long_comment_is_still_refused() -> None:
    data = b"<?xml version='1.0'?><!--" + b"x" * 100_000 + b"-->" + XXE.split(b"?>", 1)[1]
    with pytest.raises(XmlSecurityError):
        safe_parse(data)


@pytest.mark.parametrize(
    ("data", "needle"),
    [(b"", "vide"), (b"   \n", "vide"), (b"<a><b></a>", "bien formé"), (b"%PDF-1.4 not xml", "bien formé")],
)
def test_malformed_or_empty_input(data: bytes, needle: str) -> None:
    with pytest.raises(XmlSyntaxError) as exc:
        safe_parse(data)
    assert needle in exc.value.message_fr
    assert isinstance(exc.value, UnreadableInput)


def test_non_cda_root_is_refused_by_parse() -> None:
    with pytest.raises(XmlSyntaxError) as exc:
        cda.parse(b"<Envelope xmlns='http://www.w3.org/2003/05/soap-envelope'/>")
    assert exc.value.field == "ClinicalDocument"


def test_plain_cda_without_doctype_parses() -> None:
    root = safe_parse(b"<ClinicalDocument xmlns='urn:hl7-org:v3'><title>t&amp;x</title></ClinicalDocument>")
    assert root.findtext("{urn:hl7-org:v3}title") == "t&x"
