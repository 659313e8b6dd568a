"""``ps-agent serve``: the local API and the hot folder without a window (issue 12 item 3).

The session is the establishment's (AIR / INDIRECTE, ``--etablissement``...) or the CPS card's (PIN asked
once). The queue is resumed at start and then every few seconds; SIGTERM or Ctrl-C stops cleanly: the hot
folder stops taking items, in-flight requests and deposits finish, the queue and journal are closed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ps_agent.api.settings import DEFAULT_PORT
from ps_agent.errors import ConfigurationError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ps_agent.cli.dmp_cmd import _add_common

    p = subparsers.add_parser(
        "serve",
        help="service sans fenêtre : API locale et dossier de dépôt",
        description="Lance l'API locale (127.0.0.1) et, si demandé, le dossier de dépôt, sans fenêtre. "
        "Arrêt propre sur SIGTERM ou Ctrl-C.",
    )
    _add_common(p, patient=False)
    s = p.add_argument_group("service")
    s.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port de l'API locale (défaut : {DEFAULT_PORT})"
    )
    s.add_argument("--host", default="127.0.0.1", help="adresse d'écoute : boucle locale uniquement")
    s.add_argument("--origine", action="append", default=[], metavar="URL",
                   help="origine de navigateur autorisée (répétable)")  # fmt: skip
    s.add_argument(
        "--depot", type=Path, metavar="DOSSIER", help="dossier de dépôt (inbox/, done/, rejected/)"
    )
    s.add_argument("--scrutation", action="store_true",
                   help="surveiller le dossier de dépôt par scrutation (partages réseau)")  # fmt: skip
    s.add_argument("--config", type=Path, metavar="DOSSIER",
                   help="dossier de configuration (jeton api-token)")  # fmt: skip
    p.set_defaults(func=_serve)

    d = subparsers.add_parser(
        "deposit",
        help="déposer un lot de documents par l'agent en cours (API locale)",
        description="Dépose chaque paire NOM.pdf + NOM.json (ou NOM.xml + NOM.json) du dossier par l'agent "
        "en cours d'exécution (ps-agent serve ou la fenêtre), puis suit chaque dépôt jusqu'à son issue.",
    )
    d.add_argument("--batch", "--lot", dest="batch", type=Path, required=True, metavar="DOSSIER")
    d.add_argument("--port", type=int, default=DEFAULT_PORT, help="port de l'API locale de l'agent")
    d.add_argument("--config", type=Path, metavar="DOSSIER", help="dossier de configuration (jeton)")
    d.add_argument("--attendre", type=float, default=120.0, metavar="S",
                   help="durée maximale de suivi des dépôts (secondes, défaut 120)")  # fmt: skip
    d.add_argument("--json", action="store_true", help="résumé en JSON")
    d.set_defaults(func=_deposit_batch)


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)  # exists on Windows too
    if hasattr(signal, "SIGBREAK"):  # Windows console Ctrl-Break
        signal.signal(signal.SIGBREAK, handler)


def _serve(args: argparse.Namespace) -> int:
    from ps_agent.api import ApiBackend, ApiServer, create_app, load_or_create_token, token_path
    from ps_agent.cli.dmp_cmd import _session
    from ps_agent.config import AgentConfig, data_dir, environment
    from ps_agent.services import Services

    env = environment(args.env, ca_file=args.ca)
    if not env.ca_file:
        raise ConfigurationError(
            "Indiquez le fichier des autorités de certification du serveur DMP (--ca ou PS_AGENT_CA).",
            code="NO_CA",
        )
    stop = threading.Event()
    _install_stop_handlers(stop)
    home = Path(args.home) if args.home else data_dir()
    services = Services(AgentConfig(env, home))
    credentials = None
    backend = server = hotfolder = None
    try:
        credentials = _session(args, env.ca_file)
        session = services.open_session(credentials)
        backend = ApiBackend(services, lambda: session, environment_name=env.name)
        token = load_or_create_token(args.config)
        server = ApiServer(create_app(backend, token, tuple(args.origine)), host=args.host, port=args.port)
        server.start()
        backend.start_queue_worker()  # resumes the queue now, then every few seconds
        if args.depot is not None:
            from ps_agent.hotfolder import HotFolder

            hotfolder = HotFolder(args.depot, backend, polling=args.scrutation)
            hotfolder.start()
        ident = session.identity
        print(
            f"ps-agent prêt : API locale {server.url} (jeton : {token_path(args.config)}) ; "
            f"session {session.mode.value} de {ident.given_name} {ident.family_name}"
            + (f" ; dossier de dépôt {args.depot}" if args.depot else ""),
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        print("Arrêt demandé : fin des envois en cours…", flush=True)
    finally:
        if hotfolder is not None:
            hotfolder.stop()
        if server is not None:
            server.stop()
        if backend is not None:
            backend.close()
        services.close()
        if credentials is not None:
            closer = getattr(credentials, "close", None)
            if callable(closer):
                closer()
    print("ps-agent arrêté.", flush=True)
    return 0


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)


def _deposit_batch(args: argparse.Namespace) -> int:
    """Exit 0: all registered; 1: something refused or still waiting; 2: no agent / bad usage."""
    import json
    import time

    from ps_agent.api.client import FINAL, ApiProblem, body_from_files, find_running_agent

    folder: Path = args.batch
    if not folder.is_dir():
        raise ConfigurationError(f"Dossier introuvable : {folder}.", code="USAGE")
    agent = find_running_agent(args.config, args.port)
    if agent is None:
        print(
            "Erreur : aucun agent ne répond sur l'API locale (127.0.0.1:"
            f"{args.port}). Lancez « ps-agent serve » ou la fenêtre de l'agent.",
            file=sys.stderr,
        )
        return 2
    pairs = []
    for sidecar in sorted(folder.glob("*.json")):
        docs = [p for p in (sidecar.with_suffix(".pdf"), sidecar.with_suffix(".xml")) if p.exists()]
        pairs.append((sidecar.stem, docs[0] if docs else None, sidecar))
    refused: dict[str, str] = {}
    accepted: dict[str, str] = {}  # name -> queue id
    total = len(pairs)
    for n, (name, doc, sidecar) in enumerate(pairs, start=1):
        try:
            if doc is None:
                raise ConfigurationError("document absent (.pdf ou .xml)", code="DOCUMENT_MISSING")
            accepted[name] = agent.deposit(body_from_files(doc, sidecar))["id"]
        except (ApiProblem, ConfigurationError, ValueError, OSError) as exc:
            refused[name] = getattr(exc, "message_fr", str(exc))
        _progress(n, total)  # submitted
    states: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + args.attendre
    while True:
        for name, qid in accepted.items():
            if name not in states or states[name]["state"] not in FINAL:
                states[name] = agent.item(qid)
        finished = len(refused) + sum(1 for s in states.values() if s["state"] in FINAL)
        _progress(finished, total)  # settled
        if finished == total or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(file=sys.stderr)
    registered = sorted(n for n, s in states.items() if s["state"] == "registered")
    for name, s in states.items():
        if s["state"] in ("refused", "handed_back"):
            refused[name] = str(s.get("reason") or s.get("state_label"))
    waiting = {
        n: str(s.get("reason") or s.get("state_label")) for n, s in states.items() if s["state"] not in FINAL
    }
    if args.json:
        print(
            json.dumps({"registered": registered, "refused": refused, "waiting": waiting}, ensure_ascii=False)
        )
    else:
        print(f"{len(registered)} enregistré(s), {len(refused)} refusé(s), {len(waiting)} en attente.")
        for name, why in sorted(refused.items()):
            print(f"  refusé     {name} : {why}")
        for name, why in sorted(waiting.items()):
            print(f"  en attente {name} : {why}")
    return 0 if len(registered) == total else 1
