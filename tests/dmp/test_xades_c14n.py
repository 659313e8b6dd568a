"""XAdES document digest (dmp-protocol.md §7.5): C14N WithComments of the whole document as transmitted.

Checked against an outside implementation (xmlsec1) on every ANS example of ../shared/cda that carries a
prolog, and the agent against the sandbox (two independent implementations of the same rule).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from lxml import etree

from ps_agent.auth.software import SoftwareSigner
from ps_agent.dmp import xades as agent_xades
from sandbox.dmp import xades as sandbox_xades
from tests.fixtures.xmlsec import has_prolog, prolog_examples, xmlsec1_document_digests

DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture(scope="module")
def examples(shared_dir: Path) -> list[tuple[str, bytes]]:
    found = [(p.name, p.read_bytes()) for p in prolog_examples(shared_dir)]
    assert len(found) >= 10, "the ANS examples carry xml-stylesheet PIs and comments: where are they?"
    return found


@pytest.fixture(scope="module")
def reference(examples: list[tuple[str, bytes]], tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    return xmlsec1_document_digests([c for _, c in examples], tmp_path_factory.mktemp("xmlsec1"))


def test_every_prolog_example_digest_matches_xmlsec1_in_agent_and_sandbox(
    examples: list[tuple[str, bytes]], reference: list[bytes]
) -> None:
    wrong = []
    for (name, content), expected in zip(examples, reference, strict=True):
        assert has_prolog(content)
        agent = agent_xades.document_digest(content)
        sandbox = hashlib.sha256(sandbox_xades.document_c14n(content)).digest()
        if not (agent == sandbox == expected):
            wrong.append((name, agent == expected, sandbox == expected))
    assert not wrong, f"(example, agent ok, sandbox ok): {wrong}"


def test_document_c14n_keeps_the_prolog_and_adds_no_empty_default_namespace(
    examples: list[tuple[str, bytes]],
) -> None:
    _, content = examples[0]
    canon = agent_xades.document_c14n(content)
    assert canon.startswith(b"<?") or canon.startswith(b"<!--")  # the prolog is part of the digest
    assert b'xmlns=""' not in canon
    assert canon == sandbox_xades.document_c14n(content)


def test_agent_signature_of_a_prolog_example_carries_the_xmlsec1_digest(
    examples: list[tuple[str, bytes]], reference: list[bytes], signer: SoftwareSigner
) -> None:
    (_, content), expected = examples[0], reference[0]
    signature = agent_xades.sign_submission_set(signer, "1.2.3.4.5", [("1.2.3.4.6", content)])
    root = etree.fromstring(signature)
    ref = next(r for r in root.iter(f"{{{DS}}}Reference") if r.get("URI") == "urn:oid:1.2.3.4.6")
    assert agent_xades._b64(expected) == ref.findtext(f"{{{DS}}}DigestValue")
    # and both verifiers accept it
    agent_xades.verify(signature, {"1.2.3.4.6": content})
    sandbox_xades.verify_submission_signature(root, "1.2.3.4.5", {"1.2.3.4.6": content})
