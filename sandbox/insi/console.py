"""``python -m sandbox serve`` integration: the INSi listeners start next to the DMP (``--no-insi`` to skip).

Ports: ``--insi-port`` (mutual TLS, INSI-MANU/INSI-AUTO) and ``--insi-cpx-port`` (CPx assertions); by
default the two ports after the DMP's (8444 and 8445 for the demo's 8443), any free port when the DMP port
is 0. The INSi certificates are created in the test PKI at start, and their paths printed.
"""

from __future__ import annotations

import argparse
from typing import Any

from sandbox.pki import P12_PASSPHRASE, TestPki


def add_arguments(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("INSi (téléservice INS)")
    group.add_argument("--no-insi", action="store_true", help="ne pas démarrer le service INSi local")
    group.add_argument("--insi-port", type=int, default=None, help="port INSi TLS mutuel (INSI-MANU/AUTO)")
    group.add_argument("--insi-cpx-port", type=int, default=None, help="port INSi carte CPx (TLS serveur)")
    group.add_argument("--insi-data", help="jeu d'identités INSi (JSON, format de InsiStore.to_json)")


def start_for_serve(args: argparse.Namespace, pki: TestPki, dmp_port: int) -> tuple[Any, list[str]]:
    """Start INSi for ``serve`` unless ``--no-insi``; returns (RunningInsi or None, lines to print)."""
    if getattr(args, "no_insi", False):
        return None, []
    from pathlib import Path

    from sandbox.insi.certs import INSI_AUTO, INSI_MANU, WRONG_NAME, insi_certificate
    from sandbox.insi.data import InsiStore
    from sandbox.insi.server import start_insi
    from sandbox.insi.service import SANDBOX_IDAM

    base = args.port or 0
    mtls = args.insi_port if args.insi_port is not None else (base + 1 if base else 0)
    cpx = args.insi_cpx_port if args.insi_cpx_port is not None else (base + 2 if base else 0)
    store = InsiStore.from_json(Path(args.insi_data)) if args.insi_data else None
    certs = [insi_certificate(pki, cn) for cn in (INSI_MANU, INSI_AUTO, WRONG_NAME)]
    running = start_insi(pki, host=args.host, mtls_port=mtls, cpx_port=cpx, store=store)
    lines = [
        f"INSi local : {running.mtls_url} (certificat INSI-MANU/INSI-AUTO) et {running.cpx_url} (carte CPx)",
        f"  numéro d'autorisation CNDA accepté (IDAM) : {SANDBOX_IDAM}",
        "  certificats INSi (PKCS#12, phrase de passe « "
        + P12_PASSPHRASE
        + " ») : "
        + ", ".join(f"{c.cn} {c.p12}" for c in certs),
        f"  état : {running.state_url}",
    ]
    return running, lines
