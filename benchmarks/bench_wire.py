"""Wire-side benchmark of one deposit: prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_wire.py [--rounds N]

CPU (``process_time``) of ``DmpClient.send_deposit`` for one 263 KB CDA (a 200 KB PDF inside), software
key, the DMP answering in-process at once (its own CPU subtracted): XAdES signature, ebRIM body, signed
VIHF, SOAP envelope, MTOM, httpx request and answer parsing; then each step alone. Best of ``--rounds``
(the machine is shared: the best run is the least disturbed one), beside the two RSA signatures every
deposit makes (the part no code change removes). The XAdES document digest (``xades.tree_digest``,
computed by the session from the gate's tree) is shown beside its SHA-256 alone.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.bench_agent import BenchTransport  # noqa: E402
from cda.xml import safe_parse  # noqa: E402
from ps_agent.access.policy import PatientRef  # noqa: E402
from ps_agent.dmp import ebrim, envelope, mtom, xades  # noqa: E402
from ps_agent.dmp.client import CallContext, DmpClient  # noqa: E402
from ps_agent.dmp.ebrim import DepositItem  # noqa: E402
from ps_agent.dmp.environment import Environment  # noqa: E402
from ps_agent.dmp.lps import LpsInfo  # noqa: E402
from ps_agent.dmp.metadata import entry_from_cda  # noqa: E402
from ps_agent.dmp.model import Visibility  # noqa: E402
from sandbox import demo, pki  # noqa: E402
from tests.e2e import docs  # noqa: E402
from tests.fixtures.integration import credentials  # noqa: E402


class _NoNetwork(httpx.BaseTransport):
    """Behind ``BenchTransport`` in instant mode: a deposit never reaches it; anything else is a bug."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected request to {request.url}")


def instant_dmp() -> BenchTransport:
    """``bench_agent``'s transport answering every deposit at once (its own CPU counted apart)."""
    transport = BenchTransport(_NoNetwork())
    transport.instant_deposit = True
    return transport


def best_ms(step: Callable[[], object], rounds: int, dmp: BenchTransport | None = None) -> float:
    best = float("inf")
    for _ in range(rounds):
        before = dmp.own_cpu if dmp is not None else 0.0
        t0 = time.process_time()
        step()
        best = min(best, time.process_time() - t0 - ((dmp.own_cpu - before) if dmp is not None else 0.0))
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    rounds = ap.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        creds = credentials(pki.load_or_create(Path(tmp) / "pki"), "gp")
        env = Environment("sandbox", "https://127.0.0.1:8443/si-dmp-server/v2/services/")
        lps = LpsInfo("ps-agent", "0.1.0", "HOMOLOGATION-TEST", oid="1.2.250.1.999.1")
        data = docs.letter(demo.DEMO_ADULT, "gp", title="Bench", size=200_000)
        entry, _ = entry_from_cda(data, PatientRef(demo.DEMO_ADULT.ins, demo.DEMO_ADULT.oid), Visibility())
        root = safe_parse(data)
        items = [DepositItem(entry, data, c14n_sha256=xades.tree_digest(root))]
        signer = creds.vihf_signer()
        signed_info = b"<ds:SignedInfo>" + b"x" * 1000 + b"</ds:SignedInfo>"
        dmp = instant_dmp()
        with DmpClient(creds, env, lps, transport=dmp) as client:
            for _ in range(20):  # templates and caches filled
                client.send_deposit(client.submission_set(entry.patient_id), items)
            ss = client.submission_set(entry.patient_id)
            body, parts = client.build_deposit(ss, items)
            ctx = CallContext(ss.patient_id)
            sig_item = client._signature_entry(ss, entry, parts[-1].data)
            cids = [p.content_id for p in parts]
            assertion, _ = client._assertion(ctx)
            xml, _ = envelope.build(
                "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b", env.url("x"), assertion, body
            )
            rsa = best_ms(lambda: signer.sign(signed_info), rounds)
            total = best_ms(
                lambda: client.send_deposit(client.submission_set(entry.patient_id), items), rounds, dmp
            )
            print(
                f"send_deposit: {total:.3f} ms CPU, of which 2 RSA signatures {2 * rsa:.3f} ms: "
                f"{total - 2 * rsa:.3f} ms beside them (best of {rounds})"
            )

            def body_only() -> object:
                return ebrim.provide_and_register_xml(ss, items, sig_item, content_ids=cids)

            def request() -> object:
                return client.prepare("TD2.1", "repository", body, ctx, mtom_parts=parts)

            def soap() -> object:
                return envelope.build("urn:x", env.url("x"), assertion, body)

            for label, step, signatures in (
                ("build_deposit (XAdES signature, ebRIM)", lambda: client.build_deposit(ss, items), 1),
                ("  of which the ebRIM body", body_only, 0),
                ("request (VIHF, envelope, MTOM)", request, 1),
                ("  of which the envelope", soap, 0),
                ("  of which the MTOM", lambda: mtom.build(xml, parts, action="urn:x"), 0),
            ):
                spent = best_ms(step, rounds)
                print(
                    f"  {label}: {spent:.3f} ms ({spent - signatures * rsa:.3f} ms beside its RSA signatures)"
                )
            digest = best_ms(lambda: xades.tree_digest(root), rounds)
            sha = best_ms(lambda: hashlib.sha256(data).digest(), rounds)
            print(
                f"XAdES document digest (tree_digest): {digest:.3f} ms, SHA-256 of the CDA alone {sha:.3f} ms"
            )


if __name__ == "__main__":
    main()
