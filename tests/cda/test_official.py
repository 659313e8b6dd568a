"""Official validation: built documents pass the ANS XSD + structuration minimale (every DMP type) and the
VAC-NOTE volet schematron; on deliberately broken documents the built-in rules catch what the official
validator catches, on the same element, with a French message."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from lxml import etree

from cda import build, valuesets
from cda.build import AuthorInput, PatientInput, VaccinationInput
from cda.official import STRUCMIN, OfficialValidator
from cda.validate import Finding, errors, validate, validate_builtin

pytestmark = [pytest.mark.official, pytest.mark.slow]

H = "{urn:hl7-org:v3}"
NS = {"h": "urn:hl7-org:v3"}


def test_every_dmp_type_passes_xsd_and_structuration_minimale(
    official: OfficialValidator, patient: PatientInput, gp_author: AuthorInput, pdf: bytes
) -> None:
    failures = {}
    for type_code in valuesets.dmp_type_codes():
        data = build.level1(
            type_code=type_code, content=pdf, title="Document", patient=patient, author=gp_author
        )
        root = etree.fromstring(data)
        problems = errors(official.xsd(root)) + errors(official.schematron(data, STRUCMIN))
        assert official.volet_schematron_for(root) is None  # never a volet schematron on level 1
        if problems:
            failures[type_code] = [f.message for f in problems]
    assert failures == {}


def test_text_level1_and_replacement_pass(
    official: OfficialValidator, patient: PatientInput, author: AuthorInput
) -> None:
    import cda

    first = build.level1(type_code="11488-4", content=b"Texte", title="CR", patient=patient, author=author)
    second = build.level1(
        type_code="11488-4",
        content=b"Texte corrige",
        title="CR",
        patient=patient,
        author=author,
        replaces=build.Replacement.of(cda.parse(first)),
    )
    assert errors(official.validate(first)) == []
    assert errors(official.validate(second)) == []


def test_vac_note_passes_its_volet_schematron(
    official: OfficialValidator, patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput
) -> None:
    data = build.vaccination_note(patient=patient, author=author, vaccination=vaccination)
    assert official.volet_schematron_for(etree.fromstring(data)) == "schematrons/CI-SIS_VAC-NOTE_2023.01.xsl"
    assert errors(official.validate(data)) == []


def test_validate_with_official_folder(
    official: OfficialValidator, patient: PatientInput, author: AuthorInput, pdf: bytes
) -> None:
    data = build.level1(type_code="78601-2", content=pdf, title="CR", patient=patient, author=author)
    assert errors(validate(data, official=official.folder)) == []


def test_skeletons_pass(official: OfficialValidator) -> None:
    for name in ("SKELETON_level1-pdf.xml", "SKELETON_VAC-NOTE_2023.01.xml"):
        data = (official.folder / "examples" / name).read_bytes()
        assert errors(official.validate(data)) == [], name
        assert errors(validate_builtin(data)) == [], name


# --- broken documents --------------------------------------------------------------------------------------
Mutation = Callable[[etree._Element], None]


def _remove(path: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        found = root.xpath(path, namespaces=NS)
        assert found, path
        for el in found:
            el.getparent().remove(el)

    return mutate


def _set(path: str, attr: str, value: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        found = root.xpath(path, namespaces=NS)
        assert found, path
        for el in found:
            el.set(attr, value)

    return mutate


def _drop_attr(path: str, attr: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        for el in root.xpath(path, namespaces=NS):
            del el.attrib[attr]

    return mutate


def _add_contact(use: str, telecom: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        ident = root.find(f"{H}recordTarget/{H}patientRole/{H}id")
        addr = etree.Element(f"{H}addr", use=use)
        etree.SubElement(addr, f"{H}city").text = "Reims"
        tel = etree.Element(f"{H}telecom", value=telecom)
        ident.addnext(addr)  # type: ignore[union-attr]
        addr.addnext(tel)

    return mutate


def _add_child(path: str, tag: str, text: str, *, first: bool) -> Mutation:
    def mutate(root: etree._Element) -> None:
        found = root.xpath(path, namespaces=NS)
        assert found, path
        for el in found:
            child = etree.Element(f"{H}{tag}")
            child.text = text
            if first:
                el.insert(0, child)
            else:
                el.append(child)

    return mutate


def _add_volet_template(root: etree._Element) -> None:
    root.find(f"{H}templateId").addnext(  # type: ignore[union-attr]
        etree.Element(f"{H}templateId", root=valuesets.TPL_VAC_NOTE, extension="2023.01")
    )


# name: (base document, mutation, built-in rule id, official message pattern)
CASES: dict[str, tuple[str, Mutation, str, str]] = {
    "birthplace": ("l1", _remove("//h:patient/h:birthplace"), "CDA-P07", r"lieu de naissance"),
    "birth_given_name": ("l1", _remove("//h:patient/h:name/h:given[@qualifier='BR']"), "CDA-P04", r"prénom"),
    "birth_time": ("l1", _remove("//h:patient/h:birthTime"), "CDA-P06", r"birthTime|date de naissance"),
    "type_code": (
        "l1",
        _set("/h:ClinicalDocument/h:code", "code", "99999-9"),
        "CDA-H09",
        r"1\.2\.250\.1\.213\.1\.1\.5\.471",
    ),
    "level1_templates": ("l1", _add_volet_template, "CDA-H06", r"1\.3\.6\.1\.4\.1\.19376\.1\.2\.20"),
    "address_use": ("l1", _add_contact("XX", "tel:0326000000"), "CDA-D01", r"usage de l'adresse"),
    "telecom": ("l1", _add_contact("H", "0326000000"), "CDA-D02", r"télécommunication"),
    "title": ("l1", _remove("/h:ClinicalDocument/h:title"), "CDA-H12", r"title"),
    "realm": ("l1", _remove("/h:ClinicalDocument/h:realmCode"), "CDA-H01", r"realmCode"),
    "set_id": ("l1", _remove("/h:ClinicalDocument/h:setId"), "CDA-H17", r"setId"),
    "version": ("l1", _remove("/h:ClinicalDocument/h:versionNumber"), "CDA-H18", r"versionNumber"),
    "language": ("l1", _set("/h:ClinicalDocument/h:languageCode", "code", "fr"), "CDA-H16", r"languageCode"),
    "confidentiality": (
        "l1",
        _set("/h:ClinicalDocument/h:confidentialityCode", "code", "Z"),
        "CDA-H15",
        r"Confidentiality",
    ),
    "gender": (
        "l1",
        _set("//h:patient/h:administrativeGenderCode", "code", "X"),
        "CDA-P10",
        r"AdministrativeGender",
    ),
    "legal_authenticator": (
        "l1",
        _remove("/h:ClinicalDocument/h:legalAuthenticator"),
        "CDA-L01",
        r"legalAuthenticator",
    ),
    "custodian": ("l1", _remove("/h:ClinicalDocument/h:custodian"), "CDA-C01", r"custodian"),
    "author_code": (
        "l1",
        _set("/h:ClinicalDocument/h:author/h:assignedAuthor/h:code", "code", "G15_99"),
        "CDA-A04",
        r"JDV_J01",
    ),
    "performer": ("l1", _remove("//h:serviceEvent/h:performer"), "CDA-S03", r"performer"),
    "author_civility": (
        "l1",
        _add_child(
            "/h:ClinicalDocument/h:author/h:assignedAuthor/h:assignedPerson/h:name",
            "prefix",
            "DR",
            first=True,
        ),
        "CDA-A06",
        r"JDV_J245",
    ),
    "author_title": (
        "l1",
        _add_child(
            "/h:ClinicalDocument/h:author/h:assignedAuthor/h:assignedPerson/h:name",
            "suffix",
            "DOC",
            first=False,
        ),
        "CDA-A06",
        r"JDV_J246",
    ),
    "legal_authenticator_civility": (
        "l1",
        _add_child(
            "/h:ClinicalDocument/h:legalAuthenticator/h:assignedEntity/h:assignedPerson/h:name",
            "prefix",
            "Docteur",
            first=True,
        ),
        "CDA-A06",
        r"JDV_J245",
    ),
    "practice_setting": ("l1", _set("//h:standardIndustryClassCode", "code", "NOPE"), "CDA-S04", r"JDV_J04"),
    "facility": ("l1", _set("//h:healthCareFacility/h:code", "code", "SA999"), "CDA-E03", r"JDV_J02"),
    "lot_number": ("vn", _remove("//h:lotNumberText"), "VAC-05", r"numéro de lot"),
    "negation_missing": (
        "vn",
        _drop_attr("//h:substanceAdministration", "negationInd"),
        "VAC-02",
        r"negationInd",
    ),
    "negation": ("vn", _set("//h:substanceAdministration", "negationInd", "true"), "VAC-02", r"negationInd"),
    "atc_display": ("vn", _drop_attr("//h:translation", "displayName"), "VAC-04", r"ATC"),
    "route_display": ("vn", _drop_attr("//h:routeCode", "displayName"), "VAC-08", r"voie d'administration"),
}


def _chain(path: str) -> list[str]:
    """'/ClinicalDocument/code[1]' or "author/assignedAuthor/code[@x='y']" -> element local names."""
    steps = re.sub(r"\[[^\]]*\]", "", path).strip("/").split("/")
    names = [s.split(":")[-1].split("}")[-1] for s in steps if s and not s.startswith("@")]
    return names[1:] if names and names[0] == "ClinicalDocument" else names


def _same_branch(official: Finding, builtin: Finding) -> bool:
    """The official failure's element is the built-in rule's element or one of its ancestors."""
    a, b = _chain(official.xpath), _chain(builtin.xpath)
    return b[: len(a)] == a or a[: len(b)] == b


@pytest.fixture(scope="module")
def bases(shared_dir) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    from tests.cda.conftest import TEST_PATIENT, VACCINATION, author_dict, make_pdf

    patient = PatientInput.from_dict(TEST_PATIENT)
    author = AuthorInput.from_dict(author_dict())
    return {
        "l1": build.level1(
            type_code="78601-2", content=make_pdf(), title="CR", patient=patient, author=author
        ),
        "vn": build.vaccination_note(
            patient=patient, author=author, vaccination=VaccinationInput.from_dict(VACCINATION)
        ),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_rules_catch_what_the_official_validator_catches(
    case: str, bases: dict[str, bytes], official: OfficialValidator
) -> None:
    base, mutate, rule_id, pattern = CASES[case]
    root = etree.fromstring(bases[base])
    mutate(root)
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    official_errors = errors(official.validate(data))
    assert official_errors, f"{case}: the official validator accepted the broken document"
    matching = [f for f in official_errors if re.search(pattern, f.message, re.IGNORECASE)]
    assert matching, f"{case}: no official error matches {pattern!r}: {[f.message for f in official_errors]}"

    builtin = [f for f in errors(validate_builtin(data)) if f.rule_id == rule_id]
    assert builtin, f"{case}: built-in rule {rule_id} did not fire"
    finding = builtin[0]
    assert finding.message.endswith(f"({finding.xpath})")  # French message naming the element
    assert any(_same_branch(o, finding) for o in matching), (case, [o.xpath for o in matching], finding.xpath)
    # the unbroken base is clean for both
    assert errors(validate_builtin(bases[base])) == []


def test_latin1_document_reaches_saxon_intact(official: OfficialValidator, bases: dict[str, bytes]) -> None:
    latin1 = etree.tostring(etree.fromstring(bases["vn"]), xml_declaration=True, encoding="ISO-8859-1")
    assert errors(official.validate(latin1)) == []


def test_missing_official_folder_is_a_typed_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cda.errors import OfficialArtefactsError

    with pytest.raises(OfficialArtefactsError) as exc:
        OfficialValidator(tmp_path)
    assert exc.value.exit_code == 2


VOLET_EXAMPLES = [
    "VAC_2023.01.xml",
    "VAC-NOTE_2023.01.xml",
    "IPS-FR_2024.01.xml",
    "eDISP-MED_2024.01.xml",
    "eP-MED-DM_2024.01_PosoStruct.xml",
    "CSE-CS8_2025.01.xml",
    "BIO-TROD_2024.01_Angine.xml",
    "IMG_CR_IMG_2024.01.xml",
    "LDL-EES_2022.01.xml",
    "TLM-DA_2022.01_TCG.xml",
    "VSM_1.4_2022.01.xml",
]


@pytest.mark.parametrize("name", VOLET_EXAMPLES)
def test_ans_structured_examples_pass_their_volet_schematron(official: OfficialValidator, name: str) -> None:
    root = etree.fromstring((official.folder / "examples" / name).read_bytes())
    volet = official.volet_schematron_for(root)
    assert volet is not None
    assert errors(official.schematron(root, volet)) == []


@pytest.mark.parametrize(
    "name",
    [
        "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
        "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml",
        "BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml",
    ],
)
def test_no_volet_schematron_on_level1_examples(official: OfficialValidator, name: str) -> None:
    root = etree.fromstring((official.folder / "examples" / name).read_bytes())
    assert official.volet_schematron_for(root) is None


def test_official_validation_from_several_threads(
    official: OfficialValidator, bases: dict[str, bytes]
) -> None:
    import threading

    results: list[int] = []

    def run() -> None:
        for _ in range(2):
            results.append(len(errors(official.validate(bases["vn"]))))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0] * 6


def test_missing_upstream_value_set_is_an_incomplete_check_not_a_defect(official: OfficialValidator) -> None:
    # CI-SIS_ModelesDeContenusCDA reads JDV_SpecimenType_CISIS.xml, absent upstream (shared/cda/README.md).
    data = (official.folder / "examples" / "BIO-CR-BIO_2024.01_Microbiologie_V1.xml").read_bytes()
    findings = official.validate(data)
    io = [f for f in findings if f.rule_id == "SCHEMATRON-IO"]
    assert io and all(f.severity == "warning" and "incomplète" in f.message for f in io)
    assert errors(findings) == []
