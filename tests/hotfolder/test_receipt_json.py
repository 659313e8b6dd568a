"""The receipts' and errors' JSON text (``ps_agent.hotfolder.json_text``) is exactly what
``json.dumps(..., ensure_ascii=False, indent=2)`` writes, for any flat object and for anything else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ps_agent.hotfolder import json_text

scalars = st.one_of(st.text(), st.booleans(), st.none())
anything = st.recursive(
    st.one_of(scalars, st.integers(), st.floats(allow_nan=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(), inner, max_size=3)),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), scalars, max_size=12))
def test_flat_objects_are_written_as_json_dumps_writes_them(data: dict[str, Any]) -> None:
    text = json_text(data)
    assert text == json.dumps(data, ensure_ascii=False, indent=2)
    assert json.loads(text) == data


@given(st.dictionaries(st.text(), anything, max_size=6))
def test_other_values_too(data: dict[str, Any]) -> None:
    assert json_text(data) == json.dumps(data, ensure_ascii=False, indent=2)


def test_a_receipt_with_quotes_accents_and_control_characters() -> None:
    receipt = {"ACK_RECEPTION_DMP": "Y", "titre": 'Compte rendu « opératoire » "A\\B"\n\t\x00\u2028',
               "doublon": True, "note": None, "heure": "2026-12-03T23:00:00+01:00"}  # fmt: skip
    text = json_text(receipt)
    assert text == json.dumps(receipt, ensure_ascii=False, indent=2)
    assert text.startswith('{\n  "ACK_RECEPTION_DMP": "Y",\n') and "« opératoire »" in text
