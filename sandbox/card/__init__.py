"""Emulated CPS cards behind the real PC/SC stack (pcscd + vpcd): see ``applet`` and ``vpcd``.

Command line: ``python -m sandbox.card insert --profile gp [--pki DIR]``, ``python -m sandbox.card
remove``, ``python -m sandbox.card --help`` (lists the profiles).
"""

from __future__ import annotations

from sandbox.card.applet import CPS3_ATR, UNKNOWN_ATR, CardKeys, CpsApplet, keys_from_pki
from sandbox.card.vpcd import READER_NAMES, VPCD_PORTS, VpcdError, VpcdLink

__all__ = [
    "CPS3_ATR",
    "READER_NAMES",
    "UNKNOWN_ATR",
    "VPCD_PORTS",
    "CardKeys",
    "CpsApplet",
    "VpcdError",
    "VpcdLink",
    "keys_from_pki",
    "make_card",
]

EMULATOR_ONLY_PROFILES = {"unknown": "carte non CPS (ATR inconnu, répond 6D00 à tout)"}


def make_card(pki: object, profile: str, *, t0: bool = True, garbage: bool = False) -> CpsApplet:
    """Build the emulated card of ``profile`` (a ``sandbox.profiles`` name, ``unknown``, or a ``vitale-…``
    carte Vitale profile of :mod:`sandbox.card.vitale`, which needs no PKI)."""
    from sandbox.card.vitale import VITALE_PROFILES, make_vitale_card
    from sandbox.profiles import PROFILES

    if profile in VITALE_PROFILES:
        return make_vitale_card(profile, t0=t0, garbage=garbage)  # type: ignore[return-value]

    if profile == "unknown":
        card = CpsApplet(PROFILES["gp"], keys_from_pki(pki, "gp"), t0=t0, garbage=True, atr=UNKNOWN_ATR)
        card.process = lambda apdu: b"\x6d\x00"  # type: ignore[method-assign]
        return card
    if profile not in PROFILES:
        from sandbox.errors import SandboxError

        known = ", ".join([*PROFILES, *EMULATOR_ONLY_PROFILES])
        raise SandboxError(f"Profil de carte inconnu : {profile!r} (profils : {known})")
    return CpsApplet(PROFILES[profile], keys_from_pki(pki, profile), t0=t0, garbage=garbage)
