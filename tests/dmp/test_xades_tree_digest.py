"""The XAdES document digest computed from the tree the deposit already parsed (``xades.tree_digest``),
which hashes long text nodes from Python instead of through libxml2's C14N writer: checked against two
outside canonicalisers (libxml2's ``xmllint --c14n``, a separate program, and ``xmlsec1``) on documents
chosen to break a wrong splice: prolog PIs and comments, CRLF line ends, attributes out of order,
redundant namespace declarations, long texts holding what C14N escapes, non-ASCII and ISO-8859-1 texts,
long tails and mixed content, CDATA, several long texts, text at the threshold, marker look-alikes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from cda.xml import safe_parse
from ps_agent.dmp import xades
from tests.fixtures.xmlsec import xmlsec1_document_digests

B64 = base64.b64encode(os.urandom(30_000)).decode()  # one line, 40 KB
B64_LINES = "\n".join(B64[i : i + 76] for i in range(0, len(B64), 76))
LIMIT = xades._SPLICE_MIN_CHARS
PROLOG = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<?xml-stylesheet type="text/xsl" href="cda.xsl"?>\n<!-- c -->\n'
)


def _docs() -> dict[str, bytes]:
    hl7 = 'xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    level1 = (
        f"{PROLOG}<ClinicalDocument {hl7}><!-- body --><component><nonXMLBody>"
        f'<text mediaType="application/pdf" representation="B64">{B64_LINES}</text>'
        "</nonXMLBody></component></ClinicalDocument>\n<!-- trailing -->"
    )
    return {
        "level1": level1.encode(),
        "level1_crlf": level1.replace("\n", "\r\n").encode(),
        "escaped_chars": (f"<a>{B64[:LIMIT]}&amp;&lt;&gt;&#13;{B64[:LIMIT]}<b>x</b></a>").encode(),
        "gt_literal": f"<a><b>{B64[:LIMIT]} > {B64[:100]}</b></a>".encode(),
        "cr_reference_only": f"<a><b>{B64[:LIMIT]}&#xD;</b></a>".encode(),
        "non_ascii_utf8": f"<a><b>{'é漢字ü' * 3000}</b></a>".encode(),
        "iso_8859_1": (
            f'<?xml version="1.0" encoding="ISO-8859-1"?>\n<a z="1" b="2" a="3"><b>{"éàç" * 3000}</b></a>'
        ).encode("iso-8859-1"),
        "namespaces_attributes": (
            '<r:root xmlns:r="urn:r" xmlns:unused="urn:u" xmlns="urn:d" z="1" a="2" xml:lang="fr">'
            f'<child xmlns="urn:d" xmlns:r="urn:r" r:b="x" a="y">{B64}</child>'
            f'<r:other xmlns="">{B64_LINES}<!-- in --></r:other></r:root>'
        ).encode(),
        "mixed_and_tails": (
            f"<a>{B64}<b/>{B64}<c>{B64[:100]}<d>{B64}</d>{B64}</c><!-- x -->{B64}</a>"
        ).encode(),
        "cdata": f"<a><b>{B64[:LIMIT]}<![CDATA[<&>]]>{B64}</b><c><![CDATA[{B64}]]></c></a>".encode(),
        "threshold": (
            f"<a><b>{B64[: LIMIT - 1]}</b><c>{B64[:LIMIT]}</c><d>{B64[: LIMIT + 1]}</d></a>"
        ).encode(),
        "marker_lookalike": f"<a><b>{B64}</b><c>c14n-splice-{'0' * 32}</c><d>{B64}</d></a>".encode(),
        "attribute_escapes": f'<a t="x&#9;y&#10;&quot;&lt;"><b q="&amp;">{B64}</b></a>'.encode(),
        "no_long_text": PROLOG.encode() + b"<a><b>short</b><!-- c --><?pi x?></a>",
    }


DOCS = _docs()


def _xmllint_c14n(content: bytes, tmp: Path) -> bytes:
    path = tmp / "doc.xml"
    path.write_bytes(content)
    exe = shutil.which("xmllint")
    assert exe is not None, "xmllint is missing (Debian package libxml2-utils)"
    return subprocess.run([exe, "--c14n", str(path)], check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def xmlsec1_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    names = list(DOCS)
    digests = xmlsec1_document_digests([DOCS[n] for n in names], tmp_path_factory.mktemp("xmlsec1"))
    return dict(zip(names, digests, strict=True))


@pytest.mark.parametrize("name", list(DOCS))
def test_tree_digest_matches_xmllint_and_xmlsec1(
    name: str, xmlsec1_reference: dict[str, bytes], tmp_path: Path
) -> None:
    content = DOCS[name]
    root = safe_parse(content)
    before = etree.tostring(root.getroottree(), method="c14n", with_comments=True)
    expected = hashlib.sha256(_xmllint_c14n(content, tmp_path)).digest()
    assert xmlsec1_reference[name] == expected  # the two outside references agree
    assert xades.tree_digest(root) == expected  # the copy by deepcopy
    assert xades.tree_digest(root, content) == expected  # the copy parsed from the spliced bytes
    assert xades.document_digest(content) == expected
    assert hashlib.sha256(xades.document_c14n(content)).digest() == expected
    # the tree handed in is left exactly as it was (the deposit goes on reading it)
    assert etree.tostring(root.getroottree(), method="c14n", with_comments=True) == before


def test_the_splice_is_taken_for_a_level1_document_and_not_for_escaped_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = xades._document_tree_c14n

    def counting(root: etree._Element) -> bytes:
        out = real(root)
        calls.append(len(out))
        return out

    monkeypatch.setattr(xades, "_document_tree_c14n", counting)
    xades.tree_digest(safe_parse(DOCS["level1"]))
    assert calls and calls[-1] < 2_000  # the 40 KB text was not canonicalised by libxml2
    calls.clear()
    xades.tree_digest(safe_parse(DOCS["gt_literal"]))
    assert calls and calls[-1] > LIMIT  # "&gt;" to write: left to libxml2


@pytest.mark.parametrize(
    ("name", "spliced"),
    [("level1", True), ("non_ascii_utf8", True), ("namespaces_attributes", True), ("mixed_and_tails", False),
     ("level1_crlf", False), ("iso_8859_1", False), ("cdata", False)],
)  # fmt: skip
def test_the_bytes_are_spliced_when_each_long_text_is_verbatim_in_them(
    name: str, spliced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the bytes, the copy is their parse with each long text replaced (no deep copy of the tree)
    when every long text is found verbatim (UTF-8); CRLF line ends, another encoding, a CDATA section or
    the same text as an earlier tail (found first) fall back to the deep copy (the digest is the same
    either way: the test above)."""
    copies: list[object] = []
    real = xades.copy.deepcopy
    monkeypatch.setattr(xades.copy, "deepcopy", lambda x: (copies.append(x), real(x))[1])
    content = DOCS[name]
    root = safe_parse(content)
    expected = hashlib.sha256(etree.tostring(root.getroottree(), method="c14n", with_comments=True)).digest()
    assert xades.tree_digest(root, content) == expected
    assert (copies == []) is spliced


def test_a_text_found_elsewhere_first_is_not_taken_for_the_element_text() -> None:
    """The long text also sits, verbatim, in an attribute and a comment before the element: the splice is
    refused (the copy's element does not hold the marker) and the digest is still the document's."""
    doc = f'<a x="{B64}"><!--{B64}--><b>{B64}</b></a>'.encode()
    root = safe_parse(doc)
    expected = hashlib.sha256(etree.tostring(root.getroottree(), method="c14n", with_comments=True)).digest()
    assert xades._spliced_copy(root, doc, [(root[1], B64)], ["c14n-splice-x"]) is None
    assert xades.tree_digest(root, doc) == expected


def test_signature_uses_a_given_digest_and_computes_a_missing_one(signer: object) -> None:
    content = DOCS["level1"]
    digest = xades.tree_digest(safe_parse(content))
    sig = xades.sign_submission_set(
        signer,  # type: ignore[arg-type]
        "1.2.3.4.5",
        [("1.2.3.4.6", content), ("1.2.3.4.7", DOCS["cdata"])],
        digests=[digest, None],
    )
    xades.verify(sig, {"1.2.3.4.6": content, "1.2.3.4.7": DOCS["cdata"]})


def test_signature_with_the_signer_parts_copied_is_the_direct_build(signer: object) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    docs = [("1.2.3.4.6", DOCS["level1"]), ("1.2.3.4.7", DOCS["cdata"])]

    def signed() -> bytes:
        xml = xades.sign_submission_set(signer, "1.2.3.4.5", docs, now=now)  # type: ignore[arg-type]
        return re.sub(rb"id[0-9a-f]{32}", b"idX", xml)  # the random signature Id

    copied, again = signed(), signed()
    xades.USE_TEMPLATES = False
    try:
        direct = signed()
    finally:
        xades.USE_TEMPLATES = True
    assert copied == again == direct
    xades.verify(copied.replace(b"idX", b"id0"), dict(docs))
