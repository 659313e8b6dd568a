"""``ps-agent card readers|status|login``: readers, the card's public data, a PIN login test.

The PIN is read with ``getpass`` (never echoed, never an argument; one prompt wording,
``ps_agent.cli.common.PIN_PROMPT``). For automated tests only, the environment variables
``PS_AGENT_TEST_PIN`` (and ``PS_AGENT_TEST_PUK`` / ``PS_AGENT_TEST_NEW_PIN`` for ``debloquer``) replace
the prompts. With one PIN try left, the commands say so and ask "Confirmer ? (oui/non)" before the
PIN is asked. ``status`` exits 1 for a blocked or expired card.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from cda.errors import CdaError
from ps_agent.cli.common import (
    NEW_PIN_AGAIN_PROMPT,
    NEW_PIN_PROMPT,
    PUK_PROMPT,
    card_preflight,
    confirm_final_try,
    print_out,
    read_pin,
    read_secret,
    shows_help,
)
from ps_agent.errors import AuthError, PsAgentError

if TYPE_CHECKING:
    from ps_agent.auth.pkcs11 import Pkcs11Session

PUK_ENV = "PS_AGENT_TEST_PUK"  # tests only
NEW_PIN_ENV = "PS_AGENT_TEST_NEW_PIN"  # tests only
# [I] How long before its end date `card status` starts warning that the card expires soon.
EXPIRY_WARNING_DAYS = 30


def _print(args: argparse.Namespace, payload: object, text: str) -> None:
    print_out(getattr(args, "json", False), payload, text)


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
    today = dt.date.today()
    expired = holder.valid_to is not None and holder.valid_to < today
    soon = (
        holder.valid_to is not None and not expired and (holder.valid_to - today).days <= EXPIRY_WARNING_DAYS
    )
    payload = {
        "reader": conn.reader,
        **dataclasses.asdict(holder),
        "pin_tries_left": pin.tries_left,
        "expired": expired,
    }
    validity = (
        f"Validité : du {holder.valid_from:%d/%m/%Y} au {holder.valid_to:%d/%m/%Y}"
        if holder.valid_from and holder.valid_to
        else "Validité : non indiquée sur la carte"
    )
    if pin.blocked:
        pin_line = "Code porteur : BLOQUÉ (déblocage : ps-agent card debloquer)"
    elif pin.final_try:
        pin_line = "Essais de code porteur restants : 1 (attention : un code faux bloquera la carte)"
    else:
        pin_line = f"Essais de code porteur restants : {pin.tries_left}"
    lines = [
        f"Lecteur : {conn.reader}",
        f"Carte {holder.card_type} n° {holder.serial} : {holder.given_name} {holder.family_name} "
        f"({holder.id_nat})",
        f"Profession : {holder.profession_code or '-'} — {holder.profession_label or '-'}, "
        f"spécialité : {holder.specialty_code or '-'}",
        f"Situations d'exercice : {holder.situation_count}",
        validity,
        pin_line,
    ]
    if expired and holder.valid_to:
        lines.append(
            f"ATTENTION : la carte a expiré le {holder.valid_to:%d/%m/%Y} ; elle ne permet plus de "
            "s'authentifier. Demandez son renouvellement (CPS Info Service)."
        )
    elif soon and holder.valid_to:
        lines.append(f"Attention : la carte expire bientôt (le {holder.valid_to:%d/%m/%Y}).")
    _print(args, payload, "\n".join(lines))
    return 1 if pin.blocked or expired else 0


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
    session: AuthSession | Pkcs11Session
    if args.pkcs11 is not None:
        pin = read_pin()
        session = AuthSession.open_pkcs11(
            pin,
            module=args.pkcs11 or None,
            token_label=args.token_label,
            situation_index=index,
            confirm_final_try=args.confirm_final_try,
            ca_file=args.ca_file,
        )
    else:
        _holder, status, reader = card_preflight(args.reader)  # before the PIN is asked
        confirmed = confirm_final_try(status.tries_left, already=args.confirm_final_try)
        pin = read_pin()
        session = AuthSession.open(
            reader,
            pin,
            situation_index=index,
            confirm_final_try=confirmed,
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


def cmd_unblock(args: argparse.Namespace) -> int:
    """Unblock the PIN with the PUK (code de déblocage) and choose a new PIN."""
    from ps_agent.auth.errors import check_pin_format
    from ps_agent.auth.session import _connect
    from ps_agent.card.cps import CpsSession

    conn = _connect(args.reader, exclusive=True)  # before any code is asked: no card, no question
    try:
        cps = CpsSession(conn)
        status = cps.pin_status()
        if not status.blocked and not args.force:
            print(
                f"Le code porteur n'est pas bloqué (essais restants : {status.tries_left}). "
                "Rien à faire (--force pour changer quand même le code avec le code de déblocage).",
            )
            return 0
        puk = read_secret(PUK_PROMPT, PUK_ENV)
        check_pin_format(puk, length=8, what="code de déblocage")
        new_pin = read_secret(NEW_PIN_PROMPT, NEW_PIN_ENV)
        check_pin_format(new_pin)
        if os.environ.get(NEW_PIN_ENV) is None and read_secret(NEW_PIN_AGAIN_PROMPT, NEW_PIN_ENV) != new_pin:
            raise AuthError(
                "Les deux saisies du nouveau code porteur diffèrent : rien n'a été envoyé à la carte.",
                code="pin_mismatch",
            )
        cps.unblock_pin(puk, new_pin)
        del puk, new_pin
    finally:
        conn.close()
    print("Carte débloquée : le nouveau code porteur est actif (3 essais).")
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    card = subparsers.add_parser(
        "card", aliases=["carte"], help="carte CPS : lecteurs, état, connexion, déblocage"
    )
    sub = card.add_subparsers(dest="card_command", metavar="SOUS-COMMANDE")
    card.set_defaults(func=shows_help(card))

    p = sub.add_parser("readers", aliases=["lecteurs"], help="lister les lecteurs et les cartes présentes")
    p.add_argument("--json", action="store_true", help="sortie JSON")
    p.set_defaults(func=_no_traceback(cmd_readers))

    p = sub.add_parser("status", aliases=["etat"], help="données publiques de la carte (sans code porteur)")
    p.add_argument("--lecteur", "--reader", dest="reader", metavar="LECTEUR", help=READER_HELP)
    p.add_argument("--json", action="store_true", help="sortie JSON")
    p.set_defaults(func=_no_traceback(cmd_status))

    p = sub.add_parser("login", help="saisir le code porteur et afficher l'identité lue sur la carte")
    p.add_argument("--lecteur", "--reader", dest="reader", metavar="LECTEUR", help=READER_HELP)
    p.add_argument(
        "--situation",
        type=situation_number,
        default=1,
        help="numéro de la situation d'exercice, à partir de 1 (défaut : 1, la première)",
    )
    p.add_argument(
        "--autorites",
        "--ca-file",
        dest="ca_file",
        metavar="FICHIER_PEM",
        help="autorités IGC-Santé (PEM) pour vérifier les certificats de la carte",
    )
    p.add_argument(
        "--pkcs11",
        nargs="?",
        const="",
        help="passer par un module PKCS#11 (Cryptolib CPS ; chemin facultatif, sinon détection automatique)",
    )
    p.add_argument(
        "--libelle-carte",
        "--token-label",
        dest="token_label",
        metavar="LIBELLÉ",
        help="libellé de la carte dans le module PKCS#11",
    )
    p.add_argument(
        "--confirmer-dernier-essai",
        "--confirm-final-try",
        dest="confirm_final_try",
        action="store_true",
        help="confirmer d'avance l'utilisation du dernier essai de code (sinon la question est posée)",
    )
    p.add_argument("--json", action="store_true", help="sortie JSON")
    p.set_defaults(func=_no_traceback(cmd_login))

    p = sub.add_parser(
        "debloquer",
        aliases=["unblock"],
        help="débloquer le code porteur avec le code de déblocage (8 chiffres) et choisir un nouveau code",
    )
    p.add_argument("--lecteur", "--reader", dest="reader", metavar="LECTEUR", help=READER_HELP)
    p.add_argument("--force", action="store_true", help="changer le code même s'il n'est pas bloqué")
    p.set_defaults(func=_no_traceback(cmd_unblock))


READER_HELP = "nom du lecteur (défaut : le premier qui contient une carte CPS)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
