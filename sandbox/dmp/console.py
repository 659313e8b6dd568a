"""Patient console: ``python -m sandbox demo --data DIR`` and ``python -m sandbox patient ...``.

A tester acts as the patient of Mon espace santé, directly on the data folder's store (the server
may be running: SQLite WAL lets both work on the same files). Output is French text, or JSON with
``--json`` for scripts. Refusals are :class:`sandbox.dmp.store.StoreError` (a ``SandboxError``),
printed by ``sandbox.__main__`` as « Erreur : … » with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.dmp.store import (
    ACTIVE,
    CLOSED,
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    OPPOSED,
    Store,
    StoredDocument,
    StoreError,
)
from sandbox.profiles import PROFILES

_STATUS_FR = {ACTIVE: "ouvert", CLOSED: "fermé", OPPOSED: "opposition"}


def _ps_id(value: str) -> str:
    """A professional by test profile name (gp, nurse…) or by national id."""
    if value in PROFILES:
        return PROFILES[value].id_nat
    if not value or not value.replace("/", "").isalnum():
        raise StoreError(
            f"Professionnel inconnu : « {value} » (nom de profil de test ou identifiant national)."
        )
    return value


def _open(args: argparse.Namespace) -> Store:
    data = Path(args.data)
    if not data.exists() and args.command != "demo" and getattr(args, "action", "") != "create":
        raise StoreError(
            f"Le dossier de données {data} n'existe pas (lancez d'abord « demo » ou « patient create »)."
        )
    return Store(data)


def _emit(args: argparse.Namespace, text: str, payload: Any) -> int:
    if getattr(args, "json", False):
        print(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    else:
        print(text)
    return 0


def _doc_line(d: StoredDocument) -> str:
    flags = []
    if MASQUE_PS in d.confidentiality:
        flags.append("masqué aux PS")
    if INVISIBLE_PATIENT in d.confidentiality:
        flags.append("invisible au patient")
    if INVISIBLE_REPRESENTANTS_LEGAUX in d.confidentiality:
        flags.append("invisible aux représentants légaux")
    status = d.status.rsplit(":", 1)[-1]
    extra = f" [{', '.join(flags)}]" if flags else ""
    return f"{d.unique_id}  {d.creation_time[:8]}  {d.type_code:<10} {status:<10} {d.title}{extra}"


def _doc_json(d: StoredDocument) -> dict[str, Any]:
    data = dataclasses.asdict(d)
    data.pop("metadata")
    return data


# -- commands ---------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from sandbox.demo import DEMO_PATIENTS, seed

    with _open(args) as store:
        counts = seed(store)
        lines = [f"Jeu de démonstration dans {Path(args.data).resolve()} :"]
        for p in DEMO_PATIENTS:
            patient = store.patient(p.ins)
            status = _STATUS_FR.get(patient.status, patient.status) if patient else "?"
            lines.append(
                f"  {p.ins} ({p.oid})  {p.family_name} {p.given_names}"
                f"  DMP {status}, {counts[p.ins]} documents"
            )
        return _emit(args, "\n".join(lines), counts)


def _patient_actions() -> dict[str, Callable[[argparse.Namespace, Store], int]]:
    return {
        "create": _create,
        "show": _show,
        "list": _list,
        "oppose": lambda a, s: _status(
            a, s, OPPOSED, "Opposition enregistrée : le DMP n'est plus accessible."
        ),
        "close": lambda a, s: _status(a, s, CLOSED, "DMP fermé."),
        "reopen": lambda a, s: _status(a, s, ACTIVE, "DMP rouvert."),
        "block": _block,
        "unblock": _unblock,
        "authorise": _authorise,
        "medecin-traitant": _medecin_traitant,
        "documents": _documents,
        "mask": lambda a, s: _mask(a, s, True),
        "unmask": lambda a, s: _mask(a, s, False),
        "make-visible": _make_visible,
        "emergency": _emergency,
        "legal-rep": _legal_rep,
        "traces": _traces,
        "web": _web,
    }


def cmd_patient(args: argparse.Namespace) -> int:
    with _open(args) as store:
        return _patient_actions()[args.action](args, store)


def _create(args: argparse.Namespace, store: Store) -> int:
    from cda.errors import CdaError
    from cda.ins import check_nir, check_oid

    try:
        ins = check_nir(args.ins)
        oid = check_oid(args.oid)
    except CdaError as exc:
        raise StoreError(exc.message_fr) from None
    p = store.create_patient(
        ins,
        oid,
        args.family_name.upper(),
        args.given_names.upper(),
        args.birth_date,
        args.sex.upper(),
        args.birth_place,
    )
    return _emit(args, f"DMP créé pour {p.family_name} {p.given_names} (INS {p.ins}).", dataclasses.asdict(p))


def _show(args: argparse.Namespace, store: Store) -> int:
    p = store.patient_or_raise(args.ins)
    auths = store.authorisations(p.ins)
    lines = [
        f"{p.family_name} {p.given_names}, né(e) le {p.birth_date[6:]}/{p.birth_date[4:6]}/{p.birth_date[:4]}"
        f" ({p.sex}), INS {p.ins} ({p.oid})",
        f"DMP {_STATUS_FR.get(p.status, p.status)} ; médecin traitant : {p.medecin_traitant or 'aucun'}"
        + (" ; mineur" if p.is_minor else ""),
        "Accès en urgence : bris de glace "
        + ("autorisé" if p.allow_bris_de_glace else "refusé")
        + ", centre 15 "
        + ("autorisé" if p.allow_centre_15 else "refusé")
        + ", documents masqués en urgence "
        + ("autorisés" if p.allow_masked_in_emergency else "refusés"),
    ]
    if p.legal_representatives:
        lines.append("Représentants légaux : " + ", ".join(f"{n} ({r})" for n, r in p.legal_representatives))
    lines.append("Professionnels :")
    lines.extend(
        f"  {a.ps_id}  {a.given_name} {a.family_name}  {'autorisé' if a.status == 'VALIDE' else 'BLOQUÉ'}"
        f" depuis {a.started_at}"
        for a in auths
    )
    lines.append(f"Documents : {store.document_count(p.ins)}")
    payload = dataclasses.asdict(p) | {"authorisations": [dataclasses.asdict(a) for a in auths]}
    return _emit(args, "\n".join(lines), payload)


def _list(args: argparse.Namespace, store: Store) -> int:
    patients = store.patients()
    lines = [
        f"{p.ins}  {p.family_name} {p.given_names}  DMP {_STATUS_FR.get(p.status, p.status)}"
        f"  {store.document_count(p.ins)} documents"
        for p in patients
    ]
    return _emit(args, "\n".join(lines) or "Aucun patient.", [dataclasses.asdict(p) for p in patients])


def _status(args: argparse.Namespace, store: Store, status: str, message: str) -> int:
    store.set_status(args.ins, status)
    return _emit(args, message, {"ins": args.ins, "status": status})


def _block(args: argparse.Namespace, store: Store) -> int:
    ps = _ps_id(args.ps)
    store.block(args.ins, ps)
    return _emit(
        args,
        f"Professionnel {ps} bloqué : il ne peut plus consulter le DMP mais peut y déposer.",
        {"ins": args.ins, "ps": ps, "status": "INTERDIT"},
    )


def _unblock(args: argparse.Namespace, store: Store) -> int:
    ps = _ps_id(args.ps)
    store.unblock(args.ins, ps)
    return _emit(
        args,
        f"Professionnel {ps} débloqué : il devra de nouveau recueillir votre accord.",
        {"ins": args.ins, "ps": ps, "status": None},
    )


def _authorise(args: argparse.Namespace, store: Store) -> int:
    ps = _ps_id(args.ps)
    prof = next((p for p in PROFILES.values() if p.id_nat == ps), None)
    store.set_authorisation(
        args.ins, ps, family_name=prof.family_name if prof else "", given_name=prof.given_name if prof else ""
    )
    return _emit(
        args, f"Professionnel {ps} autorisé sur le DMP.", {"ins": args.ins, "ps": ps, "status": "VALIDE"}
    )


def _medecin_traitant(args: argparse.Namespace, store: Store) -> int:
    ps = None if args.ps in ("aucun", "none") else _ps_id(args.ps)
    store.set_medecin_traitant(args.ins, ps)
    return _emit(args, f"Médecin traitant : {ps or 'aucun'}.", {"ins": args.ins, "medecin_traitant": ps})


def _documents(args: argparse.Namespace, store: Store) -> int:
    store.patient_or_raise(args.ins)
    if args.view == "patient":
        docs = store.documents_for_patient_view(args.ins)
    elif args.view == "representant":
        docs = store.documents_for_patient_view(args.ins, legal_representative=True)
    else:
        docs = store.documents(args.ins)
    return _emit(
        args, "\n".join(_doc_line(d) for d in docs) or "Aucun document.", [_doc_json(d) for d in docs]
    )


def _mask(args: argparse.Namespace, store: Store, masked: bool) -> int:
    doc = store.mask(args.ins, args.document, masked)
    text = "masqué aux professionnels (sauf auteur et médecin traitant)" if masked else "démasqué"
    return _emit(args, f"Document {doc.unique_id} {text}.", _doc_json(doc))


def _make_visible(args: argparse.Namespace, store: Store) -> int:
    doc = store.make_visible(args.ins, args.document, legal_representatives=args.representants)
    who = "des représentants légaux" if args.representants else "du patient"
    return _emit(args, f"Document {doc.unique_id} rendu visible {who} (définitif).", _doc_json(doc))


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value in ("oui", "permit", "on", "yes", "true", "1")


def _emergency(args: argparse.Namespace, store: Store) -> int:
    store.set_emergency(
        args.ins,
        bris_de_glace=_flag(args.bris_de_glace),
        centre_15=_flag(args.centre_15),
        masked_in_emergency=_flag(args.masques),
    )
    p = store.patient_or_raise(args.ins)
    return _emit(
        args,
        f"Bris de glace : {'autorisé' if p.allow_bris_de_glace else 'refusé'} ; centre 15 : "
        f"{'autorisé' if p.allow_centre_15 else 'refusé'} ; documents masqués en urgence : "
        f"{'autorisés' if p.allow_masked_in_emergency else 'refusés'}.",
        {
            "bris_de_glace": p.allow_bris_de_glace,
            "centre_15": p.allow_centre_15,
            "masked_in_emergency": p.allow_masked_in_emergency,
        },
    )


def _legal_rep(args: argparse.Namespace, store: Store) -> int:
    if args.remove:
        store.remove_legal_representative(args.ins, args.name)
        return _emit(args, f"{args.name} n'est plus représentant légal.", {"removed": args.name})
    p = store.patient_or_raise(args.ins)
    if not p.is_minor:
        raise StoreError("Ce patient est majeur : pas de représentant légal à enregistrer ici.")
    store.add_legal_representative(args.ins, args.name, args.relation)
    return _emit(
        args,
        f"{args.name} ({args.relation}) enregistré(e) comme représentant légal.",
        {"name": args.name, "relation": args.relation},
    )


def _traces(args: argparse.Namespace, store: Store) -> int:
    store.patient_or_raise(args.ins)
    traces = store.traces(args.ins, limit=args.limit)
    lines = []
    for t in traces:
        mode = t.purpose if t.purpose and t.purpose != "normal" else ""
        reason = f" (motif : {t.reason})" if t.reason else ""
        lines.append(
            f"{t.at[:19]}  {t.transaction:<6} {t.ps_name or '?'} ({t.ps_id}, {t.role},"
            f" structure {t.structure_id},"
            f" {t.mode}{', ' + mode if mode else ''}){reason}  {t.what}  → {t.result}"
        )
    return _emit(args, "\n".join(lines) or "Aucune trace.", [dataclasses.asdict(t) for t in traces])


def _web(args: argparse.Namespace, store: Store) -> int:
    import signal
    import threading

    from sandbox.dmp.web import serve

    server = serve(store, host=args.host, port=args.port)
    host, port = server.server_address[:2]
    print(f"Page patient (Mon espace santé de test) : http://{host}:{port}/  — arrêt : Ctrl+C", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


# -- parser -----------------------------------------------------------------------------------------
EMERGENCY_HELP = {
    "bris_de_glace": "accès en bris de glace par un professionnel (oui/non)",
    "centre_15": "accès par le médecin régulateur du centre 15 (oui/non)",
    "masques": "documents masqués visibles en urgence (oui/non)",
}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``demo`` and ``patient`` to ``python -m sandbox``."""
    demo = subparsers.add_parser("demo", help="créer le jeu de démonstration dans un dossier de données")
    demo.add_argument("--data", required=True, help="dossier des données (créé si absent)")
    demo.add_argument("--json", action="store_true", help="sortie JSON")
    demo.set_defaults(func=cmd_demo)

    patient = subparsers.add_parser(
        "patient",
        help="agir comme le patient (Mon espace santé)",
        description=(
            "Agir comme le patient de Mon espace santé sur le DMP de test : créer, s'opposer, fermer,"
            " bloquer ou débloquer un professionnel, masquer ou démasquer un document, le rendre visible,"
            " régler l'accès en urgence, lire les traces. Le serveur peut tourner en même temps."
            " PS = profil de test (gp, specialist, pharmacist, nurse, secretary, regulator…) ou identifiant"
            " national ; DOC = uniqueId, entryUUID ou un préfixe unique (voir « documents »)."
        ),
        epilog=(
            "exemples :\n"
            "  python -m sandbox patient --data DIR list\n"
            "  python -m sandbox patient --data DIR show 279037505612309\n"
            "  python -m sandbox patient --data DIR block 279037505612309 nurse\n"
            "  python -m sandbox patient --data DIR mask 279037505612309 2.25.1234\n"
            "  python -m sandbox patient --data DIR emergency 279037505612309 --bris-de-glace non\n"
            "  python -m sandbox patient --data DIR --json traces 279037505612309 --limit 20\n"
            "Erreurs : message « Erreur : … » sur la sortie d'erreur, code de sortie 2."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    patient.add_argument("--data", required=True, help="dossier des données du bac à sable")
    patient.add_argument("--json", action="store_true", help="sortie JSON")
    actions = patient.add_subparsers(dest="action", required=True)

    def with_ins(name: str, help_text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text)
        p.add_argument("ins", help="matricule INS du patient (15 caractères)")
        return p

    c = actions.add_parser("create", help="créer un DMP")
    c.add_argument("ins", help="matricule INS du patient (15 caractères, clé NIR vérifiée)")
    c.add_argument("--oid", default="1.2.250.1.213.1.4.10", help="OID de l'INS (test par défaut)")
    c.add_argument("--family-name", required=True, help="nom de naissance")
    c.add_argument("--given-names", required=True, help="prénoms (séparés par des espaces)")
    c.add_argument("--birth-date", required=True, help="AAAAMMJJ")
    c.add_argument("--sex", required=True, choices=["M", "F", "U", "m", "f", "u"], help="sexe")
    c.add_argument("--birth-place", default="", help="code INSEE du lieu de naissance")
    actions.add_parser("list", help="lister les patients")
    with_ins("show", "afficher le DMP (statut, professionnels, réglages)")
    with_ins("oppose", "s'opposer au DMP")
    with_ins("close", "fermer le DMP")
    with_ins("reopen", "rouvrir le DMP")
    for name, help_text in (
        ("block", "bloquer un professionnel (il peut toujours déposer)"),
        ("unblock", "débloquer un professionnel"),
        ("authorise", "autoriser un professionnel (accord du patient)"),
        ("medecin-traitant", "désigner le médecin traitant (« aucun » pour retirer)"),
    ):
        with_ins(name, help_text).add_argument(
            "ps", help="profil de test (gp, nurse…) ou identifiant national"
        )
    d = with_ins("documents", "lister les documents")
    d.add_argument(
        "--view",
        choices=["all", "patient", "representant"],
        default="all",
        help="vue : tous, ce que voit le patient, ce que voient les représentants légaux",
    )
    for name, help_text in (
        ("mask", "masquer un document aux professionnels"),
        ("unmask", "démasquer un document"),
    ):
        with_ins(name, help_text).add_argument("document", help="uniqueId ou entryUUID (ou un préfixe)")
    v = with_ins("make-visible", "rendre un document visible du patient (définitif)")
    v.add_argument("document", help="uniqueId ou entryUUID (ou un préfixe)")
    v.add_argument("--representants", action="store_true", help="le rendre visible des représentants légaux")
    e = with_ins("emergency", "réglages d'accès en urgence")
    for flag, dest in (
        ("--bris-de-glace", "bris_de_glace"),
        ("--centre-15", "centre_15"),
        ("--masques", "masques"),
    ):
        e.add_argument(flag, dest=dest, choices=["oui", "non"], default=None, help=EMERGENCY_HELP[dest])
    r = with_ins("legal-rep", "représentant légal d'un mineur")
    r.add_argument("name", help="nom du représentant légal (« NOM Prénom »)")
    r.add_argument("--relation", default="parent", help="lien : parent (défaut), tuteur…")
    r.add_argument("--remove", action="store_true", help="retirer ce représentant")
    t = with_ins("traces", "lire les traces d'accès")
    t.add_argument("--limit", type=int, default=None, help="les N dernières")
    w = actions.add_parser("web", help="petite page web locale pour les mêmes actions")
    w.add_argument("--host", default="127.0.0.1", help="adresse de boucle locale")
    w.add_argument("--port", type=int, default=8080, help="port (0 = un port libre)")
    patient.set_defaults(func=cmd_patient)
