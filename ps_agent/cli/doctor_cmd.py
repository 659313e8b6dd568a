"""``ps-agent doctor``: diagnose the workstation (card, reader, middleware, network, clock, files).

Settings come from the options, then the environment variables (``PS_AGENT_ENV``, ``PS_AGENT_CA``,
``PS_AGENT_INSI_URL``, ``PS_AGENT_READER``), then the installation's ``config.toml``. Exit 0 when every
line holds (warnings included), 1 otherwise. ``--json`` prints the lines as a JSON list.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ps_agent.doctor import READER_ENV, DoctorOptions, all_ok, default_options, run_checks


def _options(args: argparse.Namespace) -> DoctorOptions:
    return default_options(
        env=args.env,
        ca_file=args.ca,
        insi_url=args.insi_url,
        reader=args.lecteur,
        home=Path(args.home).expanduser() if args.home else None,
        timeout_s=args.timeout,
    )


def _run(args: argparse.Namespace) -> int:
    checks = run_checks(_options(args))
    ok = all_ok(checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}, ensure_ascii=False, indent=2))
    else:
        for c in checks:
            mark = "OK " if c.ok and not c.warning else "ATTENTION" if c.ok else "ÉCHEC"
            print(f"[{mark}] {c.label_fr}" + (f"  ({c.detail})" if c.detail and args.details else ""))
            if c.fix_fr and (not c.ok or c.warning):
                print(f"        → {c.fix_fr}")
        print(
            "Diagnostic : tout est en ordre."
            if ok
            else "Diagnostic : des points sont à corriger (voir ci-dessus)."
        )
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "doctor",
        help="diagnostiquer le poste (carte, lecteur, Cryptolib, réseau, horloge, journal)",
        description="Vérifie le poste : service PC/SC, lecteur, carte CPS, Cryptolib, accès TLS au DMP et "
        "à l'INSi, horloge, bureau à distance, file d'envoi et journal d'audit. Code de sortie 0 si tout "
        "est en ordre, 1 sinon.",
    )
    p.add_argument("--env", default=None, help="environnement DMP (défaut : réglages, puis sandbox)")
    p.add_argument("--ca", default=None, help="fichier PEM des autorités du serveur DMP")
    p.add_argument("--insi-url", default=None, help="adresse du service INSi à tester")
    p.add_argument(
        "--lecteur", default=None, help=f"nom du lecteur attendu (défaut : ${READER_ENV} ou réglages)"
    )
    p.add_argument("--home", default=None, help="dossier de données de l'agent (défaut : $PS_AGENT_HOME)")
    p.add_argument("--timeout", type=float, default=5.0, help="délai réseau en secondes (défaut : 5)")
    p.add_argument("--json", action="store_true", help="résultat en JSON")
    p.add_argument("--details", action="store_true", help="afficher les détails techniques")
    p.set_defaults(func=_run)
