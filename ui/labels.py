"""Every French wording of the window in one place (exact texts of dmp-ui-requirements.md where it gives
them, ids in comments), plus the UI's own inferred choices tagged [I]."""

from __future__ import annotations

import enum

from ps_agent.access.policy import BRIS_DE_GLACE_MIN_REASON

# ------------------------------------------------------------------ card and session (1.1, issue 11 §2)


class CardState(enum.StrEnum):
    """What the tray and the header say about the card."""

    STARTING = "starting"
    NO_SERVICE = "no_service"
    NO_READER = "no_reader"
    NO_CARD = "no_card"
    UNKNOWN_CARD = "unknown_card"
    PIN_NEEDED = "pin_needed"
    LOGGING_IN = "logging_in"
    READY = "ready"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    ESTABLISHMENT = "establishment"  # no card: establishment certificate (INDIRECTE / AIR)


CARD_STATE_FR = {
    CardState.STARTING: "Recherche du lecteur de cartes…",
    CardState.NO_SERVICE: "Service de cartes à puce indisponible (PC/SC) : vérifiez l'installation.",
    CardState.NO_READER: "Aucun lecteur de cartes : branchez le lecteur.",
    CardState.NO_CARD: "Aucune carte : insérez votre carte CPS.",
    CardState.UNKNOWN_CARD: "Carte non reconnue : insérez une carte CPS.",
    CardState.PIN_NEEDED: "Carte insérée : saisissez votre code porteur.",
    CardState.LOGGING_IN: "Vérification du code porteur…",
    CardState.READY: "Prêt",
    CardState.BLOCKED: "Carte bloquée : débloquez-la avec le code de déblocage (PUK).",
    CardState.EXPIRED: "Carte expirée : elle ne peut plus être utilisée.",
    CardState.ESTABLISHMENT: "Certificat d'établissement",
}

AUTH_MODE_FR = {
    "DIRECTE": "Carte CPS",
    "INDIRECTE": "Certificat d'établissement",
    "INDIRECTE_RENFORCEE": "Certificat d'établissement (authentification renforcée, AIR)",
}

# TRE_G15 professions most users carry; anything else falls back to the card's own label.
PROFESSION_FR = {
    "10": "Médecin",
    "21": "Pharmacien",
    "40": "Chirurgien-dentiste",
    "50": "Sage-femme",
    "60": "Infirmier",
    "69": "Infirmier psychiatrique",
}
SPECIALTY_FR = {
    "SM54": "Médecin généraliste",
    "SM26": "Médecin généraliste",
    "SM04": "Cardiologue",
    "G15_21/SM": "Pharmacien d'officine",
}
NON_PS_ROLE_FR = {"SECRETARIAT_MEDICAL": "Secrétariat médical"}

# PIN dialog (auth errors give the rest: WrongPin, PinFinalTryError, PinBlocked messages_fr)
PIN_TITLE = "Code porteur de la carte CPS"
PIN_PROMPT = "Saisissez le code porteur de votre carte (4 chiffres)."
PIN_FINAL_TRY_CONFIRM = "Je confirme : c'est mon dernier essai avant le blocage de la carte"
PIN_BLOCKED_HELP = (
    "Votre carte est bloquée après trois codes porteur erronés. Pour la débloquer, utilisez le code de "
    "déblocage (PUK, 8 chiffres) reçu avec la carte dans l'outil de gestion des cartes CPS de votre "
    "poste, ou contactez CPS Info Service (ANS). Aucune action DMP n'est possible d'ici là."
)
PIN_SESSION_ONCE = "Le code ne vous sera plus demandé tant que la carte reste dans le lecteur."

# [I] 1.3: days before the card's end of validity at which the professional is warned (tray notification
# and header); the spec's own example thresholds.
CPS_EXPIRY_WARN_DAYS = (30, 7, 1)
CPS_EXPIRY_SOON = "Votre carte CPS expire le {date} (dans {days} jour(s)) : commandez son renouvellement."
CPS_EXPIRY_TODAY = "Votre carte CPS expire aujourd'hui ({date}) : commandez son renouvellement."
# 1.2 (EX_GEN-1430): the dialog the CNDA asks a screenshot of; the core's message follows it.
VITALE_TEST_CARD_TITLE = "Carte Vitale refusée"
VITALE_TEST_CARD = "Carte Vitale de test : refusée en production."
# 2.7 (CNDA INSi tests 1.02, 1.03): a Vitale reading older than 20 min or a card swapped: read it again.
VITALE_REREAD_TITLE = "Carte Vitale à relire"
VITALE_REREAD = "Relire la carte Vitale"
VITALE_REREAD_CODES = ("vitale_expired", "vitale_card_changed")
# 1.7 / 15.3: a remote-desktop session (TSE, Citrix, xrdp, SSH): where the card must be.
REMOTE_SESSION_NOTE = (
    "Bureau à distance détecté ({what}) : la carte CPS doit être dans un lecteur de la machine où tourne "
    "l'agent — un lecteur par poste, une carte par session ; la carte n'est jamais partagée par le réseau."
)
# 1.6: where the guided diagnosis is, appended to card, middleware and network errors.
SEE_DIAGNOSTIC = "Consultez l'onglet « Diagnostic » pour la cause et la correction."

# ------------------------------------------------------------------ patient identity (2.2, 2.6)


class IdentityStatus(enum.StrEnum):
    """RNIV identity statuses; values are ``PatientRef.ins_status`` codes."""

    PROVISOIRE = "PROV"
    RECUPEREE = "RECUP"
    VALIDEE = "VALI"
    QUALIFIEE = "QUAL"


IDENTITY_STATUS_FR = {
    IdentityStatus.PROVISOIRE: "Identité provisoire",
    IdentityStatus.RECUPEREE: "Identité récupérée",
    IdentityStatus.VALIDEE: "Identité validée",
    IdentityStatus.QUALIFIEE: "Identité qualifiée",
}
VALIDATE_IDENTITY = "Valider l'identité"
NOT_QUALIFIED_REASON = (
    "Identité non qualifiée : qualifiez l'identité (pièce d'identité) puis renvoyez."  # 2.6
)
# 2.4: the strict traits by default, the others on demand; 2.6: no INS matricule/OID shown while the
# identity is not qualified.
SHOW_ALL_TRAITS = "Afficher tous les traits"
INS_HIDDEN = "Matricule INS non affiché : identité non qualifiée"
# 2.8 (RG_0320): the DMP's identity traits are never displayed; compared silently with the INS traits.
DMP_TRAITS_DIFFER = (
    "Les traits d'identité du DMP diffèrent de ceux de l'INS : vérifiez l'identité du patient."
)
# 2.5: the strict traits of a qualified identity are locked.
TRAITS_LOCKED = "Traits verrouillés"
TRAITS_LOCKED_TIP = (
    "Identité qualifiée : les traits stricts (nom de naissance, prénoms, date et lieu de naissance, sexe) "
    "ne sont pas modifiables ici. Les modifier ferait perdre à l'identité son statut qualifié."
)
# High-trust documents (identito-na.fr, 2.2): the list offered by « Valider l'identité ».
NEW_BADGE = "[Nouveau]"
NEW_FILTER = "Nouveaux"
NEW_SINCE = "{n} nouveau(x) document(s) depuis votre dernière consultation (le {when})"
FIRST_CONSULTATION = "Première consultation de ce DMP par vous : aucun document n'est marqué nouveau."
BATCH_NO_AUTHORS = (
    "Session d'établissement : aucun médecin n'est déclaré pour les dépôts (fichier ui-auteurs.toml du "
    "dossier de l'agent) ; le lot ne peut pas être envoyé."
)
BATCH_SUMMARY = "Lot : {done} enregistré(s), {failed} refusé(s) à corriger, {waiting} en attente."
FROM_PRACTICE_SOFTWARE = "Demande du logiciel métier"
API_EMERGENCY_NOT_OPEN = (
    "Le logiciel métier demande un accès en urgence pour un patient qui n'est pas ouvert dans l'agent : "
    "ouvrez d'abord son dossier, puis confirmez l'accès ici."
)
API_CENTRE_15_REFUSED = (
    "Le logiciel métier demande un accès centre 15 : il est réservé aux médecins régulateurs, la demande "
    "est refusée."
)
SEARCH_INSI = "Rechercher l'INS (INSi) et ouvrir"
VITALE_TOOLTIP = "Lire la carte Vitale, choisir le bénéficiaire et rechercher son INS auprès de l'INSi."
INS_FROM_INSI = "renvoyé par l'INSi"
CHOOSE_BENEFICIARY = "Bénéficiaire de la carte Vitale :"
NO_BENEFICIARY = "La carte Vitale ne comporte aucun bénéficiaire."

HIGH_TRUST_DOCUMENTS = (
    "Carte nationale d'identité",
    "Passeport",
    "Titre de séjour",
    "Livret de famille (mineur, avec la pièce d'un parent)",
    "Extrait d'acte de naissance (mineur, avec la pièce d'un parent)",
)

# ------------------------------------------------------------------ minors (5.1-5.3)
MINOR_PROPOSAL = (
    "Patient mineur : souhaitez-vous, avec lui, utiliser la connexion secrète ? Les documents déposés ne "
    "seront pas visibles de ses représentants légaux."
)  # 5.1
MINOR_CONFIDENTIAL_BADGE = "Connexion secrète (mineur)"  # 5.3
MINOR_CONFIDENTIAL_FORCED = (
    "Connexion secrète : le document sera non visible par les représentants légaux (obligatoire)."
)
# 5.2: a minor without the secret connection: the visibility to the legal representatives is chosen, never
# defaulted. [I] wordings of the choice (the spec gives none).
MINOR_REPS_LABEL = "Représentants légaux (patient mineur)"
MINOR_REPS_CHOOSE = "— à choisir —"
MINOR_REPS_VISIBLE = "Visible par les représentants légaux"
MINOR_REPS_MISSING = "Patient mineur : choisissez si le document est visible par ses représentants légaux."
# [I] Age of majority when the DMP's ``ageMajorite`` is not known to the window.
AGE_OF_MAJORITY = 18

# ------------------------------------------------------------------ DMP status banner (3.1-3.3)
BANNER_NO_DMP = "Pas de DMP"
BANNER_CLOSED = "DMP fermé"
# [I] 3.1 gives no wording for an opposition to the DMP itself; PAT-06: nothing but TD0.2 is allowed.
BANNER_OPPOSED = "Le patient s'est opposé à son DMP : ni consultation ni dépôt."
BANNER_AUTHORISED = "Accès autorisé"
BANNER_NOT_AUTHORISED = "Accès non autorisé"
BANNER_EXPIRED = "Autorisation expirée"
BANNER_BLOCKED = "Vous êtes bloqué par le patient — dépôt toujours possible"
BANNER_MT = "Vous êtes le médecin traitant DMP"
CONSENT_TICK = "Le patient a donné son accord pour la consultation de son DMP"  # 3.2 (ACC-01/02)
CONSENT_BUTTON = "Le patient consent à l'accès"  # issue 11 §3
RENEW_TICK = "Le patient renouvelle son accord"  # 3.3

# ------------------------------------------------------------------ emergency (4.1-4.4)
BDG_ACTION = "Accès en urgence (bris de glace)…"
C15_ACTION = "Accès centre de régulation (SAMU-Centre 15)"
BDG_CONDITION_1 = "Le patient est hors d'état d'exprimer sa volonté"
BDG_CONDITION_2 = "Sa situation comporte un risque immédiat pour sa santé"
BDG_REASON_LABEL = "Motif de l'accès en urgence (obligatoire)"
BDG_NOTICE = "Le patient et son médecin traitant seront informés de cet accès."  # 4.2
BDG_CONFIRM = "Accéder en urgence"
BDG_OPPOSED = "Le patient s'est opposé à l'accès en urgence à son dossier."  # 4.4
# Minimum length of the emergency reason: the core's rule URG-02 (one place: ps_agent.access.policy), so the
# dialog never lets through a reason the policy then refuses.
EMERGENCY_REASON_MIN_CHARS = BRIS_DE_GLACE_MIN_REASON


def emergency_banner(mode: str, reason: str) -> str:
    if mode == "centre_15":
        return f"Accès centre de régulation (SAMU-Centre 15) — motif : {reason}"
    return f"Accès en urgence (bris de glace) — motif : {reason}"  # 4.1


# ------------------------------------------------------------------ documents (6.2, 6.3, 7.4, 6.13)
STATE_MASKED = "masqué aux professionnels de santé"
STATE_INVISIBLE_PATIENT = "non visible par le patient"
STATE_INVISIBLE_REPS = "non visible par les représentants légaux"
STATE_ARCHIVED = "archivé"
STATE_OBSOLETE = "ancienne version obsolète"
STATE_ACTIVE = "actif"
PATIENT_AUTHORED = "Ajouté par le patient"
SHOW_ARCHIVED = "Afficher les documents archivés"
SHOW_OLD_VERSIONS = "Afficher les anciennes versions (obsolètes/remplacées)"
# 6.1 optional filters on the visibility of the listed documents. [I] Ticked, each keeps only the documents
# with that confidentiality code (they are active documents the DMP already returns; archived ones and old
# versions are added by their own boxes); the masked one is shown only to the médecin traitant (TD0.2).
ONLY_MASKED = "Seulement les documents masqués aux professionnels"
ONLY_INVISIBLE_PATIENT = "Seulement les documents non visibles par le patient"
ONLY_INVISIBLE_REPS = "Seulement les documents non visibles par les représentants légaux"
VIEW_WARN_PATIENT = "Attention, ce document n'est pas visible du patient"
VIEW_WARN_REPS = (
    "Attention, ce document n'est pas visible des représentants légaux pour préserver le secret du "
    "mineur titulaire du DMP"
)
HIDDEN_TYPES_FOOTER = "Certains types de documents ne sont pas accessibles à votre profession"
ALL_DOCUMENTS = "Tous les documents"
# [I] Display time zone of DMP times (UTC on the wire, 6.5).
DISPLAY_TZ = "Europe/Paris"

# ------------------------------------------------------------------ deposit (8.3, 8.4, 8.10, 11.5)
VIS_MASKED = "Masqué aux professionnels de santé"
VIS_INVISIBLE_PATIENT = "Non visible par le patient"
VIS_INVISIBLE_REPS = "Non visible par les représentants légaux"
VIS_EXCLUSION = (
    "« Masqué aux professionnels de santé » et « Non visible par le patient » ne peuvent pas être "
    "cochés ensemble."
)
VIS_PATIENT_LATER = "Sera visible automatiquement par le patient dans 1 mois (R1111-53)"
DEPOSIT_NOTIFIED = "Le patient sera notifié de ce dépôt."  # 11.5
DEPOSIT_SEND = "Envoyer au DMP"
# issue 11 §6: in establishment mode the author is the doctor the secretary deposits for, from the list.
DEPOSIT_FOR = "Déposé pour le médecin"
DEPOSIT_NO_AUTHOR = (
    "Session d'établissement : choisissez le médecin auteur du document (liste ui-auteurs.toml du dossier "
    "de l'agent)."
)
# 9.4: a new version of one's own document (RPLC); the replaced one becomes « ancienne version obsolète ».
REPLACE_ACTION = "Remplacer par une nouvelle version…"
REPLACING_NOTE = (
    "Nouvelle version de « {title} » : à l'envoi, la version actuelle deviendra « ancienne version "
    "obsolète » (toujours consultable avec « Afficher les anciennes versions »)."
)
REPLACE_CANCEL = "Annuler le remplacement"
REPLACED_RESULT = (
    "Nouvelle version enregistrée dans le DMP, rubrique « {rubric} » ; la précédente est désormais "
    "« ancienne version obsolète »."
)

# ------------------------------------------------------------------ queue (docs/agent.md states)
QUEUE_STATE_FR = {
    "pending": "en attente d'envoi",
    "sending": "envoi en cours",
    "waiting": "nouvel essai prévu",
    "registered": "enregistré dans le DMP",
    "refused": "refusé par le DMP",
    "handed_back": "rendu à l'utilisateur",
}

# [I] The event loop must never stall longer than this (issue 11 "never blocks"): the goal printed by
# benchmarks/bench_ui.py (figure 4), which measures it. Tests assert the cause instead (blocking steps off
# the GUI thread, tests/fixtures/gui_thread.py): a timed assertion fails under load with nothing blocking.
MAX_STALL_MS = 100

# 11.4 (a): the patient banner's button opening this workstation's journal for the open patient
RECORD_ACCESS = "Accès au dossier"
RECORD_ACCESS_TIP = "Journal de ce poste pour ce patient (accès, dépôts, lectures)"

# Queue page: 14.4 both the author and the person who deposited (AIR / indirect mode); 8.6 the details
# pane; 8.8 rows still waiting from an earlier day.
QUEUE_HEADERS = ("Mis à jour", "Titre", "Patient (INS)", "État", "Pourquoi", "Auteur", "Déposé par")
QUEUE_DETAILS = "Détails du dépôt sélectionné"
QUEUE_DETAILS_HINT = "Sélectionnez une ligne : état, motif, code renvoyé, essais, identifiants."
QUEUE_LATE = "en attente depuis un jour précédent : le dépôt doit être fait le jour même"
QUEUE_LATE_SUMMARY = "d'un jour précédent"
# 1.4: said after the status bar's clock warning when the skew is gross (the doctor's check fails)
CLOCK_DEPOSITS_BLOCKED = " : dépôts bloqués"
# 10.7: the « Source » column of the vaccination history
VAC_SOURCE_PATIENT = "Patient"
VAC_SOURCE_PS = "Professionnel de santé"
VAC_SOURCE_UNKNOWN = "Non précisée"
# 11.2: the heading of the journal's PDF export
JOURNAL_PDF_TITLE = "Journal des accès au DMP — ps-agent"
# 5.2: a batch row has no choice of the visibility to the legal representatives: a minor's document is
# kept in the table with this reason, to be deposited from the « Dépôt » page where the choice is made
BATCH_MINOR = (
    "patient mineur : déposez ce document depuis la page « Dépôt » pour choisir sa visibilité par les "
    "représentants légaux"
)
