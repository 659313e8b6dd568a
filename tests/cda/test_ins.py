"""INS: 15-character NIR, mod-97 key (Corsica 2A/2B), OIDs per environment. A wrong key is an error."""

from __future__ import annotations

import pytest

from cda import ins
from cda.errors import InvalidIns


def _with_key(first13: str) -> str:
    return first13 + f"{ins.nir_key(first13):02d}"


def test_ans_test_patient_key_is_valid() -> None:
    assert ins.check_nir("279035121518989") == "279035121518989"
    assert ins.check_nir("2 79 03 51 215 189 89") == "279035121518989"


def test_wrong_key_is_an_error_naming_the_field() -> None:
    with pytest.raises(InvalidIns) as exc:
        ins.check_nir("279035121518988")
    assert exc.value.field == "patient.ins"
    assert "clé" in exc.value.message_fr and "89" in exc.value.message_fr


@pytest.mark.parametrize("dept, numeric", [("2A", "19"), ("2B", "18")])
def test_corsica_key_uses_19_and_18(dept: str, numeric: str) -> None:
    first13 = f"18501{dept}123456"
    expected = 97 - int(f"18501{numeric}123456") % 97
    assert ins.nir_key(first13) == expected
    assert ins.check_nir(_with_key(first13)).startswith("18501" + dept)
    with pytest.raises(InvalidIns):
        ins.check_nir(first13 + f"{(expected % 97) + 1:02d}")


@pytest.mark.parametrize(
    "value", ["27903512151898", "2790351215189890", "", "A79035121518989", "279035121X18989"]
)
def test_malformed_matricule(value: str) -> None:
    with pytest.raises(InvalidIns):
        ins.check_nir(value)


def test_oids() -> None:
    assert ins.OID_BY_ENVIRONMENT == {
        "production": "1.2.250.1.213.1.4.8",
        "test": "1.2.250.1.213.1.4.10",
        "demo": "1.2.250.1.213.1.4.11",
    }
    with pytest.raises(InvalidIns):
        ins.check_oid("1.2.250.1.213.1.4.2")
    ins.check_oid_for_environment("1.2.250.1.213.1.4.8", "production")
    ins.check_oid_for_environment("1.2.250.1.213.1.4.10", "test")
    with pytest.raises(InvalidIns):
        ins.check_oid_for_environment("1.2.250.1.213.1.4.10", "production")
    with pytest.raises(InvalidIns):
        ins.check_oid_for_environment("1.2.250.1.213.1.4.8", "demo")


def test_check_ins_returns_kind() -> None:
    value = ins.check_ins("279035121518989", ins.OID_TEST)
    assert value.kind == "INS-NIR de test"
