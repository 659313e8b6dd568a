"""Core pieces without a network: the ONE failure classification, the per-call context and its cancel
token, events, one source of truth per fact (environment, INS OIDs, vaccination codes, identity from a
card), platformdirs folders."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ps_agent.access.errors import NoActiveDmp
from ps_agent.access.policy import INS_OIDS, AccessPolicy, Action, Decision
from ps_agent.auth.direct import card_identity
from ps_agent.context import Cancelled, CancelToken, Context, DeadlineExceeded
from ps_agent.dmp.errors import (
    DmpStatusRefusal,
    DmpTimeout,
    FailureKind,
    ProtocolError,
    RegistryErrorItem,
    RegistryRefusal,
    SoapFault,
    TransportError,
    classify_failure,
)
from ps_agent.events import QUEUE_CHANGED, Events


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TransportError("réseau"), FailureKind.TRANSIENT),
        (DmpTimeout("lent"), FailureKind.TRANSIENT),
        (TransportError("503", code="HTTP_503"), FailureKind.TRANSIENT),
        (ProtocolError("illisible"), FailureKind.TRANSIENT),
        (SoapFault("panne", code="soap:Receiver/sandbox:InjectedFault"), FailureKind.TRANSIENT),
        (SoapFault("panne", code="env:Receiver"), FailureKind.TRANSIENT),
        (SoapFault("VIHF invalide", code="soap:Sender/dmp:InvalidVihf"), FailureKind.FINAL),
        (DmpStatusRefusal("fermé", code="DMPClosed"), FailureKind.FINAL),
        (
            RegistryRefusal("occupé", code="XDSRegistryBusy", errors=(RegistryErrorItem("XDSRegistryBusy"),)),
            FailureKind.TRANSIENT,
        ),
        (
            RegistryRefusal(
                "patient", code="XDSUnknownPatientId", errors=(RegistryErrorItem("XDSUnknownPatientId"),)
            ),
            FailureKind.FINAL,
        ),
        (NoActiveDmp(Decision(False, "PAT-06", "Ce patient n'a pas de DMP actif.")), FailureKind.FINAL),
    ],
)
def test_one_classification_of_failures(exc: BaseException, kind: FailureKind) -> None:
    assert classify_failure(exc) is kind


def test_duplicate_unique_id_means_registered_only_for_our_ids() -> None:
    dup = RegistryRefusal(
        "déjà",
        code="XDSDocumentUniqueIdError",
        code_context="L'identifiant unique 2.25.42 est déjà enregistré dans le DMP.",
        errors=(RegistryErrorItem("XDSDocumentUniqueIdError", "déjà enregistré", location="2.25.42"),),
    )
    assert classify_failure(dup, unique_ids=("2.25.42",)) is FailureKind.ALREADY_REGISTERED
    assert classify_failure(dup, unique_ids=("2.25.7",)) is FailureKind.FINAL
    ihe = RegistryRefusal(
        "dup",
        code="XDSDuplicateUniqueIdInRegistry",
        errors=(RegistryErrorItem("XDSDuplicateUniqueIdInRegistry", "", location="2.25.1"),),
    )
    assert classify_failure(ihe, unique_ids=("2.25.1",)) is FailureKind.ALREADY_REGISTERED


def test_cancel_token_wakes_waiters_and_callbacks_at_once() -> None:
    token = CancelToken()
    called: list[str] = []
    remove = token.on_cancel(lambda: called.append("a"))
    token.on_cancel(lambda: called.append("b"))
    remove()
    waiter_done = threading.Event()
    threading.Thread(target=lambda: (token.wait(30), waiter_done.set())).start()
    token.cancel()
    assert waiter_done.wait(5) and called == ["b"] and token.cancelled
    token.on_cancel(lambda: called.append("late"))  # already cancelled: runs at once
    assert called == ["b", "late"]
    with pytest.raises(Cancelled):
        Context(cancel=token).check()


def test_deadline_stops_an_operation() -> None:
    ctx = Context(deadline=time.monotonic() - 1)
    with pytest.raises(DeadlineExceeded):
        ctx.check()
    assert Context().remaining() is None


def test_progress_callbacks_never_break_the_operation() -> None:
    def boom(step: str, done: int, total: int) -> None:
        raise RuntimeError("display crashed")

    Context(progress=boom).report("Envoi au DMP", 1, 3)


def test_events_hub() -> None:
    hub = Events()
    got: list[object] = []
    off = hub.connect(QUEUE_CHANGED, got.append)
    hub.connect(QUEUE_CHANGED, lambda e: 1 / 0)  # a failing listener is logged, never raised
    hub.emit(QUEUE_CHANGED, "x")
    off()
    hub.emit(QUEUE_CHANGED, "y")
    assert got == ["x"]
    with pytest.raises(ValueError, match="unknown event"):
        hub.connect("nope", got.append)


def test_one_source_of_truth() -> None:
    from cda import valuesets
    from ps_agent import config
    from ps_agent.dmp import environment
    from ps_agent.dmp.metadata import is_vaccination_document, vaccination_format_codes

    assert config.Environment is environment.Environment and config.ENVIRONMENTS is environment.ENVIRONMENTS
    from cda import ins

    assert INS_OIDS is ins.INS_OIDS  # one INS OID table (cda.ins)
    assert not hasattr(valuesets, "INS_ROOTS")
    assert valuesets.FORMAT_VAC_NOTE in vaccination_format_codes()
    entry = SimpleNamespace(type_code=SimpleNamespace(code="87273-9"), format_code=SimpleNamespace(code=""))
    assert is_vaccination_document(entry)  # type: ignore[arg-type]
    import ps_agent.agent as agent_module

    assert not hasattr(agent_module, "VACCINATION_TYPE_CODES")


def test_identity_from_a_card_is_the_same_for_both_routes() -> None:
    holder = SimpleNamespace(
        card_type="CPE", serial="0000000101", id_nat="3990000018/SEC00001", family_name="SECRETAIRE",
        given_name="MARIE", civility="MME", profession_code="", profession_label="", specialty_code="",
    )  # fmt: skip
    pcsc = card_identity(holder, None, serial=holder.serial, extra={"situation_mode": "S"})
    pkcs11 = card_identity(holder, None, serial=holder.serial)
    assert pcsc == pkcs11  # same fields (extra is not compared)
    assert pcsc.non_ps_role == "SECRETARIAT_MEDICAL" and pkcs11.extra["card_serial"] == "0000000101"
    fallback = card_identity(None, None, serial="77", subject={"CN": "810001", "SN": "DOC", "GN": "ANNE"})
    assert fallback.extra["card_serial"] == "77" and fallback.id_nat == "810001"


def test_patient_list_is_a_policy_action() -> None:
    from ps_agent.auth.model import AuthMode, ProfessionalIdentity

    gp = ProfessionalIdentity("810001", "DOC", "ANNE", "10")
    secretary = ProfessionalIdentity("3990000018/SEC", "SEC", "MARIE", "", non_ps_role="SECRETARIAT_MEDICAL")
    policy = AccessPolicy(matrix=object())
    kw = {"mode": AuthMode.DIRECTE, "patient": None}
    assert policy.decide(Action.PATIENT_LIST, identity=gp, **kw).allowed  # type: ignore[arg-type]
    assert policy.decide(Action.PATIENT_LIST, identity=secretary, **kw).rule_id == "AUTH-04"  # type: ignore[arg-type]
    bg = policy.decide(Action.PATIENT_LIST, identity=gp, background=True, **kw)  # type: ignore[arg-type]
    assert bg.rule_id == "AUTH-03"
    insurance = policy.decide(Action.PATIENT_LIST, identity=gp, purpose="assurance", **kw)  # type: ignore[arg-type]
    assert insurance.rule_id == "GEN-03"


def test_folders_come_from_platformdirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    from ps_agent import config

    monkeypatch.delenv("PS_AGENT_HOME", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "data"))
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: str(tmp_path / "conf"))
    monkeypatch.setattr(platformdirs, "user_log_dir", lambda *a, **k: str(tmp_path / "log"))
    assert config.data_dir() == tmp_path / "data"
    assert config.config_dir() == tmp_path / "conf" and config.log_dir() == tmp_path / "log"
    assert ((tmp_path / "data").stat().st_mode & 0o777) == 0o700
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "home"))
    assert config.data_dir() == tmp_path / "home"
