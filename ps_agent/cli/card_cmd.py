"""``ps-agent card readers|status|login``: readers, the card's public data, a PIN login test.

The PIN is read with ``getpass`` (never echoed, never an argument). For automated tests only, the
environment variable ``PS_AGENT_TEST_PIN`` replaces the prompt.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable

from cda.errors import CdaError
from ps_agent.errors import AuthError, PsAgentError

TEST_PIN_ENV = "PS_AGENT_TEST_PIN"  # tests only: never set it on a real workstation


def _print(args: argparse.Namespace, payload: object, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    else:
        print(text)


def _read_pin() -> str:
    pin = os.environ.get(TEST_PIN_ENV)
    if pin is not None:
        return pin
    try:
        return getpass.getpass("Code porteur (4 chiffres) : ")
    except (EOFError, KeyboardInterrupt) as exc:
        raise AuthError("Aucun code porteur saisi.", code="no_pin") from exc


def cmd_readers(args: argparse.Namespace) -> int:
    from ps_agent.card.cps import identify_atr
    from ps_agent.card.errors import CardBusy, NoCard
    from ps_agent.card.pcsc import PcscConnection, list_readers

    rows = []
    for name in list_readers():
        state = "vide"
        card = None
        try:
            with PcscConnection(name, exclusive=False) as conn:
                match = identify_atr(conn.atr)
                card = match.generation if match else None
                state = f"carte {card}" if match else "carte inconnue"
        except NoCard:
            pass
        except CardBusy:
            state = "carte utilisée par un autre programme"
        rows.append({"reader": name, "state": state, "card": card})
    text = "\n".join(f"{r['reader']} : {r['state']}" for r in rows) or "Aucun lecteur de cartes."
    _print(args, rows, text)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ps_agent.auth.session import _connect
    from ps_agent.card.cps import CpsSession

    conn = _connect(args.reader, exclusive=False)
    try:
        cps = CpsSession(conn)
        holder = cps.read_holder()
        pin = cps.pin_status()
    finally:
        conn.close()
    payload = {"reader": conn.reader, **dataclasses.asdict(holder), "pin_tries_left": pin.tries_left}
    text = (
        f"Lecteur : {conn.reader}\n"
        f"Carte {holder.card_type} n° {holder.serial} : {holder.given_name} {holder.family_name} "
        f"({holder.id_nat})\n"
        f"Profession : {holder.profession_label or '-'} ({holder.profession_code or '-'}), "
        f"spécialité : {holder.specialty_code or '-'}\n"
        f"Situations d'exercice : {holder.situation_count}\n"
        + ("Code porteur : BLOQUÉ" if pin.blocked else f"Essais de code porteur restants : {pin.tries_left}")
    )
    _print(args, payload, text)
    return 1 if pin.blocked else 0


def situation_number(text: str) -> int:
    """argparse type of ``--situation``: the situation number as the user counts, from 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"« {text} » n'est pas un numéro de situation d'exercice "
            "(1 pour la première, 2 pour la deuxième…)"
        )
    return number


def cmd_login(args: argparse.Namespace) -> int:
    from ps_agent.auth.session import AuthSession, situation_index

    index = situation_index(args.situation)  # the user counts from 1, the API from 0
    pin = _read_pin()
    if args.pkcs11 is not None:
        session = AuthSession.open_pkcs11(
            pin,
            module=args.pkcs11 or None,
            token_label=args.token_label,
            situation_index=index,
            confirm_final_try=args.confirm_final_try,
            ca_file=args.ca_file,
        )
    else:
        session = AuthSession.open(
            args.reader,
            pin,
            situation_index=index,
            confirm_final_try=args.confirm_final_try,
            ca_file=args.ca_file,
        )
    del pin
    try:
        ident = session.identity
        payload = dataclasses.asdict(ident) | {"mode": session.mode.value}
        act = ident.activity
        text = (
            f"Authentifié : {ident.given_name} {ident.family_name} ({ident.id_nat}), "
            f"{ident.profession_label or ident.non_ps_role or '-'}"
            + (
                f"\nStructure : {act.structure_name} ({act.structure_id}), secteur {act.sector}"
                if act
                else ""
            )
        )
        _print(args, payload, text)
    finally:
        session.close()
    return 0


def _no_traceback(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn an unexpected exception into a French refusal (exit 1): no traceback reaches the user."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (CdaError, PsAgentError, KeyboardInterrupt):
            raise
        except Exception as exc:
            logging.getLogger(__name__).debug("unexpected error", exc_info=True)
            raise PsAgentError(
                f"Erreur interne ({type(exc).__name__}) : l'opération n'a pas abouti.", code="internal"
            ) from exc

    return run


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    card = subparsers.add_parser("card", help="carte CPS : lecteurs, état, connexion")
    sub = card.add_subparsers(dest="card_command", metavar="SOUS-COMMANDE")
    card.set_defaults(func=lambda args: (card.print_help(), 2)[1])

    p = sub.add_parser("readers", help="lister les lecteurs et les cartes présentes")
    p.add_argument("--json", action="store_true", help="sortie JSON")
    p.set_defaults(func=_no_traceback(cmd_readers))

    p = sub.add_parser("status", help="données publiques de la carte (sans code porteur)")
    p.add_argument("--reader", help="nom du lecteur (défaut : le premier qui contient une carte CPS)")
    p.add_argument("--json", action="store_true", help="sortie JSON")
    p.set_defaults(func=_no_traceback(cmd_status))

    p = sub.add_parser("login", help="saisir le code porteur et afficher l'identité lue sur la carte")
    p.add_argument("--reader", help="nom du lecteur (défaut : le premier qui contient une carte CPS)")
    p.add_argument(
        "--situation",
        type=situation_number,
        default=1,
        help="numéro de la situation d'exercice, à partir de 1 (défaut : 1, la première)",
    )
    p.add_argument("--ca-file", help="autorités IGC-Santé (PEM) pour vérifier les certificats de la carte")
    p.add_argument(
        "--pkcs11",
        nargs="?",
        const="",
        help="passer par un module PKCS#11 (Cryptolib CPS ; chemin facultatif, sinon détection automatique)",
    )
    p.add_argument("--token-label", help="libellé de la carte dans le module PKCS#11")
    p.add_argument(
        "--confirm-final-try", action="store_true", help="confirmer l'utilisation du dernier essai de code"
    )
    p.add_argument("--json", action="store_true", help="sortie JSON")
    p.set_defaults(func=_no_traceback(cmd_login))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
