"""INSi client tests run against the INSi sandbox over real TLS (fixtures in tests/fixtures/insi.py)."""

from tests.fixtures.insi import insi_client, insi_sandbox

__all__ = ["insi_client", "insi_sandbox"]
