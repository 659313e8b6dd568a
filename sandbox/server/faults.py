"""Fault injection for reliability tests: latency, connection resets, HTTP 500/503, SOAP faults.

Every authenticated, well-formed service request draws its fate from one seeded ``random.Random`` under a
lock, in arrival order, so a run with the same seed and the same request sequence gets exactly the same
faults. Per request two numbers are drawn, always: one for latency, one for the outcome, whose rates are
cumulative slices of [0, 1) in the order of :data:`OUTCOMES` (their sum must not exceed 1).

- ``reset_before_commit``: the connection is reset before the domain layer sees the request (nothing stored).
- ``reset_after_commit``: the domain layer handles (and commits) the request, then the connection is reset
  without any response: the ambiguous case an agent must resolve (e.g. TD3.1 GetDocuments by uniqueId).
- ``http_500`` / ``http_503``: an HTTP error before the domain layer (nothing stored).
- ``soap_fault``: a SOAP 1.2 ``Receiver`` fault before the domain layer (nothing stored).
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError

OUTCOMES = ("reset_before_commit", "reset_after_commit", "http_500", "http_503", "soap_fault")
NORMAL = "normal"
INJECTED_FAULT_REASON = "Erreur interne simulée du DMP (injection de panne du bac à sable)."


class FaultConfigError(SandboxError):
    """Invalid fault-injection settings."""


@dataclass(frozen=True)
class FaultConfig:
    """Fault-injection settings. Rates are probabilities in [0, 1]; ``seed`` makes runs repeatable."""

    seed: int | None = None
    latency_ms: int = 0
    latency_rate: float = 0.0
    reset_before_commit_rate: float = 0.0
    reset_after_commit_rate: float = 0.0
    http_500_rate: float = 0.0
    http_503_rate: float = 0.0
    soap_fault_rate: float = 0.0
    # Limit injection to these SOAP actions (e.g. the ITI-41 action); empty = every service request.
    actions: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise FaultConfigError("latency_ms doit être positif ou nul.")
        for f in fields(self):
            if f.name.endswith("_rate"):
                value = getattr(self, f.name)
                if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                    raise FaultConfigError(f"{f.name} doit être compris entre 0 et 1 (reçu {value!r}).")
        total = sum(getattr(self, f"{o}_rate") for o in OUTCOMES)
        if total > 1.0 + 1e-9:
            raise FaultConfigError(
                f"La somme des taux de panne exclusifs ({', '.join(OUTCOMES)}) dépasse 1 ({total:g})."
            )
        object.__setattr__(self, "actions", tuple(self.actions))

    @property
    def active(self) -> bool:
        return (self.latency_rate > 0 and self.latency_ms > 0) or any(
            getattr(self, f"{o}_rate") > 0 for o in OUTCOMES
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["actions"] = list(self.actions)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise FaultConfigError(
                f"Paramètre(s) d'injection de panne inconnu(s) : {', '.join(sorted(unknown))}."
            )
        values = dict(data)
        if "actions" in values:
            values["actions"] = tuple(values["actions"] or ())
        try:
            return cls(**values)
        except TypeError as exc:
            raise FaultConfigError(f"Paramètres d'injection de panne invalides : {exc}.") from None

    @classmethod
    def from_json_file(cls, path: Path) -> FaultConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FaultConfigError(f"Fichier d'injection de panne illisible ({path}) : {exc}.") from None
        if not isinstance(data, dict):
            raise FaultConfigError("Le fichier d'injection de panne doit contenir un objet JSON.")
        return cls.from_dict(data)


@dataclass(frozen=True)
class Decision:
    outcome: str  # NORMAL or one of OUTCOMES
    latency_ms: int


class FaultInjector:
    """Runtime fault settings of a running sandbox (thread-safe; reconfigurable while serving)."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._rng = random.Random(self._config.seed)
        self._counts: dict[str, int] = {}

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the settings; the random sequence restarts from the new seed and counters reset."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)
            self._counts = {}

    def clear(self) -> None:
        self.configure(FaultConfig())

    def counts(self) -> dict[str, int]:
        """How many requests got each outcome (including ``normal``) since the last configure()."""
        with self._lock:
            return dict(self._counts)

    def decide(self, action: str) -> Decision:
        with self._lock:
            cfg = self._config
            if not cfg.active or (cfg.actions and action not in cfg.actions):
                return Decision(NORMAL, 0)
            u_latency = self._rng.random()
            u_outcome = self._rng.random()
            latency = cfg.latency_ms if u_latency < cfg.latency_rate else 0
            outcome = NORMAL
            edge = 0.0
            for name in OUTCOMES:
                edge += getattr(cfg, f"{name}_rate")
                if u_outcome < edge:
                    outcome = name
                    break
            self._counts[outcome] = self._counts.get(outcome, 0) + 1
            if latency:
                self._counts["latency"] = self._counts.get("latency", 0) + 1
            return Decision(outcome, latency)
