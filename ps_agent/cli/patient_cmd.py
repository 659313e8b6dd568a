"""``ps-agent patient ...``: patient identities (INSi by carte Vitale or by traits, validation, display).

INSi authentication, as for ``ps-agent dmp``: the CPS card in the reader (mode B, PIN asked with
``getpass``; ``PS_AGENT_TEST_PIN`` for automated tests only), or ``--etablissement INSI-MANU.p12`` (mode A,
the establishment's INSi certificate; passphrase asked, ``PS_AGENT_P12_PASSPHRASE`` for automated use).
The environment is ``--env`` (``sandbox`` by default, ``qualification``, ``production``, a full name of
``ps_agent.identity.environments.INSI_ENVIRONMENTS``, or the DMP environment — ``formation1``… — whose
INSi counterpart ``ps_agent.identities.INSI_ENV_OF_DMP`` gives); ``--insi-url`` overrides its address
(required when ``--env`` is a custom DMP address). Identities
live in ``identities.sqlite3`` of the data folder (``--home`` / ``$PS_AGENT_HOME``), every INSi call and
status change in its audit journal. Exit codes: 0 done, 1 refused or not found, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ps_agent.errors import ConfigurationError


def _add_connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("INSi")
    g.add_argument(
        "--env",
        default=os.environ.get("PS_AGENT_ENV", "sandbox"),
        help="environnement INSi : sandbox (défaut), qualification, production",
    )
    g.add_argument("--insi-url", default=os.environ.get("PS_AGENT_INSI_URL"), help="adresse du service INSi")
    g.add_argument("--ca", default=os.environ.get("PS_AGENT_CA"), help="fichier PEM des autorités du serveur")
    g.add_argument("--idam", default=os.environ.get("PS_AGENT_INSI_IDAM"), help="numéro d'autorisation CNDA")
    g.add_argument(
        "--etablissement",
        metavar="INSI_P12",
        type=Path,
        help="certificat INSi de l'établissement (PKCS#12, CN INSI-MANU) au lieu de la carte CPS",
    )
    g.add_argument("--reader", default=None, help="lecteur de la carte CPS (mode carte)")
    g.add_argument("--situation", type=int, default=1, help="situation d'exercice de la carte, à partir de 1")
    g.add_argument(
        "--facturation",
        default=os.environ.get("PS_AGENT_BILLING_ID", ""),
        help="numéro de facturation Assurance Maladie (mode carte)",
    )


def _add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=None, help="dossier de données de l'agent (défaut : $PS_AGENT_HOME)")
    p.add_argument("--json", action="store_true", help="sortie JSON")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    patient = subparsers.add_parser("patient", help="identités des patients (INSi, carte Vitale, validation)")
    sub = patient.add_subparsers(dest="patient_command", metavar="OPÉRATION")
    patient.set_defaults(func=lambda args: (patient.print_help(), 2)[1])

    p = sub.add_parser("vitale", help="lire la carte Vitale, choisir le bénéficiaire, interroger l'INSi")
    p.add_argument("--lecteur-vitale", default=None, help="lecteur de la carte Vitale (défaut : le premier)")
    p.add_argument("--beneficiaire", type=int, help="numéro du bénéficiaire (à partir de 1)")
    p.add_argument("--liste", action="store_true", help="lister les bénéficiaires sans interroger l'INSi")
    p.add_argument("--identite", type=int, help="identité locale existante à compléter")
    _add_home(p)
    _add_connection(p)
    p.set_defaults(func=_vitale)

    p = sub.add_parser("rechercher", help="rechercher l'INS par les traits d'identité (INSi)")
    p.add_argument("--nom", required=True, help="nom de naissance")
    p.add_argument("--prenom", required=True, help="prénom(s) de naissance, séparés par des espaces")
    p.add_argument("--sexe", required=True, choices=["M", "F"], help="M ou F")
    p.add_argument("--naissance", required=True, help="date de naissance AAAA-MM-JJ")
    p.add_argument("--lieu", default=None, help="code COG du lieu de naissance (5 caractères)")
    p.add_argument("--identite", type=int, help="identité locale existante à compléter")
    _add_home(p)
    _add_connection(p)
    p.set_defaults(func=_search)

    p = sub.add_parser("valider", help="enregistrer la pièce d'identité vérifiée")
    p.add_argument("id", type=int, help="numéro de l'identité locale")
    p.add_argument("--piece", required=True, help="type de pièce : passeport, cni, titre-sejour, …")
    p.add_argument("--par", default="", help="qui a vérifié la pièce (défaut : l'utilisateur du poste)")
    _add_home(p)
    p.set_defaults(func=_validate)

    p = sub.add_parser("modifier", help="modifier à la main un trait (fait perdre la qualification)")
    p.add_argument("id", type=int)
    p.add_argument("--nom")
    p.add_argument("--prenom")
    p.add_argument("--sexe", choices=["M", "F"])
    p.add_argument("--naissance")
    p.add_argument("--lieu")
    p.add_argument("--nom-utilise")
    p.add_argument("--prenom-utilise")
    _add_home(p)
    p.set_defaults(func=_edit)

    p = sub.add_parser("show", help="afficher une identité locale")
    p.add_argument("id", type=int)
    _add_home(p)
    p.set_defaults(func=_show)

    p = sub.add_parser("list", help="lister les identités locales")
    _add_home(p)
    p.set_defaults(func=_list)


# ------------------------------------------------------------------------------------------ plumbing


def _home(args: argparse.Namespace) -> Path:
    from ps_agent.config import data_dir

    if args.home:
        path = Path(args.home)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path
    return data_dir()


@contextmanager
def _records(args: argparse.Namespace, actor: Any = None) -> Iterator[Any]:
    from ps_agent.audit.journal import AuditJournal
    from ps_agent.identity.records import Actor, IdentityRecords

    home = _home(args)
    journal = AuditJournal(home / "audit.sqlite3")
    if actor is None:
        import getpass

        actor = Actor(id_nat=getpass.getuser(), name="utilisateur local")
    records = IdentityRecords.open(home, journal=journal, actor=actor)
    try:
        yield records
    finally:
        records.close()
        journal.close()


def _settings(args: argparse.Namespace) -> Any:
    from ps_agent.cli.dmp_cmd import _p12_passphrase
    from ps_agent.identities import InsiSettings

    if not args.ca:
        raise ConfigurationError(
            "Indiquez le fichier des autorités de certification du serveur INSi (--ca ou PS_AGENT_CA).",
            code="NO_CA",
        )
    if args.etablissement is not None and not args.etablissement.is_file():
        raise ConfigurationError(f"Fichier PKCS#12 introuvable : {args.etablissement}.", code="NO_P12")
    return InsiSettings(
        url=args.insi_url,
        ca_file=args.ca,
        idam=args.idam,
        billing_id=args.facturation,
        certificate=args.etablissement,
        passphrase=_p12_passphrase() if args.etablissement is not None else "",
    )


@contextmanager
def _insi(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    """(InsiClient, Actor) from the card or the establishment certificate, through the one builder
    shared with the API (``ps_agent.identities.open_insi_client``)."""
    from ps_agent.identities import actor_of, insi_auth, open_insi_client

    settings = _settings(args)
    session = None
    if args.etablissement is None:
        from ps_agent.auth.session import AuthSession, situation_index
        from ps_agent.cli.dmp_cmd import _pin

        index = situation_index(args.situation)
        session = AuthSession.open(args.reader, _pin(), situation_index=index, ca_file=args.ca)
    try:
        auth = insi_auth(session, settings)
        with open_insi_client(session, args.env, settings, _home(args), auth=auth) as client:
            yield client, actor_of(session, auth)
    finally:
        if session is not None:
            session.close()


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print(text)


def _describe(ident: Any) -> str:
    lines = [
        f"Identité n° {ident.id} — {ident.status_label} ({ident.status.value})",
        f"  Nom de naissance : {ident.birth_name}",
        f"  Prénoms : {ident.first_names} (premier prénom : {ident.first_name})",
        f"  Sexe : {ident.sex}    Naissance : {ident.birth_date}    Lieu (COG) : {ident.birth_place or '—'}",
    ]
    if ident.used_name or ident.used_first_name:
        lines.append(f"  Nom / prénom utilisés : {ident.used_name} {ident.used_first_name}".rstrip())
    if ident.ins is not None:
        lines.append(f"  INS : {ident.ins.value} (OID {ident.ins.oid})")
    for h in ident.history:
        if ident.ins is None or (h.matricule, h.oid) != (ident.ins.matricule, ident.ins.oid):
            lines.append(f"  INS précédent : {h.value} (OID {h.oid})")
    if ident.document is not None:
        trust = "haut niveau de confiance" if ident.document.high_trust else "faible confiance"
        lines.append(
            f"  Pièce vérifiée : {ident.document.label} ({trust}), par {ident.document.checked_by} "
            f"le {ident.document.checked_at}"
        )
    if not ident.external_verified:
        lines.append("  INS reçu du logiciel métier : à vérifier par l'INSi avant usage.")
    lines.append(
        "  Utilisable pour le DMP : oui"
        if ident.qualified
        else "  Utilisable pour le DMP : non (identité non qualifiée)"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ commands


def _vitale(args: argparse.Namespace) -> int:
    from ps_agent.identity.vitale import VitaleReader

    reader = VitaleReader(args.lecteur_vitale)
    reading = reader.read()
    bens = reading.beneficiaries
    listing = [
        {
            "numero": i,
            "nom": b.usual_name,
            "prenom": b.first_name,
            "date_naissance": b.birth_date,
            "rang": b.rank,
            "porteur": b.holder,
            "nir_certifie": bool(b.nir),
        }
        for i, b in enumerate(bens, 1)
    ]
    text = [f"Carte Vitale n° {reading.card.serial} ({len(bens)} bénéficiaire(s)) :"]
    text += [
        f"  {d['numero']}. {d['nom']} {d['prenom']}, né(e) le {d['date_naissance']}, rang {d['rang']}"
        + (" (porteur)" if d["porteur"] else "")
        for d in listing
    ]
    number = args.beneficiaire
    if args.liste or (number is None and len(bens) > 1):
        if not args.liste:
            text.append("Choisissez le bénéficiaire avec --beneficiaire N.")
        _print(args, {"carte": reading.card.serial, "beneficiaires": listing}, "\n".join(text))
        return 0
    reader.choose(number or 1)
    with _insi(args) as (client, actor), _records(args, actor) as records:
        result, ident = records.search_vitale(
            client, reader.current(), confirm_card=reader.confirm_card, identity_id=args.identite, actor=actor
        )
        if ident is None:
            _print(args, {"code": result.code.value, "message": result.message_fr}, result.message_fr)
            return 1
        _print(args, ident.to_json(), "\n".join([*text, result.message_fr, _describe(ident)]))
    return 0


def _search(args: argparse.Namespace) -> int:
    from ps_agent.identity.model import TraitsQuery

    query = TraitsQuery(args.nom, tuple(args.prenom.split()), args.sexe, args.naissance, args.lieu)
    with _insi(args) as (client, actor), _records(args, actor) as records:
        outcome, ident = records.search_traits(client, query, identity_id=args.identite, actor=actor)
        if ident is None:
            result = outcome.result
            _print(args, {"code": result.code.value, "message": result.message_fr}, result.message_fr)
            return 1
        _print(args, ident.to_json(), outcome.result.message_fr + "\n" + _describe(ident))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from ps_agent.identity.records import Actor

    actor = Actor(id_nat=args.par) if args.par else None
    with _records(args, actor) as records:
        ident = records.validate(args.id, args.piece, actor=actor)
        _print(args, ident.to_json(), _describe(ident))
    return 0


def _edit(args: argparse.Namespace) -> int:
    mapping = {
        "nom": "birth_name",
        "prenom": "first_names",
        "sexe": "sex",
        "naissance": "birth_date",
        "lieu": "birth_place",
        "nom_utilise": "used_name",
        "prenom_utilise": "used_first_name",
    }
    changes = {field: getattr(args, opt) for opt, field in mapping.items() if getattr(args, opt) is not None}
    if not changes:
        raise ConfigurationError("Indiquez au moins un trait à modifier.", code="USAGE")
    with _records(args) as records:
        before = records.get(args.id).status
        ident = records.edit_traits(args.id, **changes)
        text = _describe(ident)
        if ident.status is not before:
            text = (
                f"Attention : statut {before.value} → {ident.status.value} (trait strict modifié).\n" + text
            )
        _print(args, ident.to_json(), text)
    return 0


def _show(args: argparse.Namespace) -> int:
    with _records(args) as records:
        ident = records.get(args.id)
        _print(args, ident.to_json(), _describe(ident))
    return 0


def _list(args: argparse.Namespace) -> int:
    with _records(args) as records:
        items = records.list()
        text = "\n".join(
            f"{i.id:>4}  {i.status.value:<5}  {i.birth_name} {i.first_names}  {i.birth_date}"
            + (f"  INS {i.ins.value}" if i.ins else "")
            for i in items
        )
        _print(args, [i.to_json() for i in items], text or "Aucune identité enregistrée.")
    return 0
