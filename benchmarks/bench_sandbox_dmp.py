"""Domain-layer cost of the sandbox DMP (no HTTP, no TLS): ``DmpService.handle`` for deposits of 50 KB
documents (1 and 4 threads) and FindDocuments / GetDocuments on a patient with 2,000 documents.

Shows how much of the whole-stack figures (``bench_sandbox.py``) the domain layer takes.
Run: ``.venv/bin/python benchmarks/bench_sandbox_dmp.py [--docs 2000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import demo  # noqa: E402
from sandbox.dmp import build  # noqa: E402
from sandbox.dmp.service import DmpService  # noqa: E402
from sandbox.dmp.store import Store  # noqa: E402
from sandbox.pki import load_or_create  # noqa: E402
from sandbox.profiles import PROFILES  # noqa: E402
from sandbox.server.context import Caller, SoapRequest  # noqa: E402

P = demo.DEMO_ADULT
GP = PROFILES["gp"]
CALLER = Caller(
    id_nat=GP.id_nat, family_name=GP.family_name, given_name=GP.given_name, profession_code="10",
    non_ps_role="", specialty_code=GP.specialty_code, structure_id=GP.situations[0].structure_id,
    sector="SA07", mode="DIRECTE", purpose="normal", reason=None, patient_ins=P.ins, patient_oid=P.oid,
    confidentiality=None, is_regulator=False, tls_subject="", vihf_signed=False, lps_name="bench",
    lps_version="1",
)  # fmt: skip


def request(service: str, body: etree._Element, attachments: dict[str, bytes] | None = None) -> SoapRequest:
    body = etree.fromstring(etree.tostring(body))
    return SoapRequest(service, "", "urn:uuid:bench", body, attachments or {}, CALLER, datetime.now(UTC))


def deposits(pki_dir: Path, count: int) -> list[SoapRequest]:
    pki = load_or_create(pki_dir)
    holder = pki.card("gp")
    patient = build.patient_input(
        P.ins, P.oid, P.family_name, P.given_names, P.birth_date, P.sex, P.birth_place
    )
    author = build.author_input(GP)
    text = build.padded_text(50_000)
    out = []
    for _ in range(count):
        data = build.text_document(patient, author, "11488-4", "Consultation", text)
        dep = build.provide_and_register(
            [build.DepositDocument(data)], signer=(holder.sign_key, holder.sign_cert, holder.chain)
        )
        out.append(request("repository", dep.body, dep.attachments))
    return out


def run_deposits(service: DmpService, reqs: list[SoapRequest], threads: int) -> float:
    chunks = [reqs[i::threads] for i in range(threads)]
    failures: list[str] = []

    def work(chunk: list[SoapRequest]) -> None:
        for r in chunk:
            resp = service.handle(r)
            if not resp.body.get("status", "").endswith("Success"):
                failures.append(etree.tostring(resp.body).decode()[:300])

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} failed deposits: {failures[0]}")
    return len(reqs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--deposits", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data")
        store.create_patient(P.ins, P.oid, P.family_name, P.given_names, P.birth_date, P.sex, P.birth_place)
        store.set_authorisation(P.ins, GP.id_nat)
        service = DmpService(store)
        for threads in (1, 4):
            reqs = deposits(Path(tmp) / "pki", args.deposits)
            rate = run_deposits(service, reqs, threads)
            print(f"domain deposits of 50 KB, {threads} thread(s): {rate:.0f} deposits/s")
        # fill up to --docs documents with small deposits (same path)
        missing = args.docs - store.document_count(P.ins)
        if missing > 0:
            run_deposits(service, deposits(Path(tmp) / "pki", missing), 1)
        find = request("registry", build.find_documents(P.ins, P.oid))
        times = []
        for _ in range(7):
            start = time.perf_counter()
            resp = service.handle(find)
            times.append(time.perf_counter() - start)
        found = len(list(resp.body.iter("{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}ExtrinsicObject")))
        print(
            f"domain FindDocuments on {found} documents: median {statistics.median(times) * 1000:.0f} ms,"
            f" max {max(times) * 1000:.0f} ms"
        )
        uid = store.documents(P.ins)[-1].unique_id
        get = request("registry", build.get_documents(unique_ids=[uid]))
        start = time.perf_counter()
        for _ in range(100):
            service.handle(get)
        print(f"domain GetDocuments (1 of {found}): {(time.perf_counter() - start) * 10:.2f} ms")
        store.close()


if __name__ == "__main__":
    main()
