"""Settings of the local HTTP API, each uncertain choice in one place."""

from __future__ import annotations

import ipaddress

# [I] Port of the local API: not 9982 (DmpConnect-JS2 listens there, spec 13.1); 9983 is free of any known
# health connector and easy to remember beside it. Configurable (``ps-agent serve --port``).
DEFAULT_PORT = 9983

# The only addresses the API accepts to bind to (spec 13.1: loopback only).
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")

# Name of the bearer token file in the user's config folder (0600, created at first start).
TOKEN_FILENAME = "api-token"  # noqa: S105 - a file name, not a secret

# [I] Browser origins accepted when none is configured: none. A request without ``Origin`` (practice
# software, curl) is accepted; a browser-based LGC must be listed (``ApiSettings.allowed_origins``).
DEFAULT_ALLOWED_ORIGINS: tuple[str, ...] = ()

# [I] How long a deposit request waits for the document to be written in the queue before answering 202
# (the CDA check, the policy and the durable write happen before); the DMP exchange itself goes on after.
DEPOSIT_ACCEPT_TIMEOUT_S = 30.0

# [I] How often the service tries the queue's due entries (waiting deposits whose time came).
QUEUE_RESUME_INTERVAL_S = 5.0

# [I] Largest request body accepted (a deposit carries a base64 PDF): 20 MiB.
MAX_BODY_BYTES = 20 * 1024 * 1024

# [I] Consultation through the API is interactive by default (the professional clicked in the practice
# software); a caller working unattended says so with ``contexte=arriere-plan`` (AUTH-03 then refuses reads).
DEFAULT_BACKGROUND = False


def is_loopback(host: str) -> bool:
    """True for a loopback address or the name ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# [I] Shape of a document identifier (XDS uniqueId) accepted by the document routes and checked by the
# command line before the PIN: the CDA id's root OID (``2.25.…``, ``1.2.250.…``), optionally ``^`` and its
# extension. Anything else (a typo, an entryUUID, a queue id) is refused naming the field, rather than
# asked of the DMP and answered "not found".
UNIQUE_ID_PATTERN = r"^[0-2](\.(0|[1-9][0-9]*))+(\^[A-Za-z0-9][A-Za-z0-9._\-]{0,63})?$"
UNIQUE_ID_MAX = 128
