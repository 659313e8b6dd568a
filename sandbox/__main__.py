"""``python -m sandbox``: ``serve`` (server layer), ``demo`` and ``patient ...`` (domain layer console).

``serve`` starts the local DMP on loopback, prints where it listens and where the test credentials are,
and stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from cda.errors import CdaError
from sandbox.errors import SandboxError
from sandbox.insi import console as insi_console
from sandbox.server.faults import FaultConfig

FAULT_FLAGS = (
    ("latency_ms", int, "latence ajoutée en millisecondes (avec --latency-rate)"),
    ("latency_rate", float, "proportion de requêtes retardées (0..1)"),
    ("reset_before_commit_rate", float, "coupure de connexion avant enregistrement (0..1)"),
    ("reset_after_commit_rate", float, "coupure de connexion après enregistrement, sans réponse (0..1)"),
    ("http_500_rate", float, "réponses HTTP 500 (0..1)"),
    ("http_503_rate", float, "réponses HTTP 503 (0..1)"),
    ("soap_fault_rate", float, "fautes SOAP Receiver simulées (0..1)"),
    ("seed", int, "graine du tirage aléatoire (exécutions reproductibles)"),
)


def _fault_config(args: argparse.Namespace) -> FaultConfig | None:
    data: dict[str, object] = {}
    if args.faults:
        data = FaultConfig.from_json_file(Path(args.faults)).to_dict()
    for name, _type, _help in FAULT_FLAGS:
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.fault_action:
        data["actions"] = list(args.fault_action)
    return FaultConfig.from_dict(data) if data else None


def _load_demo(store: object) -> str:
    """Load the domain layer's demo data set (existing patients are kept)."""
    from sandbox.demo import seed

    counts = seed(store)  # type: ignore[arg-type]
    return f"jeu de démonstration chargé ({sum(counts.values())} documents ajoutés)"


def cmd_serve(args: argparse.Namespace) -> int:
    from sandbox import pki as pki_mod
    from sandbox.profiles import PROFILES
    from sandbox.server import start

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    data_dir = Path(args.data).resolve()
    pki_dir = Path(args.pki).resolve() if args.pki else pki_mod.default_directory()
    pki = pki_mod.load_or_create(pki_dir)
    pki_mod.generate_all(pki)
    faults = _fault_config(args)
    running = start(data_dir, pki, host=args.host, port=args.port, faults=faults)
    try:
        demo_note = _load_demo(running.store) if args.demo else None
        insi, insi_lines = insi_console.start_for_serve(args, pki, running.port)
    except Exception:
        running.stop()
        raise
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    org = pki.establishment
    lines = [
        f"Bac à sable DMP à l'écoute sur {running.base_url}",
        f"  services : {', '.join(running.url(s) for s in ('patients', 'habilitations', 'patientsSpecific', 'repository', 'registry'))}",  # noqa: E501
        f"  données : {data_dir}",
        f"  IGC de test : {pki.directory}",
        f"  bundle des AC (confiance serveur et clients) : {pki.ca_bundle}",
        f"  certificat serveur : {pki.server_cert}",
        f"  établissement (mode INDIRECTE) : ORG AUTH_CLI {org.auth_p12}, ORG SIGN {org.sign_p12} "
        f"(phrase de passe « {pki_mod.P12_PASSPHRASE} »)",
        "  cartes (certificats d'authentification / de signature, PEM) :",
    ]
    for name in PROFILES:
        holder = pki.card(name)
        lines.append(f"    {name:<11} {holder.auth_cert_path}  {holder.sign_cert_path}")
    lines.append(f"  injection de pannes (GET/PUT JSON) : {running.admin_faults_url}")
    if faults is not None:
        lines.append(f"  pannes actives : {json.dumps(faults.to_dict(), ensure_ascii=False)}")
    if demo_note:
        lines.append(f"  {demo_note}")
    lines.extend(insi_lines)
    lines.append("Arrêt : Ctrl+C ou SIGTERM.")
    print("\n".join(lines), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        if insi is not None:
            insi.stop()
    print("Bac à sable DMP arrêté.", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Bac à sable DMP local (tests, démo)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="démarrer le DMP local (HTTPS sur la boucle locale)")
    serve.add_argument("--data", required=True, help="dossier des données (base SQLite + documents)")
    serve.add_argument("--port", type=int, default=0, help="port d'écoute (0 = un port libre)")
    serve.add_argument("--host", default="127.0.0.1", help="adresse de boucle locale (127.0.0.1 ou ::1)")
    serve.add_argument("--pki", help="dossier de l'IGC de test (créé si absent)")
    serve.add_argument("--demo", action="store_true", help="charger le jeu de démonstration au démarrage")
    serve.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="journaliser chaque requête, refus et poignée de main TLS refusée",
    )
    serve.add_argument("--faults", help="fichier JSON des réglages d'injection de pannes")
    for name, typ, help_text in FAULT_FLAGS:
        serve.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_text)
    serve.add_argument(
        "--fault-action", action="append", help="limiter l'injection à cette action SOAP (répétable)"
    )
    insi_console.add_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    try:
        from sandbox.dmp import console
    except ImportError:
        console = None  # the domain layer's console (demo, patient) is not available
    if console is not None:
        console.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SandboxError, CdaError, OSError) as exc:
        message = getattr(exc, "message_fr", None) or str(exc)
        print(f"Erreur : {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
