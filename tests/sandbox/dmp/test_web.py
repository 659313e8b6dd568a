"""The patient web page on loopback: pages render the demo data (escaped), actions change the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import demo
from sandbox.dmp.store import Store
from sandbox.dmp.web import serve
from sandbox.errors import SandboxError
from sandbox.profiles import PROFILES

ADULT = demo.DEMO_ADULT.ins


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[httpx.Client, Store]]:
    store = Store(tmp_path / "d")
    demo.seed(store)
    server = serve(store)
    host, port = server.server_address[:2]
    with httpx.Client(base_url=f"http://{host}:{port}", follow_redirects=False) as client:
        yield client, store
    server.shutdown()
    server.server_close()
    store.close()


def test_pages_render(page: tuple[httpx.Client, Store]) -> None:
    client, _ = page
    index = client.get("/")
    assert index.status_code == 200 and "DEMO-ADULTE" in index.text and "DEMO-OPPOSE" in index.text
    one = client.get(f"/patient/{ADULT}")
    assert one.status_code == 200
    assert "Synthèse médicale annuelle" in one.text and "masqué aux professionnels" in one.text
    assert client.get("/patient/000000000000000").status_code == 400
    assert client.get("/nowhere").status_code == 404


def test_actions_change_the_store(page: tuple[httpx.Client, Store]) -> None:
    client, store = page
    nurse = PROFILES["nurse"].id_nat
    resp = client.post(f"/patient/{ADULT}/block", data={"ps": "nurse"})
    assert resp.status_code == 303 and resp.headers["location"] == f"/patient/{ADULT}"
    assert store.authorisation(ADULT, nurse).status == "INTERDIT"
    assert (
        client.post(f"/patient/{ADULT}/emergency", data={"field": "centre_15", "value": "False"}).status_code
        == 303
    )
    assert not store.patient(ADULT).allow_centre_15
    doc = store.documents(ADULT)[0]
    assert client.post(f"/patient/{ADULT}/mask", data={"document": doc.entry_uuid}).status_code == 303
    # masking is a metadata update: a new version (same uniqueId), the previous one deprecated
    assert store.document(unique_id=doc.unique_id).masked
    assert store.document(entry_uuid=doc.entry_uuid).status.endswith("Deprecated")
    refused = client.post(f"/patient/{ADULT}/unblock", data={"ps": "gp"})
    assert refused.status_code == 400 and "pas bloqué" in refused.text
    assert client.post(f"/patient/{ADULT}/explode", data={}).status_code == 400


def test_names_are_escaped(page: tuple[httpx.Client, Store]) -> None:
    client, store = page
    store.add_legal_representative(demo.DEMO_MINOR.ins, "<script>alert(1)</script>")
    store.add_trace(transaction="TD3.1", result="<b>x</b>", patient_ins=ADULT, ps_name="<img src=x>")
    text = client.get(f"/patient/{ADULT}").text
    assert "<img src=x>" not in text and "&lt;img src=x&gt;" in text


def test_only_loopback(tmp_path: Path) -> None:
    with Store(tmp_path / "d") as store, pytest.raises(SandboxError, match="boucle locale"):
        serve(store, host="0.0.0.0")  # noqa: S104 - the refusal is what is tested
