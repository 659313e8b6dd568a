"""The remote audit collector: its configuration and what it holds (the "head" service).

**Configuration** (``CollectorConfig``): file ``collector.json`` in the agent's home (0600), written by
``ps-agent audit collector --hote H --port P --ca PEM [--tete URL]`` or by hand::

    {"host": "collecteur.chu.local", "port": 6514, "ca_file": "/etc/ps-agent/ca-collecteur.pem",
     "head_url": "https://collecteur.chu.local:8443/ps-agent/audit/head",
     "client_cert": "", "client_key": "", "source": "", "server_hostname": ""}

``forwarder_from_home(home)`` builds the ``SyslogForwarder`` (RFC 5424 over TLS, RFC 5425) to attach
to the journal; absent file: no forwarding (the default).

**Head service** (how ``audit verify`` learns what the collector holds). Syslog over TLS is one-way (no
receipts), so the collector also answers one HTTPS request, over the same CA::

    GET <head_url>?source=<source>&journal=<journal id>
    200 {"source": S, "journals": [{"journal": id, "seq": N, "hash": H, "conflicts": [seq...],
                                    "checkpoint": <checkpoint JSON> | null}, ...]}

one entry per journal the collector holds for that source (workstation): ``seq``/``hash`` is the last
record received with an unbroken chain from record 1, ``checkpoint`` the last signed checkpoint received,
``conflicts`` the seqs received twice with different hashes. ``tests/audit/syslog_server.py`` implements
it next to the syslog listener; a production collector (rsyslog writing files) needs this small service
reading its store.

Limits, said as they are: the collector confirms only what it received (records not yet forwarded when
the tamperer acted are protected locally or by a checkpoint only); the answer is trusted because TLS
authenticates the collector with the configured CA; ``source`` comes from the local configuration, so an
auditor who suspects the workstation queries the collector directly rather than trusting ``verify``.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ps_agent.audit._files import restrict_file, write_atomic
from ps_agent.audit.checkpoint import Checkpoint
from ps_agent.audit.errors import AuditError
from ps_agent.audit.journal import RemoteHead

if TYPE_CHECKING:
    from ps_agent.audit.syslog import SyslogForwarder

CONFIG_FILE = "collector.json"
DEFAULT_PORT = 6514  # RFC 5425
HEAD_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 4 * 1024 * 1024


class CollectorError(AuditError):
    """The collector configuration is wrong or the collector could not be queried."""


@dataclass(frozen=True)
class CollectorConfig:
    host: str
    port: int = DEFAULT_PORT
    ca_file: str = ""
    head_url: str = ""
    client_cert: str = ""
    client_key: str = ""
    source: str = ""  # syslog HOSTNAME identifying this workstation (default: the machine's name)
    server_hostname: str = ""  # TLS name of the collector when ``host`` is an address

    @property
    def source_name(self) -> str:
        return self.source or socket.gethostname()

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    def validate(self) -> CollectorConfig:
        if not self.host or any(c.isspace() for c in self.host):
            raise CollectorError(f"Adresse du collecteur invalide : « {self.host} ».", code="COLLECTOR_HOST")
        if not 0 < int(self.port) < 65536:
            raise CollectorError(f"Port du collecteur invalide : {self.port}.", code="COLLECTOR_PORT")
        for name in ("ca_file", "client_cert", "client_key"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise CollectorError(
                    f"Fichier introuvable pour le collecteur : {value}", code="COLLECTOR_FILE"
                )
        if self.head_url and not self.head_url.startswith("https://"):
            raise CollectorError(
                f"L'adresse du service de tête du collecteur doit commencer par https:// : {self.head_url}",
                code="COLLECTOR_HEAD_URL",
            )
        return self

    # -- file -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, home: Path) -> CollectorConfig | None:
        """``<home>/collector.json``, or None when absent."""
        path = Path(home) / CONFIG_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CollectorError(
                f"Configuration du collecteur illisible ({path}) : {exc}", code="COLLECTOR_CONFIG"
            ) from exc
        if not isinstance(data, dict):
            raise CollectorError(f"Configuration du collecteur illisible ({path}).", code="COLLECTOR_CONFIG")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CollectorError(
                f"Clé(s) inconnue(s) dans {path} : {', '.join(unknown)}.", code="COLLECTOR_CONFIG"
            )
        try:
            values: dict[str, Any] = {k: (int(v) if k == "port" else str(v)) for k, v in data.items()}
            config = cls(**values)
        except (TypeError, ValueError) as exc:
            raise CollectorError(
                f"Configuration du collecteur invalide ({path}) : {exc}", code="COLLECTOR_CONFIG"
            ) from exc
        return config.validate()

    def save(self, home: Path) -> Path:
        self.validate()
        path = Path(home) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, (json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        restrict_file(path)
        return path

    @staticmethod
    def remove(home: Path) -> bool:
        path = Path(home) / CONFIG_FILE
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    # -- TLS ------------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key or None)
        return ctx


def forwarder_from_config(config: CollectorConfig) -> SyslogForwarder:
    from ps_agent.audit.syslog import SyslogForwarder

    config.validate()
    return SyslogForwarder(
        config.host,
        config.port,
        ssl_context=config.ssl_context(),
        server_hostname=config.server_hostname or None,
        hostname=config.source_name,
    )


def forwarder_from_home(home: Path) -> SyslogForwarder | None:
    """The forwarder configured in ``<home>/collector.json`` (None when there is no such file)."""
    config = CollectorConfig.load(home)
    return forwarder_from_config(config) if config else None


def fetch_head(config: CollectorConfig, journal_id: str, *, timeout_s: float = HEAD_TIMEOUT_S) -> RemoteHead:
    """Ask the collector's head service what it holds for this workstation (raise ``CollectorError``)."""
    if not config.head_url:
        raise CollectorError(
            "Le collecteur n'a pas de service de tête configuré (head_url) : impossible de vérifier ce qu'il "
            "détient.",
            code="COLLECTOR_NO_HEAD",
        )
    query = urllib.parse.urlencode({"source": config.source_name, "journal": journal_id})
    url = config.head_url + ("&" if "?" in config.head_url else "?") + query
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=config.ssl_context()) as answer:  # noqa: S310
            body = answer.read(MAX_HEAD_BYTES + 1)
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        raise CollectorError(
            f"Le collecteur {config.label} n'a pas pu être interrogé ({exc}).", code="COLLECTOR_UNREACHABLE"
        ) from exc
    if len(body) > MAX_HEAD_BYTES:
        raise CollectorError("Réponse du collecteur trop volumineuse.", code="COLLECTOR_ANSWER")
    return parse_head(body, journal_id, config.label)


def parse_head(body: bytes, journal_id: str, label: str) -> RemoteHead:
    try:
        data = json.loads(body)
        entries: list[dict[str, Any]] = list(data["journals"])
        mine = next((e for e in entries if e.get("journal") == journal_id), None)
        others = tuple(
            (str(e["journal"]), int(e.get("seq", 0))) for e in entries if e.get("journal") != journal_id
        )
        if mine is None:
            return RemoteHead(label, other_journals=others)
        cp_data = mine.get("checkpoint")
        checkpoint = Checkpoint.from_dict(cp_data) if cp_data else None
        return RemoteHead(
            label,
            seq=int(mine.get("seq", 0)),
            hash=str(mine.get("hash", "")),
            checkpoint=checkpoint,
            other_journals=others,
            conflicts=tuple(int(s) for s in mine.get("conflicts", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CollectorError(
            f"Réponse du collecteur {label} illisible ({exc}).", code="COLLECTOR_ANSWER"
        ) from exc


__all__ = [
    "CONFIG_FILE",
    "CollectorConfig",
    "CollectorError",
    "fetch_head",
    "forwarder_from_config",
    "forwarder_from_home",
    "parse_head",
]
