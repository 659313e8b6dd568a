"""The sandbox DMP's demo patients (fictitious, test INS OID 1.2.250.1.213.1.4.10, valid NIR keys).

Constants for the agent's tests and the demo; ``seed(store)`` loads the whole demo data set
(documents and patient settings are built in :mod:`sandbox.dmp.demo_data`).

- ``DEMO_ADULT``: ~40 documents across the nine DMP rubrics (vaccination notes, a masked document, a
  document not yet visible to the patient); médecin traitant = profile ``gp``; gp, specialist, pharmacist
  and nurse authorised.
- ``DEMO_MINOR``: a minor with two legal representatives and a document hidden from them.
- ``DEMO_BLOCKING``: blocked the ``nurse`` profile (she may still deposit, not consult).
- ``DEMO_CLOSED``: a closed DMP. ``DEMO_OPPOSED``: a patient who opposed his DMP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from sandbox.dmp.store import Store

TEST_INS_OID = "1.2.250.1.213.1.4.10"


@dataclass(frozen=True)
class DemoPatient:
    ins: str  # 15-character NIR (13 + key)
    oid: str
    family_name: str  # birth family name
    given_names: str  # birth given names, space separated
    birth_date: str  # yyyyMMdd
    sex: str  # M | F
    birth_place: str  # INSEE COG code

    @property
    def cx(self) -> str:
        """The INS as an HL7 CX (VIHF resource-id, XDS patientId)."""
        return f"{self.ins}^^^&{self.oid}&ISO^NH"


DEMO_ADULT = DemoPatient(
    "279037505612309", TEST_INS_OID, "DEMO-ADULTE", "CAMILLE MARIE", "19790321", "F", "75056"
)
DEMO_MINOR = DemoPatient("114066912304567", TEST_INS_OID, "DEMO-MINEUR", "LUCAS", "20140610", "M", "69123")
DEMO_BLOCKING = DemoPatient(
    "165111305507803", TEST_INS_OID, "DEMO-BLOQUANT", "HENRI", "19651102", "M", "13055"
)
DEMO_CLOSED = DemoPatient("250013306311205", TEST_INS_OID, "DEMO-FERME", "JEANNE", "19500115", "F", "33063")
DEMO_OPPOSED = DemoPatient("188075935022123", TEST_INS_OID, "DEMO-OPPOSE", "KARIM", "19880730", "M", "59350")

DEMO_PATIENTS = (DEMO_ADULT, DEMO_MINOR, DEMO_BLOCKING, DEMO_CLOSED, DEMO_OPPOSED)
LEGAL_REPRESENTATIVES = (("DEMO-MINEUR SOPHIE", "mère"), ("DEMO-MINEUR PAUL", "père"))


def seed(store: Store) -> dict[str, int]:
    """Load the demo data set into ``store`` (existing patients are skipped); documents per INS."""
    from sandbox.dmp.demo_data import seed as _seed

    return _seed(store)
