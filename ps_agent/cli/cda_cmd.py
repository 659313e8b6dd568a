"""``ps-agent cda ...``: build, validate, classify CI-SIS CDA documents and read vaccinations.

Commands::

    ps-agent cda build --type 78601-2 --content cr.pdf --patient patient.json --author author.json \
                       --title "CR d'entretien" -o cr.xml [--replaces-file old.xml | --replaces ID --set-id ID
                       --previous-version N] [--max-size-mb 20]
    ps-agent cda vaccination vaccination.json [--patient patient.json --author author.json] -o note.xml
    ps-agent cda validate FILE [--official DIR] [--json] [--strict]   # 0 valid, 1 findings, 2 unreadable
    ps-agent cda classify FILE|--type CODE [--json]
    ps-agent cda vaccinations FILE [FILE...] [--json]

Every refusal is a ``CdaError`` with a French message; unreadable input exits with code 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cda import build, classify, vaccinations, validate
from cda.build import DEFAULT_MAX_CONTENT_BYTES, AuthorInput, PatientInput, Replacement, VaccinationInput
from cda.errors import CdaError, InputFileError, InvalidInput, UnreadableInput
from cda.model import InstanceId
from cda.parser import parse
from ps_agent.cli.common import (
    card_preflight,
    confirm_final_try,
    labelled,
    read_pin,
    shows_help,
    type_code_or_usage,
    vaccination_line,
)
from ps_agent.errors import PsAgentError

# Upper bound of an XML file read by validate/classify/vaccinations: the content limit plus base64 overhead.
MAX_XML_BYTES = DEFAULT_MAX_CONTENT_BYTES * 2


def _read(path: str, *, what: str, limit: int) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limit:
            raise InputFileError(
                f"Le fichier {what} « {path} » est trop volumineux ({build.size_mb(size)}, "
                f"limite {build.size_mb(limit)}).",
                field=what,
            )
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"Le fichier {what} « {path} » est introuvable.", field=what) from None
    except IsADirectoryError:
        raise InputFileError(f"« {path} » est un dossier, pas un fichier ({what}).", field=what) from None
    except PermissionError:
        raise InputFileError(
            f"Le fichier {what} « {path} » n'est pas lisible (droits).", field=what
        ) from None
    except OSError as exc:
        raise InputFileError(
            f"Le fichier {what} « {path} » est illisible : {exc.strerror}.", field=what
        ) from None
    if not data:
        raise InputFileError(f"Le fichier {what} « {path} » est vide.", field=what)
    return data


def _read_json(path: str, *, what: str) -> dict[str, Any]:
    data = _read(path, what=what, limit=1024 * 1024)
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableInput(
            f"Le fichier {what} « {path} » n'est pas un JSON valide : {exc}.", field=what
        ) from None
    if not isinstance(value, dict):
        raise UnreadableInput(f"Le fichier {what} « {path} » doit contenir un objet JSON.", field=what)
    return value


def _ii(value: str, field: str) -> InstanceId:
    root, _, ext = value.partition("^")
    if not root:
        raise InvalidInput(
            f"Identifiant « {value} » invalide (forme attendue : racine[^extension]).", field=field
        )
    return InstanceId(root, ext)


def _write(out: str | None, data: bytes) -> None:
    if out is None or out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(out).write_bytes(data)
    except OSError as exc:
        raise InputFileError(f"Impossible d'écrire « {out} » : {exc.strerror}.", field="output") from None


def _report(data: bytes, out: str | None) -> int:
    findings = validate.validate_builtin(data)
    for f in findings:
        print(str(f), file=sys.stderr)
    if out not in (None, "-"):
        print(f"Document écrit : {out} ({len(data)} octets).", file=sys.stderr)
    return 1 if validate.errors(findings) else 0


def _replacement(args: argparse.Namespace) -> Replacement | None:
    if args.replaces_file:
        return Replacement.of(parse(_read(args.replaces_file, what="remplacé", limit=MAX_XML_BYTES)))
    if args.replaces:
        if not args.set_id:
            raise InvalidInput("--set-id est obligatoire avec --remplace.", field="set_id")
        return Replacement(_ii(args.replaces, "replaces"), _ii(args.set_id, "set_id"), args.previous_version)
    return None


# The file name's extension says what the user means to send: a ".pdf" that is not a PDF is refused
# as such (not silently wrapped as text). Other extensions: detected from the content.
MEDIA_TYPE_BY_EXTENSION = {".pdf": "application/pdf", ".txt": "text/plain"}


def media_type_of(path: str) -> str | None:
    return MEDIA_TYPE_BY_EXTENSION.get(Path(path).suffix.lower())


def cmd_build(args: argparse.Namespace) -> int:
    limit = int(args.max_size_mb * 1024 * 1024)
    type_code = type_code_or_usage(args.type)
    content = _read(args.content, what="contenu", limit=limit)
    patient = PatientInput.from_dict(_read_json(args.patient, what="patient"))
    replaces = _replacement(args)
    if args.author:
        author = AuthorInput.from_dict(_read_json(args.author, what="auteur"))
    else:  # checked inputs first: the PIN is asked last
        patient.checked()
        author = _author_from_card(args)
    data = build.level1(
        type_code=type_code,
        content=content,
        title=args.title,
        patient=patient,
        author=author,
        media_type=args.media_type or media_type_of(args.content),
        replaces=replaces,
        max_content_bytes=limit,
        environment=args.environment,
    )
    _write(args.output, data)
    return _report(data, args.output)


def cmd_vaccination(args: argparse.Namespace) -> int:
    doc = _read_json(args.input, what="vaccination")
    if "vaccination" in doc:
        vac_data = doc["vaccination"]
        patient_data = doc.get("patient")
        author_data = doc.get("author")
        title = doc.get("title", "Note de vaccination")
    else:
        vac_data, patient_data, author_data, title = doc, None, None, "Note de vaccination"
    if args.patient:
        patient_data = _read_json(args.patient, what="patient")
    if args.author:
        author_data = _read_json(args.author, what="auteur")
    if patient_data is None:
        raise InvalidInput("Le patient est absent (clé « patient » ou option --patient).", field="patient")
    if author_data is None:
        raise InvalidInput("L'auteur est absent (clé « author » ou option --author).", field="author")
    data = build.vaccination_note(
        patient=PatientInput.from_dict(patient_data),
        author=AuthorInput.from_dict(author_data),
        vaccination=VaccinationInput.from_dict(vac_data),
        title=title,
        replaces=_replacement(args),
        environment=args.environment,
    )
    _write(args.output, data)
    return _report(data, args.output)


def cmd_validate(args: argparse.Namespace) -> int:
    data = _read(args.file, what="CDA", limit=MAX_XML_BYTES)
    findings = validate.validate(data, official=args.official)
    blocking = validate.errors(findings) if not args.strict else findings
    if args.json:
        print(
            json.dumps(
                {"valid": not blocking, "findings": [f.as_dict() for f in findings]},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for f in findings:
            print(str(f))
        if not findings:
            print("Document valide.")
        elif not blocking:
            print("Document valide (avertissements seulement).")
        else:
            print(f"Document non conforme : {len(blocking)} anomalie(s) bloquante(s).")
    return 1 if blocking else 0


def cmd_classify(args: argparse.Namespace) -> int:
    if args.type:
        result = classify.classify_type(type_code_or_usage(args.type))
    elif args.file:
        result = classify.classify_document(parse(_read(args.file, what="CDA", limit=MAX_XML_BYTES)))
    else:
        raise InvalidInput("Indiquez un fichier CDA ou --type CODE.", field="file")
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"Type : {labelled(result.type_code, result.type_label)}")
        print(f"Classe : {labelled(result.class_code, result.class_label)}")
        print(
            f"Rubrique DMP : {result.dmp_rubric}"
            + (" (déduite, non confirmée)" if result.rubric_inferred else "")
        )
        print(f"Mon espace santé : {labelled(result.mes_rubric, result.mes_rubric_label) or '(non affiché)'}")
        if result.in_vaccination_book:
            print("Alimente aussi le carnet de vaccination.")
        if result.format_code:
            print(f"formatCode : {result.format_code}")
        if not result.dmp_accepted:
            print("Attention : ce type de document n'est pas accepté par le DMP.")
    return 0


def cmd_vaccinations(args: argparse.Namespace) -> int:
    groups = [vaccinations.extract(parse(_read(f, what="CDA", limit=MAX_XML_BYTES))) for f in args.files]
    records = vaccinations.merge(*groups)
    if args.json:
        print(json.dumps([r.as_dict() for r in records], ensure_ascii=False, indent=2))
        return 0
    if not records:
        print("Aucune vaccination trouvée.")
    for r in records:
        print(vaccination_line(r))
    return 0


def cmd_types(args: argparse.Namespace) -> int:
    """Document types by code or label (accent- and case-insensitive): code, label, rubric."""
    rows = classify.types_matching(args.text or "", dmp_only=not args.tous)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "code": r.code,
                        "label": r.label,
                        "dmp_rubric": r.dmp_rubric,
                        "dmp_accepted": r.dmp_accepted,
                        "mes_rubric": r.mes_rubric,
                    }
                    for r in rows
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0 if rows else 1
    if not rows:
        print(f"Aucun type de document ne correspond à « {args.text} ».")
        return 1
    for r in rows:
        accepted = "" if r.dmp_accepted else "  (non accepté par le DMP)"
        print(f"{labelled(r.code, r.label)}  [{r.dmp_rubric or '-'}]{accepted}")
    return 0


def _author_from_card(args: argparse.Namespace) -> AuthorInput:
    """The author of the document when ``--author`` is not given: the card holder (PIN asked)."""
    from ps_agent.agent import author_input_of
    from ps_agent.auth.session import AuthSession, check_situation, situation_index

    index = situation_index(args.situation)
    holder, status, reader = card_preflight(args.reader)
    check_situation(index, holder.situation_count)
    confirmed = confirm_final_try(status.tries_left)
    print("Auteur du document : le porteur de la carte CPS.", file=sys.stderr)
    with AuthSession.open(reader, read_pin(), situation_index=index, confirm_final_try=confirmed) as session:
        author: AuthorInput = author_input_of(session.identity)
    return author


def _replacement_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--environnement",
        "--environment",
        dest="environment",
        choices=("production", "test", "demo"),
        help="vérifie que l'OID de l'INS convient (production : NIR/NIA ; test : .10 ; démo : .11)",
    )
    p.add_argument(
        "--remplace-fichier",
        "--replaces-file",
        dest="replaces_file",
        metavar="ANCIEN.xml",
        help="document remplacé (reprend setId et version)",
    )
    p.add_argument(
        "--remplace",
        "--replaces",
        dest="replaces",
        metavar="RACINE^EXT",
        help="identifiant du document remplacé",
    )
    p.add_argument("--set-id", metavar="RACINE^EXT", help="setId du document remplacé (avec --remplace)")
    p.add_argument(
        "--version-precedente",
        "--previous-version",
        dest="previous_version",
        type=int,
        default=1,
        help="version du document remplacé (défaut 1)",
    )


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
            raise CdaError(f"Erreur interne ({type(exc).__name__}) : l'opération n'a pas abouti.") from exc

    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("cda", help="documents CDA : construire, valider, classer, vaccinations")
    sub = parser.add_subparsers(dest="cda_command", metavar="ACTION")
    parser.set_defaults(func=shows_help(parser))

    p = sub.add_parser(
        "build", aliases=["construire"], help="construire un document CDA de niveau 1 (PDF ou texte)"
    )
    p.add_argument(
        "--type",
        required=True,
        help="type de document : code (ex. 11488-4) ou libellé (ex. « lettre d'adressage ») ; "
        "liste : ps-agent cda types",
    )
    p.add_argument(
        "--contenu",
        "--content",
        dest="content",
        required=True,
        metavar="FICHIER",
        help="PDF ou texte du document",
    )
    p.add_argument("--patient", required=True, metavar="patient.json")
    p.add_argument(
        "--auteur",
        "--author",
        dest="author",
        metavar="auteur.json",
        help="auteur (défaut : le porteur de la carte CPS, code porteur demandé)",
    )
    p.add_argument(
        "--titre", "--title", dest="title", metavar="TITRE", required=True, help="titre du document"
    )
    p.add_argument(
        "--type-media",
        "--media-type",
        dest="media_type",
        choices=("application/pdf", "text/plain"),
        help="détecté si absent",
    )
    p.add_argument(
        "--taille-max-mo",
        "--max-size-mb",
        dest="max_size_mb",
        type=float,
        default=DEFAULT_MAX_CONTENT_BYTES / 1048576,
        help="taille maximale du contenu (Mo)",
    )
    p.add_argument(
        "-o",
        "--sortie",
        "--output",
        dest="output",
        metavar="FICHIER",
        help="fichier XML produit (défaut : sortie standard)",
    )
    p.add_argument(
        "--lecteur",
        "--reader",
        dest="reader",
        metavar="LECTEUR",
        help="lecteur de la carte (auteur lu sur la carte)",
    )
    p.add_argument("--situation", type=int, default=1, help="situation d'exercice de la carte, à partir de 1")
    _replacement_options(p)
    p.set_defaults(func=_no_traceback(cmd_build))

    p = sub.add_parser("vaccination", help="construire une note de vaccination (VAC-NOTE)")
    p.add_argument("input", metavar="vaccination.json")
    p.add_argument("--patient", metavar="patient.json")
    p.add_argument("--auteur", "--author", dest="author", metavar="auteur.json")
    p.add_argument(
        "-o",
        "--sortie",
        "--output",
        dest="output",
        metavar="FICHIER",
        help="fichier XML produit (défaut : sortie standard)",
    )
    _replacement_options(p)
    p.set_defaults(func=_no_traceback(cmd_vaccination))

    p = sub.add_parser(
        "validate", aliases=["valider"], help="valider un document (règles intégrées + artefacts officiels)"
    )
    p.add_argument("file", metavar="FICHIER")
    p.add_argument(
        "--officiel",
        "--official",
        dest="official",
        metavar="DOSSIER",
        help="dossier des artefacts ANS (XSD, schématrons)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help="les avertissements rendent le document invalide")
    p.set_defaults(func=_no_traceback(cmd_validate))

    p = sub.add_parser(
        "classify", aliases=["classer"], help="classe, rubrique DMP et Mon espace santé d'un document"
    )
    p.add_argument("file", nargs="?", metavar="FICHIER")
    p.add_argument("--type", help="classer un type (code ou libellé) au lieu d'un fichier")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_no_traceback(cmd_classify))

    p = sub.add_parser("vaccinations", help="lister les vaccinations d'un ou plusieurs documents")
    p.add_argument("files", nargs="+", metavar="FICHIER")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_no_traceback(cmd_vaccinations))

    p = sub.add_parser(
        "types", help="chercher un type de document par code ou libellé (code, libellé, rubrique)"
    )
    p.add_argument(
        "text",
        nargs="?",
        default="",
        metavar="TEXTE",
        help="partie du libellé, sans tenir compte des accents ni des majuscules (ex. « vaccin »)",
    )
    p.add_argument(
        "--tous", "--all", dest="tous", action="store_true", help="inclure les types non acceptés par le DMP"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_no_traceback(cmd_types))
