"""``ps-agent setup``: first-run configuration without the window (headless or silent installs).

Interactive: detects the readers and the Cryptolib, asks the environment (sandbox preselected), optional
establishment certificates and hot-folder paths, shows the Ségur notice (« J'ai compris ») and writes
``config.toml``. Silent: ``ps-agent setup --depuis FICHIER.toml --silencieux`` validates the file (French
errors naming the key, exit 2) and writes it as the installation's settings, without any question.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from ps_agent.settings import AgentSettings, SettingsError, load_settings, settings_path, validate


class SetupRefused(SettingsError):
    exit_code = 1


def _ask(prompt: str, default: str = "") -> str:
    suffix = f" [{default}]" if default else ""
    try:
        answer = input(f"{prompt}{suffix} : ").strip()
    except EOFError:
        answer = ""
    return answer or default


def _interactive(existing: AgentSettings | None) -> AgentSettings:
    from ps_agent.setup_config import (
        DEFAULT_ENVIRONMENT,
        ENVIRONMENT_LABELS_FR,
        SEGUR_BUTTON_FR,
        SEGUR_NOTICE_FR,
        SEGUR_WARNING_FR,
        acknowledge_notice,
        detect,
    )

    found = detect()
    print("Configuration de ps-agent\n")
    if found.readers_error_fr:
        print(f"  Lecteurs : service des cartes à puce injoignable ({found.readers_error_fr})")
    else:
        print("  Lecteurs détectés : " + (", ".join(found.readers) or "aucun (branchez le lecteur)"))
    print("  Cryptolib CPS : " + (found.cryptolib or "non trouvée (lecture directe de la carte)"))
    print("\nEnvironnement DMP :")
    names = list(ENVIRONMENT_LABELS_FR)
    for i, name in enumerate(names, 1):
        print(f"  {i}. {ENVIRONMENT_LABELS_FR[name]}")
    current = existing.dmp_environment if existing else DEFAULT_ENVIRONMENT
    default_choice = str(names.index(current) + 1) if current in names else "1"
    while True:
        choice = _ask("Votre choix", default_choice)
        if choice.isdigit() and 1 <= int(choice) <= len(names):
            env = names[int(choice) - 1]
            break
        print(f"  Tapez un numéro entre 1 et {len(names)}.")
    raw: dict[str, dict[str, object]] = {"dmp": {"environment": env}}
    suggested = existing.dmp_ca_file if existing else ""
    pki = os.environ.get("PS_AGENT_PKI_DIR", "")  # set by installer/demo.sh: the sandbox's test PKI
    if not suggested and env == "sandbox" and pki and Path(pki, "ca-bundle.pem").is_file():
        suggested = str(Path(pki, "ca-bundle.pem"))
    ca = _ask("Fichier des autorités du serveur DMP (vide : celles intégrées)", suggested)
    if ca:
        raw["dmp"]["ca_file"] = ca
    reader = _ask("Lecteur à utiliser (vide : le premier qui contient une carte CPS)")
    if reader:
        raw["card"] = {"reader": reader}
    auth = _ask("Certificat d'établissement (.p12, facultatif)")
    if auth:
        raw["establishment"] = {"auth_p12": auth, "sign_p12": _ask("Certificat de signature (.p12)", auth)}
    inbox = _ask("Dossier de dépôt automatique (facultatif)")
    if inbox:
        raw["hotfolder"] = {"inbox": inbox}
    settings = validate(raw)
    print("\n" + SEGUR_NOTICE_FR + "\n\n" + SEGUR_WARNING_FR + "\n")
    if _ask(f"Tapez « oui » pour « {SEGUR_BUTTON_FR} »").lower() not in ("oui", "o"):
        raise SetupRefused(
            "Configuration non enregistrée : la notice doit être acceptée (« J'ai compris ») "
            "avant d'utiliser le DMP.",
            code="SEGUR_NOTICE",
        )
    return acknowledge_notice(settings)


def _run(args: argparse.Namespace) -> int:
    from ps_agent.setup_config import finish

    folder = Path(args.dossier).expanduser() if args.dossier else None
    if args.machine:
        from ps_agent.settings import machine_settings_path

        folder = folder or machine_settings_path().parent
    target = settings_path(folder)
    if args.silencieux:
        if not args.depuis:
            raise SettingsError(
                "Le mode silencieux demande un fichier de réglages : --depuis FICHIER.toml.", code="USAGE"
            )
        settings = load_settings(Path(args.depuis))
        # [I] A silent install never acknowledges the Ségur notice for the user: the window shows it at
        # the user's first use (the acknowledgement is personal).
        settings = replace(settings, segur_acknowledged_at="")
    else:
        existing = None
        if target.is_file():
            try:
                existing = load_settings(target, check_files=False)
            except SettingsError:
                existing = None
            if _ask(
                f"Une configuration existe déjà ({target}). La remplacer ? (oui/non)", "non"
            ).lower() not in (
                "oui",
                "o",
            ):
                print("Configuration inchangée.")
                return 0
        settings = load_settings(Path(args.depuis)) if args.depuis else _interactive(existing)
    if args.machine:  # machine-wide: readable by every user; each user's API token is made at first start
        from ps_agent.setup_config import write_settings

        written = write_settings(settings, folder, shared=True)
        print(f"Réglages du poste enregistrés : {written}")
        return 0
    written, token = finish(settings, folder)
    print(f"Réglages enregistrés : {written}")
    print(f"Jeton de l'API locale : {token}")
    if not args.silencieux:
        print("Vérifiez le poste avec : ps-agent doctor")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "setup",
        help="configurer l'agent (premier lancement, installation silencieuse)",
        description="Premier lancement : détecte lecteurs et Cryptolib, demande l'environnement, affiche la "
        "notice Ségur et écrit config.toml. Installation silencieuse : --depuis FICHIER.toml --silencieux.",
    )
    p.add_argument("--depuis", metavar="FICHIER.toml", help="réglages à reprendre d'un fichier TOML")
    p.add_argument("--silencieux", action="store_true", help="aucune question (avec --depuis)")
    p.add_argument(
        "--machine",
        action="store_true",
        help="écrire les réglages communs du poste (administrateur ; %%PROGRAMDATA%%, /etc/xdg)",
    )
    p.add_argument(
        "--dossier", default=None, help="dossier de configuration (défaut : celui de la plateforme)"
    )
    p.set_defaults(func=_run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
