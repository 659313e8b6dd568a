"""ps_agent.auth: who acts and what signs.

- ``model``: ``Signer``, ``ProfessionalIdentity``, ``Activity``, ``AuthMode``, ``Credentials`` (contracts);
- ``session``: ``AuthSession`` (DIRECTE, card over PC/SC) and ``open_pkcs11`` (Cryptolib);
- ``pkcs11``: PKCS#11 tokens and ``Pkcs11Session``; ``establishment``: ``EstablishmentSession``
  (INDIRECTE / AIR, PKCS#12 or PKCS#11); ``software``: in-memory signer and ``SoftwareCredentials``;
- ``tls``: mutual TLS 1.2 transports (``ssl`` for software keys, tlslite-ng for external signers);
- ``certs``: certificate checks; ``errors``: the ``AuthError`` family.
"""
