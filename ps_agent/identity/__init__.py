"""Patient identity: the INSi téléservice client (WS_INS1, WS_INS2, interim verification) — insi.md.

Public API: :class:`~ps_agent.identity.insi.InsiClient`, the authentication modes
:class:`~ps_agent.identity.auth.CertificateAuth` / :class:`~ps_agent.identity.auth.CpxAuth`, the
environment table :data:`~ps_agent.identity.environments.INSI_ENVIRONMENTS`, the model
(:mod:`ps_agent.identity.model`) and the errors (:mod:`ps_agent.identity.errors`).
"""
