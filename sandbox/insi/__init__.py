"""The offline INSi téléservice (insi.md §7): WS_INS1 / WS_INS2 over SOAP 1.2 on two loopback HTTPS
listeners (mutual TLS for INSI-MANU/INSI-AUTO certificates, server-only TLS for CPx assertions).

``sandbox.insi.server.start_insi(pki)`` starts it; ``python -m sandbox serve`` starts it next to the DMP.
"""
