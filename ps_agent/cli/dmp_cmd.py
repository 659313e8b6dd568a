"""``ps-agent dmp ...``: the DMP operations of the agent from the command line.

The session comes from the CPS card in the reader (PIN asked with ``getpass``, never an argument;
``PS_AGENT_TEST_PIN`` is read only for automated tests), or, with ``--etablissement``, from the
establishment's PKCS#12 files (INDIRECTE / AIR mode: ``--utilisateur`` names the local user, e.g. a
secretary, ``--auteur`` the professional the documents are deposited for; the passphrase is asked with
``getpass``, ``PS_AGENT_P12_PASSPHRASE`` is read for automated tests). Output is French text, or JSON
with ``--json``. Exit codes: 0 done, 1 refused (policy, DMP) or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cda.errors import CdaError
from ps_agent.errors import ConfigurationError, PsAgentError

PIN_ENV = "PS_AGENT_TEST_PIN"  # tests only
P12_PASSPHRASE_ENV = "PS_AGENT_P12_PASSPHRASE"  # noqa: S105 - a variable name; unattended use (service account) and tests


def _add_common(p: argparse.ArgumentParser, *, patient: bool = True) -> None:
    g = p.add_argument_group("connexion")
    g.add_argument(
        "--env",
        default=os.environ.get("PS_AGENT_ENV", "sandbox"),
        help="environnement DMP : sandbox, formation1..5, production, ou une adresse https://",
    )
    g.add_argument(
        "--ca", default=os.environ.get("PS_AGENT_CA"), help="fichier PEM des autorités du serveur DMP"
    )
    g.add_argument("--home", default=None, help="dossier de données de l'agent (défaut : $PS_AGENT_HOME)")
    g.add_argument(
        "--reader", default=None, help="nom du lecteur de carte (défaut : le premier avec une carte)"
    )
    g.add_argument(
        "--situation", type=int, default=1, help="situation d'exercice, numérotée à partir de 1 (défaut : 1)"
    )
    g.add_argument("--json", action="store_true", help="sortie JSON")
    e = p.add_argument_group("établissement (sans carte : mode INDIRECTE ou AIR)")
    e.add_argument(
        "--etablissement",
        metavar="AUTH_P12",
        type=Path,
        help="PKCS#12 du certificat d'authentification (ORG AUTH_CLI) de l'établissement",
    )
    e.add_argument(
        "--signature-etablissement",
        metavar="SIGN_P12",
        type=Path,
        help="PKCS#12 du certificat de signature (ORG SIGN) ; défaut : celui d'authentification",
    )
    e.add_argument(
        "--utilisateur",
        metavar="JSON",
        help="utilisateur local (fichier JSON ou texte JSON) : id_nat, family_name, given_name, "
        "profession_code, specialty_code, non_ps_role, "
        "activity{structure_id, structure_name, sector, role}",
    )
    e.add_argument(
        "--auteur",
        metavar="JSON",
        help="professionnel pour le compte duquel les documents sont déposés (même format)",
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
            type=int,
            help="identité locale qualifiée (ps-agent patient …) au lieu de --ins --oid",
        )
        pg.add_argument(
            "--oid", default="1.2.250.1.213.1.4.8", help="OID de l'INS (défaut : NIR de production)"
        )
        pg.add_argument("--ins-status", default="QUAL", choices=["PROV", "RECUP", "VALI", "QUAL"],
                        help="statut de l'identité (RNIV), QUAL par défaut")  # fmt: skip
        pg.add_argument(
            "--bris-de-glace", metavar="MOTIF", help="accès en urgence (bris de glace) avec ce motif"
        )
        pg.add_argument("--centre-15", metavar="MOTIF", help="accès en régulation (centre 15) avec ce motif")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dmp = subparsers.add_parser("dmp", help="opérations sur le DMP (carte CPS dans le lecteur)")
    sub = dmp.add_subparsers(dest="dmp_command", metavar="OPÉRATION")
    dmp.set_defaults(func=lambda args: (dmp.print_help(), 2)[1])

    p = sub.add_parser("status", help="existence du DMP, autorisation, médecin traitant (TD0.2)")
    _add_common(p)
    p.set_defaults(func=_status)

    p = sub.add_parser("consent", help="enregistrer l'accord du patient (TD0.3)")
    _add_common(p)
    p.add_argument("--medecin-traitant", action="store_true", help="se déclarer médecin traitant DMP")
    p.add_argument("--oui", action="store_true", help="confirme que le patient a donné son accord")
    p.set_defaults(func=_consent)

    p = sub.add_parser("deposit", help="déposer un ou plusieurs documents CDA (TD2.1)")
    _add_common(p)
    p.add_argument("files", nargs="+", type=Path, help="documents CDA (XML)")
    p.add_argument("--masque-ps", action="store_true", help="masqué aux professionnels de santé")
    p.add_argument("--invisible-patient", action="store_true", help="non visible par le patient")
    p.add_argument(
        "--invisible-representants", action="store_true", help="non visible des représentants légaux"
    )
    p.add_argument("--remplace", metavar="UNIQUE_ID", help="identifiant du document remplacé")
    p.set_defaults(func=_deposit)

    p = sub.add_parser("search", help="lister les documents du DMP (TD3.1)")
    _add_common(p)
    p.add_argument("--rubrique", help="rubrique DMP, par ex. « Comptes rendus »")
    p.add_argument("--archives", action="store_true", help="inclure les documents archivés")
    p.set_defaults(func=_search)

    p = sub.add_parser("get", help="télécharger un document (TD3.2)")
    _add_common(p)
    p.add_argument("unique_id")
    p.add_argument("-o", "--output", type=Path, help="fichier de sortie (défaut : sortie standard)")
    p.set_defaults(func=_get)

    p = sub.add_parser("mask", help="masquer un document aux professionnels (TD3.3a)")
    _add_common(p)
    p.add_argument("unique_id")
    p.add_argument("--unmask", action="store_true", help="démasquer")
    p.set_defaults(func=_mask)

    p = sub.add_parser("archive", help="archiver un document (TD3.3d)")
    _add_common(p)
    p.add_argument("unique_id")
    p.add_argument("--unarchive", action="store_true", help="désarchiver")
    p.set_defaults(func=_archive)

    p = sub.add_parser("delete", help="supprimer un document dont vous êtes l'auteur (TD3.3c)")
    _add_common(p)
    p.add_argument("unique_id")
    p.set_defaults(func=_delete)

    p = sub.add_parser("vaccinations", help="statut vaccinal du patient (VAC-NOTE, VAC, VSM, IPS)")
    _add_common(p)
    p.set_defaults(func=_vaccinations)


# ---------------------------------------------------------------------------------- session


def _pin() -> str:
    pin = os.environ.get(PIN_ENV)
    if pin:
        return pin
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "Le code PIN doit être saisi au clavier (aucun terminal disponible).", code="NO_TTY"
        )
    return getpass.getpass("Code PIN de la carte : ")


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
    return getpass.getpass("Phrase de passe des certificats de l'établissement : ")


_IDENTITY_FIELDS = ("id_nat", "family_name", "given_name", "profession_code", "profession_label",
                    "specialty_code", "non_ps_role")  # fmt: skip


def identity_from_json(value: str, *, option: str) -> Any:
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


def _session(args: argparse.Namespace, ca_file: str) -> Any:
    """The card session, or the establishment session when ``--etablissement`` is given."""
    if args.etablissement is None:
        if args.utilisateur or args.auteur or args.signature_etablissement:
            raise ConfigurationError(
                "--utilisateur, --auteur et --signature-etablissement vont avec --etablissement.",
                code="USAGE",
            )
        from ps_agent.auth.session import AuthSession, situation_index

        index = situation_index(args.situation)  # refused before the PIN is asked
        return AuthSession.open(args.reader, _pin(), situation_index=index, ca_file=ca_file)
    if not args.utilisateur:
        raise ConfigurationError(
            "En mode établissement, indiquez l'utilisateur local avec --utilisateur.", code="NO_USER"
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
def _agent(args: argparse.Namespace) -> Iterator[Any]:
    from ps_agent.agent import Agent
    from ps_agent.config import AgentConfig, data_dir, environment

    env = environment(args.env, ca_file=args.ca)
    if not env.ca_file:
        raise ConfigurationError(
            "Indiquez le fichier des autorités de certification du serveur DMP (--ca ou PS_AGENT_CA).",
            code="NO_CA",
        )
    home = Path(args.home) if args.home else data_dir()
    config = AgentConfig(env, home)
    if hasattr(args, "identite"):
        _patient(args)  # a missing patient or a non-qualified local identity: refused before the PIN
    session = _session(args, env.ca_file)
    try:
        with Agent(session, config) as agent:
            yield agent
    except (PsAgentError, CdaError):
        raise
    except Exception as exc:  # never a traceback for the user; the audit journal has the attempt
        raise PsAgentError(
            f"Erreur interne de l'agent ({type(exc).__name__}). L'opération n'a pas abouti.", code="INTERNAL"
        ) from exc
    finally:
        session.close()


def _patient(args: argparse.Namespace) -> Any:
    from ps_agent.access.policy import PatientRef

    if args.identite is not None:
        if args.ins:
            raise ConfigurationError(
                "--identite remplace --ins et --oid : n'indiquez que l'un des deux.", code="USAGE"
            )
        from ps_agent.identity.records import IdentityRecords

        with IdentityRecords.open(Path(args.home) if args.home else _data_dir()) as records:
            return records.qualified_ref(args.identite)  # ID-05: refuses a non-qualified identity
    if not args.ins:
        raise ConfigurationError("Indiquez le patient : --identite ID ou --ins (et --oid).", code="USAGE")
    return PatientRef(args.ins.strip(), args.oid.strip(), args.ins_status)


def _data_dir() -> Path:
    from ps_agent.config import data_dir

    return data_dir()


def _emergency(agent: Any, args: argparse.Namespace, patient: Any) -> None:
    from ps_agent.access.policy import AccessMode

    for mode, reason in (
        (AccessMode.BRIS_DE_GLACE, args.bris_de_glace),
        (AccessMode.CENTRE_15, args.centre_15),
    ):
        if reason is not None:
            access = agent.emergency_access(patient, mode, reason)
            if access.notice_fr:
                print(access.notice_fr, file=sys.stderr)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print(text)


def _entry_json(e: Any) -> dict[str, Any]:
    from ps_agent.agent import rubric_of

    return {
        "unique_id": e.unique_id,
        "entry_uuid": e.entry_uuid,
        "title": e.title,
        "type_code": e.type_code.code,
        "type": e.type_code.display,
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


def _status(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        patient = _patient(args)
        _emergency(agent, args, patient)
        st = agent.dmp_status(patient)
        _out(
            args,
            {
                "exists": st.exists,
                "active": st.active,
                "authorisation": st.authorisation,
                "medecin_traitant": st.is_medecin_traitant,
                "family_name": st.family_name,
                "given_name": st.given_name,
            },
            st.summary_fr,
        )
    return 0


def _consent(args: argparse.Namespace) -> int:
    if not args.oui:
        raise ConfigurationError(
            "Confirmez que le patient a donné son accord pour l'accès à son DMP (option --oui).",
            code="NO_CONSENT",
        )
    with _agent(args) as agent:
        st = agent.record_consent(_patient(args), how="oral", medecin_traitant=args.medecin_traitant)
        _out(args, {"authorisation": st.authorisation}, "Accord du patient enregistré. " + st.summary_fr)
    return 0


def _deposit(args: argparse.Namespace) -> int:
    from ps_agent.dmp.model import Visibility

    docs = []
    for f in args.files:
        try:
            docs.append(f.read_bytes())
        except OSError as exc:
            raise ConfigurationError(
                f"Impossible de lire le fichier {f} : {exc.strerror}", code="READ"
            ) from exc
    vis = Visibility(args.masque_ps, args.invisible_patient, args.invisible_representants)

    def progress(step: str, done: int, total: int) -> None:
        if not args.json:
            print(f"{step}… ({done}/{total})", file=sys.stderr)

    with _agent(args) as agent:
        patient = _patient(args)
        if len(docs) == 1:
            result = agent.deposit(
                patient, docs[0], visibility=vis, replaces=args.remplace, progress=progress
            )
        else:
            if args.remplace:
                raise ConfigurationError("--remplace ne s'utilise qu'avec un seul document.", code="USAGE")
            result = agent.deposit_batch(patient, docs, visibility=vis, progress=progress)
        _out(
            args,
            {"submission_set": result.submission_set_uid, "documents": list(result.document_uids)},
            f"{len(result.document_uids)} document(s) déposé(s) dans le DMP.",
        )
    return 0


def _search(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        patient = _patient(args)
        _emergency(agent, args, patient)
        docs = agent.list_documents(patient, rubric=args.rubrique, include_archived=args.archives)
        rows = [_entry_json(e) for e in docs]
        lines = [
            f"{r['creation_time'][:10]}  {r['title'] or r['type']}  [{r['rubric'] or r['type_code']}]"
            f"{'  (masqué)' if r['masked_to_professionals'] else ''}  {r['unique_id']}"
            for r in rows
        ] or ["Aucun document."]
        lines += [f"Remarque : {s}" for s in docs.hidden_explanations]
        _out(args, {"documents": rows, "hidden": list(docs.hidden_explanations)}, "\n".join(lines))
    return 0


def _get(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        patient = _patient(args)
        _emergency(agent, args, patient)
        doc = agent.retrieve(patient, args.unique_id)
        if args.output:
            args.output.write_bytes(doc.content)
            print(f"Document enregistré dans {args.output}", file=sys.stderr)
        else:
            sys.stdout.buffer.write(doc.content)
    return 0


def _mask(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        if args.unmask:
            agent.unmask(_patient(args), args.unique_id)
            print("Document démasqué.")
        else:
            agent.mask(_patient(args), args.unique_id)
            print("Document masqué aux professionnels de santé.")
    return 0


def _archive(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        if args.unarchive:
            agent.unarchive(_patient(args), args.unique_id)
            print("Document désarchivé.")
        else:
            agent.archive(_patient(args), args.unique_id)
            print("Document archivé.")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        agent.delete(_patient(args), args.unique_id)
        print("Document supprimé.")
    return 0


def _vaccinations(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        patient = _patient(args)
        _emergency(agent, args, patient)
        items = agent.vaccination_status(patient)
        rows = [_imm_json(i) for i in items]
        lines = [f"{r.get('date', '')}  {r.get('vaccine', '')}" for r in rows] or [
            "Aucune vaccination enregistrée."
        ]
        _out(args, {"vaccinations": rows}, "\n".join(lines))
    return 0


def _imm_json(imm: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(imm):
        d = dataclasses.asdict(imm)  # type: ignore[arg-type]
    else:
        d = dict(vars(imm))
    vaccine = d.get("vaccine_label") or d.get("label") or d.get("display") or ""
    if not vaccine:
        code = d.get("vaccine_code") or d.get("code")
        vaccine = code.get("display_name", "") if isinstance(code, dict) else str(code or "")
    d.setdefault("vaccine", vaccine)
    d.setdefault("date", str(d.get("date") or d.get("effective_time") or ""))
    return d
