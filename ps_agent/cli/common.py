"""What the ``ps-agent`` command groups share: the one PIN prompt, confirmations, the INS OID of an
environment, rubric and document-type names as a person types them, French labels beside raw codes,
private output files.

Every question is asked on the terminal (``input``); an answer that is not "oui"/"non" is asked again;
no answer (end of input) means "non". ``PS_AGENT_TEST_PIN`` replaces the PIN prompt for automated
tests only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cda import ins as cda_ins
from cda.classify import rubric_named, types_matching
from cda.valuesets import DMP_RUBRICS
from ps_agent.dmp.environment import ins_environment_for, ins_oid_for
from ps_agent.errors import AuthError, ConfigurationError, PsAgentError
from ps_agent.fileio import write_file

if TYPE_CHECKING:
    from cda.vaccinations import Immunization
    from ps_agent.card.cps import CardHolder, PinStatus
    from ps_agent.card.pcsc import PcscConnection

TEST_PIN_ENV = "PS_AGENT_TEST_PIN"  # tests only: never set it on a real workstation
PIN_PROMPT = "Code porteur de la carte CPS (4 chiffres, non affiché) : "
PUK_PROMPT = "Code de déblocage (8 chiffres, reçu avec la carte, non affiché) : "
NEW_PIN_PROMPT = "Nouveau code porteur (4 chiffres, non affiché) : "
NEW_PIN_AGAIN_PROMPT = "Nouveau code porteur, une seconde fois : "
YES = frozenset({"oui", "o", "yes", "y"})
NO = frozenset({"non", "n", "no"})

# Which INS OID a DMP environment expects when ``--oid`` is not given: one place, next to the
# environments (``ps_agent.dmp.environment.INS_ENVIRONMENT_OF_DMP``), shared with the local API.


class UsageError(ConfigurationError):
    """Bad usage or input refused before anything else happens (exit code 2)."""

    exit_code = 2

    def __init__(self, message_fr: str, *, code: str = "USAGE") -> None:
        super().__init__(message_fr, code=code)


# ----------------------------------------------------------------------------------- output


def print_out(as_json: bool, payload: object, text: str) -> None:
    """``payload`` as JSON with ``--json``, else the French ``text``."""
    if as_json:
        print(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    else:
        print(text)


def labelled(code: str, label: str) -> str:
    """A raw code beside its French label: ``"VALIDE — vous êtes autorisé"``."""
    if not code:
        return label
    return f"{code} — {label}" if label and label != code else code


def error_text(exc: BaseException) -> str:
    """The one line shown for a refusal: the French message, with the raw code beside it."""
    message = str(getattr(exc, "message_fr", "") or exc)
    code = str(getattr(exc, "code", "") or "")
    from ps_agent.dmp.errors import DmpRefusal
    from ps_agent.errors import AccessDenied

    if isinstance(exc, DmpRefusal) and code:
        return f"Erreur : refusé par le DMP : {labelled(code, message)}"
    if isinstance(exc, AccessDenied) and code:
        return f"Erreur : refusé (règle {code}) — {message}"
    if code and code not in message:
        return f"Erreur : {message} [code {code}]"
    return f"Erreur : {message}"


def write_private(path: Path, data: bytes) -> None:
    """Write patient data readable by its owner only (0600), replacing the file if it exists."""
    try:
        write_file(path, data, fsync=False)
        os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT
    except OSError as exc:
        raise UsageError(f"Impossible d'écrire « {path} » : {exc.strerror or exc}.", code="WRITE") from exc


# ----------------------------------------------------------------------------------- questions


def ask_yes_no(question: str) -> bool:
    """Ask ``question (oui/non)`` on the terminal; "non" on end of input."""
    for _ in range(3):
        print(f"{question} (oui/non) ", end="", file=sys.stderr, flush=True)
        try:
            answer = input().strip().casefold()
        except (EOFError, OSError):  # no terminal, end of input: no answer is "non"
            print("", file=sys.stderr)
            return False
        if answer in YES:
            return True
        if answer in NO:
            return False
        print("Répondez « oui » ou « non ».", file=sys.stderr)
    return False


def _secret(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "Le code doit être saisi au clavier (aucun terminal disponible).", code="NO_TTY"
        )
    try:
        return getpass.getpass(prompt)
    except (EOFError, KeyboardInterrupt) as exc:
        raise AuthError("Aucun code saisi.", code="no_pin") from exc


def read_pin() -> str:
    """The PIN, with the one prompt wording of every command (never echoed, never an argument)."""
    pin = os.environ.get(TEST_PIN_ENV)
    if pin:
        return pin
    return _secret(PIN_PROMPT)


def read_secret(prompt: str, test_env: str) -> str:
    value = os.environ.get(test_env)
    if value:
        return value
    return _secret(prompt)


# ----------------------------------------------------------------------------------- card checks


def card_preflight(reader: str | None) -> tuple[CardHolder, PinStatus, str]:
    """What can be known of the card before the PIN is asked: the holder, the tries left and the reader.

    Raises the ``CardError`` family (no reader, no card, unknown card, busy), ``PinBlocked`` naming the
    way out, and ``AuthError`` (``card_expired``) for a card past its end date."""
    from ps_agent.auth.errors import PinBlocked
    from ps_agent.auth.session import _connect
    from ps_agent.card.cps import CpsSession
    from ps_agent.card.errors import ApduError, UnsupportedCardLayout

    conn: PcscConnection = _connect(reader, exclusive=False)
    try:
        cps = CpsSession(conn)
        try:
            holder = cps.read_holder()
        except ApduError as exc:  # a real card: the emulator's file layout [E] is not on it
            raise UnsupportedCardLayout(f"{exc.what}: {exc.sw:04X}") from exc
        status = cps.pin_status()
    finally:
        conn.close()
    if status.blocked:
        blocked = PinBlocked()
        blocked.message_fr += " Commande : ps-agent card debloquer."
        blocked.args = (blocked.message_fr,)
        raise blocked
    if holder.valid_to is not None and holder.valid_to < dt.date.today():
        raise AuthError(
            f"La carte CPS a expiré le {holder.valid_to:%d/%m/%Y} : demandez son renouvellement "
            "(CPS Info Service). Le code porteur n'a pas été demandé.",
            code="card_expired",
        )
    return holder, status, conn.reader


def confirm_final_try(tries_left: int, *, already: bool = False) -> bool:
    """With one PIN try left, say so and ask "Confirmer ? (oui/non)" where the PIN is asked.

    Returns the ``confirm_final_try`` flag for the session; refuses (``AuthError``
    ``pin_final_try_declined``) when the user does not confirm."""
    if tries_left != 1:
        return False
    print(
        "Attention : il ne reste qu'un seul essai de code porteur. Un code faux bloquera la carte "
        "(déblocage : ps-agent card debloquer, avec le code de déblocage à 8 chiffres).",
        file=sys.stderr,
    )
    if already or ask_yes_no("Confirmer ?"):
        return True
    raise AuthError(
        "Opération abandonnée : le code porteur n'a pas été présenté (il reste un essai).",
        code="pin_final_try_declined",
    )


# ----------------------------------------------------------------------------------- patient, names


def checked_ins(value: str, oid: str, environment: str) -> tuple[str, str]:
    """The normalised matricule and OID, or ``UsageError`` (exit 2) for a wrong key, length or OID."""
    from cda.errors import InvalidIns

    try:
        matricule = cda_ins.check_nir(value, field="--ins")
        cda_ins.check_oid_for_environment(oid, ins_environment_for(environment), field="--oid")
    except InvalidIns as exc:
        raise UsageError(exc.message_fr, code="BAD_INS") from exc
    return matricule, oid


def rubric_or_usage(text: str) -> str:
    """The DMP rubric a person typed, or ``UsageError`` listing the nine rubrics."""
    rubric = rubric_named(text)
    if rubric is None:
        raise UsageError(
            f"Rubrique inconnue : « {text} ». Les neuf rubriques du DMP : " + " ; ".join(DMP_RUBRICS) + ".",
            code="UNKNOWN_RUBRIC",
        )
    return rubric


_CODE_SHAPE = re.compile(r"^(?:[0-9]{1,7}-[0-9]|[A-Z0-9]+(?:[_.-][A-Z0-9]+)*)$")


def type_code_or_usage(text: str) -> str:
    """A document type code, given as code or as (part of) its label matching one type only. A text
    shaped like a code (LOINC ``11488-4``, TRE_A05 ``ACTIVITES_SPORTIVES``…) is returned as is: the
    builder then says precisely why an unknown or non-DMP code is refused."""
    if _CODE_SHAPE.match(text.strip()):
        return text.strip()
    rows = types_matching(text)
    if len(rows) == 1:
        return rows[0].code
    if not rows:
        raise UsageError(
            f"Aucun type de document accepté par le DMP ne correspond à « {text} » "
            "(liste : ps-agent cda types [TEXTE]).",
            code="UNKNOWN_TYPE",
        )
    shown = "\n".join(f"  {labelled(r.code, r.label)}" for r in rows[:15])
    more = f"\n  … et {len(rows) - 15} autre(s)" if len(rows) > 15 else ""
    raise UsageError(
        f"« {text} » désigne plusieurs types de document ; précisez (code ou libellé) :\n{shown}{more}",
        code="AMBIGUOUS_TYPE",
    )


def vaccination_line(r: Immunization) -> str:
    """One vaccination as a professional reads it: date, vaccine, antigens, lot, dose, vaccinator."""
    when = r.date or "date inconnue"
    vaccine = labelled(r.vaccine_code, r.vaccine_label) if r.vaccine_code else (r.vaccine_label or "vaccin ?")
    diseases = ", ".join(r.antigens) or labelled(r.atc_code, r.atc_label) or "antigène non indiqué"
    dose = f"dose {r.dose_rank}" if r.dose_rank else "dose non indiquée"
    who = r.performer or "vaccinateur non indiqué"
    status = "" if r.given else " [NON RÉALISÉE]"
    return (
        f"{when} : {vaccine} — contre : {diseases} ; lot {r.lot_number or 'non indiqué'} ; {dose} ; "
        f"vaccinateur : {who}{status}"
    )


def shows_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The action of a command group called without a sub-command: its help, exit code 2."""

    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def exit_code_of(exc: BaseException) -> int:
    code = getattr(exc, "exit_code", 1)
    return code if isinstance(code, int) else 1


__all__ = [
    "PIN_PROMPT",
    "PsAgentError",
    "UsageError",
    "ask_yes_no",
    "card_preflight",
    "checked_ins",
    "confirm_final_try",
    "error_text",
    "ins_oid_for",
    "labelled",
    "print_out",
    "read_pin",
    "rubric_or_usage",
    "type_code_or_usage",
    "write_private",
]
