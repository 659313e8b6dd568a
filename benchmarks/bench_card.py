"""Card / authentication figures through the real stack (pcscd + vpcd + emulated card, SoftHSM2).

Prints: PIN verify + one signature through pcscd/vpcd/emulator; SoftHSM2 signature; time from card
insertion to the monitor's event; from removal to session closed; TLS handshake with the card key.
Needs pcscd running with vpcd (``pcscd -f`` as root) and SoftHSM2. Run:
``.venv/bin/python benchmarks/bench_card.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ps_agent.auth.model import KeyUse  # noqa: E402
from ps_agent.auth.session import AuthSession  # noqa: E402
from ps_agent.card.cps import CpsSession  # noqa: E402
from ps_agent.card.monitor import CardEventKind, CardMonitor  # noqa: E402
from ps_agent.card.pcsc import PcscConnection  # noqa: E402
from sandbox.card import READER_NAMES, VpcdLink, make_card  # noqa: E402
from sandbox.pki import load_or_create  # noqa: E402

READER = READER_NAMES[0]
LOCK_PATH = "/tmp/ps-agent-vpcd.lock"  # the lock of tests/fixtures/card.py (virtual_card)


def _fmt(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"median {statistics.median(ms):7.2f} ms   min {ms[0]:7.2f}   max {ms[-1]:7.2f}   (n={len(ms)})"


def _wait(events: queue.Queue, kind: CardEventKind, timeout: float = 5.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        event = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if event.reader == READER and event.kind is kind:
            return event.at


def bench_card(pki: object, rounds: int) -> None:
    events: queue.Queue = queue.Queue()
    insert_to_event, remove_to_closed, pin_sign, sign_only, tls = [], [], [], [], []
    with CardMonitor() as monitor:
        monitor.subscribe(events.put)
        card = make_card(pki, "gp")
        for _ in range(rounds):
            link = VpcdLink(card)
            t0 = time.monotonic()
            link.insert()
            insert_to_event.append(_wait(events, CardEventKind.INSERTED) - t0)

            with PcscConnection(READER) as conn:
                cps = CpsSession(conn)
                t0 = time.monotonic()
                cps.verify_pin("1234")
                cps.sign(KeyUse.SIGNATURE, b"<saml2:Assertion/>")
                pin_sign.append(time.monotonic() - t0)
                t0 = time.monotonic()
                cps.sign(KeyUse.SIGNATURE, b"<saml2:Assertion/>")
                sign_only.append(time.monotonic() - t0)

            session = AuthSession.open(READER, "1234")
            tls.append(_tls_handshake(pki, session))
            closed = threading.Event()
            session.on_closed(lambda reason, ev=closed: ev.set())
            t0 = time.monotonic()
            link.remove()
            closed.wait(5)
            remove_to_closed.append(session.closed_at - t0 if session.closed_at else float("nan"))
            _wait(events, CardEventKind.REMOVED)
    print(f"insertion -> INSERTED event          {_fmt(insert_to_event)}")
    print(f"PIN verify + 1 signature (PC/SC)      {_fmt(pin_sign)}")
    print(f"1 signature (PSO HASH + PSO CDS)      {_fmt(sign_only)}")
    print(f"TLS 1.2 handshake, card key (tlslite) {_fmt(tls)}")
    print(f"removal -> session closed             {_fmt(remove_to_closed)}")


def _tls_handshake(pki: object, session: AuthSession) -> float:
    import httpx

    from tests.auth.tls_server import mtls_server

    full = pki.directory / "server" / "server.fullchain.pem"
    with mtls_server(pki.server_cert, pki.server_key, pki.ca_bundle, cert_chain=full) as url:
        with httpx.Client(transport=session.tls_transport(ca_file=str(pki.ca_bundle))) as client:
            t0 = time.monotonic()
            client.get(url)
            return time.monotonic() - t0


def bench_softhsm(pki: object, rounds: int) -> None:
    module = Path("/usr/lib/softhsm/libsofthsm2.so")
    if not module.is_file():
        print("SoftHSM2 not installed: skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-softhsm-"))
    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    gp = pki.card("gp")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run(
        "softhsm2-util", "--init-token", "--free", "--label", "BENCH", "--so-pin", "87654321", "--pin", "1234"
    )
    run(
        "softhsm2-util",
        "--import",
        str(gp.sign_key_path),
        "--token",
        "BENCH",
        "--label",
        "s",
        "--id",
        "0010",
        "--pin",
        "1234",
    )
    from cryptography.hazmat.primitives import serialization

    der = tmp / "sign.der"
    der.write_bytes(gp.sign_cert.public_bytes(serialization.Encoding.DER))
    run(
        "pkcs11-tool",
        "--module",
        str(module),
        "--token-label",
        "BENCH",
        "--login",
        "--pin",
        "1234",
        "--write-object",
        str(der),
        "--type",
        "cert",
        "--id",
        "0010",
    )
    from ps_agent.auth.pkcs11 import Pkcs11Token

    token = Pkcs11Token.open(module, token_label="BENCH")
    t0 = time.monotonic()
    token.login("1234")
    login = time.monotonic() - t0
    signer = token.signer(KeyUse.SIGNATURE)
    times = []
    for _ in range(max(rounds * 10, 20)):
        t0 = time.monotonic()
        signer.sign(b"<saml2:Assertion/>")
        times.append(time.monotonic() - t0)
    token.close()
    print(f"SoftHSM2 C_Login                      {login * 1000:7.2f} ms")
    print(f"SoftHSM2 signature (CKM_SHA256_RSA)   {_fmt(times)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pki = load_or_create(Path(tempfile.mkdtemp(prefix="bench-pki-")))
    # Same lock as the ``virtual_card`` fixture: never share the single virtual reader with a test run.
    with open(LOCK_PATH, "a") as lock:
        print(f"waiting for the virtual reader lock {LOCK_PATH}…", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            bench_card(pki, args.rounds)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    bench_softhsm(pki, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
