"""Fixtures of the sandbox DMP domain tests: a store in a temporary folder, the service, callers built from
the shared test identities, and a helper that sends real XML bodies through ``DmpService.handle``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from sandbox import demo
from sandbox.dmp import build
from sandbox.dmp.service import DmpService
from sandbox.dmp.store import Store
from sandbox.pki import TestPki
from sandbox.profiles import PROFILES
from sandbox.server.context import Caller, SoapRequest, SoapResponse

PATIENT = demo.DemoPatient(
    "279037505612309", demo.TEST_INS_OID, "TEST-PATIENT", "ALICE", "19790321", "F", "75056"
)


def caller(profile: str = "gp", patient: demo.DemoPatient | None = PATIENT, **changes: Any) -> Caller:
    """A DIRECTE caller with the identity of a card profile (as the server layer builds it)."""
    prof = PROFILES[profile]
    sit = prof.situations[0]
    base = Caller(
        id_nat=prof.id_nat,
        family_name=prof.family_name,
        given_name=prof.given_name,
        profession_code=prof.profession_code,
        non_ps_role="SECRETARIAT_MEDICAL" if not prof.profession_code else "",
        specialty_code=prof.specialty_code,
        structure_id=sit.structure_id,
        sector=sit.sector,
        mode="DIRECTE",
        purpose="normal",
        reason=None,
        patient_ins=patient.ins if patient else None,
        patient_oid=patient.oid if patient else None,
        confidentiality=None,
        is_regulator=sit.role == "REGULATEUR",
        tls_subject=f"CN={prof.id_nat}",
        vihf_signed=False,
        lps_name="tests",
        lps_version="1",
    )
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class Dmp:
    """A service over a fresh store, with helpers that speak XML."""

    store: Store
    service: DmpService
    pki: TestPki

    def call(
        self,
        service: str,
        body: etree._Element,
        who: Caller,
        attachments: dict[str, bytes] | None = None,
        action: str = "",
    ) -> SoapResponse:
        # the body travels as bytes, like on the wire
        parsed = etree.fromstring(etree.tostring(body))
        req = SoapRequest(
            service=service,
            action=action,
            message_id="urn:uuid:test",
            body=parsed,
            attachments=attachments or {},
            caller=who,
            received_at=datetime.now(UTC),
        )
        return self.service.handle(req)

    def signer(self, profile: str = "gp") -> tuple[Any, Any, Any]:
        holder = self.pki.card(profile)
        return holder.sign_key, holder.sign_cert, holder.chain

    def document(
        self,
        profile: str = "gp",
        type_code: str = "11488-4",
        title: str = "Consultation",
        patient: demo.DemoPatient = PATIENT,
        **kw: Any,
    ) -> bytes:
        return build.text_document(
            build.patient_input(
                patient.ins,
                patient.oid,
                patient.family_name,
                patient.given_names,
                patient.birth_date,
                patient.sex,
                patient.birth_place,
            ),
            build.author_input(PROFILES[profile]),
            type_code,
            title,
            "Texte du compte rendu.",
            **kw,
        )

    def deposit(
        self,
        who: Caller,
        *docs: build.DepositDocument,
        signer_profile: str | None = None,
        sign: bool = True,
        inline: bool = False,
    ) -> tuple[SoapResponse, build.Deposit]:
        dep = build.provide_and_register(
            docs,
            signer=self.signer(signer_profile or _profile_of(who)) if sign else None,
            inline=inline,
        )
        return self.call("repository", dep.body, who, dep.attachments), dep


def _profile_of(who: Caller) -> str:
    for name, prof in PROFILES.items():
        if prof.id_nat == who.id_nat:
            return name
    return "gp"


def status_of(resp: SoapResponse) -> str:
    return resp.body.get("status", "") or (resp.body.find(".//{*}RegistryResponse").get("status", ""))


def errors_of(resp: SoapResponse) -> list[tuple[str, str]]:
    return [(e.get("errorCode", ""), e.get("codeContext", "")) for e in resp.body.iter("{*}RegistryError")]


def dmp_status(resp: SoapResponse) -> tuple[str, str]:
    return (resp.body.findtext(".//{*}status") or "", resp.body.findtext(".//{*}context") or "")


@pytest.fixture
def dmp(tmp_path: Path, test_pki: TestPki) -> Iterator[Dmp]:
    store = Store(tmp_path / "data")
    store.create_patient(
        PATIENT.ins,
        PATIENT.oid,
        PATIENT.family_name,
        PATIENT.given_names,
        PATIENT.birth_date,
        PATIENT.sex,
        PATIENT.birth_place,
    )
    service = DmpService(store, trusted_certs=[*test_pki.roots, *test_pki.intermediates])
    yield Dmp(store, service, test_pki)
    store.close()
