"""Answers and faults of the INSi sandbox, laid out as the real service sends them (insi.md §3.1, §4.2).

The ``RESULTAT`` envelope reproduces the qualification service byte layout: ``soap``/``env`` prefixes,
an empty ``env:Header``, no WS-Addressing headers, ``RESULTAT`` in its default namespace with the
``ns0``/``ns1`` declarations, labels without accents. Faults are SOAP 1.2 faults carrying
``siram:Erreur`` (prefix declared on the element, no default namespace in scope), sent with HTTP 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from sandbox.errors import SandboxError
from sandbox.insi.data import Ins, Person

SOAP_NS = "http://www.w3.org/2003/05/soap-envelope"
RESULTAT_NS = "http://www.cnamts.fr/INSiResultat"

LABELS = {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}

# [I] The service sends severite="fatal" for insi_102 [C:S4], which the fault schema's enumeration
# (information | avertissement | erreur | fatale) does not contain: the sandbox reproduces the observed value.
OBSERVED_FATAL_SEVERITY = "fatal"

REASON_UNAVAILABLE = (
    "Le service est temporairement inaccessible. Veuillez renouveler votre demande ultérieurement. Si le "
    "problème persiste, contactez l'éditeur du progiciel ou votre responsable informatique."
)
DETAIL_INSI_102 = "L'appel au service de recherche avec les traits d'identité renvoie une erreur technique."
REASON_IDAM = (
    "L'accès par ce progiciel au service n'est pas autorisé. Contactez l'éditeur du progiciel ou votre "
    "responsable informatique."
)
DETAIL_IDAM = "Numéro d'autorisation du logiciel inconnu."
REASON_ACCESS = "Niveau d'accès insuffisant"
DETAIL_ACCESS = "Vous ne disposez pas des droits suffisants pour accéder à ce service"


class InsiFault(SandboxError):
    """A refusal answered as an INSi SOAP fault. Detail codes ``sandbox_*`` are sandbox-only (the real
    codes for those checks are not public, insi.md §7.3)."""

    def __init__(
        self,
        reason: str,
        *,
        detail_code: str,
        detail: str = "",
        code: str = "Sender",
        subcode: str = "siram_100",
        severity: str = "erreur",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail_code = detail_code
        self.detail = detail or reason
        self.code = code
        self.subcode = subcode
        self.severity = severity


def unavailable() -> InsiFault:
    """The real ``siram_40``/``insi_102`` technical fault [C:S4 log]."""
    return InsiFault(
        REASON_UNAVAILABLE,
        detail_code="insi_102",
        detail=DETAIL_INSI_102,
        code="Receiver",
        subcode="siram_40",
        severity=OBSERVED_FATAL_SEVERITY,
    )


def unknown_idam() -> InsiFault:
    return InsiFault(REASON_IDAM, detail_code="desir_550", detail=DETAIL_IDAM)


def access_level() -> InsiFault:
    # subcode for DESIR_560 not observed [?]: siram_100 (insi.md §7.1)
    return InsiFault(REASON_ACCESS, detail_code="DESIR_560", detail=DETAIL_ACCESS)


def sandbox_fault(detail_code: str, reason: str) -> InsiFault:
    return InsiFault(reason, detail_code=detail_code)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/soap+xml; charset=utf-8"


def _t(value: str) -> str:
    return escape(value)


def _ins(tag: str, ins: Ins) -> str:
    key = f"<Cle>{_t(ins.key)}</Cle>" if ins.key else ""
    dates = ""
    if ins.date_start:
        dates += f"<DateDeb>{_t(ins.date_start)}</DateDeb>"
    if ins.date_end:
        dates += f"<DateFin>{_t(ins.date_end)}</DateFin>"
    return (
        f"<{tag}><IdIndividu><NumIdentifiant>{_t(ins.matricule)}</NumIdentifiant>{key}</IdIndividu>"
        f"<OID>{_t(ins.oid)}</OID>{dates}</{tag}>"
    )


def _envelope(payload: str) -> bytes:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:env="{SOAP_NS}"><env:Header/>'
        f'<env:Body xmlns:S="{SOAP_NS}">{payload}</env:Body></soap:Envelope>'
    ).encode()


def resultat(code: str, person: Person | None = None) -> Answer:
    individu = ""
    if code == "00":
        assert person is not None
        p = person
        prenom = f"<Prenom>{_t(p.tiq_prenom)}</Prenom>" if p.tiq_prenom else ""
        liste = f"<ListePrenom>{_t(p.first_names)}</ListePrenom>" if p.first_names else ""
        lieu = f"<LieuNaissance>{_t(p.birth_place)}</LieuNaissance>" if p.birth_place else ""
        individu = (
            "<INDIVIDU>"
            + _ins("INSACTIF", p.ins)
            + "".join(_ins("INSHISTO", h) for h in p.history)
            + f"<TIQ><NomNaissance>{_t(p.birth_name)}</NomNaissance>{prenom}{liste}<Sexe>{_t(p.sex)}</Sexe>"
            + f"<DateNaissance>{_t(p.birth_date)}</DateNaissance>{lieu}</TIQ></INDIVIDU>"
        )
    payload = (
        f'<RESULTAT xmlns="{RESULTAT_NS}" xmlns:ns0="http://www.cnamts.fr/INSiRecVit" '
        f'xmlns:ns1="http://www.cnamts.fr/INSiRecSans"><CR><CodeCR>{code}</CodeCR>'
        f"<LibelleCR>{LABELS[code]}</LibelleCR></CR>{individu}</RESULTAT>"
    )
    return Answer(200, _envelope(payload))


def fault(f: InsiFault, message_id: str | None) -> Answer:
    mid = f" messageID={quoteattr(message_id)}" if message_id else ""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f'<S:Envelope xmlns:S="{SOAP_NS}"><S:Body><S:Fault>'
        f"<S:Code><S:Value>S:{f.code}</S:Value><S:Subcode><S:Value>S:{_t(f.subcode)}</S:Value></S:Subcode></S:Code>"
        f'<S:Reason><S:Text xml:lang="fr">{_t(f.reason)}</S:Text></S:Reason>'
        f'<S:Detail><siram:Erreur xmlns:siram="urn:siram" code={quoteattr(f.detail_code)} '
        f"severite={quoteattr(f.severity)}{mid}>{_t(f.detail)}</siram:Erreur></S:Detail>"
        "</S:Fault></S:Body></S:Envelope>"
    ).encode()
    return Answer(500, body)
