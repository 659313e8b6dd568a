"""ps_agent.card: the smart-card layer (PC/SC with pyscard, no Qt).

- ``pcsc``: readers, one card connection (exclusive then shared), APDU transport with T=0 chaining;
- ``cps``: ATR recognition and the ``CpsSession`` (holder, situations, PIN, certificates, signatures);
- ``monitor``: ``CardMonitor`` publishing insertion / removal / unknown card / reader events;
- ``errors``: the ``CardError`` family. PIN errors live in ``ps_agent.auth.errors``.

The authenticated session built on it is ``ps_agent.auth.session.AuthSession``.
"""
