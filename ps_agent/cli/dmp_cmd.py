"""``ps-agent dmp ...``: the DMP operations of the agent from the command line.

The session comes from the CPS card in the reader (PIN asked with ``getpass``, never an argument;
``PS_AGENT_TEST_PIN`` is read only for automated tests), or, with ``--etablissement``, from the
establishment's PKCS#12 files (INDIRECTE / AIR mode: ``--utilisateur`` names the local user, e.g. a
secretary, ``--auteur`` the professional the documents are deposited for; the passphrase is asked with
``getpass``, ``PS_AGENT_P12_PASSPHRASE`` is read for automated tests). Output is French text, or JSON
with ``--json``. Exit codes: 0 done, 1 refused (policy, DMP) or failed, 2 bad usage.

Everything that can be checked without the card is checked before the PIN is asked (``_Prepared``):
the environment and CA file, the INS key and its OID for the environment (``--oid`` defaults to the
environment's, ``ps_agent.cli.common.ins_oid_for``), the rubric name, the emergency reason, the files
to deposit (readable, CDA, depositable, same patient), then the card itself (present, not blocked, not
expired; with one try left the user confirms first).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cda.errors import CdaError
from ps_agent.cli import via_agent
from ps_agent.cli.common import (
    UsageError,
    ask_yes_no,
    card_preflight,
    checked_ins,
    confirm_final_try,
    ins_oid_for,
    labelled,
    print_out,
    read_pin,
    rubric_or_usage,
    shows_help,
    write_private,
)
from ps_agent.errors import ConfigurationError, PsAgentError

if TYPE_CHECKING:
    from cda.build import AuthorInput, PatientInput
    from cda.model import CdaDocument, InstanceId
    from cda.vaccinations import Immunization
    from ps_agent.access.policy import PatientRef
    from ps_agent.agent import Agent
    from ps_agent.auth.establishment import EstablishmentSession
    from ps_agent.auth.model import ProfessionalIdentity
    from ps_agent.auth.session import AuthSession
    from ps_agent.config import Environment
    from ps_agent.dmp.model import DocumentEntry

P12_PASSPHRASE_ENV = "PS_AGENT_P12_PASSPHRASE"  # noqa: S105 - a variable name; unattended use (service account) and tests


def _add_common(p: argparse.ArgumentParser, *, patient: bool = True, emergency: bool = True) -> None:
    g = p.add_argument_group("connexion")
    g.add_argument(
        "--env",
        "--environnement",
        dest="env",
        metavar="ENV",
        action=via_agent.StoreGiven,
        default=os.environ.get("PS_AGENT_ENV", "sandbox"),
        help="environnement DMP : sandbox, formation1..5, production, ou une adresse https:// "
        "(défaut : $PS_AGENT_ENV, sinon sandbox)",
    )
    g.add_argument(
        "--ca",
        "--autorites",
        dest="ca",
        metavar="FICHIER_PEM",
        default=os.environ.get("PS_AGENT_CA"),
        help="fichier PEM des autorités du serveur DMP (défaut : $PS_AGENT_CA)",
    )
    g.add_argument(
        "--dossier",
        "--home",
        dest="home",
        metavar="DOSSIER",
        default=None,
        help="dossier de données de l'agent (défaut : $PS_AGENT_HOME)",
    )
    g.add_argument(
        "--lecteur",
        "--reader",
        dest="reader",
        metavar="LECTEUR",
        default=None,
        help="nom du lecteur de carte (défaut : le premier avec une carte)",
    )
    g.add_argument(
        "--situation",
        type=int,
        default=1,
        metavar="N",
        help="situation d'exercice, numérotée à partir de 1 (défaut : 1)",
    )
    g.add_argument("--json", action="store_true", help="sortie JSON")
    e = p.add_argument_group("établissement (sans carte : mode INDIRECTE ou AIR)")
    e.add_argument(
        "--etablissement",
        "--establishment",
        dest="etablissement",
        metavar="AUTH_P12",
        type=Path,
        help="PKCS#12 du certificat d'authentification (ORG AUTH_CLI) de l'établissement",
    )
    e.add_argument(
        "--signature-etablissement",
        "--establishment-signature",
        dest="signature_etablissement",
        metavar="SIGN_P12",
        type=Path,
        help="PKCS#12 du certificat de signature (ORG SIGN) ; défaut : celui d'authentification",
    )
    e.add_argument(
        "--utilisateur",
        "--user",
        dest="utilisateur",
        metavar="JSON",
        help="utilisateur local (fichier JSON ou texte JSON) : id_nat, family_name, given_name, "
        "profession_code, specialty_code, non_ps_role, "
        "activity{structure_id, structure_name, sector, role}",
    )
    e.add_argument(
        "--auteur",
        "--author",
        dest="auteur",
        metavar="JSON",
        help="professionnel auteur des documents (même format) ; avec la carte, l'auteur est le "
        "porteur de la carte sauf indication contraire",
    )
    e.add_argument(
        "--mode",
        choices=["INDIRECTE", "INDIRECTE_RENFORCEE"],
        default="INDIRECTE_RENFORCEE",
        help="mode d'authentification indirecte (défaut : INDIRECTE_RENFORCEE, dit AIR)",
    )
    if patient:
        pg = p.add_argument_group("patient")
        pg.add_argument("--ins", help="matricule INS du patient (15 caractères)")
        pg.add_argument(
            "--identite",
            "--identity",
            dest="identite",
            type=int,
            metavar="ID",
            help="identité locale qualifiée (ps-agent patient …) au lieu de --ins --oid",
        )
        pg.add_argument(
            "--oid",
            default=None,
            help="OID de l'INS (défaut : celui de l'environnement : NIR en production, NIR de test ailleurs)",
        )
        pg.add_argument(
            "--statut-ins",
            "--ins-status",
            dest="ins_status",
            default="QUAL",
            choices=["PROV", "RECUP", "VALI", "QUAL"],
            help="statut de l'identité (RNIV), QUAL par défaut",
        )
        if emergency:
            x = pg.add_mutually_exclusive_group()
            x.add_argument(
                "--bris-de-glace",
                "--break-glass",
                dest="bris_de_glace",
                metavar="MOTIF",
                help="accès en urgence (bris de glace) avec ce motif écrit",
            )
            x.add_argument(
                "--centre-15",
                "--regulation",
                dest="centre_15",
                metavar="MOTIF",
                help="accès en régulation (centre 15) avec ce motif",
            )
    p.set_defaults(bris_de_glace=None, centre_15=None, env_given=False)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dmp = subparsers.add_parser("dmp", help="opérations sur le DMP (carte CPS dans le lecteur)")
    sub = dmp.add_subparsers(dest="dmp_command", metavar="OPÉRATION")
    dmp.set_defaults(func=shows_help(dmp))

    p = sub.add_parser(
        "status", aliases=["etat"], help="existence du DMP, autorisation, médecin traitant (TD0.2)"
    )
    _add_common(p)
    via_agent.add_options(p)
    p.set_defaults(func=_status)

    p = sub.add_parser("consent", aliases=["accord"], help="enregistrer l'accord du patient (TD0.3)")
    _add_common(p, emergency=False)
    p.add_argument(
        "--medecin-traitant",
        "--treating-doctor",
        dest="medecin_traitant",
        action="store_true",
        help="se déclarer médecin traitant DMP",
    )
    p.add_argument(
        "--oui", "--yes", dest="oui", action="store_true", help="confirme que le patient a donné son accord"
    )
    via_agent.add_options(p)
    p.set_defaults(func=_consent)

    p = sub.add_parser("deposit", aliases=["deposer"], help="déposer un ou plusieurs documents CDA (TD2.1)")
    _add_common(p, emergency=False)
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FICHIER",
        help="documents CDA (XML) ; avec --remplace, aussi un PDF ou un texte",
    )
    p.add_argument(
        "--masque-ps",
        "--masked",
        dest="masque_ps",
        action="store_true",
        help="masqué aux professionnels de santé",
    )
    p.add_argument("--invisible-patient", action="store_true", help="non visible par le patient")
    p.add_argument(
        "--invisible-representants",
        "--invisible-legal-representatives",
        dest="invisible_representants",
        action="store_true",
        help="non visible des représentants légaux",
    )
    p.add_argument(
        "--remplace",
        "--replaces",
        dest="remplace",
        metavar="UNIQUE_ID",
        help="identifiant (uniqueId) du document remplacé : la nouvelle version est construite "
        "(même setId, version + 1) à partir du fichier donné",
    )
    p.add_argument(
        "--titre",
        "--title",
        dest="titre",
        metavar="TITRE",
        help="titre de la nouvelle version (avec --remplace ; défaut : celui du document remplacé)",
    )
    via_agent.add_options(p)
    p.set_defaults(func=_deposit)

    p = sub.add_parser("search", aliases=["chercher", "lister"], help="lister les documents du DMP (TD3.1)")
    _add_common(p)
    p.add_argument(
        "--rubrique",
        "--rubric",
        dest="rubrique",
        metavar="RUBRIQUE",
        help="rubrique DMP, par ex. « Comptes rendus » (sans tenir compte des accents ni des majuscules)",
    )
    p.add_argument(
        "--archives",
        "--archived",
        dest="archives",
        action="store_true",
        help="inclure les documents archivés",
    )
    via_agent.add_options(p)
    p.set_defaults(func=_search)

    p = sub.add_parser("get", aliases=["lire"], help="télécharger un document (TD3.2)")
    _add_common(p)
    p.add_argument("unique_id", metavar="UNIQUE_ID")
    p.add_argument(
        "-o",
        "--sortie",
        "--output",
        dest="output",
        metavar="FICHIER",
        type=Path,
        help="fichier de sortie (défaut : sortie standard)",
    )
    p.add_argument(
        "--pdf",
        action="store_true",
        help="écrire le PDF contenu dans le document (niveau 1) plutôt que le XML CDA",
    )
    via_agent.add_options(p)
    p.set_defaults(func=_get)

    p = sub.add_parser("mask", aliases=["masquer"], help="masquer un document aux professionnels (TD3.3a)")
    _add_common(p, emergency=False)
    p.add_argument("unique_id", metavar="UNIQUE_ID")
    p.add_argument("--demasquer", "--unmask", dest="unmask", action="store_true", help="démasquer")
    via_agent.add_options(p)
    p.set_defaults(func=_mask)

    p = sub.add_parser(
        "visible",
        aliases=["rendre-visible", "make-visible"],
        help="rendre un document visible au patient (et à ses représentants légaux) (TD3.3b)",
    )
    _add_common(p, emergency=False)
    p.add_argument("unique_id", metavar="UNIQUE_ID")
    p.add_argument(
        "--representants",
        "--legal-representatives",
        dest="representants",
        action="store_true",
        help="aussi aux représentants légaux (irréversible)",
    )
    via_agent.add_options(p)
    p.set_defaults(func=_make_visible)

    p = sub.add_parser("archive", aliases=["archiver"], help="archiver un document (TD3.3d)")
    _add_common(p, emergency=False)
    p.add_argument("unique_id", metavar="UNIQUE_ID")
    p.add_argument("--desarchiver", "--unarchive", dest="unarchive", action="store_true", help="désarchiver")
    via_agent.add_options(p)
    p.set_defaults(func=_archive)

    p = sub.add_parser(
        "delete", aliases=["supprimer"], help="supprimer un document dont vous êtes l'auteur (TD3.3c)"
    )
    _add_common(p, emergency=False)
    p.add_argument("unique_id", metavar="UNIQUE_ID")
    p.add_argument(
        "--oui", "--yes", dest="oui", action="store_true", help="ne pas demander de confirmation (scripts)"
    )
    via_agent.add_options(p)
    p.set_defaults(func=_delete)

    p = sub.add_parser("vaccinations", help="statut vaccinal du patient (VAC-NOTE, VAC, VSM, IPS)")
    _add_common(p)
    via_agent.add_options(p)
    p.set_defaults(func=_vaccinations)


# ---------------------------------------------------------------------------------- session


def _pin() -> str:
    """The PIN (the one prompt of every command, ``ps_agent.cli.common.read_pin``)."""
    return read_pin()


def _p12_passphrase() -> str:
    value = os.environ.get(P12_PASSPHRASE_ENV)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "La phrase de passe des certificats d'établissement doit être saisie au clavier "
            f"(aucun terminal disponible ; ou variable {P12_PASSPHRASE_ENV}).",
            code="NO_TTY",
        )
    import getpass

    return getpass.getpass("Phrase de passe des certificats de l'établissement (non affichée) : ")


_IDENTITY_FIELDS = (
    "id_nat",
    "family_name",
    "given_name",
    "profession_code",
    "profession_label",
    "specialty_code",
    "non_ps_role",
)


def identity_from_json(value: str, *, option: str) -> ProfessionalIdentity:
    """``--utilisateur`` / ``--auteur``: a JSON object (inline or in a file) → ``ProfessionalIdentity``."""
    from ps_agent.auth.model import Activity, ProfessionalIdentity

    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"{option} : fichier illisible ({value}) : {exc.strerror or exc}.", code="BAD_IDENTITY"
            ) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{option} : JSON invalide ({exc}).", code="BAD_IDENTITY") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{option} : un objet JSON est attendu.", code="BAD_IDENTITY")
    unknown = sorted(set(data) - {*_IDENTITY_FIELDS, "activity"})
    if unknown:
        raise ConfigurationError(
            f"{option} : champ(s) inconnu(s) : {', '.join(unknown)}.", code="BAD_IDENTITY"
        )
    missing = [k for k in ("id_nat", "family_name", "given_name") if not str(data.get(k) or "").strip()]
    if missing:
        raise ConfigurationError(
            f"{option} : champ(s) obligatoire(s) manquant(s) : {', '.join(missing)}.", code="BAD_IDENTITY"
        )
    if not all(isinstance(data.get(k, ""), str) for k in _IDENTITY_FIELDS):
        raise ConfigurationError(f"{option} : les champs doivent être des textes.", code="BAD_IDENTITY")
    activity = None
    act = data.get("activity")
    if act is not None:
        keys = ("structure_id", "structure_name", "sector", "role")
        if (
            not isinstance(act, dict)
            or set(act) - set(keys)
            or not all(isinstance(v, str) for v in act.values())
        ):
            raise ConfigurationError(
                f"{option} : « activity » doit contenir structure_id, structure_name, sector (et role).",
                code="BAD_IDENTITY",
            )
        if not act.get("structure_id") or not act.get("sector"):
            raise ConfigurationError(
                f"{option} : « activity » doit indiquer structure_id et sector.", code="BAD_IDENTITY"
            )
        activity = Activity(
            act["structure_id"], act.get("structure_name", ""), act["sector"], act.get("role", "")
        )
    return ProfessionalIdentity(**{k: data.get(k, "").strip() for k in _IDENTITY_FIELDS}, activity=activity)


# ---------------------------------------------------------------------------------- before the PIN


@dataclass
class _Prepared:
    """What was checked before the PIN: environment, data folder, patient, and (later) the session."""

    env: Environment
    home: Path
    patient: PatientRef | None
    credentials: AuthSession | EstablishmentSession | None = field(default=None)


def _prepare(args: argparse.Namespace, *, patient: bool = True) -> _Prepared:
    from ps_agent.access.policy import BRIS_DE_GLACE_MIN_REASON, PatientRef
    from ps_agent.config import data_dir, environment

    env_name = environment(args.env).name  # unknown environment: ConfigurationError (exit 1)
    ref = None
    if patient and args.identite is not None:
        if args.ins:
            raise ConfigurationError(
                "--identite remplace --ins et --oid : n'indiquez que l'un des deux.", code="USAGE"
            )
        from ps_agent.identity.records import IdentityRecords

        with IdentityRecords.open(Path(args.home) if args.home else data_dir()) as records:
            ref = records.qualified_ref(args.identite)  # ID-05: refuses a non-qualified identity
    elif patient:
        if not args.ins:
            raise ConfigurationError("Indiquez le patient : --identite ID ou --ins (et --oid).", code="USAGE")
        oid = (args.oid or ins_oid_for(env_name)).strip()
        matricule, oid = checked_ins(args.ins, oid, env_name)
        ref = PatientRef(matricule, oid, args.ins_status)
    env = environment(args.env, ca_file=args.ca)
    if not env.ca_file:
        raise ConfigurationError(
            "Indiquez le fichier des autorités de certification du serveur DMP (--ca ou PS_AGENT_CA).",
            code="NO_CA",
        )
    if args.etablissement is None and (args.utilisateur or args.signature_etablissement):
        raise ConfigurationError(
            "--utilisateur et --signature-etablissement vont avec --etablissement.", code="USAGE"
        )
    if args.etablissement is not None and not args.utilisateur:
        raise ConfigurationError(
            "En mode établissement, indiquez l'utilisateur local avec --utilisateur.", code="NO_USER"
        )
    reason = args.bris_de_glace
    if reason is not None and len(reason.strip()) < BRIS_DE_GLACE_MIN_REASON:
        raise UsageError(
            f"Le motif du bris de glace doit être une phrase d'au moins {BRIS_DE_GLACE_MIN_REASON} "
            f"caractères (reçu : {len(reason.strip())}), par ex. « patient inconscient aux urgences ».",
            code="URG-02",
        )
    if args.centre_15 is not None and not args.centre_15.strip():
        raise UsageError("Indiquez le motif de l'accès en régulation (centre 15).", code="URG-02")
    home = Path(args.home) if args.home else data_dir()
    return _Prepared(env, home, ref)


def _session(args: argparse.Namespace, prepared: _Prepared) -> AuthSession | EstablishmentSession:
    """The card session, or the establishment session when ``--etablissement`` is given."""
    ca_file = prepared.env.ca_file
    if args.etablissement is None:
        from ps_agent.auth.session import AuthSession, check_situation, situation_index

        index = situation_index(args.situation)  # refused before the PIN is asked
        holder, status, reader = card_preflight(args.reader)  # no card, blocked, expired: no PIN asked
        check_situation(index, holder.situation_count)
        confirmed = confirm_final_try(status.tries_left)
        return AuthSession.open(
            reader, read_pin(), situation_index=index, confirm_final_try=confirmed, ca_file=ca_file
        )
    from ps_agent.auth.establishment import EstablishmentSession
    from ps_agent.auth.model import AuthMode

    user = identity_from_json(args.utilisateur, option="--utilisateur")
    author = identity_from_json(args.auteur, option="--auteur") if args.auteur else None
    for path in (args.etablissement, args.signature_etablissement):
        if path is not None and not path.is_file():
            raise ConfigurationError(f"Fichier PKCS#12 introuvable : {path}.", code="NO_P12")
    return EstablishmentSession.from_pkcs12(
        args.etablissement,
        args.signature_etablissement or args.etablissement,
        _p12_passphrase(),
        user=user,
        author=author,
        mode=AuthMode(args.mode),
        ca_file=ca_file,
    )


@contextmanager
def _agent(args: argparse.Namespace, prepared: _Prepared | None = None) -> Iterator[Agent]:
    """The agent of the session; ``prepared`` (default: checked here, without a patient) from ``_prepare``."""
    from ps_agent.agent import Agent
    from ps_agent.config import AgentConfig

    if prepared is None:  # e.g. `ps-agent outbox resume`: no patient
        prepared = _prepare(args, patient=False)
    session = _session(args, prepared)
    prepared.credentials = session
    try:
        with Agent(session, AgentConfig(prepared.env, prepared.home)) as agent:
            if prepared.patient is not None:
                _emergency(agent, args, prepared.patient)
            yield agent
    except (PsAgentError, CdaError):
        raise
    except Exception as exc:  # never a traceback for the user; the audit journal has the attempt
        raise PsAgentError(
            f"Erreur interne de l'agent ({type(exc).__name__}). L'opération n'a pas abouti.", code="INTERNAL"
        ) from exc
    finally:
        session.close()


def _emergency(agent: Agent, args: argparse.Namespace, patient: PatientRef) -> None:
    from ps_agent.access.policy import AccessMode

    for mode, reason in (
        (AccessMode.BRIS_DE_GLACE, args.bris_de_glace),
        (AccessMode.CENTRE_15, args.centre_15),
    ):
        if reason is not None:
            access = agent.emergency_access(patient, mode, reason)
            if access.notice_fr:
                print(access.notice_fr, file=sys.stderr)


def _patient_of(prepared: _Prepared) -> PatientRef:
    assert prepared.patient is not None  # every command with a patient prepares one
    return prepared.patient


# ---------------------------------------------------------------------------------- documents


def _read_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"Impossible de lire le fichier {path} : {exc.strerror or exc}.", code="READ"
        ) from exc
    if not data:
        raise UsageError(f"Le fichier {path} est vide.", code="READ")
    return data


def _looks_like_xml(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"


def _checked_cda(path: Path, data: bytes, patient: PatientRef) -> CdaDocument:
    """Parse a CDA to deposit and refuse, before the PIN, what the deposit would refuse anyway."""
    from cda.parser import parse_element
    from cda.validate import check_deposit_ready
    from cda.xml import safe_parse

    if not _looks_like_xml(data):
        raise UsageError(
            f"{path} n'est pas un document CDA (XML). Pour déposer un PDF, construisez d'abord le CDA "
            "(ps-agent cda build) ou remplacez un document existant avec --remplace.",
            code="NOT_CDA",
        )
    root = safe_parse(data)
    doc = parse_element(root)
    check_deposit_ready(root)
    ins = doc.patient.ins if doc.patient else None
    if ins is not None and (ins.extension, ins.root) != (patient.ins, patient.oid):
        raise UsageError(
            f"{path} concerne un autre patient (INS {ins.extension}, OID {ins.root}) que celui indiqué "
            f"(--ins {patient.ins}, OID {patient.oid}) : rien n'a été envoyé.",
            code="PATIENT_MISMATCH",
        )
    return doc


def _level1_content(doc: CdaDocument) -> tuple[bytes, str]:
    """The file inside a level-1 CDA (nonXMLBody, base64) and its media type."""
    text = doc.root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}nonXMLBody/{urn:hl7-org:v3}text")
    if not doc.is_level1 or text is None or (text.get("representation") or "B64") != "B64":
        raise UsageError(
            "Ce document est un CDA structuré (pas un PDF ou un texte encapsulé).", code="NOT_LEVEL1"
        )
    try:
        content = base64.b64decode("".join((text.text or "").split()), validate=True)
    except ValueError as exc:
        raise UsageError("Le contenu encapsulé du document est illisible (base64).", code="BAD_B64") from exc
    return content, text.get("mediaType") or doc.media_type


def _patient_input_of(doc: CdaDocument) -> PatientInput:
    """The ``cda.build.PatientInput`` of a parsed document's patient (INS and traits)."""
    from cda.build import PatientInput
    from cda.model import parse_ts

    p = doc.patient
    if p is None or p.ins is None:
        raise UsageError("Le document remplacé n'identifie pas le patient par son INS.", code="NO_INS")
    birth = parse_ts(p.birth_time, field="patient.birth_date") if p.birth_time else ""
    return PatientInput(
        ins=p.ins.extension,
        ins_oid=p.ins.root,
        birth_family_name=p.birth_family_name,
        given_names=p.given_names,
        first_given_name=p.first_given_name,
        birth_date=birth.isoformat()[:10] if not isinstance(birth, str) else "",
        sex=p.sex,
        birth_place_code=p.birth_place_code,
        used_family_name=p.used_family_name,
        used_given_name=p.used_given_name,
    )


def _author_input(args: argparse.Namespace, prepared: _Prepared) -> AuthorInput:
    """The author of a document the CLI builds: ``--auteur``, else the establishment's author, else the
    card holder and the situation chosen."""
    from ps_agent.agent import author_input_of

    if args.auteur:
        identity = identity_from_json(args.auteur, option="--auteur")
    else:
        creds = prepared.credentials
        assert creds is not None  # called inside _agent(): the session is open
        identity = getattr(creds, "author", None) or creds.identity
    author: AuthorInput = author_input_of(identity)
    return author


def _replacement_document(
    agent: Agent, args: argparse.Namespace, prepared: _Prepared, path: Path, new: bytes
) -> bytes:
    """The new version of ``--remplace UNIQUE_ID`` built from ``new`` (a level-1 CDA, a PDF or a text):
    same setId, version + 1, relatedDocument RPLC, patient traits of the document, author from the card."""
    import cda
    from cda import build
    from ps_agent.dmp.environment import ins_environment_for

    patient = _patient_of(prepared)
    old = cda.parse(agent.retrieve(patient, args.remplace).content)
    replacement = build.Replacement.of(old)
    if _looks_like_xml(new):
        doc = _checked_cda(path, new, patient)
        if doc.replaced_document_id is not None:
            if doc.replaced_document_id != old.id:
                raise UsageError(
                    f"{path} remplace déjà un autre document que {args.remplace} : rien n'a été envoyé.",
                    code="REPLACEMENT_MISMATCH",
                )
            return new  # already built as the replacement of this document
        content, media_type = _level1_content(doc)
        type_code, title, traits = doc.type_code, args.titre or doc.title, doc
    else:
        from ps_agent.cli.cda_cmd import media_type_of

        content, media_type = new, media_type_of(str(path)) or ""
        type_code, title, traits = old.type_code, args.titre or old.title, old
    return build.level1(
        type_code=type_code,
        content=content,
        title=title,
        patient=_patient_input_of(traits),
        author=_author_input(args, prepared),
        media_type=media_type or None,
        replaces=replacement,
        environment=ins_environment_for(prepared.env.name),
    )


def _unique_id(ii: InstanceId | None) -> str:
    """The XDS uniqueId of a CDA id ("root" or "root^extension"), "" for none."""
    if ii is None:
        return ""
    return f"{ii.root}^{ii.extension}" if ii.extension else ii.root


def _entry_json(e: DocumentEntry) -> dict[str, Any]:
    """A registry entry as the rows of ``search_report`` (the API's document list gives the same keys)."""
    import contextlib

    from ps_agent.agent import rubric_of

    label = e.type_code.display
    with contextlib.suppress(CdaError):  # a type outside the table: the registry's label
        from cda.classify import classify_type

        label = label or classify_type(e.type_code.code).type_label
    return {
        "unique_id": e.unique_id,
        "entry_uuid": e.entry_uuid,
        "title": e.title,
        "type_code": e.type_code.code,
        "type": label,
        "class_code": e.class_code.code,
        "rubric": rubric_of(e),
        "creation_time": e.creation_time.isoformat(),
        "status": e.status_label_fr,
        "authors": [f"{a.given_name} {a.family_name}".strip() for a in e.authors],
        "masked_to_professionals": e.visibility.masked_to_professionals,
        "invisible_to_patient": e.visibility.invisible_to_patient,
        "invisible_to_legal_representatives": e.visibility.invisible_to_legal_representatives,
    }


# ---------------------------------------------------------------------------------- commands

AUTHORISATION_LABELS = {
    "VALIDE": "autorisation valide",
    "EXPIRE": "autorisation expirée",
    "INTERDIT": "accès bloqué par le patient",
    "NON_EXISTE": "pas encore d'autorisation",
    "": "autorisation non indiquée",
}


def _status(args: argparse.Namespace) -> int:
    if (running := via_agent.running(args)) is not None:  # through the running agent: no PIN
        return via_agent.status(running, args)
    prepared = _prepare(args)
    with _agent(args, prepared) as agent:
        st = agent.dmp_status(_patient_of(prepared))
        auth = labelled(st.authorisation, AUTHORISATION_LABELS.get(st.authorisation, "autorisation inconnue"))
        _out = print_out
        _out(
            args.json,
            {
                "exists": st.exists,
                "active": st.active,
                "authorisation": st.authorisation,
                "medecin_traitant": st.is_medecin_traitant,
                "family_name": st.family_name,
                "given_name": st.given_name,
            },
            st.summary_fr + (f"\nAutorisation : {auth}" if st.exists else ""),
        )
    return 0


def _consent(args: argparse.Namespace) -> int:
    if not args.oui and not ask_yes_no(
        f"Le patient ({f'INS {args.ins.strip()}' if args.ins else f'identité n° {args.identite}'}) "
        "a-t-il donné son accord pour l'accès à son DMP ?"
    ):
        raise ConfigurationError(
            "Confirmez que le patient a donné son accord pour l'accès à son DMP (réponse « oui » ou "
            "option --oui) : rien n'a été enregistré.",
            code="NO_CONSENT",
        )
    if (running := via_agent.running(args)) is not None:  # through the running agent: no PIN
        return via_agent.consent(running, args)
    prepared = _prepare(args)
    with _agent(args, prepared) as agent:
        st = agent.record_consent(_patient_of(prepared), how="oral", medecin_traitant=args.medecin_traitant)
        print_out(
            args.json, {"authorisation": st.authorisation}, "Accord du patient enregistré. " + st.summary_fr
        )
    return 0


def _deposit(args: argparse.Namespace) -> int:
    from ps_agent.dmp.model import Visibility

    if (running := via_agent.running(args)) is not None:  # through the running agent: no PIN
        return via_agent.deposit(running, args)
    prepared = _prepare(args)
    patient = _patient_of(prepared)
    if args.remplace and len(args.files) != 1:
        raise UsageError("--remplace ne s'utilise qu'avec un seul document.")
    if args.titre and not args.remplace:
        raise UsageError("--titre s'utilise avec --remplace (sinon le titre est celui du document).")
    if args.auteur and args.etablissement is None and not args.remplace:
        raise UsageError(
            "--auteur s'utilise avec --remplace ou --etablissement (sinon l'auteur est dans le document)."
        )
    contents = [_read_file(f) for f in args.files]
    if not args.remplace:
        for path, data in zip(args.files, contents, strict=True):
            _checked_cda(path, data, patient)
    elif _looks_like_xml(contents[0]):
        _checked_cda(args.files[0], contents[0], patient)
    vis = Visibility(args.masque_ps, args.invisible_patient, args.invisible_representants)

    def progress(step: str, done: int, total: int) -> None:
        if not args.json:
            print(f"{step}… ({done}/{total})", file=sys.stderr)

    with _agent(args, prepared) as agent:
        if args.remplace:
            docs = [_replacement_document(agent, args, prepared, args.files[0], contents[0])]
            result = agent.deposit(
                patient, docs[0], visibility=vis, replaces=args.remplace, progress=progress
            )
        elif len(contents) == 1:
            docs = contents
            result = agent.deposit(patient, docs[0], visibility=vis, progress=progress)
        else:
            docs = contents
            result = agent.deposit_batch(patient, docs, visibility=vis, progress=progress)
    rows = deposit_rows(zip(result.document_uids, docs, strict=False), args.remplace)
    lines = deposit_report_lines(rows)
    print_out(
        args.json,
        {
            "submission_set": result.submission_set_uid,
            "documents": list(result.document_uids),
            "details": rows,
        },
        "\n".join(lines),
    )
    return 0


def _search(args: argparse.Namespace) -> int:
    if (running := via_agent.running(args)) is not None:  # through the running agent: no PIN
        return via_agent.search(running, args)
    rubric = rubric_or_usage(args.rubrique) if args.rubrique else None  # before the PIN
    prepared = _prepare(args)
    with _agent(args, prepared) as agent:
        docs = agent.list_documents(_patient_of(prepared), rubric=rubric, include_archived=args.archives)
    return search_report(args, [_entry_json(e) for e in docs], list(docs.hidden_explanations), rubric)


def search_report(
    args: argparse.Namespace, rows: list[dict[str, Any]], hidden: list[str], rubric: str | None
) -> int:
    """The French listing of ``dmp search`` (standalone or through a running agent): one line per
    document (date, title, rubric, type, masked, uniqueId), then what the habilitation matrix hides."""
    lines = [
        f"{r['creation_time'][:10]}  {r['title'] or r['type']}  [{r['rubric'] or '-'}]  "
        f"{labelled(r['type_code'], r['type'])}"
        f"{'  (masqué)' if r['masked_to_professionals'] else ''}  {r['unique_id']}"
        for r in rows
    ] or ["Aucun document" + (f" dans la rubrique « {rubric} »." if rubric else ".")]
    lines += [f"Remarque : {s}" for s in hidden]
    print_out(args.json, {"documents": rows, "hidden": hidden}, "\n".join(lines))
    return 0


def _get(args: argparse.Namespace) -> int:
    args.unique_id = checked_unique_id(args.unique_id)
    if (running := via_agent.running(args)) is not None:  # through the running agent: no PIN
        return via_agent.get(running, args)
    prepared = _prepare(args)
    with _agent(args, prepared) as agent:
        doc = agent.retrieve(_patient_of(prepared), args.unique_id)
    data = doc.content
    if args.pdf:
        import cda

        parsed = cda.parse(data)
        try:
            content, media_type = _level1_content(parsed)
        except UsageError as exc:
            raise UsageError(
                f"{exc.message_fr} Il ne contient pas de PDF : enregistrez le XML (sans --pdf).",
                code="NOT_PDF",
            ) from exc
        if media_type != "application/pdf":
            raise UsageError(
                f"Ce document encapsule un fichier {media_type or 'de type inconnu'}, pas un PDF : "
                "enregistrez le XML (sans --pdf).",
                code="NOT_PDF",
            )
        data = content
    output: Path | None = args.output
    if output is None and args.pdf and sys.stdout.isatty():
        output = Path(f"{args.unique_id}.pdf")  # never binary on a terminal
    if output is not None and str(output) != "-":
        write_private(output, data)
        print(f"Document enregistré dans {output} ({len(data)} octets).", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def document_action_report(args: argparse.Namespace, action: str) -> int:
    """Print what was done to the document (French line, or JSON with ``--json``); exit code 0. The
    lines are the API's messages (``ps_agent.api.models.DOCUMENT_ACTIONS_FR``)."""
    from ps_agent.api.models import DOCUMENT_ACTIONS_FR as DOCUMENT_ACTION_LINES

    print_out(
        args.json,
        {"unique_id": args.unique_id, "action": action, "message": DOCUMENT_ACTION_LINES[action]},
        f"{DOCUMENT_ACTION_LINES[action]} ({args.unique_id})",
    )
    return 0


def checked_unique_id(value: str) -> str:
    """The document identifier typed, or ``UsageError`` (exit 2, before the PIN or the agent): a uniqueId
    is an OID, optionally ``^extension`` (``ps_agent.api.settings.UNIQUE_ID_PATTERN``)."""
    import re

    from ps_agent.api.settings import UNIQUE_ID_MAX, UNIQUE_ID_PATTERN

    uid = value.strip()
    if len(uid) > UNIQUE_ID_MAX or not re.fullmatch(UNIQUE_ID_PATTERN, uid):
        raise UsageError(
            f"Identifiant de document invalide « {value[:80]} » : un uniqueId est un OID (par exemple "
            "2.25.1234…), éventuellement suivi de ^extension ; « ps-agent dmp search » les affiche.",
            code="INVALID_UNIQUE_ID",
        )
    return uid


def _document_action(
    args: argparse.Namespace, action: str, run: Callable[[Agent, PatientRef, str], None]
) -> int:
    args.unique_id = checked_unique_id(args.unique_id)
    if (running := via_agent.running(args)) is not None:  # through the running agent: no PIN
        via_agent.document_action(running, args, action)
        return document_action_report(args, action)
    prepared = _prepare(args)
    with _agent(args, prepared) as agent:
        run(agent, _patient_of(prepared), args.unique_id)
    return document_action_report(args, action)


def _mask(args: argparse.Namespace) -> int:
    if args.unmask:
        return _document_action(args, "unmask", lambda a, p, u: a.unmask(p, u))
    return _document_action(args, "mask", lambda a, p, u: a.mask(p, u))


def _make_visible(args: argparse.Namespace) -> int:
    reps = bool(args.representants)
    return _document_action(
        args,
        "make_visible_reps" if reps else "make_visible",
        lambda a, p, u: a.make_visible(p, u, to_legal_representatives=reps),
    )


def _archive(args: argparse.Namespace) -> int:
    if args.unarchive:
        return _document_action(args, "unarchive", lambda a, p, u: a.unarchive(p, u))
    return _document_action(args, "archive", lambda a, p, u: a.archive(p, u))


def confirm_delete(args: argparse.Namespace, ins: str) -> bool:
    """``--oui``, or the person confirms at the terminal (end of input is "non"); says so when not."""
    if args.oui or ask_yes_no(
        f"Supprimer définitivement le document {args.unique_id} du DMP du patient {ins} ?"
    ):
        return True
    print("Suppression abandonnée : rien n'a été envoyé.", file=sys.stderr)
    return False


def _delete(args: argparse.Namespace) -> int:
    args.unique_id = checked_unique_id(args.unique_id)
    if (running := via_agent.running(args)) is not None:  # through the running agent: no PIN
        if not via_agent.delete(running, args, confirm_delete):
            return 1
        return document_action_report(args, "delete")
    prepared = _prepare(args)
    patient = _patient_of(prepared)
    if not confirm_delete(args, patient.ins):
        return 1
    with _agent(args, prepared) as agent:
        agent.delete(patient, args.unique_id)
    return document_action_report(args, "delete")


def _vaccinations(args: argparse.Namespace) -> int:
    if (running := via_agent.running(args)) is not None:  # through the running agent: no PIN
        return via_agent.vaccinations(running, args)
    from ps_agent.cli.common import vaccination_line

    prepared = _prepare(args)
    with _agent(args, prepared) as agent:
        items: list[Immunization] = agent.vaccination_status(_patient_of(prepared))
        rows = [i.as_dict() for i in items]
        lines = [vaccination_line(i) for i in items] or ["Aucune vaccination enregistrée."]
        print_out(args.json, {"vaccinations": rows}, "\n".join(lines))
    return 0


def deposit_rows(pairs: Iterable[tuple[str, bytes]], replaces: str | None) -> list[dict[str, str]]:
    """One row per deposited document (uniqueId, type, both rubrics, what it replaced), for the deposit
    report printed by the standalone path and through a running agent alike."""
    import cda
    from cda.classify import classify_type

    rows = []
    for uid, data in pairs:
        parsed = cda.parse(data)
        c = classify_type(parsed.type_code)
        rows.append(
            {
                "unique_id": uid,
                "type_code": c.type_code,
                "type": c.type_label,
                "rubric": c.dmp_rubric,
                "mes_rubric": c.mes_rubric,
                "mes_rubric_label": c.mes_rubric_label,
                "replaces": replaces or _unique_id(parsed.replaced_document_id),
            }
        )
    return rows


def deposit_report_lines(rows: list[dict[str, str]]) -> list[str]:
    """The French deposit report: each document's uniqueId, type, DMP rubric, Mon espace santé category
    and what it replaced."""
    lines = [f"{len(rows)} document(s) déposé(s) dans le DMP."]
    for r in rows:
        lines.append(f"- {r['unique_id']} : {labelled(r['type_code'], r['type'])}")
        lines.append(
            f"  rubrique DMP : {r['rubric'] or '(aucune)'} ; Mon espace santé : "
            f"{labelled(r['mes_rubric'], r['mes_rubric_label']) or '(non affiché au patient)'}"
        )
        if r["replaces"]:
            lines.append(f"  remplace le document {r['replaces']} (nouvelle version)")
    return lines
