"""``ps-agent serve``: the local API and the hot folder without a window (issue 12 item 3).

The session is the establishment's (AIR / INDIRECTE, ``--etablissement``...) or the CPS card's (PIN asked
once). The queue is resumed at start and then every few seconds; SIGTERM or Ctrl-C stops cleanly: the hot
folder stops taking items, in-flight requests and deposits finish, the queue and journal are closed.
"""

from __future__ import annotations

import argparse
import signal
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
