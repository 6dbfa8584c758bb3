"""Inventory use cases: who may do what (scopes and principal kinds)."""

from __future__ import annotations

from services.inventory import domain as d
from tenpo.kit.auth import Principal, PrincipalKind

WRITE_SCOPE = "inventory:write"
READ_SCOPE = "inventory:read"
RESERVE_SCOPE = "inventory:reserve"
#: Tuning sourcing (profiles) without the right to move stock.
SOURCING_SCOPE = "inventory:sourcing"


def actor_of(principal: Principal) -> str:
    return f"{principal.kind.value}:{principal.subject}"


def require_writer(principal: Principal) -> None:
    """Stock changes and locations: back-office staff or a trusted service with
    inventory:write."""
    principal.require_authenticated()
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    principal.require_scope(WRITE_SCOPE)


def sees_details(principal: Principal) -> bool:
    """On-hand and reserved figures are operational data, not for shoppers."""
    return principal.kind in (PrincipalKind.STAFF, PrincipalKind.SERVICE) and bool(
        {READ_SCOPE, WRITE_SCOPE, RESERVE_SCOPE} & principal.scopes
    )


def require_reader(principal: Principal) -> None:
    principal.require_authenticated()
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    if not {READ_SCOPE, WRITE_SCOPE} & principal.scopes:
        principal.require_scope(READ_SCOPE)


def acts_for_any_owner(principal: Principal) -> bool:
    """Staff, services and devices holding a reservation scope act for any owner."""
    return principal.kind in (
        PrincipalKind.STAFF,
        PrincipalKind.SERVICE,
        PrincipalKind.DEVICE,
    ) and bool({WRITE_SCOPE, RESERVE_SCOPE} & principal.scopes)


def require_reserver(principal: Principal) -> None:
    principal.require_authenticated()
    if principal.kind is PrincipalKind.CUSTOMER or acts_for_any_owner(principal):
        return
    principal.require_scope(RESERVE_SCOPE)


def require_committer(principal: Principal) -> None:
    """Turning a hold into a sale is the order service's (or staff's) decision."""
    principal.require_authenticated()
    if not acts_for_any_owner(principal) or principal.kind is PrincipalKind.DEVICE:
        principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
        principal.require_scope(WRITE_SCOPE)


def may_access(principal: Principal, reservation: d.Reservation) -> bool:
    if principal.kind is PrincipalKind.CUSTOMER:
        return bool(reservation.customer_id) and reservation.customer_id == principal.subject
    return acts_for_any_owner(principal)


def require_sourcing_editor(principal: Principal) -> None:
    """Sourcing profiles are changed by people (merchandising, operations), not services."""
    principal.require_authenticated()
    principal.require_any_kind(PrincipalKind.STAFF)
    if not {SOURCING_SCOPE, WRITE_SCOPE} & principal.scopes:
        principal.require_scope(SOURCING_SCOPE)


def require_sourcing_reader(principal: Principal) -> None:
    principal.require_authenticated()
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    if not {SOURCING_SCOPE, READ_SCOPE, WRITE_SCOPE} & principal.scopes:
        principal.require_scope(SOURCING_SCOPE)
