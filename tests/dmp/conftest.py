"""Fixtures of the DMP client unit tests: a throw-away signing key and identities."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ps_agent.auth.model import Activity, ProfessionalIdentity
from ps_agent.auth.software import SoftwareSigner
from ps_agent.dmp.model import PatientId
from ps_agent.dmp.vihf import LpsInfo


def make_signer(cn: str = "899700000013") -> SoftwareSigner:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return SoftwareSigner(key, cert, [])


@pytest.fixture(scope="session")
def signer() -> SoftwareSigner:
    return make_signer()


@pytest.fixture
def gp() -> ProfessionalIdentity:
    return ProfessionalIdentity(
        id_nat="899700000013",
        family_name="MEDECIN-GENERALISTE",
        given_name="JEAN",
        profession_code="10",
        profession_label="Médecin",
        specialty_code="SM26",
        card_type="CPS",
        activity=Activity("380000000100017", "CABINET MEDICAL DU PARC", "SA07"),
    )


@pytest.fixture
def patient() -> PatientId:
    return PatientId("279035121518989", "1.2.250.1.213.1.4.10")


@pytest.fixture
def lps() -> LpsInfo:
    return LpsInfo("ps-agent", "0.1.0", "HOMOLOGATION-TEST", oid="1.2.250.1.999.1")
