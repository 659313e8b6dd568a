"""DmpClient.retrieve_many: several DocumentRequest per ITI-43 request, chunking, every failure typed.

The happy path against the real sandbox is tests/e2e/test_retrieve_many.py; here a scripted DMP gives
the answers a real one may give and the sandbox does not on demand (reordered, duplicated, silent gaps).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from ps_agent.config import ENVIRONMENTS, LPS
from ps_agent.dmp import client as client_mod
from ps_agent.dmp import mtom
from ps_agent.dmp.client import DmpClient
from ps_agent.dmp.errors import DocumentIntegrityError, DocumentMissingError, RegistryRefusal
from ps_agent.dmp.model import DMP_REPOSITORY_UNIQUE_ID, Code, DocumentEntry, PatientId
from ps_agent.dmp.xmlns import RS, XDSB, XOP, q

from .fakedmp import FakeCredentials, FakeDmp, envelope

ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"


def content(n: int) -> bytes:
    return f"<ClinicalDocument>document {n}</ClinicalDocument>".encode() * (n + 1)


def entry(patient: PatientId, n: int, **kw: object) -> DocumentEntry:
    data = content(n)
    fields: dict[str, object] = dict(
        unique_id=f"1.2.250.1.999.7.{n}",
        patient_id=patient,
        type_code=Code("11369-6", "2.16.840.1.113883.6.1", "Historique des vaccinations"),
        class_code=Code("52", "1.2.250.1.213.1.1.4.1", "Certificat"),
        format_code=Code("urn:asip:ci-sis:vac-note:2020", "1.2.250.1.213.1.1.4.2.282", "VAC-NOTE"),
        healthcare_facility_type=Code("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        practice_setting=Code("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
        creation_time=datetime(2026, 1, 1, tzinfo=UTC),
        repository_unique_id=DMP_REPOSITORY_UNIQUE_ID,
        hash=hashlib.sha1(data).hexdigest(),  # noqa: S324
        size=len(data),
    )
    fields.update(kw)
    return DocumentEntry(**fields)  # type: ignore[arg-type]


class Repository:
    """Answers ITI-43 with the documents asked for (MTOM), minus ``withhold``, in ``order``."""

    def __init__(self, docs: dict[str, bytes]) -> None:
        self.docs = docs
        self.withhold: set[str] = set()
        self.status = ""  # forced RegistryResponse status
        self.reverse = False
        self.twice = False
        self.requests: list[list[str]] = []

    def __call__(self, req) -> httpx.Response:
        asked = [dr.findtext(q(XDSB, "DocumentUniqueId")) for dr in req.root.iter(q(XDSB, "DocumentRequest"))]
        self.requests.append(asked)
        given = [u for u in asked if u in self.docs and u not in self.withhold]
        missing = [u for u in asked if u not in given]
        if self.reverse:
            given.reverse()
        if self.twice:
            given += given
        status = self.status or (PARTIAL if missing and given else FAILURE if missing else SUCCESS)
        errors = "".join(
            '<rs:RegistryError errorCode="XDSDocumentUniqueIdError" '
            f'codeContext="Document introuvable : {u}." location="{u}" '
            'severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"/>'
            for u in missing
            if status != SUCCESS  # a forced Success is a silent gap
        )
        rr = f'<rs:RegistryResponse xmlns:rs="{RS}" status="{status}">'
        rr += (
            f"<rs:RegistryErrorList>{errors}</rs:RegistryErrorList></rs:RegistryResponse>"
            if errors
            else "</rs:RegistryResponse>"
        )
        parts, responses = [], []
        for n, u in enumerate(given):
            cid = f"d{n}@repo"
            parts.append(mtom.Part(cid, "text/xml", self.docs[u]))
            responses.append(
                f"<xdsb:DocumentResponse><xdsb:RepositoryUniqueId>{DMP_REPOSITORY_UNIQUE_ID}</xdsb:RepositoryUniqueId>"
                f"<xdsb:DocumentUniqueId>{u}</xdsb:DocumentUniqueId><xdsb:mimeType>text/xml</xdsb:mimeType>"
                f'<xdsb:Document><xop:Include xmlns:xop="{XOP}" href="cid:{cid}"/></xdsb:Document>'
                "</xdsb:DocumentResponse>"
            )
        body = (
            f'<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="{XDSB}">{rr}{"".join(responses)}'
            "</xdsb:RetrieveDocumentSetResponse>"
        )
        env = envelope(body, req.message_id, ITI43 + "Response")
        if not parts:
            return httpx.Response(200, content=env, headers={"content-type": "application/soap+xml"})
        ctype, data = mtom.build(env, parts, action=ITI43 + "Response")
        return httpx.Response(200, content=data, headers={"content-type": ctype})


@pytest.fixture
def setup(gp, signer, patient):
    dmp = FakeDmp()
    entries = [entry(patient, n) for n in range(7)]
    repo = Repository({e.unique_id: content(n) for n, e in enumerate(entries)})
    dmp.handlers[ITI43] = repo
    c = DmpClient(FakeCredentials(gp, signer), ENVIRONMENTS["sandbox"], LPS, transport=dmp.transport())
    yield c, repo, entries
    c.close()


def test_one_request_for_many_documents_results_in_the_entries_order(setup, patient):
    client, repo, entries = setup
    repo.reverse = True  # the answer's order is the repository's
    got = client.retrieve_many(patient, entries)
    assert repo.requests == [[e.unique_id for e in entries]]
    assert [d.unique_id for d in got] == [e.unique_id for e in entries]
    assert [d.content for d in got] == [content(n) for n in range(7)]
    assert client.retrieve_many(patient, []) == [] and len(repo.requests) == 1


def test_chunks_by_document_count_and_by_announced_bytes(setup, patient, monkeypatch):
    client, repo, entries = setup
    monkeypatch.setattr(client_mod, "RETRIEVE_MANY_MAX_DOCUMENTS", 3)
    client.retrieve_many(patient, entries)
    assert [len(r) for r in repo.requests] == [3, 3, 1]
    repo.requests.clear()
    monkeypatch.setattr(client_mod, "RETRIEVE_MANY_MAX_DOCUMENTS", 100)
    sizes = [e.size for e in entries]  # 50, 100, ... bytes: at most 160 bytes a request
    monkeypatch.setattr(client_mod, "RETRIEVE_MANY_MAX_BYTES", 160)
    got = client.retrieve_many(patient, entries)
    assert [len(r) for r in repo.requests] == [2, 1, 1, 1, 1, 1] and sizes[0] + sizes[1] <= 160
    assert len(got) == 7  # a document larger than the limit still goes, alone


def test_the_same_document_twice_is_asked_once_and_given_twice(setup, patient):
    client, repo, entries = setup
    repo.twice = True  # and an answer that repeats it is not a problem
    got = client.retrieve_many(patient, [entries[2], entries[2], entries[4]])
    assert repo.requests == [[entries[2].unique_id, entries[4].unique_id]]
    assert [d.content for d in got] == [content(2), content(2), content(4)]


def test_missing_documents_are_named_in_a_typed_error(setup, patient):
    client, repo, entries = setup
    repo.withhold = {entries[1].unique_id, entries[5].unique_id}
    with pytest.raises(DocumentMissingError) as exc:  # PartialSuccess with its RegistryErrors
        client.retrieve_many(patient, entries)
    assert exc.value.unique_ids == (entries[1].unique_id, entries[5].unique_id)
    assert exc.value.code == "DOCUMENT_MISSING" and entries[1].unique_id in exc.value.message_fr
    assert "et 1 autre" in exc.value.message_fr and [e.location for e in exc.value.errors] == [
        entries[1].unique_id, entries[5].unique_id
    ]  # fmt: skip
    repo.status = SUCCESS  # a repository that says Success and leaves one out
    repo.withhold = {entries[3].unique_id}
    with pytest.raises(DocumentMissingError) as exc:
        client.retrieve_many(patient, entries)
    assert exc.value.unique_ids == (entries[3].unique_id,) and exc.value.errors == ()


def test_a_failure_is_the_dmp_refusal(setup, patient):
    client, repo, entries = setup
    repo.withhold = {e.unique_id for e in entries}
    with pytest.raises(RegistryRefusal) as exc:
        client.retrieve_many(patient, entries[:2])
    assert exc.value.code == "XDSDocumentUniqueIdError"


def test_every_document_is_checked_against_its_hash_and_size(setup, patient):
    client, repo, entries = setup
    repo.docs[entries[4].unique_id] = content(4).replace(b"document", b"DOCUMENT")
    with pytest.raises(DocumentIntegrityError) as exc:
        client.retrieve_many(patient, entries)
    assert exc.value.code == "HASH_MISMATCH" and entries[4].unique_id in exc.value.message_fr
    repo.docs[entries[4].unique_id] = content(4) + b" "
    with pytest.raises(DocumentIntegrityError) as exc:
        client.retrieve_many(patient, [e for e in entries if e is not entries[4]] + [entries[4]])
    assert exc.value.code == "HASH_MISMATCH"
    unhashed = entries[4].__class__(**{**entries[4].__dict__, "hash": ""})
    with pytest.raises(DocumentIntegrityError) as exc:
        client.retrieve_many(patient, [unhashed])
    assert exc.value.code == "SIZE_MISMATCH"
