"""``ps-agent dmp …`` and ``ps-agent outbox list`` through the running agent's local API.

When an agent (window or ``ps-agent serve``) answers on the local API with this install's token, the
command goes through it: its card session is used (one PIN per card session, the command line asks
none), its policy and journal apply, and the output and exit codes are those of the standalone command.
``--autonome`` (``--standalone``) forces the standalone path (the card opened by the command itself);
when no agent answers, the command is standalone as before.

Everything that can be checked without the agent is checked first, as the standalone path does before
the PIN (INS key and OID for the agent's environment, rubric, files to deposit). Problem details
(RFC 9457) are turned back into the CLI's French messages and exit codes (``error_of``).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ps_agent.api.client import AgentTokenRefused, ApiProblem, LocalAgent, locate_agent
from ps_agent.api.settings import DEFAULT_PORT
from ps_agent.cli.common import UsageError, checked_ins, ins_oid_for, labelled, print_out, rubric_or_usage
from ps_agent.errors import AccessDenied, ConfigurationError, PsAgentError

PORT_ENV = "PS_AGENT_API_PORT"

# A queue refusal whose code is a rule of the agent's access policy (PAT-06, AUTH-03…), not the DMP's.
POLICY_RULE = re.compile(r"^[A-Z]{2,5}-[0-9]{2}$")

# [I] How long ``ps-agent dmp deposit`` through the agent waits for the queued deposit to be settled
# (registered or refused) before saying it is still in the agent's queue (exit 1, as ``outbox list``).
DEPOSIT_WAIT_S = 120.0
POLL_S = 0.2

# Problem codes of the API that mean bad input (exit 2, as the standalone checks before the PIN).
USAGE_CODES = frozenset(
    {"INVALID_FIELDS", "INVALID_INS", "JSON_INVALID", "INVALID_BASE64", "NOT_PDF", "ONE_DOCUMENT",
     "VISIBILITY", "MISSING_FIELD", "NOT_A_PDF", "NOT_A_DOCUMENT", "TOO_LARGE", "INVALID_UNIQUE_ID",
     "FOLDER_NOT_ABSOLUTE", "FOLDER_IS_FILE", "INVALID_FOLDER", "NO_CHANGE", "ONE_CHANGE"}
)  # fmt: skip

NO_SESSION_FR = (
    "L'agent en cours d'exécution n'a pas de session ouverte (carte CPS absente ou session fermée) : "
    "insérez la carte et ouvrez la session dans la fenêtre de l'agent, ou relancez la commande avec "
    "--autonome (la commande ouvre alors la carte elle-même et demande le code porteur)."
)
OLD_AGENT_FR = (
    "L'agent en cours d'exécution ne connaît pas cette opération (version plus ancienne que la ligne de "
    "commande ?) : redémarrez l'agent, ou relancez la commande avec --autonome."
)
EMERGENCY_FR = (
    "Un accès en urgence (bris de glace ou centre 15) ne peut être confirmé que dans la fenêtre de "
    "l'agent en cours d'exécution, pas par la ligne de commande : ouvrez le patient dans la fenêtre, ou "
    "relancez la commande avec --autonome (la commande ouvre alors la carte elle-même)."
)


class StoreGiven(argparse.Action):
    """``--env``: stores the value and notes that it was given on the command line (``env_given``)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        setattr(namespace, self.dest, values)
        namespace.env_given = True


def add_options(p: argparse.ArgumentParser) -> None:
    """``--autonome`` and where to find the running agent (port, configuration folder with the token)."""
    g = p.add_argument_group("agent en cours d'exécution")
    g.add_argument(
        "--autonome",
        "--standalone",
        dest="autonome",
        action="store_true",
        help="ne pas passer par l'agent en cours d'exécution (la commande ouvre la carte elle-même)",
    )
    g.add_argument(
        "--port-agent",
        "--agent-port",
        dest="agent_port",
        type=int,
        metavar="PORT",
        default=None,
        help=f"port de l'API locale de l'agent (défaut : ${PORT_ENV}, sinon {DEFAULT_PORT})",
    )
    g.add_argument(
        "--config-agent",
        "--agent-config",
        dest="agent_config",
        type=Path,
        metavar="DOSSIER",
        default=None,
        help="dossier de configuration de l'agent (fichier api-token ; défaut : celui de l'utilisateur)",
    )


def _port(args: argparse.Namespace) -> int:
    if getattr(args, "agent_port", None) is not None:
        return int(args.agent_port)
    raw = os.environ.get(PORT_ENV, "").strip()
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"{PORT_ENV} doit être un numéro de port (reçu « {raw} »).") from None
    return DEFAULT_PORT


def running(args: argparse.Namespace) -> LocalAgent | None:
    """The running agent to go through, or None for the standalone path (``--autonome``, an
    establishment session asked with ``--etablissement``, or no agent answering)."""
    if getattr(args, "autonome", False) or getattr(args, "etablissement", None) is not None:
        return None
    port = _port(args)
    try:
        agent = locate_agent(getattr(args, "agent_config", None), port)
    except AgentTokenRefused as exc:
        raise ConfigurationError(
            f"Un agent répond sur l'API locale (127.0.0.1:{port}) mais refuse le jeton lu dans "
            f"{exc.path} (jeton d'une autre installation ou renouvelé) : vérifiez le dossier de "
            "configuration (--config-agent), ou relancez la commande avec --autonome.",
            code="TOKEN_REFUSED",
        ) from None
    if agent is not None and any(getattr(args, k, None) is not None for k in ("bris_de_glace", "centre_15")):
        raise PsAgentError(EMERGENCY_FR, code="EMERGENCY_NEEDS_WINDOW")
    return agent


def error_of(exc: ApiProblem, *, plain: bool = False) -> PsAgentError:
    """A problem+json answer as the error the standalone command would raise (message, exit code): a DMP
    refusal as ``DmpRefusal`` (printed "refusé par le DMP"), a policy refusal as ``AccessDenied``.
    ``plain``: the French detail alone (without the fields named for API callers)."""
    from ps_agent.dmp.errors import DmpRefusal

    status = int(exc.problem.get("status") or 0)
    code = str(exc.problem.get("code") or "")
    detail = str(exc.problem.get("detail") or exc.message_fr)
    if code == "NO_SESSION":
        return PsAgentError(NO_SESSION_FR, code=code)
    if exc.problem.get("source") == "dmp" and status not in (401, 503):
        return DmpRefusal(detail, code=code or None)
    if exc.problem.get("source") == "politique" and code:  # the agent's access policy (PAT-06, ID-01…)
        return AccessDenied(detail, code=code)
    if status == 401:
        return ConfigurationError(
            "L'agent en cours d'exécution refuse le jeton d'accès : relancez la commande avec --autonome.",
            code="TOKEN_REFUSED",
        )
    message = detail if plain else exc.message_fr
    if status == 403:
        return AccessDenied(message, code=code)
    if code in USAGE_CODES or status in (400, 413, 415):
        return UsageError(message, code=code or "USAGE")
    return PsAgentError(message, code=code or None)


# ---------------------------------------------------------------------------------- calls


def _call(agent: LocalAgent, method: str, path: str, *, plain: bool = False, **kw: Any) -> Any:
    """One request to the agent; problems raised as the standalone command's errors (``error_of``)."""
    import httpx

    try:
        with agent._client(timeout=120.0) as c:
            r = c.request(method, path, **kw)
    except httpx.HTTPError as exc:
        raise PsAgentError(
            f"L'agent en cours d'exécution ne répond plus ({type(exc).__name__}) : l'opération n'a peut-être "
            "pas abouti ; vérifiez avec « ps-agent outbox list » ou relancez avec --autonome.",
            code="AGENT_UNREACHABLE",
        ) from None
    if r.status_code >= 400:
        try:
            problem = r.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            raise PsAgentError(f"L'agent a répondu {r.status_code}.", code="API_ERROR")
        if problem.get("code") in ("UNKNOWN_ROUTE", "METHOD_NOT_ALLOWED") or (
            r.status_code in (404, 405) and "type" not in problem  # an agent older than this command
        ):
            raise PsAgentError(OLD_AGENT_FR, code="AGENT_TOO_OLD")
        problem.setdefault("status", r.status_code)
        raise error_of(ApiProblem(problem), plain=plain)
    return r


def _env_name(agent: LocalAgent, args: argparse.Namespace) -> str:
    """The agent's DMP environment; an environment asked for (``--env`` or ``$PS_AGENT_ENV``) that is not
    the agent's is refused rather than silently replaced (test and production data never mix)."""
    from ps_agent.config import environment

    name = str(_call(agent, "GET", "/v1/status").json().get("environment") or "sandbox")
    if getattr(args, "env_given", False) or os.environ.get("PS_AGENT_ENV"):
        asked = environment(args.env).name
        if asked != name:
            raise UsageError(
                f"L'agent en cours d'exécution travaille sur l'environnement DMP « {name} », pas sur "
                f"« {asked} » : relancez la commande sans --env (ni $PS_AGENT_ENV), ou avec --autonome.",
                code="ENV_MISMATCH",
            )
    return name


def _patient(args: argparse.Namespace, env_name: str) -> tuple[str, dict[str, str]]:
    """The matricule and query (oid, ins_status) checked as the standalone path does before the PIN,
    against the agent's environment."""
    if args.identite is not None:
        if args.ins:
            raise ConfigurationError(
                "--identite remplace --ins et --oid : n'indiquez que l'un des deux.", code="USAGE"
            )
        from ps_agent.config import data_dir
        from ps_agent.identity.records import IdentityRecords

        with IdentityRecords.open(Path(args.home) if args.home else data_dir()) as records:
            ref = records.qualified_ref(args.identite)
        return ref.ins, {"oid": ref.oid, "ins_status": ref.ins_status}
    if not args.ins:
        raise ConfigurationError("Indiquez le patient : --identite ID ou --ins (et --oid).", code="USAGE")
    oid = (args.oid or ins_oid_for(env_name)).strip()
    matricule, oid = checked_ins(args.ins, oid, env_name)
    return matricule, {"oid": oid, "ins_status": args.ins_status}


# ---------------------------------------------------------------------------------- commands


def status(agent: LocalAgent, args: argparse.Namespace) -> int:
    from ps_agent.cli.dmp_cmd import AUTHORISATION_LABELS
    from ps_agent.dmp.hl7 import DmpStatus

    ins, q = _patient(args, _env_name(agent, args))
    d = _call(agent, "GET", f"/v1/patients/{ins}/dmp", params=q).json()
    st = DmpStatus(
        exists=d["exists"], active=d["active"], authorisation=d["authorisation"],
        is_medecin_traitant=d["is_medecin_traitant"], family_name=d.get("family_name", ""),
        given_name=d.get("given_name", ""), birth_date=d.get("birth_date", ""),
        status_code=_status_code(d),
    )  # fmt: skip
    auth = labelled(st.authorisation, AUTHORISATION_LABELS.get(st.authorisation, "autorisation inconnue"))
    print_out(
        args.json,
        {"exists": st.exists, "active": st.active, "authorisation": st.authorisation,
         "medecin_traitant": st.is_medecin_traitant, "family_name": st.family_name,
         "given_name": st.given_name},
        st.summary_fr + (f"\nAutorisation : {auth}" if st.exists else ""),
    )  # fmt: skip
    return 0


def _status_code(d: dict[str, Any]) -> str:
    """The patient statusCode the standalone ``DmpStatus`` holds, from the API's booleans."""
    from ps_agent.dmp.hl7 import OPPOSED_STATUS_CODES

    if d.get("opposed"):
        return sorted(OPPOSED_STATUS_CODES)[0]
    return "active" if d.get("active") else ""


def consent(agent: LocalAgent, args: argparse.Namespace) -> int:
    from ps_agent.dmp.hl7 import DmpStatus

    ins, q = _patient(args, _env_name(agent, args))
    body = {"how": "oral", "medecin_traitant": bool(args.medecin_traitant)}
    d = _call(agent, "POST", f"/v1/patients/{ins}/consent", params=q, json=body).json()
    st = DmpStatus(
        exists=d["exists"], active=d["active"], authorisation=d["authorisation"],
        is_medecin_traitant=d["is_medecin_traitant"], status_code=_status_code(d),
    )  # fmt: skip
    print_out(
        args.json, {"authorisation": st.authorisation}, "Accord du patient enregistré. " + st.summary_fr
    )
    return 0


def search(agent: LocalAgent, args: argparse.Namespace) -> int:
    rubric = rubric_or_usage(args.rubrique) if args.rubrique else None
    ins, q = _patient(args, _env_name(agent, args))
    params: dict[str, Any] = dict(q, archives=bool(args.archives))
    if rubric:
        params["rubrique"] = rubric
    d = _call(agent, "GET", f"/v1/patients/{ins}/documents", params=params).json()
    rows = [
        {
            "unique_id": e["unique_id"], "entry_uuid": e.get("entry_uuid", ""), "title": e["title"],
            "type_code": e["type_code"], "type": e["type"], "class_code": e.get("class_code", ""),
            "rubric": e["rubric"], "creation_time": e["creation_time"], "status": e["status"],
            "authors": e["authors"], "masked_to_professionals": e["MASQUE_PS"],
            "invisible_to_patient": e["INVISIBLE_PATIENT"],
            "invisible_to_legal_representatives": e["INVISIBLE_REP_LEGAUX"],
        }
        for e in d["documents"]
    ]  # fmt: skip
    from ps_agent.cli.dmp_cmd import search_report

    return search_report(args, rows, list(d.get("hidden", [])), rubric)


def get(agent: LocalAgent, args: argparse.Namespace) -> int:
    from ps_agent.cli.common import write_private

    ins, q = _patient(args, _env_name(agent, args))
    params = dict(q, format="pdf" if args.pdf else "cda")
    try:
        r = _call(agent, "GET", f"/v1/patients/{ins}/documents/{args.unique_id}", params=params)
    except UsageError as exc:
        if exc.code == "NOT_PDF":
            raise UsageError(
                "Ce document n'est pas un PDF (CDA structuré ou autre fichier encapsulé) : enregistrez le "
                "XML (sans --pdf).",
                code="NOT_PDF",
            ) from None
        raise
    data: bytes = r.content
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


def vaccinations(agent: LocalAgent, args: argparse.Namespace) -> int:
    import dataclasses

    from cda.vaccinations import Immunization
    from ps_agent.cli.common import vaccination_line

    ins, q = _patient(args, _env_name(agent, args))
    d = _call(agent, "GET", f"/v1/patients/{ins}/vaccinations", params=q).json()
    names = [f.name for f in dataclasses.fields(Immunization)]
    items = []
    for v in d["vaccinations"]:
        values = {n: v.get(n) for n in names}
        values["antigens"] = tuple(values.get("antigens") or ())
        items.append(Immunization(**values))
    rows = [i.as_dict() for i in items]
    lines = [vaccination_line(i) for i in items] or ["Aucune vaccination enregistrée."]
    print_out(args.json, {"vaccinations": rows}, "\n".join(lines))
    return 0


def deposit(agent: LocalAgent, args: argparse.Namespace) -> int:
    """Each CDA is queued in the agent (``POST /v1/deposits``), then followed until it is settled."""
    from ps_agent.access.policy import PatientRef
    from ps_agent.cli.dmp_cmd import (
        _checked_cda,
        _looks_like_xml,
        _read_file,
        deposit_report_lines,
        deposit_rows,
    )

    ins, q = _patient(args, _env_name(agent, args))
    ref = PatientRef(ins, q["oid"], q["ins_status"])
    if args.remplace and len(args.files) != 1:
        raise UsageError("--remplace ne s'utilise qu'avec un seul document.")
    if args.titre and not args.remplace:
        raise UsageError("--titre s'utilise avec --remplace (sinon le titre est celui du document).")
    if args.auteur and not args.remplace:
        raise UsageError(
            "--auteur s'utilise avec --remplace ou --etablissement (sinon l'auteur est dans le document)."
        )
    contents = [_read_file(f) for f in args.files]
    if args.remplace and not _looks_like_xml(contents[0]):
        raise UsageError(
            "Par l'agent en cours d'exécution, --remplace prend un document CDA déjà construit comme "
            "nouvelle version ; pour la construire à partir d'un PDF ou d'un texte, relancez la commande "
            "avec --autonome.",
            code="REPLACE_NEEDS_CDA",
        )
    for path, data in zip(args.files, contents, strict=True):
        _checked_cda(path, data, ref)
    patient = {"ins": ins, "ins_oid": q["oid"], "ins_status": q["ins_status"]}
    visibility = {"MASQUE_PS": bool(args.masque_ps), "INVISIBLE_PATIENT": bool(args.invisible_patient),
                  "INVISIBLE_REP_LEGAUX": bool(args.invisible_representants)}  # fmt: skip
    queued: list[str] = []
    for n, data in enumerate(contents, start=1):
        body: dict[str, Any] = {"patient": patient, "cda_base64": base64.b64encode(data).decode(),
                                "visibility": visibility}  # fmt: skip
        if args.remplace:
            body["replaces"] = args.remplace
        queued.append(str(_call(agent, "POST", "/v1/deposits", json=body).json()["id"]))
        if not args.json:
            print(f"Transmis à l'agent… ({n}/{len(contents)})", file=sys.stderr)
    states = _settle(agent, queued)
    refused = [s for s in states if s["state"] in ("refused", "handed_back")]
    waiting = [s for s in states if s["state"] not in ("registered", "refused", "handed_back")]
    if refused:
        s = refused[0]
        reason, code = str(s.get("reason") or s.get("state_label")), str(s.get("reason_code") or "")
        if POLICY_RULE.match(code):  # the agent's access policy refused it (as standalone: AccessDenied)
            raise AccessDenied(reason, code=code)
        raise PsAgentError(f"refusé par le DMP : {reason}", code=code or None)
    if waiting:
        ids = ", ".join(str(s["id"]) for s in waiting)
        raise PsAgentError(
            f"Document(s) dans la file d'envoi de l'agent, pas encore enregistré(s) ({ids}) : "
            f"{waiting[0].get('state_label')}"
            + (f" — {waiting[0]['reason']}" if waiting[0].get("reason") else "")
            + ". Suivi : ps-agent outbox list.",
            code="QUEUED",
        )
    rows = []
    for s, data in zip(states, contents, strict=True):
        rows.extend(deposit_rows(((uid, data) for uid in s["document_unique_ids"]), args.remplace))
    lines = deposit_report_lines(rows)
    print_out(
        args.json,
        {"submission_set": queued[0] if len(queued) == 1 else None, "queue_ids": queued,
         "documents": [r["unique_id"] for r in rows], "details": rows},
        "\n".join(lines),
    )  # fmt: skip
    return 0


def _settle(agent: LocalAgent, ids: list[str]) -> list[dict[str, Any]]:
    """The queue items once settled, or as they are when ``DEPOSIT_WAIT_S`` has passed."""
    deadline = time.monotonic() + DEPOSIT_WAIT_S
    states: dict[str, dict[str, Any]] = {}
    while True:
        for i in ids:
            if i not in states or states[i]["state"] not in ("registered", "refused", "handed_back"):
                states[i] = _call(agent, "GET", f"/v1/queue/{i}").json()
        if all(s["state"] in ("registered", "refused", "handed_back") for s in states.values()):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    return [states[i] for i in ids]


def outbox_list(agent: LocalAgent, args: argparse.Namespace) -> int:
    """The agent's queue (the one it sends from), printed by the report of ``ps-agent outbox list``."""
    from ps_agent.cli.outbox_cmd import list_report
    from ps_agent.outbox import EntryState, QueuedDeposit

    items = _call(agent, "GET", "/v1/queue", params={"tout": True}).json()
    entries = [
        QueuedDeposit(
            id=i["id"], patient_ins=i.get("patient_ins") or "", patient_oid=i.get("patient_ins_oid") or "",
            ins_status=i.get("patient_ins_status") or "",
            document_uids=tuple(i["document_unique_ids"]), documents=(),
            visibility=(bool(i.get("MASQUE_PS")), bool(i.get("INVISIBLE_PATIENT")),
                        bool(i.get("INVISIBLE_REP_LEGAUX"))),
            replaces=tuple(d.get("replaces") or "" for d in i.get("documents") or ()),
            replaces_entry_uuids=(), titles=tuple(i.get("titles") or ()),
            actor_id_nat=i.get("deposited_by") or "", on_behalf_of=i.get("on_behalf_of") or "",
            created=i.get("created") or "", updated=i.get("updated") or "",
            state=EntryState(i["state"]), reason_fr=i.get("reason") or "",
            reason_code=i.get("reason_code") or "",
            attempts=int(i.get("attempts") or 0), next_try=float(i.get("next_try") or 0.0),
        )
        for i in items
    ]  # fmt: skip
    return list_report(args, entries)


# ---------------------------------------------------------------------------------- document actions

# The API request of each document action of the command line.
_ACTIONS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any] | None]] = {
    "mask": ("POST", "/visibility", {}, {"MASQUE_PS": True}),
    "unmask": ("POST", "/visibility", {}, {"MASQUE_PS": False}),
    "make_visible": ("POST", "/visibility", {}, {"INVISIBLE_PATIENT": False}),
    "make_visible_reps": ("POST", "/visibility", {}, {"INVISIBLE_REP_LEGAUX": False}),
    "archive": ("POST", "/archive", {}, None),
    "unarchive": ("POST", "/archive", {"archiver": False}, None),
    "delete": ("DELETE", "", {}, None),
}


def document_action(agent: LocalAgent, args: argparse.Namespace, action: str) -> None:
    """A TD3.3 action on a document through the agent (its policy and journal); the caller prints the
    report (``dmp_cmd.document_action_report``), as the standalone path does."""
    ins, q = _patient(args, _env_name(agent, args))
    _document_request(agent, ins, q, args.unique_id, action)


def _document_request(agent: LocalAgent, ins: str, q: dict[str, str], uid: str, action: str) -> None:
    method, suffix, params, body = _ACTIONS[action]
    path = f"/v1/patients/{ins}/documents/{uid}{suffix}"
    _call(agent, method, path, plain=True, params={**q, **params}, json=body)


def delete(
    agent: LocalAgent, args: argparse.Namespace, confirm: Callable[[argparse.Namespace, str], bool]
) -> bool:
    """Delete through the agent once the person confirmed (``confirm(args, ins)``, as standalone: after
    the cheap checks, before anything is sent). False when not confirmed (nothing sent)."""
    ins, q = _patient(args, _env_name(agent, args))
    if not confirm(args, ins):
        return False
    _document_request(agent, ins, q, args.unique_id, "delete")
    return True


# ---------------------------------------------------------------------------------- queue actions


def outbox_resume(agent: LocalAgent, args: argparse.Namespace) -> tuple[list[dict[str, Any]], int]:
    """``ps-agent outbox resume [ID]`` on the agent's queue (``POST /v1/queue/resume``, or
    ``/v1/queue/ID/resume`` for one entry): the outcome rows and how many are left."""
    _env_name(agent, args)
    entry_id = getattr(args, "id", None)
    if not getattr(args, "json", False):
        what = f"de l'envoi {entry_id}" if entry_id else "des envois en attente"
        print(f"Reprise {what} par l'agent…", file=sys.stderr)
    path = f"/v1/queue/{entry_id}/resume" if entry_id else "/v1/queue/resume"
    d = _call(agent, "POST", path, plain=True).json()
    rows = [
        {"id": o["id"], "state": o["state"], "state_fr": o["state_label"], "reason_fr": o.get("reason") or "",
         "documents": list(o.get("document_unique_ids") or ())}
        for o in d["outcomes"]
    ]  # fmt: skip
    return rows, int(d.get("left") or 0)


def outbox_hand_back(agent: LocalAgent, args: argparse.Namespace, folder: Path) -> tuple[str, list[Path]]:
    """``ps-agent outbox hand-back ID --vers DIR`` by the agent: it writes the files into ``folder`` (made
    absolute here: the agent does not know this command's current folder)."""
    d = _call(
        agent, "POST", f"/v1/queue/{args.id}/hand-back", plain=True, json={"folder": str(folder)}
    ).json()
    return str(d["id"]), [Path(f) for f in d.get("files") or ()]
