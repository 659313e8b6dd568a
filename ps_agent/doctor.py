"""Self-diagnosis of the workstation (``ps-agent doctor``, and the same page in the window).

Pure checks: each returns a ``Check`` (``ok``, a French label, the fix in French when it fails or warns,
a technical ``detail``). ``run_checks(options)`` runs them all in order; a check whose prerequisite
failed says so instead of guessing. Nothing here writes: the queue and the journal are opened read-only
(the journal's ``verify`` reads), missing files mean "not created yet", not a failure.

The usual culprits on a GP's workstation come first: the PC/SC service, the reader, the card, the card
middleware, the network to the DMP/INSi (TLS against the configured authorities), the clock (the DMP
refuses assertions from a drifting clock), a remote-desktop session (the card must be in the machine
where the agent runs), then the agent's own files.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ps_agent.dmp.environment import Environment
from ps_agent.remote_session import detect_remote_session as detect_remote_session  # re-exported

# [I] Clock skew thresholds against the DMP server's HTTP Date: over 60 s a warning (time stamps and
# search dates drift), over 5 min a failure (assertions are refused by the DMP past their tolerance).
CLOCK_WARN_S = 60.0
CLOCK_FAIL_S = 300.0
# [I] Network checks give up after this long (a workstation behind a slow proxy still answers in 5 s).
NETWORK_TIMEOUT_S = 5.0
READER_ENV = "PS_AGENT_READER"  # the PC/SC reader the agent must use (a name from the reader list)


@dataclass(frozen=True)
class Check:
    """One line of the diagnosis. ``warning``: holds, but deserves attention (``ok`` stays True)."""

    id: str
    ok: bool
    label_fr: str
    fix_fr: str = ""
    detail: str = ""
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DoctorOptions:
    environment: Environment
    home: Path  # the agent's data folder (queue, journal)
    insi_url: str = ""  # "" = no INSi endpoint configured (line skipped as not configured)
    insi_ca_file: str = ""  # "" = same authorities as the DMP
    reader: str = ""  # the reader that must be there ("" = any)
    pkcs11_module: str = ""  # configured Cryptolib path ("" = standard paths / $PS_AGENT_PKCS11_MODULE)
    timeout_s: float = NETWORK_TIMEOUT_S
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    platform: str = sys.platform
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


# ------------------------------------------------------------------------------------------- card


def _pcsc_service_fix(platform: str) -> str:
    if platform == "win32":
        return (
            "Démarrez le service Windows « Carte à puce » (SCardSvr) : services.msc, "
            "ou « net start SCardSvr »."
        )
    return "Démarrez le service PC/SC : « sudo systemctl enable --now pcscd.socket » (paquet pcscd)."


def check_pcsc(options: DoctorOptions) -> tuple[Check, list[str] | None]:
    from ps_agent.card.pcsc import list_readers
    from ps_agent.errors import CardError

    try:
        readers = list_readers()
    except CardError as exc:
        return Check(
            "pcscd",
            False,
            "Service des cartes à puce (PC/SC)",
            _pcsc_service_fix(options.platform),
            exc.message_fr,
        ), None
    return Check(
        "pcscd", True, "Service des cartes à puce (PC/SC) joignable", detail=f"{len(readers)} lecteur(s)"
    ), readers


def check_readers(options: DoctorOptions, readers: list[str] | None) -> Check:
    label = "Lecteur de cartes"
    if readers is None:
        return Check(
            "readers", False, label, "Corrigez d'abord le service des cartes à puce (ligne ci-dessus)."
        )
    if options.reader:
        if options.reader in readers:
            return Check("readers", True, f"Lecteur « {options.reader} » présent", detail=", ".join(readers))
        return Check(
            "readers",
            False,
            f"Lecteur « {options.reader} » introuvable",
            "Branchez ce lecteur, ou choisissez un lecteur présent (réglage card.reader, "
            f"variable {READER_ENV}) parmi : " + (", ".join(readers) or "aucun"),
            ", ".join(readers),
        )
    if not readers:
        return Check(
            "readers",
            False,
            label,
            "Aucun lecteur détecté : branchez le lecteur (USB) et installez son pilote (paquet libccid sous "
            "Linux). En bureau à distance, le lecteur doit être sur la machine où tourne l'agent.",
        )
    return Check("readers", True, f"{len(readers)} lecteur(s) détecté(s)", detail=", ".join(readers))


def check_card(options: DoctorOptions, readers: list[str] | None) -> Check:
    from ps_agent.card.cps import identify_atr
    from ps_agent.card.errors import CardBusy
    from ps_agent.card.pcsc import PcscConnection
    from ps_agent.errors import CardError

    label = "Carte CPS"
    if not readers or (options.reader and options.reader not in readers):
        return Check("card", False, label, "Corrigez d'abord le lecteur (ligne ci-dessus).")
    candidates = [options.reader] if options.reader else readers
    seen: list[str] = []
    busy: list[str] = []
    for reader in candidates:
        try:
            conn = PcscConnection(reader, exclusive=False)
        except CardBusy:
            busy.append(reader)
            continue
        except CardError as exc:
            seen.append(f"{reader} : {exc.message_fr}")
            continue
        try:
            atr = conn.atr
        finally:
            conn.close()
        match = identify_atr(atr)
        if match is not None:
            kind = match.generation + (" sans contact" if match.contactless else "")
            return Check("card", True, f"Carte {kind} présente", detail=f"{reader} ; ATR {atr.hex().upper()}")
        seen.append(f"{reader} : carte non CPS (ATR {atr.hex().upper()})")
    if busy:
        # [I] Held exclusively by another program (often the agent's own service signing): a card is there;
        # a warning, since the agent cannot use it meanwhile.
        return Check(
            "card",
            True,
            "Carte présente, utilisée par un autre programme",
            "Si l'agent ne trouve pas la carte, fermez les autres logiciels qui l'utilisent (ou attendez la "
            "fin de l'opération en cours).",
            ", ".join(busy),
            warning=True,
        )
    return Check(
        "card",
        False,
        label,
        "Insérez votre carte CPS (puce vers le haut, à fond) dans le lecteur. Une carte Vitale ou bancaire "
        "ne convient pas.",
        " | ".join(seen),
    )


def check_middleware(options: DoctorOptions) -> Check:
    from ps_agent.auth.errors import Pkcs11Error
    from ps_agent.auth.pkcs11 import MODULE_ENV, find_cryptolib, load_module

    configured = options.pkcs11_module or options.environ.get(MODULE_ENV, "")
    if configured:
        try:
            lib = load_module(configured)
        except Pkcs11Error as exc:
            return Check(
                "middleware",
                False,
                "Cryptolib CPS (module PKCS#11)",
                "Corrigez le chemin du module (réglage card.pkcs11_module ou variable "
                f"{MODULE_ENV}) ou réinstallez la Cryptolib CPS de l'ANS.",
                exc.message_fr,
            )
        return Check(
            "middleware",
            True,
            "Cryptolib CPS (module PKCS#11) chargée",
            detail=f"{configured} ; {_module_info(lib)}",
        )
    plat = "linux" if options.platform.startswith("linux") else options.platform
    found = find_cryptolib(plat) if not options.environ.get(MODULE_ENV) else None
    if found is None:
        # [I] A warning, not a failure: the agent talks to CPS cards directly through PC/SC; the Cryptolib
        # is needed only for the PKCS#11 route (and by other software of the workstation).
        return Check(
            "middleware",
            True,
            "Cryptolib CPS non trouvée (lecture directe de la carte utilisée)",
            "Si vous utilisez la Cryptolib CPS, installez-la depuis le site de l'ANS (esante.gouv.fr) ou "
            "indiquez son chemin (réglage card.pkcs11_module).",
            warning=True,
        )
    try:
        info = _module_info(load_module(found))
    except Pkcs11Error as exc:
        return Check(
            "middleware",
            False,
            "Cryptolib CPS inutilisable",
            "Réinstallez la Cryptolib CPS depuis le site de l'ANS (esante.gouv.fr).",
            exc.message_fr,
        )
    return Check("middleware", True, "Cryptolib CPS trouvée", detail=f"{found} ; {info}")


def _module_info(lib: Any) -> str:
    """Maker, description and version of a loaded PKCS#11 module (spec 15.2: middleware version)."""
    try:
        info = lib.getInfo()
        major, minor = info.libraryVersion
        return f"{info.manufacturerID.strip()} {info.libraryDescription.strip()} {major}.{minor}".strip()
    except Exception:  # a module that cannot describe itself still loaded
        return "version inconnue"


# ---------------------------------------------------------------------------------------- network


@dataclass(frozen=True)
class Probe:
    handshake: bool  # TLS handshake done and the server's certificate verified
    server_date: datetime | None = None
    error: str = ""  # "", "cert", "network", "tls"
    detail: str = ""


def probe_https(
    url: str, ca_file: str, *, verify_host: bool = True, timeout_s: float = NETWORK_TIMEOUT_S
) -> Probe:
    """TLS handshake with ``url``'s server, its certificate checked against ``ca_file`` (system store when
    empty), then a HEAD request for the HTTP ``Date``. A server that wants a client certificate closes
    the connection after the handshake: the server is verified but no date is read."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        return Probe(False, error="cert", detail=f"fichier des autorités illisible : {ca_file} ({exc})")
    ctx.check_hostname = verify_host
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        return Probe(False, error="network", detail=f"{host}:{port} : {exc.strerror or exc}")
    try:
        try:
            tls = ctx.wrap_socket(raw, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            return Probe(False, error="cert", detail=exc.verify_message or str(exc))
        except ssl.SSLError as exc:
            # TLS 1.2: the server aborts the handshake when it requires a client certificate; it did so
            # after sending its own certificate, which OpenSSL had already verified.
            if "alert" in str(exc).lower():
                return Probe(True, detail=f"le serveur demande un certificat client ({exc.reason})")
            return Probe(False, error="tls", detail=str(exc))
        except OSError as exc:
            return Probe(False, error="network", detail=str(exc))
        try:
            path = parts.path or "/"
            tls.sendall(f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("ascii"))
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ssl.SSLError, OSError) as exc:
            return Probe(True, detail=f"pas de réponse HTTP sans certificat client ({exc})")
        finally:
            tls.close()
        for line in data.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"date":
                try:
                    return Probe(True, server_date=parsedate_to_datetime(value.strip().decode("latin-1")))
                except (TypeError, ValueError):
                    break
        return Probe(True, detail="réponse sans en-tête Date")
    finally:
        raw.close()


def _tls_check(check_id: str, what: str, url: str, ca_file: str, probe: Probe) -> Check:
    if probe.handshake:
        return Check(
            check_id,
            True,
            f"{what} joignable en TLS (certificat vérifié)",
            detail=f"{url} {probe.detail}".strip(),
        )
    if probe.error == "cert":
        fix = (
            f"Le certificat du {what} n'est pas reconnu par les autorités configurées"
            + (f" ({ca_file})" if ca_file else " (magasin du système)")
            + " : indiquez le bon fichier des autorités (IGC-Santé ; réglage dmp.ca_file) ou vérifiez "
            "qu'aucun proxy n'intercepte le trafic HTTPS."
        )
    elif probe.error == "network":
        fix = (
            f"Le {what} ne répond pas : vérifiez la connexion Internet, le pare-feu et le proxy "
            "(autorisez l'accès HTTPS sortant vers cette adresse)."
        )
    else:
        fix = f"La négociation TLS avec le {what} a échoué : vérifiez l'adresse et le proxy."
    return Check(check_id, False, f"Accès au {what}", fix, f"{url} : {probe.detail}")


def check_clock(options: DoctorOptions, probes: Iterable[tuple[str, Probe]]) -> Check:
    label = "Horloge du poste"
    for source, probe in probes:
        if probe.server_date is None:
            continue
        skew = (options.now() - probe.server_date).total_seconds()
        detail = f"écart {skew:+.0f} s avec {source}"
        fix = (
            "Synchronisez l'horloge du poste : « sudo timedatectl set-ntp true » (Linux) ou "
            "« w32tm /resync » (Windows, en administrateur)."
        )
        if abs(skew) > CLOCK_FAIL_S:
            return Check(
                "clock",
                False,
                label,
                f"L'horloge du poste dérive de {abs(skew):.0f} s : le DMP refusera les connexions. {fix}",
                detail,
            )
        if abs(skew) > CLOCK_WARN_S:
            return Check(
                "clock", True, f"Horloge du poste décalée de {abs(skew):.0f} s", fix, detail, warning=True
            )
        return Check("clock", True, "Horloge du poste à l'heure", detail=detail)
    return Check(
        "clock",
        True,
        "Horloge du poste non vérifiée (aucun serveur n'a donné son heure)",
        "Vérifiez que l'heure du poste est synchronisée automatiquement (NTP).",
        warning=True,
    )


# ----------------------------------------------------------------------------------- workstation


def _loginctl_remote(environ: Mapping[str, str]) -> Callable[[], str] | None:
    session = environ.get("XDG_SESSION_ID")
    if not session or not Path("/usr/bin/loginctl").exists():
        return None

    def run() -> str:
        try:
            out = subprocess.run(
                ["/usr/bin/loginctl", "show-session", session, "-p", "Remote", "--value"],
                capture_output=True,
                text=True,
                timeout=3,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout

    return run


def check_remote_session(options: DoctorOptions) -> Check:
    loginctl = _loginctl_remote(options.environ) if options.platform.startswith("linux") else None
    remote = detect_remote_session(options.environ, options.platform, loginctl)
    if not remote:
        return Check("remote_session", True, "Session locale (pas de bureau à distance)")
    # [I] A warning: card redirection exists (RDP smart-card redirection), but the card must be readable
    # where the agent runs; the reader line above says whether it is.
    return Check(
        "remote_session",
        True,
        f"Bureau à distance détecté : {remote}",
        "La carte CPS doit être dans un lecteur de la machine où tourne l'agent (un lecteur par poste). "
        "En bureau à distance, activez la redirection des cartes à puce ou lancez l'agent sur le poste "
        "où est branché le lecteur.",
        remote,
        warning=True,
    )


def _ro_sqlite(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)


def check_queue(options: DoctorOptions) -> Check:
    path = options.home / "outbox.sqlite3"
    if not path.exists():
        return Check("queue", True, "File d'envoi au DMP : pas encore créée", detail=str(path))
    try:
        con = _ro_sqlite(path)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            table = "queue_entry" if "queue_entry" in tables else "pending" if "pending" in tables else ""
            if not table:
                raise sqlite3.DatabaseError("aucune table de file d'envoi")
            count = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
        finally:
            con.close()
    except sqlite3.Error as exc:
        return Check(
            "queue",
            False,
            "File d'envoi au DMP illisible",
            f"Vérifiez les droits du dossier {options.home} (il doit appartenir à l'utilisateur) ; "
            "ne supprimez pas le fichier : il contient des documents non encore envoyés. "
            "Contactez le support.",
            f"{path} : {exc}",
        )
    return Check("queue", True, "File d'envoi au DMP lisible", detail=f"{count} entrée(s) ; {path}")


def check_journal(options: DoctorOptions) -> tuple[Check, Check]:
    from ps_agent.audit.journal import AuditJournal
    from ps_agent.errors import PsAgentError

    path = options.home / "audit.sqlite3"
    if not path.exists():
        missing = Check("journal", True, "Journal d'audit : pas encore créé", detail=str(path))
        return missing, Check("journal_chain", True, "Chaînage du journal : rien à vérifier")
    try:
        con = _ro_sqlite(path)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
        journal = AuditJournal(path)
        try:
            result = journal.verify()
        finally:
            journal.close()
    except (sqlite3.Error, OSError, PsAgentError) as exc:
        message = getattr(exc, "message_fr", str(exc))
        return Check(
            "journal",
            False,
            "Journal d'audit illisible",
            f"Vérifiez les droits du dossier {options.home} ; ne supprimez pas le journal (preuve de vos "
            "accès au DMP). Contactez le support.",
            f"{path} : {message}",
        ), Check(
            "journal_chain", False, "Chaînage du journal non vérifié", "Corrigez d'abord la ligne ci-dessus."
        )
    readable = Check("journal", True, "Journal d'audit lisible", detail=f"{result.count} trace(s) ; {path}")
    if not result.ok:
        return readable, Check(
            "journal_chain",
            False,
            "Chaînage du journal d'audit rompu",
            "Le journal a été modifié ou abîmé : ne le supprimez pas, conservez une copie du fichier "
            f"{path} et prévenez votre prestataire informatique (« ps-agent audit verify » détaille).",
            result.message_fr,
        )
    return readable, Check(
        "journal_chain", True, "Chaînage du journal d'audit intact", detail=result.guarantee_fr
    )


# ------------------------------------------------------------------------------------------- run


def run_checks(options: DoctorOptions) -> list[Check]:
    """Every check, in the order shown to the user."""
    pcsc, readers = check_pcsc(options)
    checks = [pcsc, check_readers(options, readers), check_card(options, readers), check_middleware(options)]
    env = options.environment
    dmp_probe = probe_https(
        env.base_url, env.ca_file, verify_host=env.verify_host, timeout_s=options.timeout_s
    )
    checks.append(_tls_check("dmp_tls", "DMP", env.base_url, env.ca_file, dmp_probe))
    probes = [("le serveur du DMP", dmp_probe)]
    if options.insi_url:
        ca = options.insi_ca_file or env.ca_file
        insi_probe = probe_https(options.insi_url, ca, timeout_s=options.timeout_s)
        checks.append(_tls_check("insi_tls", "service INSi", options.insi_url, ca, insi_probe))
        probes.append(("le serveur INSi", insi_probe))
    else:
        checks.append(
            Check(
                "insi_tls",
                True,
                "Service INSi : non configuré",
                warning=True,
                fix_fr="Indiquez l'environnement INSi (réglage insi.environment).",
            )
        )
    checks.append(check_clock(options, probes))
    checks.append(check_remote_session(options))
    checks.append(check_queue(options))
    checks.extend(check_journal(options))
    return checks


def default_options(
    *,
    env: str | None = None,
    ca_file: str | None = None,
    insi_url: str | None = None,
    reader: str | None = None,
    home: Path | None = None,
    timeout_s: float = NETWORK_TIMEOUT_S,
) -> DoctorOptions:
    """The options the agent runs with: each given value, else the environment variables
    (``PS_AGENT_ENV``, ``PS_AGENT_CA``, ``PS_AGENT_INSI_URL``, ``PS_AGENT_READER``), else the installed
    ``config.toml``, else the defaults (sandbox). The window's diagnosis page calls this too."""
    from ps_agent.config import data_dir, environment
    from ps_agent.identity.environments import INSI_ENVIRONMENTS
    from ps_agent.settings import INSI_FOR_DMP, load_installed_settings

    settings = load_installed_settings()
    env_name = env or os.environ.get("PS_AGENT_ENV") or (settings.dmp_environment if settings else "sandbox")
    ca = ca_file or os.environ.get("PS_AGENT_CA") or (settings.dmp_ca_file if settings else "") or None
    environment_ = environment(env_name, ca_file=ca)
    url = insi_url or os.environ.get("PS_AGENT_INSI_URL") or (settings.insi_url if settings else "")
    if not url:
        insi_name = (settings.insi_environment_name if settings else "") or INSI_FOR_DMP.get(env_name, "")
        if insi_name in INSI_ENVIRONMENTS:
            url = INSI_ENVIRONMENTS[insi_name].url
    if reader is None:
        reader = os.environ.get(READER_ENV)
    if reader is None:
        reader = settings.card_reader if settings else ""
    return DoctorOptions(
        environment=environment_,
        home=home or data_dir(),
        insi_url=url,
        reader=reader,
        pkcs11_module=settings.pkcs11_module if settings else "",
        timeout_s=timeout_s,
    )


def all_ok(checks: Iterable[Check]) -> bool:
    return all(c.ok for c in checks)


__all__ = [
    "CLOCK_FAIL_S",
    "CLOCK_WARN_S",
    "NETWORK_TIMEOUT_S",
    "READER_ENV",
    "Check",
    "DoctorOptions",
    "Probe",
    "all_ok",
    "check_clock",
    "default_options",
    "detect_remote_session",
    "probe_https",
    "run_checks",
]
