"""Bad input never reaches the user as an internal error: every element of a real deposit removed in turn,
every attribute emptied, gives either a registry answer with a French reason or a clean success."""

from __future__ import annotations

import copy

import pytest

from sandbox.dmp import build, xds
from sandbox.server.context import SoapFault
from tests.sandbox.dmp.conftest import Dmp, caller, errors_of, status_of


def _variants(body):
    """(label, mutated copy) for each removable element and each attribute of the metadata."""
    paths = [el for el in body.iter() if isinstance(el.tag, str) and el is not body]
    for index, _ in enumerate(paths):
        clone = copy.deepcopy(body)
        target = [el for el in clone.iter() if isinstance(el.tag, str) and el is not clone][index]
        if target.getparent() is not None:
            label = f"remove {target.tag.split('}')[-1]}#{index}"
            target.getparent().remove(target)
            yield label, clone
    for index, el in enumerate(paths):
        for name in el.attrib:
            clone = copy.deepcopy(body)
            target = [e for e in clone.iter() if isinstance(e.tag, str) and e is not clone][index]
            target.set(name, "")
            yield f"empty {target.tag.split('}')[-1]}@{name}#{index}", clone


@pytest.mark.slow
def test_every_mutilated_deposit_gets_a_clean_answer(dmp: Dmp) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    internal: list[str] = []
    accepted = 0
    for label, body in _variants(dep.body):
        try:
            resp = dmp.call("repository", body, caller("gp"), dep.attachments)
        except SoapFault as fault:
            if "interne" in fault.reason_fr:
                internal.append(f"{label}: {fault.__cause__!r}")
            continue
        if status_of(resp) == xds.SUCCESS:
            accepted += 1
            # whatever was accepted is a complete, consistent entry; start again from an empty registry
            for doc in dmp.store.documents(dmp.store.patients()[0].ins):
                assert doc.unique_id and doc.type_code and doc.hash
            with dmp.store._write() as db:
                db.execute("DELETE FROM documents")
                db.execute("DELETE FROM submission_sets")
        else:
            code, context = errors_of(resp)[0]
            assert code and context, label
    assert not internal, "\n".join(internal[:10])
    assert accepted  # optional parts (names, descriptions, some slots) may go
