"""The local API's INSi search: a practice software's traits → WS_INS2 through the session's
``IdentityDesk`` (same records, journal and rules as the window and the CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ps_agent.api import models as m
from ps_agent.context import Context
from ps_agent.identity.model import TraitsQuery

if TYPE_CHECKING:
    from ps_agent.identities import IdentityDesk


def identity_lookup_for(desk: IdentityDesk) -> Callable[[m.IdentityIn], m.IdentityOut]:
    """``create_app(identity_lookup=…)``: the answer names the local identity and its RNIV status (RECUP
    after INSi: qualified only once a person checked an ID document, insi.md §5.3)."""

    def lookup(body: m.IdentityIn) -> m.IdentityOut:
        query = TraitsQuery(
            birth_name=body.birth_family_name,
            first_names=tuple(body.given_names.split()),
            sex=body.sex,
            birth_date=body.birth_date,
            birth_place=body.birth_place_code or None,
        )
        outcome = desk.search_traits(query, ctx=Context(background=False))
        ident = outcome.identity
        if ident is None or ident.ins is None:
            return m.IdentityOut(found=False, message=outcome.message_fr)
        return m.IdentityOut(
            found=True,
            identity_id=ident.id,
            ins=ident.ins.value,
            ins_oid=ident.ins.oid,
            status=ident.status.value,
            traits={
                "birth_family_name": ident.birth_name,
                "given_names": ident.first_names,
                "sex": ident.sex,
                "birth_date": ident.birth_date,
                "birth_place_code": ident.birth_place,
            },
            message=outcome.message_fr,
        )

    return lookup
