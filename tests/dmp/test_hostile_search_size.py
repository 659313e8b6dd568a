"""The response size cap against the largest legitimate answer: a 5,000-entry FindDocuments.

One entry is measured as the DMP stand-in (the sandbox) renders it for a real deposit; 5,000 such entries
are served over mutual TLS and the agent must read and parse them all under the default cap, while a cap
just below the answer's size refuses it.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from lxml import etree

from ps_agent.config import LPS, Environment
from ps_agent.dmp import ebrim
from ps_agent.dmp.client import DmpClient
from ps_agent.dmp.errors import ResponseTooLarge
from ps_agent.dmp.model import PatientId
from ps_agent.dmp.transport import DEFAULT_MAX_RESPONSE_BYTES
from sandbox.dmp import build
from sandbox.dmp.service import DmpService
from sandbox.dmp.store import Store
from sandbox.pki import TestPki
from tests.fixtures.hostile import HostileRequest, hostile_server, http_answer, soap, software_credentials
from tests.sandbox.dmp.conftest import PATIENT, Dmp, caller

ENTRIES = 5000
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"


@pytest.fixture(scope="module")
def one_entry(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki) -> bytes:
    """One FindDocuments entry (ExtrinsicObject, LeafClass) as the sandbox answers it after a deposit."""
    store = Store(tmp_path_factory.mktemp("store") / "data")
    store.create_patient(
        PATIENT.ins,
        PATIENT.oid,
        PATIENT.family_name,
        PATIENT.given_names,
        PATIENT.birth_date,
        PATIENT.sex,
        PATIENT.birth_place,
    )
    dmp = Dmp(store, DmpService(store, trusted_certs=[*test_pki.roots, *test_pki.intermediates]), test_pki)
    try:
        dmp.deposit(caller("gp"), build.DepositDocument(dmp.document()))
        store.set_authorisation(PATIENT.ins, caller("gp").id_nat)
        resp = dmp.call("registry", ebrim.find_documents(PatientId(PATIENT.ins, PATIENT.oid)), caller("gp"))
        [entry] = list(resp.body.iter(f"{{{RIM}}}ExtrinsicObject"))
        return etree.tostring(entry)
    finally:
        store.close()


def _answer(entry: bytes, n: int) -> bytes:
    # distinct object ids per entry (entryUUID, Classification / ExternalIdentifier ids), the rest as is
    ids = sorted(
        {el.get("id", "") for el in etree.fromstring(entry).iter() if el.get("id", "").startswith("urn:")}
    )
    template = entry.replace(b"%", b"%%")
    for ident in ids:
        template = template.replace(ident.encode(), b"%(" + str(ids.index(ident)).encode() + b")s")
    objects = [
        template
        % {str(j).encode(): f"urn:uuid:{i:08x}-0000-4000-8000-{j:012x}".encode() for j in range(len(ids))}
        for i in range(n)
    ]
    return (
        f'<query:AdhocQueryResponse xmlns:query="{QUERY}" xmlns:rim="{RIM}" xmlns:rs="{RS}"'
        f' status="{SUCCESS}"><rim:RegistryObjectList>'.encode()
        + b"".join(objects)
        + b"</rim:RegistryObjectList></query:AdhocQueryResponse>"
    )


def test_a_5000_entry_search_fits_the_default_cap_and_a_smaller_cap_refuses_it(
    one_entry: bytes, test_pki: TestPki, tmp_path: Path
) -> None:
    body = _answer(one_entry, ENTRIES)
    per_entry = len(one_entry)
    print(f"one FindDocuments entry: {per_entry} bytes; {ENTRIES} entries: {len(body) / 1e6:.1f} MB")
    assert 3000 < per_entry < 12000  # the ~6.7 KB the cap was sized with (transport.py)
    assert len(body) * 1.5 < DEFAULT_MAX_RESPONSE_BYTES

    def behave(conn: ssl.SSLSocket, request: HostileRequest) -> None:
        action = "urn:ihe:iti:2007:RegistryStoredQueryResponse"
        conn.sendall(http_answer(soap(body.decode(), relates_to=request.message_id, action=action)))

    with hostile_server(test_pki, behave) as url:
        env = Environment("hostile", url, ca_file=str(test_pki.ca_bundle), timeout_s=60.0)
        patient = PatientId(PATIENT.ins, PATIENT.oid)
        with DmpClient(software_credentials(test_pki, external_tls=False), env, LPS) as client:
            entries = client.find_documents(patient)
        assert len(entries) == ENTRIES
        small = DmpClient(
            software_credentials(test_pki, external_tls=False), env, LPS, max_response_bytes=len(body)
        )
        with small, pytest.raises(ResponseTooLarge):
            small.find_documents(patient)
