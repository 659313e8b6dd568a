"""A deposit of a CDA that carries the prolog of an ANS example (xml-stylesheet PI, oxygen PIs, comments)
is signed with the digest an outside implementation (xmlsec1) computes, accepted by the sandbox and kept
byte for byte (dmp-protocol.md §7.5: C14N WithComments of the document as transmitted)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from lxml import etree

from sandbox.dmp import build, xds
from tests.fixtures.xmlsec import prolog_examples, prolog_of, xmlsec1_document_digests
from tests.sandbox.dmp.conftest import Dmp, caller, errors_of, status_of

DS = "http://www.w3.org/2000/09/xmldsig#"


def _with_prolog(document: bytes, example: bytes) -> bytes:
    before, after = prolog_of(example)
    decl_end = document.index(b"?>") + 2 if document.startswith(b"<?xml ") else 0
    body = document[decl_end:].lstrip()
    out = document[:decl_end] + b"\n" + before + b"\n" + body
    return out + (b"\n" + after + b"\n" if after else b"")


def _manifest_digest(attachments: dict[str, bytes], uid: str) -> bytes:
    sig = etree.fromstring(next(v for k, v in attachments.items() if k.startswith("signature01")))
    ref = next(r for r in sig.iter(f"{{{DS}}}Reference") if r.get("URI") == f"urn:oid:{uid}")
    return base64.b64decode(ref.findtext(f"{{{DS}}}DigestValue") or "")


def test_deposits_with_every_ans_prolog_are_signed_like_xmlsec1_and_accepted(
    dmp: Dmp, shared_dir: Path, tmp_path: Path
) -> None:
    examples = prolog_examples(shared_dir)
    assert len(examples) >= 10
    contents = [_with_prolog(dmp.document(), p.read_bytes()) for p in examples]
    reference = xmlsec1_document_digests(contents, tmp_path / "xmlsec1")
    problems = []
    for path, content, expected in zip(examples, contents, reference, strict=True):
        resp, dep = dmp.deposit(caller("gp"), build.DepositDocument(content))
        uid = dep.unique_ids[0]
        if _manifest_digest(dep.attachments, uid) != expected:
            problems.append((path.name, "digest differs from xmlsec1"))
        if status_of(resp) != xds.SUCCESS:
            problems.append((path.name, str(errors_of(resp))))
            continue
        stored = dmp.store.document(unique_id=uid)
        if stored is None or dmp.store.content(stored.entry_uuid) != content:
            problems.append((path.name, "content not kept as transmitted"))
    assert not problems, problems


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_changed_prolog_comment_breaks_the_signature(dmp: Dmp, where: str) -> None:
    """With comments, the prolog is signed: changing a comment outside the root is detected."""
    content = dmp.document()
    marked = _with_prolog(content, b"<!-- original --><ClinicalDocument xmlns='urn:hl7-org:v3'/><!-- end -->")
    dep = build.provide_and_register([build.DepositDocument(marked)], signer=dmp.signer("gp"))
    if where == "before":
        tampered = marked.replace(b"<!-- original -->", b"<!-- changed! -->")
    else:
        tampered = marked.replace(b"<!-- end -->", b"<!-- fin -->")
    assert tampered != marked
    cid = next(c for c, v in dep.attachments.items() if v == marked)
    dep.attachments[cid] = tampered
    # keep the XDS hash/size of the document in line, so that only the signature can catch it
    for eo in dep.body.iter(xds.q(xds.RIM, "ExtrinsicObject")):
        if eo.get("id") == "Document01":
            xds.set_slot(eo, "hash", [hashlib.sha1(tampered).hexdigest()])  # noqa: S324
            xds.set_slot(eo, "size", [str(len(tampered))])
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    [(code, context)] = errors_of(resp)
    assert code == "XDSRegistryMetadataError" and "signature" in context.lower(), context


def test_the_agent_signature_of_a_document_with_an_ans_prolog_is_accepted(dmp: Dmp, shared_dir: Path) -> None:
    """The agent's XAdES (ps_agent.dmp.xades) over a CDA carrying an ANS prolog, through the deposit path."""
    from ps_agent.auth.software import SoftwareSigner
    from ps_agent.dmp import xades as agent_xades

    holder = dmp.pki.card("gp")
    content = _with_prolog(dmp.document(), prolog_examples(shared_dir)[0].read_bytes())
    dep = build.provide_and_register([build.DepositDocument(content)], signer=dmp.signer("gp"))
    signature = agent_xades.sign_submission_set(
        SoftwareSigner(holder.sign_key, holder.sign_cert, list(holder.chain)),
        dep.submission_set_uid,
        [(dep.unique_ids[0], content)],
    )
    sig_cid = next(c for c in dep.attachments if c.startswith("signature01"))
    dep.attachments[sig_cid] = signature
    for eo in dep.body.iter(xds.q(xds.RIM, "ExtrinsicObject")):
        if eo.get("id") == "Signature01":
            xds.set_slot(eo, "hash", [hashlib.sha1(signature).hexdigest()])  # noqa: S324 - XDS hash
            xds.set_slot(eo, "size", [str(len(signature))])
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
