"""Sandbox throughput: deposits/s of 50 KB documents with 1 and 4 concurrent clients, FindDocuments
latency on a patient with 2,000 documents, and the cost of one VIHF verification. Under load and abuse:
10,000 sequential TLS connections (a real request each; the server's file descriptors and memory every
1,000) and 20 concurrent 19 MiB requests (the server's peak memory; 503 beyond the byte budget).

The sandbox runs in its own process (``python -m sandbox serve``), as it does for the agent, so the
clients' work does not share its GIL. Requests are prepared before timing (CDA, XAdES, VIHF, MTOM);
each client keeps one HTTPS keep-alive connection. Run: ``.venv/bin/python benchmarks/bench_sandbox.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import demo  # noqa: E402
from sandbox.dmp import build  # noqa: E402
from sandbox.pki import generate_all, load_or_create  # noqa: E402
from sandbox.profiles import PROFILES  # noqa: E402
from tests.fixtures.sandbox import ACTIONS, VihfSpec, Wire, envelope, mtom_request  # noqa: E402
from tests.sandbox.server import bodies, rawhttp  # noqa: E402

PATIENT = demo.DEMO_ADULT


class _Url:
    def __init__(self, base: str) -> None:
        self.base = base

    def url(self, service: str) -> str:
        return self.base + service


def start_server(data: Path, pki_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--data", str(data), "--port", "0", "--pki", str(pki_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # type: ignore[union-attr]
        m = re.search(r"à l'écoute sur (\S+)", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError("the sandbox did not start")


def prepare_deposits(wire: Wire, n: int, size: int) -> list[tuple[bytes, str]]:
    gp = wire.pki.card("gp")
    patient = build.patient_input(
        PATIENT.ins,
        PATIENT.oid,
        PATIENT.family_name,
        PATIENT.given_names,
        PATIENT.birth_date,
        PATIENT.sex,
        PATIENT.birth_place,
    )
    author = build.author_input(PROFILES["gp"])
    text = build.padded_text(size)
    service, action = ACTIONS["TD2.1"]
    spec = VihfSpec(patient_ins=PATIENT.ins, patient_oid=PATIENT.oid)
    out = []
    for i in range(n):
        cda = build.text_document(patient, author, "11488-4", f"Consultation {i}", text)
        dep = build.provide_and_register(
            [build.DepositDocument(cda)], signer=(gp.sign_key, gp.sign_cert, gp.chain)
        )
        env = envelope(action, dep.body, wire.vihf(spec), to=wire.sandbox.url(service))
        out.append(mtom_request(env, {k: (v, "text/xml") for k, v in dep.attachments.items()}, action))
    return out


def run_clients(wire: Wire, requests: list[tuple[bytes, str]], clients: int) -> tuple[float, int]:
    """Send ``requests`` split over ``clients`` threads; return (seconds, failures)."""
    url = wire.sandbox.url("repository")
    chunks = [requests[i::clients] for i in range(clients)]
    failures = [0] * clients
    ctx_files = wire.tls_files("gp")

    def worker(k: int) -> None:
        from tests.fixtures.sandbox import _ssl_context

        with httpx.Client(verify=_ssl_context(str(wire.pki.ca_bundle), ctx_files), timeout=60) as c:
            for body, ctype in chunks[k]:
                r = c.post(url, content=body, headers={"Content-Type": ctype})
                if r.status_code != 200 or b"ResponseStatusType:Success" not in r.content:
                    failures[k] += 1
                    if failures[k] == 1:
                        print("  first failure:", r.status_code, r.text[:300], file=sys.stderr)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sum(failures)


def bench_vihf(pki, rounds: int = 300) -> float:
    """Median ms to verify one signed VIHF (chain check cached by fingerprint)."""
    from sandbox.server.certs import TrustStore
    from sandbox.server.vihf import VihfVerifier
    from tests.fixtures.sandbox import WSSE

    wire = Wire(_Url("https://127.0.0.1/x/"), pki)
    verifier = VihfVerifier(TrustStore(pki.roots, pki.intermediates))
    gp = pki.card("gp")
    times = []
    for _ in range(rounds):
        sec = etree.Element(f"{{{WSSE}}}Security")
        sec.append(wire.vihf(VihfSpec(), sign=True))
        t0 = time.perf_counter()
        verifier.verify(sec, gp.auth_cert, "registry")
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bench_connections(wire: Wire, pid: int, port: int, n: int) -> None:
    """``n`` sequential TLS connections, one TD0.2 each; file descriptors and RSS of the server process."""
    ctx = rawhttp.client_context(wire.pki)
    body = build.existence_query(PATIENT.ins, PATIENT.oid)
    spec = VihfSpec(patient_ins=PATIENT.ins, patient_oid=PATIENT.oid)
    fds0, rss0 = rawhttp.fd_count(pid), rawhttp.status_kib("VmRSS", pid)
    print(f"{n} sequential connections (TD0.2 each): start {fds0} fds, RSS {rss0 / 1024:.0f} MiB")
    t0 = time.perf_counter()
    failures = 0
    for i in range(1, n + 1):
        try:
            reply = rawhttp.exchange(ctx, port, rawhttp.soap_request(wire, "TD0.2", body, spec))
            failures += reply.status != 200
        except OSError:
            failures += 1
        if i % (n // 10 or 1) == 0:
            rss = rawhttp.status_kib("VmRSS", pid) / 1024
            rate = i / (time.perf_counter() - t0)
            print(
                f"  after {i:>6}: {rawhttp.fd_count(pid)} fds, RSS {rss:.0f} MiB, {failures} failures,"
                f" {rate:.0f}/s"
            )


def bench_big_requests(wire: Wire, pid: int, port: int, n: int, size: int = 19 * 1024 * 1024) -> None:
    """``n`` concurrent requests of ``size`` bytes (ITI-41 MTOM, one attachment): the server's peak memory."""
    ctx = rawhttp.client_context(wire.pki)
    service, action = ACTIONS["TD2.1"]
    document = bytes(size - 64 * 1024)
    marker = b"\x00document\x00"
    prepared = []
    for _ in range(n):
        env = envelope(
            action,
            bodies.provide_and_register({"Document01": "cid:doc1@bench"}),
            wire.vihf(VihfSpec()),
            to=wire.sandbox.url(service),
        )
        content, ctype = mtom_request(env, {"doc1@bench": (marker, "text/xml")}, action)
        before, _, after = content.partition(marker)
        length = len(content) - len(marker) + len(document)
        head = rawhttp.http_request(
            "POST", "/si-dmp-server/v2/services/repository", b"", {"Content-Type": ctype}
        )
        prepared.append((head.replace(b"Content-Length: 0", b"Content-Length: %d" % length) + before, after))
    hwm0, rss0 = rawhttp.status_kib("VmHWM", pid), rawhttp.status_kib("VmRSS", pid)
    statuses: list[int | str] = []

    def send(parts: tuple[bytes, bytes]) -> None:
        try:
            with rawhttp.connect(ctx, port, timeout=120) as sock:
                sock.sendall(parts[0])
                sock.sendall(document)
                sock.sendall(parts[1])
                statuses.append(rawhttp.read_reply(sock).status)
        except OSError as exc:
            statuses.append(type(exc).__name__)

    threads = [threading.Thread(target=send, args=(p,)) for p in prepared]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = {str(s): statuses.count(s) for s in set(statuses)}
    print(
        f"{n} concurrent requests of {size / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f} s: {counts}; "
        f"server peak memory {rawhttp.status_kib('VmHWM', pid) / 1024:.0f} MiB (before {hwm0 / 1024:.0f}), "
        f"RSS {rss0 / 1024:.0f} -> {rawhttp.status_kib('VmRSS', pid) / 1024:.0f} MiB"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--deposits", type=int, default=400, help="deposits per phase")
    ap.add_argument("--size", type=int, default=50_000, help="document size in bytes")
    ap.add_argument("--find-docs", type=int, default=2000, help="documents of the patient for FindDocuments")
    ap.add_argument("--connections", type=int, default=10_000, help="sequential connections (0: skip)")
    ap.add_argument("--big", type=int, default=20, help="concurrent 19 MiB requests (0: skip)")
    ap.add_argument("--no-throughput", action="store_true", help="skip the deposit and FindDocuments figures")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        tmp_path = Path(tmp)
        pki = load_or_create(tmp_path / "pki")
        generate_all(pki)
        print(f"VIHF verification (signed, RSA-SHA256): {bench_vihf(pki):.2f} ms median")
        proc, base = start_server(tmp_path / "data", pki.directory)
        try:
            # the patient and the gp's authorisation, through the domain layer's store in the data folder
            from sandbox.dmp.store import Store

            with Store(tmp_path / "data") as store:
                store.create_patient(
                    PATIENT.ins,
                    PATIENT.oid,
                    PATIENT.family_name,
                    PATIENT.given_names,
                    PATIENT.birth_date,
                    PATIENT.sex,
                    PATIENT.birth_place,
                )
                store.set_authorisation(PATIENT.ins, PROFILES["gp"].id_nat)
            wire = Wire(_Url(base), pki)
            port = int(base.split(":")[2].split("/")[0])
            if args.big:
                bench_big_requests(wire, proc.pid, port, args.big)
            if args.connections:
                bench_connections(wire, proc.pid, port, args.connections)
            if args.no_throughput:
                wire.close()
                return 0
            total = 0
            for clients in (1, 4):
                reqs = prepare_deposits(wire, args.deposits, args.size)
                seconds, failures = run_clients(wire, reqs, clients)
                total += len(reqs)
                print(
                    f"deposits of {args.size // 1000} KB, {clients} client(s): "
                    f"{len(reqs) / seconds:.0f} deposits/s "
                    f"({len(reqs)} in {seconds:.1f} s, {failures} failures)"
                )
            if total < args.find_docs:
                reqs = prepare_deposits(wire, args.find_docs - total, 2_000)
                run_clients(wire, reqs, 4)
            body = build.find_documents(PATIENT.ins, PATIENT.oid)
            service, action = ACTIONS["TD3.1"]
            spec = VihfSpec(patient_ins=PATIENT.ins, patient_oid=PATIENT.oid)
            client = wire.client("gp")
            lat = []
            count = 0
            for _ in range(10):
                env = envelope(action, body, wire.vihf(spec), to=wire.sandbox.url(service))
                t0 = time.perf_counter()
                r = client.post(
                    wire.sandbox.url(service), content=env, headers={"Content-Type": "application/soap+xml"}
                )
                lat.append(time.perf_counter() - t0)
                count = r.content.count(b"<rim:ExtrinsicObject")
            print(
                f"FindDocuments on a patient with {count} documents: "
                f"median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms "
                f"({len(r.content) / 1e6:.1f} MB answer)"
            )
            wire.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
