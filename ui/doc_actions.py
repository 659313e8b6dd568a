"""Actions on a document after deposit (9.1-9.4): mask/unmask, make visible, archive/unarchive, delete;
each with a confirmation that states its consequence (irreversible ones say so). Only the actions that
apply to this document and this user are offered (delete: its author only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ui import labels as L

DELETE_CONFIRM = "Supprimer définitivement ce document du DMP ? Cette action est irréversible."  # 9.2


@dataclass(frozen=True)
class DocAction:
    key: str  # PatientHandle method
    label: str
    confirm: str  # the consequence, said before doing it
    irreversible: bool = False
    kwargs: tuple[tuple[str, bool], ...] = ()


def actions_for(entry: Any, identity: Any, *, medecin_traitant: bool) -> list[DocAction]:
    vis = entry.visibility
    status = (entry.status or "").rsplit(":", 1)[-1]
    title = f"« {entry.title} »"
    out: list[DocAction] = []
    if not vis.masked_to_professionals and not vis.invisible_to_patient:
        out.append(
            DocAction(
                "mask",
                "Masquer aux professionnels de santé",
                f"Masquer {title} aux autres professionnels de santé ? Seuls vous, le patient "
                "et son médecin traitant pourront encore le voir.",
            )
        )
    author = any(a.id_nat == identity.id_nat for a in entry.authors)
    if vis.masked_to_professionals and (medecin_traitant or author):  # who can see a masked one
        out.append(
            DocAction(
                "unmask",
                "Démasquer",
                f"Rendre {title} de nouveau visible par les professionnels de santé autorisés ?",
            )
        )
    if vis.invisible_to_patient:
        out.append(
            DocAction(
                "make_visible",
                "Rendre visible par le patient",
                f"Rendre {title} visible par le patient ? Le patient sera notifié.",
            )
        )
    if vis.invisible_to_legal_representatives:
        out.append(
            DocAction(
                "make_visible",
                "Rendre visible par les représentants légaux",
                f"Rendre {title} visible par les représentants légaux du patient ? "
                "Cette action est irréversible : le document ne pourra plus leur être caché.",
                irreversible=True,
                kwargs=(("to_legal_representatives", True),),
            )
        )
    if status == "Archived":
        out.append(DocAction("unarchive", "Désarchiver", f"Remettre {title} dans les documents actifs ?"))
    elif status != "Deprecated":
        out.append(
            DocAction(
                "archive",
                "Archiver",
                f"Archiver {title} ? Il n'apparaîtra plus dans la liste par défaut "
                f"(« {L.SHOW_ARCHIVED} » le montre) ; il reste consultable.",
            )
        )
    if author and status not in ("Archived", "Deprecated"):  # 9.4: the author replaces his own document
        out.append(DocAction("replace", L.REPLACE_ACTION, ""))
    if author:  # the DMP lets only the author delete
        out.append(
            DocAction(
                "delete", "Supprimer définitivement…", DELETE_CONFIRM + f"\n\n{title}", irreversible=True
            )
        )
    return out
