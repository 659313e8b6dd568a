"""The local DMP sandbox, the test PKI and the emulated CPS card (may use ``cda``, never ``ps_agent``)."""
