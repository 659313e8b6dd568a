"""``LpsInfo``: the software's identity as declared to the DMP, in a module of its own so that
``ps_agent.config`` (imported by every entry point, the desktop window's start-up included) does not import
the VIHF builder (lxml, the XML signature's helpers). ``ps_agent.dmp.vihf.LpsInfo`` is the same class."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LpsInfo:
    """The software's identity as declared to the DMP (configuration, ``ps_agent.config``)."""

    name: str
    version: str
    homologation_id: str
    lps_id: str = ""
    oid: str = ""  # root OID for sourceId and generated uniqueIds
