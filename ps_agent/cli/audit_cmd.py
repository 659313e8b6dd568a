"""``ps-agent audit verify|export|list|collector``: check and export the local audit journal.

- ``verify [--journal PATH] [--ca-signataires PEM] [--sans-collecteur]``: exit 0 when the chain is intact
  (and says which guarantee applied: local only / signed / confirmed remotely), 1 naming the first bad
  record or checkpoint (also when the journal file is gone but its anchor or checkpoint copy remains),
  2 when the journal file does not exist and left nothing behind. When ``collector.json`` (next to the
  journal, i.e. in the agent's home) names a collector with a head service, it is asked what it holds
  first; an unreachable collector is said, and the guarantee falls back to signed / local.
- ``collector [--hote H --port P --ca PEM] [--tete URL] [--certificat PEM --cle PEM] [--source NOM]
  [--supprimer]``: show, set or remove the remote collector (``collector.json`` in the agent's home).
- ``export --format fhir|csv [--out FILE] [--patient INS] [--since DATE] [--until DATE] [--action A]
  [--force]``: FHIR R4 Bundle of AuditEvents or CSV. The journal is verified first; a journal that does
  not verify is not exported unless ``--force`` (the export would look trustworthy when it is not).
- ``list [filters] [--limit N]``: the records as text, most recent last.

Default journal: ``ps_agent.config.AgentConfig.default().audit_path`` (``$PS_AGENT_HOME`` or
``~/.local/share/ps-agent``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ps_agent.audit.checkpoint import Checkpoint
from ps_agent.audit.collector import CollectorConfig, CollectorError, fetch_head
from ps_agent.audit.errors import AuditError, AuditIntegrityError
from ps_agent.audit.journal import AuditJournal, RemoteHead, read_anchor, read_checkpoint_file
from ps_agent.errors import PsAgentError


class JournalMissing(AuditError):
    exit_code = 2


def default_journal_path() -> Path:
    """The agent's configured journal path (``ps_agent.config``), else the documented default."""
    try:
        from ps_agent.config import AgentConfig

        return Path(AgentConfig.default().audit_path)
    except (ImportError, AttributeError, PsAgentError):
        home = os.environ.get("PS_AGENT_HOME")
        base = Path(home).expanduser() if home else Path.home() / ".local" / "share" / "ps-agent"
        return base / "audit.sqlite3"


def default_home() -> Path:
    """The agent's home (``ps_agent.config``), else ``$PS_AGENT_HOME`` / ``~/.local/share/ps-agent``."""
    return default_journal_path().parent


def _open(args: argparse.Namespace) -> AuditJournal:
    path = Path(args.journal) if args.journal else default_journal_path()
    if not path.is_file():
        left = evidence_of_deleted_journal(path)
        if left:
            raise AuditIntegrityError(
                f"Journal d'audit introuvable : {path}, alors que {left} : le journal a été supprimé.",
                first_bad_seq=1,
            )
        raise JournalMissing(f"Journal d'audit introuvable : {path}", code="AUDIT_MISSING")
    return AuditJournal(path)


def evidence_of_deleted_journal(path: Path) -> str:
    """What a missing journal left behind (its anchor, its last checkpoint), in French; "" when nothing."""
    cp = read_checkpoint_file(path.with_name(path.name + ".checkpoint"))
    if isinstance(cp, Checkpoint):
        return f"son dernier point de contrôle signé par {cp.signer_name} couvre {cp.seq} enregistrement(s)"
    anchor = read_anchor(path.with_name(path.name + ".anchor"))
    if anchor is not None and anchor[0] > 0:
        return f"son ancre indique {anchor[0]} enregistrement(s)"
    return ""


def _filters(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    if args.patient:
        out["patient_ins"] = args.patient
    if args.since:
        out["since"] = args.since
    if args.until:
        out["until"] = args.until
    if args.action:
        out["action"] = args.action
    return out


def _remote(journal: AuditJournal, args: argparse.Namespace) -> tuple[RemoteHead | None, str]:
    """What the configured collector holds (None + a French note when not configured / unreachable)."""
    if args.sans_collecteur:
        return None, "Collecteur non interrogé (--sans-collecteur)."
    try:
        config = CollectorConfig.load(journal.path.parent)
    except CollectorError as exc:
        return None, f"{exc.message_fr} La confirmation à distance n'a pas pu être obtenue."
    if config is None:
        return None, ""
    if not config.head_url:
        return None, (
            f"Le collecteur {config.label} reçoit le journal mais n'a pas de service de tête configuré : "
            "ce qu'il détient n'a pas pu être comparé."
        )
    try:
        return fetch_head(config, journal.journal_id), ""
    except CollectorError as exc:
        return None, f"{exc.message_fr} La confirmation à distance n'a pas pu être obtenue."


def _verify(args: argparse.Namespace) -> int:
    with _open(args) as journal:
        remote, note = _remote(journal, args)
        result = journal.verify(signer_ca=args.ca_signataires, remote=remote)
    if note:
        print(f"Attention : {note}", file=sys.stderr)
    for extra in result.notes:
        print(f"Attention : {extra}", file=sys.stderr)
    if result.ok:
        print(result.message_fr)
        print(result.guarantee_fr)
        return 0
    print(
        f"ÉCHEC de la vérification du journal d'audit ({result.count} enregistrement(s) lus).",
        file=sys.stderr,
    )
    for problem in result.problems:
        print(f"  - {problem}", file=sys.stderr)
    if result.first_bad_seq is not None:
        print(f"Premier enregistrement en cause : n° {result.first_bad_seq}", file=sys.stderr)
    if result.first_bad_checkpoint is not None:
        print(f"Premier point de contrôle en cause : n° {result.first_bad_checkpoint}", file=sys.stderr)
    return 1


def _collector(args: argparse.Namespace) -> int:
    home = Path(args.dossier) if args.dossier else default_home()
    if args.supprimer:
        removed = CollectorConfig.remove(home)
        print(
            "Collecteur supprimé de la configuration." if removed else "Aucun collecteur n'était configuré."
        )
        return 0
    if args.hote is None:
        if any(
            v is not None for v in (args.port, args.ca, args.tete, args.certificat, args.cle, args.source)
        ):
            raise CollectorError("Indiquez l'adresse du collecteur (--hote).", code="COLLECTOR_HOST")
        config = CollectorConfig.load(home)
        if config is None:
            print("Aucun collecteur configuré (journal conservé sur ce poste uniquement).")
            return 0
        _show(config)
        return 0
    config = CollectorConfig(
        host=args.hote,
        port=args.port if args.port is not None else 6514,
        ca_file=str(Path(args.ca).resolve()) if args.ca else "",
        head_url=args.tete or "",
        client_cert=str(Path(args.certificat).resolve()) if args.certificat else "",
        client_key=str(Path(args.cle).resolve()) if args.cle else "",
        source=args.source or "",
    )
    path = config.save(home)
    print(f"Collecteur enregistré dans {path}.")
    _show(config)
    return 0


def _show(config: CollectorConfig) -> None:
    print(f"Collecteur : {config.host}, port {config.port} (syslog sur TLS)")
    print(f"Autorité de certification : {config.ca_file or 'magasin du système'}")
    print(f"Service de tête : {config.head_url or 'aucun (pas de confirmation à distance)'}")
    print(f"Poste (source) : {config.source_name}")
    if config.client_cert:
        print(f"Certificat client : {config.client_cert}")


def _export(args: argparse.Namespace) -> int:
    with _open(args) as journal:
        result = journal.verify()
        if not result.ok:
            print(f"Attention : {result.message_fr}", file=sys.stderr)
            if not args.force:
                print(
                    "Export refusé : le journal ne vérifie pas (--force pour exporter quand même).",
                    file=sys.stderr,
                )
                return 1
        filters = _filters(args)
        if args.out:
            out_path = Path(args.out)
            tmp = out_path.with_name(out_path.name + ".part")
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                n = (
                    journal.export_fhir(out, **filters)
                    if args.format == "fhir"
                    else journal.export_csv(out, **filters)
                )
            tmp.replace(out_path)
            print(f"{n} enregistrement(s) exporté(s) vers {out_path}.", file=sys.stderr)
        else:
            n = (
                journal.export_fhir(sys.stdout, **filters)
                if args.format == "fhir"
                else journal.export_csv(sys.stdout, **filters)
            )
            sys.stdout.flush()
            print(f"{n} enregistrement(s) exporté(s).", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    with _open(args) as journal:
        records = journal.records(**_filters(args))  # type: ignore[arg-type]
    if args.limit:
        records = records[-args.limit :]
    for r in records:
        e = r.event
        extra = f" motif=« {e.reason} »" if e.reason else ""
        docs = f" documents={','.join(e.document_ids)}" if e.document_ids else ""
        print(
            f"{r.seq:>6} {r.timestamp} {e.action:<16} {e.outcome:<8} {e.actor_id_nat} ({e.actor_name}) "
            f"{e.auth_mode} patient={e.patient_ins or '-'} {e.transaction}{docs} mode={e.access_mode}"
            f"{extra}{' erreur=' + e.error_code if e.error_code else ''}"
        )
    return 0


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient", metavar="INS", help="INS du patient (matricule, avec ou sans ^OID)")
    p.add_argument("--since", metavar="DATE", help="à partir de (AAAA-MM-JJ ou horodatage ISO, UTC)")
    p.add_argument("--until", metavar="DATE", help="jusqu'au (AAAA-MM-JJ inclus, ou horodatage ISO exclu)")
    p.add_argument("--action", help="action exacte (dmp.deposit) ou préfixe terminé par un point (dmp.)")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = subparsers.add_parser("audit", help="journal d'audit : vérification et export")
    sub = audit.add_subparsers(dest="audit_command", metavar="SOUS-COMMANDE")
    audit.set_defaults(func=lambda _a: (audit.print_help(), 2)[1])

    verify = sub.add_parser("verify", help="vérifier l'intégrité du journal (chaînage SHA-256)")
    verify.add_argument(
        "--journal", metavar="CHEMIN", help="fichier du journal (défaut : dossier de l'agent)"
    )
    verify.add_argument(
        "--ca-signataires",
        "--signer-ca",
        dest="ca_signataires",
        metavar="PEM",
        help="autorités (PEM) dont doivent relever les signataires des points de contrôle",
    )
    verify.add_argument(
        "--sans-collecteur",
        "--no-collector",
        dest="sans_collecteur",
        action="store_true",
        help="ne pas interroger le collecteur distant",
    )
    verify.set_defaults(func=_verify)

    coll = sub.add_parser("collector", help="collecteur distant du journal (syslog sur TLS) : voir, régler")
    coll.add_argument("--hote", "--host", dest="hote", metavar="HÔTE", help="adresse du collecteur")
    coll.add_argument("--port", type=int, help="port syslog TLS (défaut : 6514)")
    coll.add_argument("--ca", metavar="PEM", help="autorité(s) de certification du collecteur")
    coll.add_argument(
        "--tete", "--head-url", dest="tete", metavar="URL", help="service de tête https:// du collecteur"
    )
    coll.add_argument("--certificat", "--cert", dest="certificat", metavar="PEM", help="certificat client")
    coll.add_argument("--cle", "--key", dest="cle", metavar="PEM", help="clé du certificat client")
    coll.add_argument(
        "--source", metavar="NOM", help="nom du poste pour le collecteur (défaut : nom machine)"
    )
    coll.add_argument(
        "--supprimer", "--remove", dest="supprimer", action="store_true", help="ne plus transmettre"
    )
    coll.add_argument("--dossier", metavar="DOSSIER", help="dossier de l'agent (défaut : dossier habituel)")
    coll.set_defaults(func=_collector)

    export = sub.add_parser("export", help="exporter le journal (FHIR AuditEvent JSON ou CSV)")
    export.add_argument(
        "--journal", metavar="CHEMIN", help="fichier du journal (défaut : dossier de l'agent)"
    )
    export.add_argument("--format", choices=("fhir", "csv"), required=True)
    export.add_argument("--out", metavar="FICHIER", help="fichier de sortie (défaut : sortie standard)")
    export.add_argument("--force", action="store_true", help="exporter même si le journal ne vérifie pas")
    _add_filters(export)
    export.set_defaults(func=_export)

    show = sub.add_parser("list", help="afficher les enregistrements")
    show.add_argument("--journal", metavar="CHEMIN", help="fichier du journal (défaut : dossier de l'agent)")
    show.add_argument("--limit", type=int, default=0, help="n'afficher que les N derniers")
    _add_filters(show)
    show.set_defaults(func=_list)
