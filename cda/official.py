"""Official validation with the ANS artefacts: the CDA XSD (lxml) and the schematrons (saxonche, XSLT 3.0).

The artefacts live in a configured folder laid out like ``../shared/cda``: ``schemas/CDA_extended.xsd``,
``schematrons/profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.xsl``,
``schematrons/CI-SIS_<VOLET>_<ver>.xsl``.
The structuration minimale (header) schematron runs on every document; a volet schematron only on structured
documents whose header carries that volet's templateId (cda.md 2: never on level 1). Each stylesheet is
compiled
ONCE per process (the StrucMin one takes ~7 s and ~1 GB) and reused; a single ``PySaxonProcessor`` is kept for
the whole process because creating several is slow and unstable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from cda.errors import OfficialArtefactsError
from cda.validate import Finding
from cda.xml import safe_parse

SVRL = "{http://purl.oclc.org/dsdl/svrl}"
STRUCMIN = "schematrons/profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.xsl"
XSD = "schemas/CDA_extended.xsd"
# Body rules for structured documents (cda.md 7: IHE body rules, CI-SIS entry rules, ANS models).
BODY_PROFILES = (
    "schematrons/profils/IHE.xsl",
    "schematrons/profils/CI-SIS_ModelesDeContenusCDA.xsl",
    "schematrons/profils/CI-SIS_Modeles_ANS.xsl",
)
# Volet header templateId -> compiled volet schematron of the newest version in the folder (templateIds from
# ASS_A11 and from the header rules of each compiled schematron). A missing file is simply skipped.
VOLET_SCHEMATRONS: dict[str, str] = {
    "1.2.250.1.213.1.1.1.2.1.1": "CI-SIS_CARD-F-PRC-AVK_2022.01.xsl",
    "1.2.250.1.213.1.1.1.2.1.2": "CI-SIS_CARD-F-PRC-TAP_2022.01.xsl",
    "1.2.250.1.213.1.1.1.2.1.3": "CI-SIS_CARD-F-PRC-DCI_2022.01.xsl",
    "1.2.250.1.213.1.1.1.2.1.4": "CI-SIS_CARD-F-PRC-PSC_2022.01.xsl",
    "1.2.250.1.213.1.1.1.2.1.5": "CI-SIS_CARD-F-PRC-PPV_2022.01.xsl",
    "1.2.250.1.213.1.1.1.5.1": "CI-SIS_CSE-CS8_2025.01.xsl",
    "1.2.250.1.213.1.1.1.5.2": "CI-SIS_CSE-CS9_2025.01.xsl",
    "1.2.250.1.213.1.1.1.5.3": "CI-SIS_CSE-CS24_2025.01.xsl",
    "1.2.250.1.213.1.1.1.5.4": "CI-SIS_CSE-MDE_2023.01.xsl",
    "1.2.250.1.213.1.1.1.12.1": "CI-SIS_OBP-SAP_2024.01.xsl",
    "1.2.250.1.213.1.1.1.12.2": "CI-SIS_OBP-SNM_2024.01.xsl",
    "1.2.250.1.213.1.1.1.12.3": "CI-SIS_OBP-SNE_2024.01.xsl",
    "1.2.250.1.213.1.1.1.12.4": "CI-SIS_OBP-SCM_2024.01.xsl",
    "1.2.250.1.213.1.1.1.12.5": "CI-SIS_OBP-SEM_2024.01.xsl",
    "1.2.250.1.213.1.1.1.13": "CI-SIS_VSM_2023.01.xsl",
    "1.2.250.1.213.1.1.1.15": "CI-SIS_AVC-AUNV_2022.01.xsl",
    "1.2.250.1.213.1.1.1.16": "CI-SIS_AVC-EUNV_2022.01.xsl",
    "1.2.250.1.213.1.1.1.17": "CI-SIS_AVC-SUNV_2022.01.xsl",
    "1.2.250.1.213.1.1.1.21": "CI-SIS_LDL-EES_2022.01.xsl",
    "1.2.250.1.213.1.1.1.22": "CI-SIS_DLU-EHPAD-DLU_2022.01.xsl",
    "1.2.250.1.213.1.1.1.23": "CI-SIS_DLU-EHPAD-FLUDT_2022.01.xsl",
    "1.2.250.1.213.1.1.1.24": "CI-SIS_DLU-EHPAD-FLUDR_2022.01.xsl",
    "1.2.250.1.213.1.1.1.25": "CI-SIS_AVC-PAVC_2022.01.xsl",
    "1.2.250.1.213.1.1.1.26": "CI-SIS_CANCER-PPS_2022.01.xsl",
    "1.2.250.1.213.1.1.1.27": "CI-SIS_CANCER-D2LM-FIN_2022.01.xsl",
    "1.2.250.1.213.1.1.1.28": "CI-SIS_CANCER-D2LM-FIDD_2022.01.xsl",
    "1.2.250.1.213.1.1.1.29": "CI-SIS_LDL-SES_2022.01.xsl",
    "1.2.250.1.213.1.1.1.30": "CI-SIS_SDM-MR_2025.01.xsl",
    "1.2.250.1.213.1.1.1.36": "CI-SIS_CNAM-HR_2021.01.xsl",
    "1.2.250.1.213.1.1.1.37": "CI-SIS_VAC_2023.01.xsl",
    "1.2.250.1.213.1.1.1.38": "CI-SIS_TLM-DA_2022.01.xsl",
    "1.2.250.1.213.1.1.1.39": "CI-SIS_EP-MED-DM_2024.01.xsl",
    "1.2.250.1.213.1.1.1.40": "CI-SIS_ANEST-CR-ANEST_2022.01.xsl",
    "1.2.250.1.213.1.1.1.41": "CI-SIS_ANEST-CR-CPA_2022.01.xsl",
    "1.2.250.1.213.1.1.1.42": "CI-SIS_OPH-BRE_2022.02.xsl",
    "1.2.250.1.213.1.1.1.45": "CI-SIS_IMG-CR-IMG_2024.01.xsl",
    "1.2.250.1.213.1.1.1.46": "CI-SIS_VAC-NOTE_2023.01.xsl",
    "1.2.250.1.213.1.1.1.47": "CI-SIS_IMG-DA-IMG_2024.01.xsl",
    "1.2.250.1.213.1.1.1.51": "CI-SIS_IPS-FR_2024.01.xsl",
    "1.2.250.1.213.1.1.1.54": "CI-SIS_eDISP-MED_2024.01.xsl",
    "1.2.250.1.213.1.1.1.55": "CI-SIS_BIO-CR-BIO_2024.01.xsl",
    "1.2.250.1.213.1.1.1.59": "CI-SIS_BIO-TROD_2024.01.xsl",
}

_lock = threading.RLock()
_processor = None
_compiled: dict[str, object] = {}
_schemas: dict[str, etree.XMLSchema] = {}


def _saxon() -> Any:
    global _processor
    with _lock:
        if _processor is None:
            from saxonche import PySaxonProcessor

            _processor = PySaxonProcessor(license=False)
        return _processor


def _executable(path: Path) -> Any:
    key = str(path.resolve())
    with _lock:
        exe = _compiled.get(key)
        if exe is None:
            proc = _saxon()
            compiler = proc.new_xslt30_processor()
            try:
                exe = compiler.compile_stylesheet(stylesheet_file=key)
            except Exception as exc:
                raise OfficialArtefactsError(
                    f"Le schématron officiel {path.name} n'a pas pu être compilé : {exc}", field=str(path)
                ) from exc
            if exe is None:
                raise OfficialArtefactsError(
                    f"Le schématron officiel {path.name} est inutilisable.", field=str(path)
                )
            _compiled[key] = exe
        return exe


def _schema(path: Path) -> etree.XMLSchema:
    key = str(path.resolve())
    with _lock:
        schema = _schemas.get(key)
        if schema is None:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            try:
                schema = etree.XMLSchema(etree.parse(key, parser))
            except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as exc:
                raise OfficialArtefactsError(
                    f"Le schéma XSD officiel est illisible : {exc}", field=key
                ) from exc
            _schemas[key] = schema
        return schema


def _svrl_findings(svrl: str, source: str) -> list[Finding]:
    root = safe_parse(svrl.encode("utf-8"))
    out = []
    for fa in root.iter(SVRL + "failed-assert", SVRL + "successful-report"):
        role = (fa.get("role") or "error").lower()
        if fa.tag == SVRL + "successful-report" and role not in ("error", "fatal"):
            continue
        text = " ".join(" ".join(t.strip() for t in fa.itertext()).split())
        out.append(
            Finding(
                rule_id=fa.get("id") or source,
                severity="error" if role in ("error", "fatal") else "warning",
                xpath=fa.get("location") or "",
                message=text,
                source=source,
            )
        )
    return out


@dataclass
class OfficialValidator:
    """Runs the XSD, StrucMin and (structured documents) the volet schematron from ``folder``."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        for rel in (XSD, STRUCMIN):
            if not (self.folder / rel).is_file():
                raise OfficialArtefactsError(
                    f"Dossier des artefacts officiels incomplet : {rel} introuvable dans {self.folder}.",
                    field="official",
                )

    def warm_up(self) -> None:
        """Load the XSD and compile StrucMin now (tests and long-running agents call this once)."""
        _schema(self.folder / XSD)
        _executable(self.folder / STRUCMIN)

    def xsd(self, root: etree._Element) -> list[Finding]:
        schema = _schema(self.folder / XSD)
        if schema.validate(root):
            return []
        return [
            Finding(
                rule_id="XSD",
                severity="error",
                xpath=e.path or "",
                message=f"Ligne {e.line} : {e.message}",
                source="xsd",
            )
            for e in schema.error_log
        ]

    def schematron(self, data: bytes | etree._Element, relpath: str) -> list[Finding]:
        path = self.folder / relpath
        if not path.is_file():
            raise OfficialArtefactsError(f"Schématron introuvable : {path}", field="official")
        exe = _executable(path)
        with _lock:
            proc = _saxon()
            try:
                root = data if isinstance(data, etree._Element) else safe_parse(data)
                # Re-serialised as text without declaration: any source encoding reaches Saxon intact.
                node = proc.parse_xml(xml_text=etree.tostring(root, encoding="unicode"))
                svrl = exe.transform_to_string(xdm_node=node)
            except Exception as exc:
                # The tool could not run (e.g. a value set missing upstream): the check is incomplete, which
                # is reported, but it is not a defect of the document.
                return [
                    Finding(
                        "SCHEMATRON-IO",
                        "warning",
                        "",
                        f"Vérification incomplète : le schématron {path.name} n'a pas pu s'exécuter ({exc}).",
                        path.name,
                    )
                ]
        if not svrl:
            return [
                Finding(
                    "SCHEMATRON-IO", "error", "", f"Le schématron {path.name} n'a rien produit.", path.name
                )
            ]
        return _svrl_findings(svrl, path.name)

    def volet_schematron_for(self, root: etree._Element) -> str | None:
        if root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}structuredBody") is None:
            return None
        for tpl in root.findall("{urn:hl7-org:v3}templateId"):
            name = VOLET_SCHEMATRONS.get(tpl.get("root", ""))
            if name and (self.folder / "schematrons" / name).is_file():
                return "schematrons/" + name
        return None

    def validate(self, data: bytes, *, body_profiles: bool = True) -> list[Finding]:
        """XSD + StrucMin on every document; on structured documents the volet schematron and (unless
        ``body_profiles`` is False) the IHE / CI-SIS entry / ANS model schematrons."""
        root = safe_parse(data)
        findings = self.xsd(root)
        findings += self.schematron(root, STRUCMIN)
        volet = self.volet_schematron_for(root)
        if volet:
            findings += self.schematron(root, volet)
        structured = root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}structuredBody") is not None
        if structured and body_profiles:
            for profile in BODY_PROFILES:
                if (self.folder / profile).is_file():
                    findings += self.schematron(root, profile)
        return findings
