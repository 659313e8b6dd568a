"""``ps-agent outbox list | resume | hand-back ID``: the deposit queue, visible and in the user's hands.

- ``list [--tout] [--json]``: the deposits not yet settled (pending, being sent, waiting: why and when
  the next try is) and the refused ones (why); ``--tout`` adds those registered or handed back. No card
  needed (the queue is a local file). Exit 0 when nothing is left, 1 when something is pending or refused.
- ``resume [ID] [connexion]``: send every entry now (card or establishment session, as ``ps-agent dmp``),
  each resolved on its own; with ID, that entry only (unknown, already settled, being sent or another
  professional's: exit 1 with the state said). Exit 0 when all are registered, 1 when one is refused or
  still waiting.
- ``hand-back ID --vers DIR``: write the entry's CDA documents into DIR (files fsync'd, 0600), then take
  the entry out of the queue (state "rendu à l'utilisateur"); nothing is removed before the files are
  written. Exit 0 done, 1 when the entry cannot be handed back (being sent, already settled, unknown).

When an agent runs (and ``--home`` is not given), ``list``, ``resume`` and ``hand-back`` act on the
agent's queue through its local API (``ps_agent.cli.via_agent``): its session sends (no PIN), and the
agent writes the handed-back files into DIR made absolute here. ``--autonome`` forces the local path.

Exit 2: bad usage.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ps_agent.cli.common import UsageError
from ps_agent.errors import ConfigurationError


def _home(args: argparse.Namespace) -> Path:
    from ps_agent.config import data_dir, ensure_private_dir

    return ensure_private_dir(Path(args.home)) if args.home else data_dir()


def _entry_json(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "state": e.state.value,
        "state_fr": e.state.label_fr,
        "reason_fr": e.reason_fr,
        "reason_code": e.reason_code,
        "patient_ins": e.patient_ins,
        "patient_oid": e.patient_oid,
        "documents": list(e.document_uids),
        "titles": list(e.titles),
        "attempts": e.attempts,
        "next_try": e.next_try or None,
        "created": e.created,
        "updated": e.updated,
    }


def _line(e: Any) -> str:
    return f"{e.id}  patient {e.patient_ins}  {e.summary_fr}"


def _list(args: argparse.Namespace) -> int:
    from ps_agent.cli import via_agent
    from ps_agent.outbox import DepositQueue

    if args.home is None and (running := via_agent.running(args)) is not None:
        return via_agent.outbox_list(running, args)  # the running agent's queue (the one it sends from)

    with DepositQueue(_home(args) / "outbox.sqlite3") as queue:
        entries = queue.entries()
    return list_report(args, entries)


def list_report(args: argparse.Namespace, entries: list[Any]) -> int:
    """The French listing of ``outbox list`` (the local queue, or the running agent's) and its exit code:
    1 when something is pending or refused, else 0."""
    from ps_agent.outbox import ACTIVE_STATES, EntryState

    left = [e for e in entries if e.state in ACTIVE_STATES or e.state is EntryState.REFUSED]
    shown = entries if args.tout else left
    if args.json:
        print(json.dumps({"entries": [_entry_json(e) for e in shown]}, ensure_ascii=False, indent=2))
    elif shown:
        print("\n".join(_line(e) for e in shown))
    else:
        print("Aucun envoi en attente.")
    return 1 if left else 0


def _resume(args: argparse.Namespace) -> int:
    from ps_agent.cli import dmp_cmd, via_agent
    from ps_agent.context import Context

    entry_id = getattr(args, "id", None)
    if entry_id is not None and not _ENTRY_ID.match(entry_id):
        raise UsageError(
            f"Identifiant d'envoi invalide « {entry_id[:80]} » : copiez-le depuis « ps-agent outbox list ».",
            code="INVALID_ID",
        )
    if args.home is None and (running := via_agent.running(args)) is not None:
        rows, n_left = via_agent.outbox_resume(running, args)  # the agent's queue, its session: no PIN
        return resume_report(args, rows, n_left)

    def progress(step: str, done: int, total: int) -> None:
        if not args.json and total:
            print(f"{step}… ({done}/{total})", file=sys.stderr)

    with dmp_cmd._agent(args) as agent:
        if entry_id is not None:
            outcomes = [agent.resume_entry(entry_id, ctx=Context(progress=progress))]
        else:
            outcomes = agent.resume_pending(ctx=Context(progress=progress), all_entries=True)
        left = agent.pending_deposits()
    rows = [
        {"id": o.entry_id, "state": o.state.value, "state_fr": o.state.label_fr, "reason_fr": o.reason_fr,
         "documents": list(o.document_uids)}
        for o in outcomes
    ]  # fmt: skip
    return resume_report(args, rows, len(left))


def resume_report(args: argparse.Namespace, rows: list[dict[str, Any]], left: int) -> int:
    """The French report of ``outbox resume`` (standalone or through the agent) and its exit code: 0 when
    every entry tried is registered and none is left, else 1."""
    if args.json:
        print(json.dumps({"outcomes": rows, "left": left}, ensure_ascii=False, indent=2))
    else:
        lines = [
            f"{r['id']} : {r['state_fr']}" + (f" — {r['reason_fr']}" if r["reason_fr"] else "") for r in rows
        ] or ["Aucun envoi à reprendre."]
        if left:
            lines.append(f"{left} envoi(s) encore en attente.")
        print("\n".join(lines))
    bad = any(r["state"] != "registered" for r in rows)
    return 1 if bad or left else 0


# The shape of a queue entry id (a submission set uniqueId: an OID); checked before anything is done.
_ENTRY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._^:-]{0,127}$")


def _hand_back(args: argparse.Namespace) -> int:
    from ps_agent.cli import via_agent

    if args.vers is None:
        raise ConfigurationError(
            "Indiquez le dossier où écrire les documents (--vers DOSSIER).", code="USAGE"
        )
    if not _ENTRY_ID.match(args.id):
        raise UsageError(
            f"Identifiant d'envoi invalide « {args.id[:80]} » : copiez-le depuis « ps-agent outbox list ».",
            code="INVALID_ID",
        )
    # The folder as this command sees it (relative to its current folder), made absolute for the agent.
    try:
        folder = Path(args.vers).expanduser().absolute()
        is_file = folder.exists() and not folder.is_dir()
    except (OSError, RuntimeError, ValueError) as exc:  # a name too long, an unknown ~user…
        raise UsageError(f"Dossier inutilisable « {args.vers} » ({exc}).", code="INVALID_FOLDER") from exc
    if is_file:
        raise UsageError(f"« {args.vers} » existe et n'est pas un dossier.", code="FOLDER_IS_FILE")
    if args.home is None and (running := via_agent.running(args)) is not None:
        entry_id, written = via_agent.outbox_hand_back(running, args, folder)
        return hand_back_report(args, entry_id, written, folder)

    from ps_agent.config import AgentConfig, environment
    from ps_agent.services import Services, write_documents

    written = []
    with Services(AgentConfig(environment("sandbox"), _home(args))) as services:
        entry = services.hand_back(args.id, lambda e: written.extend(write_documents(e, folder)))
    return hand_back_report(args, entry.id, written, folder)


def hand_back_report(args: argparse.Namespace, entry_id: str, written: list[Path], folder: Path) -> int:
    """The French report of ``outbox hand-back`` (standalone or through the agent)."""
    if args.json:
        print(json.dumps({"id": entry_id, "files": [str(p) for p in written]}, ensure_ascii=False, indent=2))
    else:
        print(f"Envoi {entry_id} rendu : {len(written)} document(s) écrit(s) dans {folder}.")
        for p in written:
            print(f"  {p}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ps_agent.cli import dmp_cmd

    outbox = subparsers.add_parser("outbox", help="file d'envoi des dépôts DMP (en attente, refusés)")
    sub = outbox.add_subparsers(dest="outbox_command", metavar="OPÉRATION")
    outbox.set_defaults(func=lambda args: (outbox.print_help(), 2)[1])

    p = sub.add_parser("list", help="lister les envois en attente ou refusés")
    p.add_argument("--home", default=None, help="dossier de données de l'agent (défaut : $PS_AGENT_HOME)")
    p.add_argument("--tout", action="store_true", help="inclure les envois enregistrés ou rendus")
    p.add_argument("--json", action="store_true", help="sortie JSON")
    from ps_agent.cli import via_agent

    via_agent.add_options(p)
    p.set_defaults(func=_list, bris_de_glace=None, centre_15=None)

    p = sub.add_parser("resume", help="renvoyer maintenant les envois en attente (carte ou établissement)")
    p.add_argument("id", nargs="?", default=None,
                   help="identifiant d'un seul envoi à reprendre (voir « ps-agent outbox list ») ; "
                   "sans identifiant : tous les envois en attente")  # fmt: skip
    dmp_cmd._add_common(p, patient=False)
    via_agent.add_options(p)
    p.set_defaults(func=_resume)

    p = sub.add_parser("hand-back", help="reprendre les documents d'un envoi (écrits dans un dossier)")
    p.add_argument("id", help="identifiant de l'envoi (voir « ps-agent outbox list »)")
    p.add_argument("--vers", metavar="DOSSIER", required=True, help="dossier où écrire les documents CDA")
    p.add_argument("--home", default=None, help="dossier de données de l'agent (défaut : $PS_AGENT_HOME)")
    p.add_argument("--json", action="store_true", help="sortie JSON")
    via_agent.add_options(p)
    p.set_defaults(func=_hand_back, bris_de_glace=None, centre_15=None)
