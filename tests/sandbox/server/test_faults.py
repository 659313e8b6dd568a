"""Fault injection: exactly the configured faults (seeded, repeatable), at start and at run time."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from sandbox.__main__ import build_parser
from sandbox.server import FaultConfig, FaultConfigError, FaultInjector, start
from sandbox.server.faults import NORMAL
from tests.fixtures.sandbox import ACTIONS, Wire, soap_fault
from tests.sandbox.server.bodies import find_documents
from tests.sandbox.server.conftest import RecordingService

QUERY = ACTIONS["TD3.1"][1]
MIXED = FaultConfig(
    seed=1234,
    latency_ms=5,
    latency_rate=0.2,
    reset_before_commit_rate=0.1,
    reset_after_commit_rate=0.1,
    http_500_rate=0.1,
    http_503_rate=0.1,
    soap_fault_rate=0.1,
)


def observe(wire: Wire, service: RecordingService) -> str:
    """Send one request and classify what happened from the client's side (+ commit count)."""
    before = service.commits
    try:
        r = wire.call("TD3.1", find_documents())
    except httpx.TransportError:
        return "reset_after_commit" if service.commits > before else "reset_before_commit"
    if r.status_code == 500 and r.headers["content-type"].startswith("text/plain"):
        return "http_500"
    if r.status_code == 503:
        return "http_503"
    if r.status_code == 500 and soap_fault(r)[1] == "sandbox:InjectedFault":
        return "soap_fault"
    assert r.status_code == 200, r.text
    return NORMAL


def test_seeded_faults_are_exactly_the_configured_sequence(tmp_path, test_pki):
    n = 80
    expected_injector = FaultInjector(MIXED)
    expected = [expected_injector.decide(QUERY).outcome for _ in range(n)]
    assert {o for o in expected} >= {NORMAL, "http_500", "http_503", "soap_fault"}  # a meaningful mix

    service = RecordingService(tmp_path)
    running = start(tmp_path / "d", test_pki, service=service, faults=MIXED)
    wire = Wire(running, test_pki)
    try:
        observed = [observe(wire, service) for _ in range(n)]
        assert observed == expected
        counts = running.faults.counts()
        for outcome in set(expected):
            assert counts[outcome] == expected.count(outcome)
        # reset-after-commit requests were committed, reset-before ones were not
        assert service.commits == expected.count(NORMAL) + expected.count("reset_after_commit")
    finally:
        wire.close()
        running.stop()


def test_same_seed_same_run_other_seed_other_run():
    a = FaultInjector(MIXED)
    b = FaultInjector(MIXED)
    c = FaultInjector(FaultConfig(**{**MIXED.to_dict(), "seed": 99, "actions": ()}))
    seq_a = [a.decide(QUERY) for _ in range(200)]
    assert seq_a == [b.decide(QUERY) for _ in range(200)]
    assert seq_a != [c.decide(QUERY) for _ in range(200)]


@pytest.mark.parametrize("rate_name", ["http_500_rate", "http_503_rate", "soap_fault_rate"])
def test_rate_one_faults_every_request_and_commits_nothing(tmp_path, test_pki, rate_name):
    service = RecordingService(tmp_path)
    running = start(tmp_path / "d", test_pki, service=service, faults=FaultConfig(**{rate_name: 1.0}))
    wire = Wire(running, test_pki)
    try:
        outcomes = {observe(wire, service) for _ in range(5)}
        assert outcomes == {rate_name.removesuffix("_rate")}
        assert service.commits == 0
    finally:
        wire.close()
        running.stop()


def test_reset_after_commit_is_the_ambiguous_case(recording):
    running, service, wire = recording
    running.set_faults(FaultConfig(reset_after_commit_rate=1.0))
    with pytest.raises(httpx.TransportError):
        wire.call("TD3.1", find_documents())
    assert service.commits == 1  # stored, but the client got no answer
    running.faults.clear()
    assert wire.call("TD3.1", find_documents()).status_code == 200


def test_reset_before_commit(recording):
    running, service, wire = recording
    running.set_faults(FaultConfig(reset_before_commit_rate=1.0))
    with pytest.raises(httpx.TransportError):
        wire.call("TD3.1", find_documents())
    assert service.commits == 0


def test_latency_is_added(recording):
    running, _service, wire = recording
    running.set_faults(FaultConfig(latency_ms=300, latency_rate=1.0))
    t0 = time.monotonic()
    assert wire.call("TD3.1", find_documents()).status_code == 200
    assert time.monotonic() - t0 >= 0.3
    assert running.faults.counts() == {"normal": 1, "latency": 1}


def test_faults_limited_to_some_actions(recording):
    running, _service, wire = recording
    running.set_faults(FaultConfig(http_503_rate=1.0, actions=(ACTIONS["TD2.1"][1],)))
    assert wire.call("TD3.1", find_documents()).status_code == 200
    assert running.faults.counts() == {}


def test_runtime_admin_endpoint(recording):
    running, service, wire = recording
    client = wire.client("gp")
    r = client.put(running.admin_faults_url, json={"http_503_rate": 1.0, "seed": 7})
    assert r.status_code == 200 and r.json()["config"]["http_503_rate"] == 1.0
    assert observe(wire, service) == "http_503"
    assert client.get(running.admin_faults_url).json()["counts"] == {"http_503": 1}
    r = client.put(running.admin_faults_url, json={"http_503_rate": 2})
    assert r.status_code == 400 and "entre 0 et 1" in r.json()["erreur"]
    r = client.put(running.admin_faults_url, json={"nonsense": 1})
    assert r.status_code == 400 and "inconnu" in r.json()["erreur"]
    r = client.put(
        running.admin_faults_url, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "JSON invalide" in r.json()["erreur"]
    assert client.put(running.admin_faults_url, json={}).status_code == 200
    assert observe(wire, service) == NORMAL


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"http_500_rate": 1.5}, "entre 0 et 1"),
        ({"soap_fault_rate": -0.1}, "entre 0 et 1"),
        ({"latency_ms": -1}, "positif"),
        ({"http_500_rate": 0.6, "http_503_rate": 0.6}, "dépasse 1"),
    ],
)
def test_invalid_config(values, words):
    with pytest.raises(FaultConfigError) as err:
        FaultConfig(**values)
    assert words in str(err.value)


def test_config_from_json_file(tmp_path):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"seed": 3, "http_500_rate": 0.5, "actions": ["a"]}), encoding="utf-8")
    cfg = FaultConfig.from_json_file(path)
    assert cfg.seed == 3 and cfg.http_500_rate == 0.5 and cfg.actions == ("a",)
    path.write_text("[1]", encoding="utf-8")
    with pytest.raises(FaultConfigError):
        FaultConfig.from_json_file(path)
    with pytest.raises(FaultConfigError):
        FaultConfig.from_json_file(tmp_path / "absent.json")


def test_cli_flags_build_the_config(tmp_path):
    from sandbox.__main__ import _fault_config

    path = tmp_path / "f.json"
    path.write_text(json.dumps({"http_503_rate": 0.25, "seed": 1}), encoding="utf-8")
    args = build_parser().parse_args(
        [
            "serve",
            "--data",
            str(tmp_path),
            "--faults",
            str(path),
            "--seed",
            "5",
            "--latency-ms",
            "10",
            "--latency-rate",
            "0.5",
            "--fault-action",
            "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
        ]
    )
    cfg = _fault_config(args)
    assert cfg == FaultConfig(
        seed=5,
        http_503_rate=0.25,
        latency_ms=10,
        latency_rate=0.5,
        actions=("urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",),
    )
