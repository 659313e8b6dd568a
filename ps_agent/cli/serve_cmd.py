"""``ps-agent serve``: the local API and the hot folder without a window (issue 12 item 3).

The session is the establishment's (AIR / INDIRECTE, ``--etablissement``...) or the CPS card's (PIN asked
once). The queue is resumed at start and then every few seconds; SIGTERM or Ctrl-C stops cleanly: the hot
folder stops taking items, in-flight requests and deposits finish, the queue and journal are closed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ps_agent.api.settings import DEFAULT_PORT
from ps_agent.cli.common import UsageError
from ps_agent.errors import ConfigurationError
from ps_agent.settings import AgentSettings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ps_agent.cli.dmp_cmd import _add_common

    p = subparsers.add_parser(
        "serve",
        help="service sans fenêtre : API locale et dossier de dépôt",
        description="Lance l'API locale (127.0.0.1) et le dossier de dépôt, sans fenêtre, avec les réglages "
        "de config.toml (ceux de la fenêtre et de ps-agent setup) ; les options ci-dessous les remplacent. "
        "Arrêt propre sur SIGTERM ou Ctrl-C.",
    )
    _add_common(p, patient=False)
    s = p.add_argument_group("service")
    s.add_argument("--port", type=int, default=None,
                   help=f"port de l'API locale (défaut : réglage api.port, sinon {DEFAULT_PORT})",
                   )  # fmt: skip
    a = s.add_mutually_exclusive_group()
    a.add_argument("--api", dest="api", action="store_const", const=True, default=None,
                   help="lancer l'API locale même si le réglage api.enabled vaut false")  # fmt: skip
    a.add_argument("--sans-api", dest="api", action="store_const", const=False,
                   help="ne pas lancer l'API locale")  # fmt: skip
    s.add_argument("--host", default="127.0.0.1", help="adresse d'écoute : boucle locale uniquement")
    s.add_argument("--origine", action="append", default=[], metavar="URL",
                   help="origine de navigateur autorisée (répétable)")  # fmt: skip
    h = s.add_mutually_exclusive_group()
    h.add_argument("--depot", type=Path, metavar="DOSSIER",
                   help="dossier de dépôt (inbox/, done/, rejected/) ; défaut : réglage "
                   "hotfolder.inbox")  # fmt: skip
    h.add_argument("--sans-depot", dest="sans_depot", action="store_true",
                   help="ne pas surveiller le dossier de dépôt")  # fmt: skip
    s.add_argument("--scrutation", action="store_true",
                   help="surveiller le dossier de dépôt par scrutation (partages réseau)")  # fmt: skip
    s.add_argument("--config", type=Path, metavar="DOSSIER",
                   help="dossier de configuration (config.toml, jeton api-token) ; défaut : celui de "
                   "l'utilisateur, sinon celui de la machine")  # fmt: skip
    s.add_argument("--inactivite", type=int, metavar="MINUTES", default=None,
                   help="fermer la session carte après cette inactivité (défaut : réglage "
                   "session.idle_timeout_minutes)")  # fmt: skip
    i = p.add_argument_group("INSi (recherche d'identité par l'API)")
    i.add_argument("--insi-url", default=os.environ.get("PS_AGENT_INSI_URL"),
                   help="adresse du service INSi (défaut : celle de l'environnement)")  # fmt: skip
    i.add_argument("--insi-etablissement", type=Path, metavar="INSI_P12",
                   help="certificat INSi de l'établissement (PKCS#12, CN INSI-MANU)")  # fmt: skip
    i.add_argument("--facturation", default=os.environ.get("PS_AGENT_BILLING_ID", ""),
                   help="numéro de facturation Assurance Maladie (mode carte)")  # fmt: skip
    i.add_argument("--sans-insi", action="store_true", help="ne pas proposer la recherche INSi par l'API")
    p.set_defaults(func=_serve)

    d = subparsers.add_parser(
        "deposit",
        help="déposer un lot de documents par l'agent en cours (API locale)",
        description="Dépose chaque paire NOM.pdf + NOM.json (ou NOM.xml + NOM.json, extensions en "
        "majuscules ou minuscules, comme le dossier de dépôt) du dossier par l'agent en cours d'exécution "
        "(ps-agent serve ou la fenêtre), puis suit chaque dépôt jusqu'à son issue. Un document sans fiche, "
        "une fiche sans document ou deux fichiers ne différant que par la casse sont comptés refusés, avec "
        "leur raison.",
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


def hotfolder_root(folder: Path) -> Path:
    """The deposit folder for a configured or given folder (``ps_agent.hotfolder.layout.hotfolder_root``,
    imported when used: the hot folder's modules are not loaded by the other commands)."""
    from ps_agent.hotfolder.layout import hotfolder_root as root_of

    return root_of(folder)


class ServeSettingsError(SettingsError):
    """``config.toml`` refused by ``ps-agent serve``: exit code 2, the key named in ``message_fr``."""

    exit_code = 2


@dataclass(frozen=True)
class ServePlan:
    """What ``ps-agent serve`` runs: ``config.toml`` (``ps_agent.settings``) with the command line over it."""

    settings: AgentSettings
    env_name: str
    ca_file: str | None
    api: bool
    port: int
    hotfolder: Path | None  # the deposit folder, None: not watched
    hotfolder_off_fr: str  # why it is not watched (for the "prêt" line)
    idle_timeout_minutes: int
    warnings: tuple[str, ...] = ()
    hotfolder_done: Path | None = None  # where handled items go (hotfolder.done or DEPOSIT_FOLDER/done)


def load_serve_settings(config: Path | None) -> AgentSettings:
    """``DOSSIER/config.toml`` for ``--config DOSSIER``, else the user's then the machine's (the window's and
    ``ps-agent setup``'s); defaults when there is none. Files named in it are checked (key named)."""
    from ps_agent.settings import load_installed_settings, load_settings, settings_path

    try:
        if config is not None:
            path = settings_path(config)
            return load_settings(path) if path.is_file() else AgentSettings()
        installed = load_installed_settings()
        return load_settings(Path(installed.source)) if installed is not None else AgentSettings()
    except SettingsError as exc:
        raise ServeSettingsError(exc.message_fr, key=exc.key, code=exc.code or "SETTINGS") from exc


def plan_serve(args: argparse.Namespace, settings: AgentSettings) -> ServePlan:
    """Merge the settings and the command line (which wins), and fill ``args`` for the session opening.

    Precedence for the environment and the authorities: ``--env``/``--ca``, then ``$PS_AGENT_ENV`` /
    ``$PS_AGENT_CA``, then ``dmp.environment`` / ``dmp.ca_file``. ``--port`` alone starts the API even when
    ``api.enabled`` is false; ``--depot`` likewise for ``hotfolder.enabled``."""
    from ps_agent.auth.pkcs11 import MODULE_ENV
    from ps_agent.settings import IDLE_TIMEOUT_RANGE_MINUTES

    warnings: list[str] = []
    env_name = args.env if (args.env_given or os.environ.get("PS_AGENT_ENV")) else settings.dmp_environment
    ca_file = args.ca or settings.dmp_ca_file or None
    api = args.api if args.api is not None else (True if args.port is not None else settings.api_enabled)
    port = args.port if args.port is not None else settings.api_port

    from ps_agent.hotfolder.layout import layout_from_settings

    off = ""
    if args.sans_depot:
        off = "dossier de dépôt désactivé (--sans-depot)"
    elif args.depot is None and not settings.hotfolder_enabled:
        off = "dossier de dépôt désactivé (réglage hotfolder.enabled)"
    elif args.depot is None and not settings.hotfolder_inbox:
        off = "aucun dossier de dépôt configuré (réglage hotfolder.inbox)"
    try:  # --depot names another deposit folder as a whole (its own done/): layout_from_settings [I]
        layout = None if off else layout_from_settings(settings, args.depot)
    except SettingsError as exc:
        raise ServeSettingsError(exc.message_fr, key=exc.key, code=exc.code or "SETTINGS") from exc
    root = layout.root if layout is not None else None
    done = layout.done if layout is not None else None
    if not api and root is None:
        raise UsageError(
            "Rien à lancer : l'API locale est désactivée (réglage api.enabled ou --sans-api) et "
            f"{off or 'le dossier de dépôt aussi'}. Activez l'API (--api ou --port N) ou un dossier de "
            "dépôt (--depot DOSSIER ou réglage hotfolder.inbox).",
            code="NOTHING_TO_SERVE",
        )

    idle = args.inactivite if args.inactivite is not None else settings.idle_timeout_minutes
    low, high = IDLE_TIMEOUT_RANGE_MINUTES
    if not low <= idle <= high:
        raise UsageError(
            f"--inactivite : une durée entre {low} et {high} minutes est attendue (reçu {idle})."
        )

    # the session: the command line's, else the establishment of the settings (AIR), else the card
    if args.etablissement is None and settings.establishment_auth_p12:
        args.etablissement = Path(settings.establishment_auth_p12).expanduser()
        if args.signature_etablissement is None and settings.establishment_sign_p12:
            args.signature_etablissement = Path(settings.establishment_sign_p12).expanduser()
    if args.etablissement is not None and not args.utilisateur:
        if not settings.establishment_user:
            raise UsageError(
                "Mode établissement (AIR) : indiquez l'utilisateur responsable des envois "
                "(--utilisateur FICHIER.json ou réglage establishment.user).",
                code="NO_USER",
            )
        args.utilisateur = str(Path(settings.establishment_user).expanduser())
    if args.reader is None and settings.card_reader:
        args.reader = settings.card_reader
    if settings.pkcs11_module and not os.environ.get(MODULE_ENV):
        os.environ[MODULE_ENV] = settings.pkcs11_module  # read by the card layer of this process only
    return ServePlan(settings, env_name, ca_file, api, port, root, off, idle, tuple(warnings), done)


def _serve(args: argparse.Namespace) -> int:
    from ps_agent.api import ApiBackend, ApiServer, create_app, load_or_create_token, token_path
    from ps_agent.cli.dmp_cmd import _p12_passphrase, _Prepared, _session
    from ps_agent.config import AgentConfig, data_dir, environment
    from ps_agent.services import Services

    settings = load_serve_settings(args.config)
    plan = plan_serve(args, settings)
    for warning in plan.warnings:
        print(f"Attention : {warning}", file=sys.stderr, flush=True)
    env = environment(plan.env_name, ca_file=plan.ca_file)
    if not env.ca_file:
        raise ServeSettingsError(
            "Indiquez le fichier des autorités de certification du serveur DMP (--ca, PS_AGENT_CA ou "
            "réglage dmp.ca_file).",
            key="dmp.ca_file",
            code="NO_CA",
        )
    stop = threading.Event()
    _install_stop_handlers(stop)
    home = Path(args.home) if args.home else data_dir()
    services = Services(AgentConfig(env, home))
    credentials = None
    backend = server = hotfolder = None
    desk: Any = None
    try:
        credentials = _session(args, _Prepared(env, home, None))
        if hasattr(credentials, "idle_timeout_s"):  # a card session: closed after this much inactivity
            credentials.idle_timeout_s = 60.0 * plan.idle_timeout_minutes
        session = services.open_session(credentials)
        backend = ApiBackend(services, lambda: session, environment_name=env.name)
        parts: list[str] = []
        if plan.api:
            token = load_or_create_token(args.config)
            lookup = None
            if not args.sans_insi:
                from ps_agent.api.identity import identity_lookup_for
                from ps_agent.identities import IdentityDesk, InsiSettings

                desk = IdentityDesk(
                    session,
                    insi=InsiSettings(
                        environment=settings.insi_environment or None,
                        url=args.insi_url or settings.insi_url or None,
                        ca_file=env.ca_file,
                        billing_id=args.facturation,
                        certificate=args.insi_etablissement,
                        passphrase=_p12_passphrase() if args.insi_etablissement is not None else "",
                    ),
                )
                lookup = identity_lookup_for(desk)
            app = create_app(backend, token, tuple(args.origine), identity_lookup=lookup)
            server = ApiServer(app, host=args.host, port=plan.port)
            server.start()
            parts.append(f"API locale {server.url} (jeton : {token_path(args.config)})")
        else:
            parts.append("API locale désactivée")
        backend.start_queue_worker()  # resumes the queue now, then every few seconds
        if plan.hotfolder is not None:
            from ps_agent.hotfolder import HotFolder

            hotfolder = HotFolder(plan.hotfolder, backend, done=plan.hotfolder_done, polling=args.scrutation)
            hotfolder.start()
            where = f"dossier de dépôt {plan.hotfolder} (documents à déposer dans {hotfolder.inbox}"
            if hotfolder.layout.done_elsewhere:
                where += f", documents traités rangés dans {hotfolder.done}"
                if hotfolder.done_on_other_volume:
                    where += " : autre volume, ils y sont copiés puis effacés du dossier de travail"
            parts.append(where + ")")
        else:
            parts.append(plan.hotfolder_off_fr)
        ident = session.identity
        parts.insert(1, f"session {session.mode.value} de {ident.given_name} {ident.family_name}")
        print("ps-agent prêt : " + " ; ".join(parts), flush=True)
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
        if desk is not None:
            desk.close()
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
        raise UsageError(f"Dossier introuvable : {folder}.")
    agent = find_running_agent(args.config, args.port)
    if agent is None:
        print(
            "Erreur : aucun agent ne répond sur l'API locale (127.0.0.1:"
            f"{args.port}). Lancez « ps-agent serve » ou la fenêtre de l'agent.",
            file=sys.stderr,
        )
        return 2
    from ps_agent.hotfolder import folder_items

    # the hot folder's pairing rule (suffix in any case); an ambiguous item or a lone document is refused
    # with its reason, never skipped
    try:
        items = folder_items(str(folder))
    except OSError as exc:
        raise UsageError(f"Dossier illisible : {folder} ({exc.strerror}).") from exc
    refused: dict[str, str] = {}
    accepted: dict[str, str] = {}  # name -> queue id
    total = len(items)
    for n, item in enumerate(items, start=1):
        doc, sidecar = item.document, item.sidecar
        if item.problem is not None:  # two documents or two sidecars, a lone document or sidecar
            refused[item.name] = item.problem.detail
        elif doc is not None and sidecar is not None:
            try:
                accepted[item.name] = agent.deposit(body_from_files(folder / doc, folder / sidecar))["id"]
            except (ApiProblem, ConfigurationError, ValueError, OSError) as exc:
                refused[item.name] = getattr(exc, "message_fr", str(exc))
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
