"""Local HTTP API of the agent for practice software (issue 12): FastAPI + uvicorn, 127.0.0.1 only,
a per-install bearer token, an Origin check, RFC 9457 problems. No Qt here; never imports ``sandbox``.

    backend = ApiBackend(services, lambda: session)
    app = create_app(backend, load_or_create_token(), allowed_origins=())
    server = ApiServer(app, port=DEFAULT_PORT); server.start(); ...; server.stop(); backend.close()

A window connects to ``backend.events`` (``open_patient_requested``, ``emergency_confirmation_requested``).
"""

from __future__ import annotations

from ps_agent.api.app import create_app
from ps_agent.api.backend import (
    API_EVENTS,
    EMERGENCY_CONFIRMATION_REQUESTED,
    OPEN_PATIENT_REQUESTED,
    ApiBackend,
    EmergencyRequest,
    OpenPatientRequest,
)
from ps_agent.api.security import load_or_create_token, token_path
from ps_agent.api.server import ApiServer
from ps_agent.api.settings import DEFAULT_PORT

__all__ = [
    "API_EVENTS",
    "DEFAULT_PORT",
    "EMERGENCY_CONFIRMATION_REQUESTED",
    "OPEN_PATIENT_REQUESTED",
    "ApiBackend",
    "ApiServer",
    "EmergencyRequest",
    "OpenPatientRequest",
    "create_app",
    "load_or_create_token",
    "token_path",
]
