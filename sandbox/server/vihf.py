"""VIHF (SAML 2.0 assertion) verification: structure, mandatory attributes per mode, XML-DSig signature and
certificate chain, signature certificate vs TLS certificate, mode vs TLS certificate, specialty, structure
vs card activity (``sandbox.profiles`` stands in for the national directory), emergency purposes.

Every refusal is a :class:`SoapFault` with a French reason (dmp-protocol.md §6, §9). The uncertain points
decided here are the module constants below (each commented)."""

from __future__ import annotations

import hashlib
import heapq
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.exceptions import InvalidInput, InvalidSignature

from sandbox import profiles
from sandbox.server import certs
from sandbox.server.context import (
    MODE_DIRECTE,
    MODES,
    PURPOSE_BRIS_DE_GLACE,
    PURPOSE_CENTRE_15,
    PURPOSES,
    Caller,
    SoapFault,
)

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
HL7 = "urn:hl7-org:v3"

ISSUER_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
A_STRUCTURE = "Identifiant_Structure"
A_SECTOR = "Secteur_Activite"
A_ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
A_VERSION = "VIHF_Version"
A_MODE = "Authentification_mode"
A_RESOURCE = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
A_URN = "Ressource_URN"
A_PURPOSE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
A_SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
A_CONFIDENTIALITY = "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code"
A_LPS_NOM = "LPS_Nom"
A_LPS_VERSION = "LPS_Version"
A_LPS_HOMOLOGATION = "LPS_ID_HOMOLOGATION_DMP"
A_REASON = "Mode_Acces_Raison"

# [?] S1 spells "Authentification_mode", S3/S11 "Authentification_Mode": the sandbox accepts both spellings.
MODE_ATTRIBUTE_SPELLINGS = (A_MODE, "Authentification_Mode")
# [?] VIHF_Version: 3.0 in every S1 sample, 4.0 in the S8 table and authentication.md §3.2: accept both.
ACCEPTED_VIHF_VERSIONS = frozenset({"3.0", "4.0"})
# [I] Attributes required in every mode (dmp-protocol.md §6.1/6.2); resource-id is required except for TD0.4
# (patientsSpecific: a list of patients, the S1 sample sets one anyway), subject-id only in indirect modes.
MANDATORY_ATTRIBUTES = (
    A_STRUCTURE,
    A_SECTOR,
    A_ROLE,
    A_VERSION,
    A_URN,
    A_PURPOSE,
    A_LPS_NOM,
    A_LPS_VERSION,
    A_LPS_HOMOLOGATION,
)
SERVICES_WITHOUT_PATIENT = frozenset({"patientsSpecific"})
# [?] Break-glass reason carrier unknown (§6.2): Mode_Acces_Raison is read when present, not required.
BREAK_GLASS_REASON_REQUIRED = False
# [I] Freshness of IssueInstant: the VIHF is built per request; allow clock skew and a generous age so a
# slow agent or a paused debugger is not refused. Older VIHFs are refused as replays.
VIHF_MAX_AGE = timedelta(hours=2)
VIHF_MAX_CLOCK_SKEW = timedelta(minutes=5)
# [I] Replay: a VIHF is issued per request (§6.2 "ID new per request"); an assertion ID seen again while the
# VIHF would still be accepted (IssueInstant + VIHF_MAX_AGE) is refused. Kept in memory, not persisted: the
# sandbox is a loopback test server, a write per request would slow every test, and refusing every VIHF
# issued before a restart would turn a restart (the fault campaign kills and restarts it) into false
# refusals. At most REPLAY_CACHE_MAX IDs (16-byte digests): when full, the oldest are forgotten and VIHFs
# issued at or before the last forgotten one are refused: a replay is never accepted, memory stays bounded.
REPLAY_CACHE_MAX = 100_000
# [I] centre_15 (§1: only bris de glace is restricted to DIRECTE): in INDIRECTE / INDIRECTE_RENFORCEE the
# establishment vouches for its user (the SAMU-centre 15 is one of its services), so the regulation role is
# the user's in the national directory (a regulation activity), whatever structure the VIHF names.
CENTRE_15_INDIRECT_FROM_DIRECTORY = True
# [C:S1 rsa-sha1 samples; I for SHA-256 per §6.4]: accept RSA-SHA256 (recommended) and RSA-SHA1 (S1).
ACCEPTED_SIGNATURE_METHODS = frozenset(
    {
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA1,
        SignatureMethod.RSA_SHA384,
        SignatureMethod.RSA_SHA512,
    }
)
ACCEPTED_DIGESTS = frozenset(
    {DigestAlgorithm.SHA256, DigestAlgorithm.SHA1, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}
)
# [I] The S8 example's exc-c14n InclusiveNamespaces is not schema-valid (review note 8); the sandbox checks
# the cryptography, not the ds:Signature schema, so both S1 and S8 shapes are accepted.
VALIDATE_DSIG_SCHEMA = False
# [I] In INDIRECTE modes the directory check is on the structure only: the user is asserted by the
# establishment (NameID from its own directory), so an unknown NameID is accepted.
# [I] In INDIRECTE modes the VIHF's Identifiant_Structure must be the establishment named in the OU of its
# ORG certificates (an establishment cannot speak for another structure).
STRUCTURE_MUST_MATCH_ORG_CERT = True
PROFESSION_OID = "1.2.250.1.71.1.2.7"  # TRE_G15
NON_PS_ROLE_OID = "1.2.250.1.213.1.1.4.6"  # TRE_A00
STUDENT_OID = "1.2.250.1.71.1.2.8"
SECTOR_OID = "1.2.250.1.71.4.2.4"  # TRE_R02
CONFIDENTIALITY_OID = "1.2.250.1.213.1.1.4.13"
PROFESSIONS_NEEDING_SPECIALTY = frozenset({"10", "21"})  # médecins, pharmaciens
INS_OIDS = frozenset(
    {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"}
)
REGULATOR_ROLE = "REGULATEUR"

_CX = re.compile(r"^(?P<id>[^\^&]+)\^\^\^&(?P<oid>[0-9.]+)&ISO\^NH(\^.*)?$")
_INS = re.compile(r"^[12378][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{8}$")


def _fault(reason: str, subcode: str = "wsse:InvalidSecurityToken") -> SoapFault:
    return SoapFault(reason, subcode=subcode)


@dataclass
class _Attrs:
    values: dict[str, list[etree._Element]]

    def strings(self, name: str) -> list[str]:
        return [(v.text or "").strip() for v in self.values.get(name, [])]

    def first(self, name: str) -> str:
        vals = self.strings(name)
        return vals[0] if vals else ""


def _attributes(assertion: etree._Element) -> _Attrs:
    out: dict[str, list[etree._Element]] = {}
    for attr in assertion.iterfind(f"{{{SAML}}}AttributeStatement/{{{SAML}}}Attribute"):
        out.setdefault(attr.get("Name", ""), []).extend(attr.findall(f"{{{SAML}}}AttributeValue"))
    return _Attrs(out)


def _coded(value: etree._Element) -> tuple[str, str]:
    """(code, codeSystem) of an HL7 CE inside an AttributeValue (Role / PurposeOfUse)."""
    for child in value:
        if isinstance(child.tag, str):
            return child.get("code", "").strip(), child.get("codeSystem", "").strip()
    return "", ""


def nir_key_ok(matricule: str) -> bool:
    """INS-NIR/NIA key: 97 - (13 digits mod 97); Corsica 2A/2B counted as 19/18."""
    body, key = matricule[:13], matricule[13:]
    body = body.replace("2A", "19").replace("2B", "18")
    try:
        return 97 - int(body) % 97 == int(key)
    except ValueError:
        return False


def parse_resource_id(value: str) -> tuple[str, str]:
    """``{matricule}^^^&{OID}&ISO^NH`` → (matricule, OID); SoapFault when malformed."""
    m = _CX.match(value)
    if not m:
        raise _fault(f"Identifiant patient (resource-id) du VIHF mal formé : « {value} ».")
    ins, oid = m.group("id"), m.group("oid")
    if oid not in INS_OIDS:
        raise _fault(f"Autorité d'affectation de l'INS inconnue dans le VIHF : {oid}.")
    if not _INS.match(ins):
        raise _fault(f"INS du patient invalide dans le VIHF : « {ins} » (15 caractères attendus).")
    if not nir_key_ok(ins):
        raise _fault(f"INS du patient invalide dans le VIHF : clé de contrôle incorrecte ({ins}).")
    return ins, oid


def _parse_instant(text: str | None, what: str) -> datetime:
    if not text:
        raise _fault(f"{what} absent du VIHF.")
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _fault(f"{what} du VIHF invalide : « {text} ».") from None
    if value.tzinfo is None:
        raise _fault(f"{what} du VIHF doit être en UTC (suffixe Z).")
    return value


class ReplayCache:
    """Assertion IDs seen while their VIHF is still acceptable (thread-safe, bounded; REPLAY_CACHE_MAX)."""

    def __init__(self, max_entries: int = REPLAY_CACHE_MAX, max_age: timedelta = VIHF_MAX_AGE) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._lock = threading.Lock()
        self._seen: dict[bytes, datetime] = {}
        self._expiries: list[tuple[datetime, bytes]] = []
        self._floor: datetime | None = None  # VIHFs issued at or before it can no longer be checked

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def remember(self, assertion_id: str, issued: datetime, now: datetime) -> None:
        """Record a verified VIHF; :class:`SoapFault` when it was already used (or is too old to tell)."""
        key = hashlib.sha256(assertion_id.encode("utf-8", "surrogatepass")).digest()[:16]
        with self._lock:
            while self._expiries and self._expiries[0][0] <= now:
                _, old = heapq.heappop(self._expiries)
                self._seen.pop(old, None)
            if self._floor is not None and issued <= self._floor:
                raise _fault(
                    "VIHF trop ancien pour être contrôlé contre le rejeu (forte charge du DMP de test) : "
                    "émettez un nouveau VIHF pour cette requête."
                )
            if key in self._seen:
                raise _fault(
                    f"VIHF déjà utilisé (ID {assertion_id[:80]}) : rejeu refusé, un VIHF est émis pour "
                    "chaque requête."
                )
            expires = issued + self.max_age
            self._seen[key] = expires
            heapq.heappush(self._expiries, (expires, key))
            while len(self._seen) > self.max_entries:
                oldest, old = heapq.heappop(self._expiries)
                self._seen.pop(old, None)
                floor = oldest - self.max_age
                self._floor = floor if self._floor is None else max(self._floor, floor)


class VihfVerifier:
    """Verify the VIHF of a request against the TLS client certificate; build the :class:`Caller`."""

    def __init__(self, trust: certs.TrustStore, *, replay_cache: ReplayCache | None = None) -> None:
        self.replays = replay_cache if replay_cache is not None else ReplayCache()
        self._trust = trust
        self._config = SignatureConfiguration(
            require_x509=True,
            expect_references=1,
            signature_methods=ACCEPTED_SIGNATURE_METHODS,
            digest_algorithms=ACCEPTED_DIGESTS,
        )
        self._structures = {s.structure_id: s for p in profiles.PROFILES.values() for s in p.situations}
        self._structures[profiles.ESTABLISHMENT.structure_id] = profiles.ESTABLISHMENT
        self._by_id_nat = {p.id_nat: p for p in profiles.PROFILES.values()}

    # -- signature -------------------------------------------------------------------------------------
    def _verify_signature(
        self, assertion: etree._Element, signature: etree._Element
    ) -> tuple[etree._Element, x509.Certificate]:
        cert_el = signature.find(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
        if cert_el is None or not (cert_el.text or "").strip():
            raise _fault("Le VIHF signé ne porte pas le certificat de signature (KeyInfo/X509Certificate).")
        try:
            der = _b64(cert_el.text or "")
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise _fault("Le certificat de signature du VIHF est illisible.") from None
        try:
            self._trust.verify(cert)
        except certs.CertificateProblem as exc:
            raise _fault(f"Le certificat ayant signé le VIHF est invalide : {exc.message_fr}.") from None
        try:
            result = XMLVerifier().verify(
                etree.tostring(assertion),
                x509_cert=cert,
                expect_config=self._config,
                validate_schema=VALIDATE_DSIG_SCHEMA,
            )
        except (InvalidSignature, InvalidInput) as exc:
            raise _fault(f"La signature du VIHF est invalide ({exc}).", "wsse:FailedCheck") from None
        except Exception as exc:  # signxml raises assorted errors on hostile input
            raise _fault(
                f"La signature du VIHF est invalide ({type(exc).__name__}).", "wsse:FailedCheck"
            ) from None
        signed = result.signed_xml  # type: ignore[union-attr]
        if signed is None or signed.tag != f"{{{SAML}}}Assertion" or signed.get("ID") != assertion.get("ID"):
            raise _fault("La signature du VIHF ne couvre pas l'assertion entière.", "wsse:FailedCheck")
        if not certs.is_signature_certificate(cert):
            raise _fault(
                "Le certificat ayant signé le VIHF est invalide : Not a valid signature certificate "
                "(un certificat de signature, non-répudiation, est attendu)."
            )
        return signed, cert

    # -- main entry ------------------------------------------------------------------------------------
    def verify(
        self,
        security: etree._Element,
        tls_cert: x509.Certificate,
        service: str,
        *,
        now: datetime | None = None,
    ) -> Caller:
        assertions = security.findall(f"{{{SAML}}}Assertion")
        if len(assertions) != 1:
            raise _fault("Le VIHF (assertion SAML 2.0) est absent de l'en-tête wsse:Security ou multiple.")
        assertion = assertions[0]
        if assertion.get("Version") != "2.0":
            raise _fault('Le VIHF doit être une assertion SAML Version="2.0".')
        if not assertion.get("ID"):
            raise _fault("L'attribut ID du VIHF est absent.")
        children = [c for c in assertion if isinstance(c.tag, str)]
        if not children or children[0].tag != f"{{{SAML}}}Issuer":
            raise _fault("Le VIHF doit commencer par l'élément saml2:Issuer.")
        signatures = [c for c in children if c.tag == f"{{{DS}}}Signature"]
        signer: x509.Certificate | None = None
        if signatures:
            if len(signatures) > 1 or children[1] is not signatures[0]:
                raise _fault("La signature du VIHF doit suivre immédiatement saml2:Issuer (une seule).")
            assertion, signer = self._verify_signature(assertion, signatures[0])

        instant = _parse_instant(assertion.get("IssueInstant"), "IssueInstant")
        now = now or datetime.now(UTC)
        if instant > now + VIHF_MAX_CLOCK_SKEW:
            raise _fault("L'instant d'émission du VIHF (IssueInstant) est dans le futur.")
        if now - instant > VIHF_MAX_AGE:
            raise _fault(
                "Le VIHF est périmé (IssueInstant trop ancien) : un VIHF est émis pour chaque requête."
            )

        issuer = assertion.find(f"{{{SAML}}}Issuer")
        if issuer is None or issuer.get("Format") != ISSUER_FORMAT or not (issuer.text or "").strip():
            raise _fault(f"L'émetteur du VIHF (saml2:Issuer, Format {ISSUER_FORMAT}) est absent ou invalide.")
        issuer_dn = (issuer.text or "").strip()
        name_id_el = assertion.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
        name_id = (name_id_el.text or "").strip() if name_id_el is not None else ""
        if not name_id:
            raise _fault("L'identifiant de l'utilisateur (Subject/NameID) est absent du VIHF.")
        if (
            assertion.find(f"{{{SAML}}}AuthnStatement/{{{SAML}}}AuthnContext/{{{SAML}}}AuthnContextClassRef")
            is None
        ):
            raise _fault(
                "Le contexte d'authentification (AuthnStatement/AuthnContextClassRef) est absent du VIHF."
            )

        attrs = _attributes(assertion)
        mode = next((attrs.first(n) for n in MODE_ATTRIBUTE_SPELLINGS if attrs.first(n)), "")
        if not mode:
            raise _fault("Attribut obligatoire absent du VIHF : Authentification_mode.")
        if mode not in MODES:
            raise _fault(f"Mode d'authentification inconnu dans le VIHF : « {mode} ».")
        required = list(MANDATORY_ATTRIBUTES)
        if service not in SERVICES_WITHOUT_PATIENT:
            required.append(A_RESOURCE)
        if mode != MODE_DIRECTE:
            required.append(A_SUBJECT_ID)
        for name in required:
            if not attrs.values.get(name):
                raise _fault(f"Attribut obligatoire absent du VIHF : {name}.")
        if attrs.first(A_VERSION) not in ACCEPTED_VIHF_VERSIONS:
            raise _fault(f"Version de VIHF non prise en charge : « {attrs.first(A_VERSION)} ».")
        if attrs.first(A_URN) != "urn:dmp":
            raise _fault("Ressource_URN doit valoir « urn:dmp ».")
        for name in (A_LPS_NOM, A_LPS_VERSION, A_LPS_HOMOLOGATION, A_STRUCTURE):
            if not attrs.first(name):
                raise _fault(f"Attribut obligatoire vide dans le VIHF : {name}.")

        # -- role: profession (or non-PS role) then specialty
        profession = non_ps_role = specialty = role_code = ""
        for i, value in enumerate(attrs.values[A_ROLE]):
            code, system = _coded(value)
            if i == 0:
                role_code = code
                if system in (PROFESSION_OID, STUDENT_OID):
                    profession = code
                elif system == NON_PS_ROLE_OID:
                    non_ps_role = code
                else:
                    raise _fault(
                        f"Rôle de l'utilisateur inconnu dans le VIHF (codeSystem {system or 'absent'})."
                    )
                if not code:
                    raise _fault("Rôle de l'utilisateur vide dans le VIHF.")
            elif i == 1:
                specialty = code
        if profession in PROFESSIONS_NEEDING_SPECIALTY and not specialty:
            raise _fault("Aucune spécialité dans le vihf (obligatoire pour les médecins et les pharmaciens).")

        sector_raw = attrs.first(A_SECTOR)
        sector, _, sector_oid = sector_raw.partition("^")
        if not sector or (sector_oid and sector_oid != SECTOR_OID):
            raise _fault(f"Secteur d'activité invalide dans le VIHF : « {sector_raw} ».")
        structure_id = attrs.first(A_STRUCTURE)

        purpose_code, _ = _coded(attrs.values[A_PURPOSE][0])
        if purpose_code not in PURPOSES:
            raise _fault(f"Mode d'accès (purposeofuse) inconnu dans le VIHF : « {purpose_code} ».")
        reason = attrs.first(A_REASON) or None
        if purpose_code == PURPOSE_BRIS_DE_GLACE and BREAK_GLASS_REASON_REQUIRED and not reason:
            raise _fault("Le motif de l'accès en bris de glace (Mode_Acces_Raison) est obligatoire.")

        patient_ins = patient_oid = None
        if attrs.values.get(A_RESOURCE):
            patient_ins, patient_oid = parse_resource_id(attrs.first(A_RESOURCE))
        confidentiality = None
        if attrs.values.get(A_CONFIDENTIALITY):
            raw = attrs.first(A_CONFIDENTIALITY)
            code, _, system = raw.partition("^")
            if code != "INVISIBLE_REPRESENTANTS_LEGAUX" or (system and system != CONFIDENTIALITY_OID):
                raise _fault(f"Code de confidentialité patient non pris en charge dans le VIHF : « {raw} ».")
            confidentiality = code

        # -- certificates vs mode
        tls_cn = certs.common_name(tls_cert)
        if certs.is_signature_certificate(tls_cert):
            expected = "de la carte" if mode == MODE_DIRECTE else "de l'établissement (ORG AUTH_CLI)"
            raise _fault(
                "Le certificat TLS est un certificat de signature : le certificat d'authentification "
                f"{expected} est attendu.",
                "wsse:FailedAuthentication",
            )
        if mode == MODE_DIRECTE:
            if not certs.is_personal(tls_cert) or tls_cn != name_id:
                raise _fault(
                    "Mode DIRECTE : le certificat TLS doit être le certificat d'authentification de la carte "
                    f"du professionnel désigné dans le VIHF (NameID {name_id}, certificat {tls_cn}).",
                    "wsse:FailedAuthentication",
                )
            if signer is not None:
                if not certs.is_personal(signer) or certs.common_name(signer) != name_id:
                    raise _fault(
                        "Mode DIRECTE : le VIHF doit être signé avec le certificat de signature de la "
                        "carte du même professionnel.",
                        "wsse:FailedAuthentication",
                    )
        else:
            if signer is None:
                raise _fault(
                    "VIHF non signé : la signature par le certificat de l'établissement est "
                    f"obligatoire en mode {mode}.",
                    "wsse:FailedAuthentication",
                )
            if certs.is_personal(tls_cert):
                raise _fault(
                    f"Mode {mode} : le certificat TLS doit être le certificat d'authentification de "
                    "l'établissement (ORG AUTH_CLI), pas celui d'une carte.",
                    "wsse:FailedAuthentication",
                )
            if certs.is_personal(signer) or certs.organisation_key(signer) != certs.organisation_key(
                tls_cert
            ):
                raise _fault(
                    f"Mode {mode} : le VIHF doit être signé avec le certificat de signature (ORG SIGN) "
                    "du même établissement que le certificat TLS.",
                    "wsse:FailedAuthentication",
                )
        expected_issuers = [tls_cert.subject] + ([signer.subject] if signer is not None else [])
        if not any(certs.same_dn(issuer_dn, n) for n in expected_issuers):
            raise _fault(
                "L'émetteur du VIHF (saml2:Issuer) ne correspond pas au DN du certificat "
                f"({expected_issuers[-1].rfc4514_string()}).",
                "wsse:FailedAuthentication",
            )

        # -- national directory stand-in (sandbox.profiles)
        situation = self._structures.get(structure_id)
        if situation is None:
            raise _fault(f"Structure introuvable ou inactive : {structure_id}.", "wsse:FailedAuthentication")
        profile = self._by_id_nat.get(name_id)
        is_regulator = False
        if mode == MODE_DIRECTE:
            if profile is None:
                raise _fault(f"Professionnel inconnu de l'annuaire : {name_id}.", "wsse:FailedAuthentication")
            match = next((s for s in profile.situations if s.structure_id == structure_id), None)
            if match is None:
                raise _fault(
                    f"PS et Structure non liés : {name_id} n'exerce pas dans la structure {structure_id}.",
                    "wsse:FailedAuthentication",
                )
            if match.sector != sector:
                raise _fault(
                    f"Secteur d'activité {sector} incohérent avec la situation d'exercice de la carte "
                    f"({match.sector}).",
                    "wsse:FailedAuthentication",
                )
            card_role = profile.profession_code or ""
            if profile.profession_code and profession != profile.profession_code:
                raise _fault(
                    f"La profession du VIHF ({profession or role_code}) diffère de celle de la carte "
                    f"({card_role}).",
                    "wsse:FailedAuthentication",
                )
            if (
                profile.specialty_code
                and specialty
                and specialty != profile.specialty_code.split("/")[-1]
                and (specialty != profile.specialty_code)
            ):
                raise _fault(
                    f"La spécialité du VIHF ({specialty}) diffère de celle de la carte "
                    f"({profile.specialty_code}).",
                    "wsse:FailedAuthentication",
                )
            is_regulator = match.role == REGULATOR_ROLE
        else:
            org_structure = certs.organisation_key(tls_cert)[1]
            if STRUCTURE_MUST_MATCH_ORG_CERT and org_structure and org_structure != structure_id:
                raise _fault(
                    f"Structure du VIHF ({structure_id}) différente de celle du certificat de "
                    f"l'établissement ({org_structure}).",
                    "wsse:FailedAuthentication",
                )
            if sector != situation.sector:
                raise _fault(
                    f"Secteur d'activité {sector} incohérent avec la structure {structure_id} "
                    f"({situation.sector}).",
                    "wsse:FailedAuthentication",
                )
            if profile is not None:
                match = next((s for s in profile.situations if s.structure_id == structure_id), None)
                is_regulator = match is not None and match.role == REGULATOR_ROLE
                if CENTRE_15_INDIRECT_FROM_DIRECTORY and not is_regulator:
                    is_regulator = any(s.role == REGULATOR_ROLE for s in profile.situations)

        if purpose_code == PURPOSE_BRIS_DE_GLACE and mode != MODE_DIRECTE:
            raise _fault(
                "L'accès en bris de glace n'est autorisé qu'en authentification directe (carte CPS).",
                "wsse:FailedAuthentication",
            )
        if purpose_code == PURPOSE_CENTRE_15 and not is_regulator:
            raise _fault(
                "Le mode d'accès centre 15 est réservé aux médecins régulateurs d'un SAMU-centre 15.",
                "wsse:FailedAuthentication",
            )

        # last: a VIHF refused for another reason is not "used"; two requests racing with one VIHF: one wins
        self.replays.remember(assertion.get("ID", ""), instant, now)
        subject_id = attrs.first(A_SUBJECT_ID)
        family, given = _names(profile, subject_id, mode)
        return Caller(
            id_nat=name_id,
            family_name=family,
            given_name=given,
            profession_code=profession,
            non_ps_role=non_ps_role,
            specialty_code=specialty,
            structure_id=structure_id,
            sector=sector,
            mode=mode,
            purpose=purpose_code,
            reason=reason,
            patient_ins=patient_ins,
            patient_oid=patient_oid,
            confidentiality=confidentiality,
            is_regulator=is_regulator,
            tls_subject=tls_cert.subject.rfc4514_string(),
            vihf_signed=signer is not None,
            lps_name=attrs.first(A_LPS_NOM),
            lps_version=attrs.first(A_LPS_VERSION),
            role_code=role_code,
        )


def _names(profile: profiles.CardProfile | None, subject_id: str, mode: str) -> tuple[str, str]:
    if mode == MODE_DIRECTE and profile is not None:
        return profile.family_name, profile.given_name
    if subject_id:
        given, _, family = subject_id.strip().rpartition(" ")
        return family, given
    if profile is not None:
        return profile.family_name, profile.given_name
    return "", ""


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode("".join(text.split()), validate=True)


def partial_caller(security: etree._Element | None, tls_cert: x509.Certificate | None) -> Caller | None:
    """Best-effort, UNVERIFIED caller for tracing a refused request (never used for access decisions)."""
    try:
        assertion = security.find(f"{{{SAML}}}Assertion") if security is not None else None
        attrs = _attributes(assertion) if assertion is not None else _Attrs({})
        name_id = ""
        if assertion is not None:
            el = assertion.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
            name_id = (el.text or "").strip() if el is not None else ""
        roles = attrs.values.get(A_ROLE, [])
        role = _coded(roles[0])[0] if roles else ""
        purposes = attrs.values.get(A_PURPOSE, [])
        resource = attrs.first(A_RESOURCE)
        ins, _, rest = resource.partition("^^^&")
        return Caller(
            id_nat=name_id or (certs.common_name(tls_cert) if tls_cert is not None else ""),
            family_name="",
            given_name="",
            profession_code=role,
            non_ps_role="",
            specialty_code="",
            structure_id=attrs.first(A_STRUCTURE),
            sector=attrs.first(A_SECTOR).partition("^")[0],
            mode=next((attrs.first(n) for n in MODE_ATTRIBUTE_SPELLINGS if attrs.first(n)), ""),
            purpose=_coded(purposes[0])[0] if purposes else "",
            reason=attrs.first(A_REASON) or None,
            patient_ins=ins or None,
            patient_oid=rest.partition("&")[0] or None,
            confidentiality=None,
            is_regulator=False,
            tls_subject=tls_cert.subject.rfc4514_string() if tls_cert is not None else "",
            vihf_signed=False,
            lps_name=attrs.first(A_LPS_NOM),
            lps_version=attrs.first(A_LPS_VERSION),
            role_code=role,
        )
    except Exception:
        return None
