"""Who may open which cart, and from which touchpoint a call comes.

- A customer's cart: that customer (also through an in-store device the customer handed the
  session to — such a token is the customer's, bound to the device, and short-lived), and
  staff or services with ``carts:read`` / ``carts:write``.
- A guest cart: whoever presents its cart token (a capability: 256 random bits, stored only
  as a hash), and staff or services with the scopes.
- Anyone else gets CART_NOT_FOUND, the same answer as for a cart that does not exist: carts
  are never enumerable.
"""

from __future__ import annotations

from services.cart.domain.carts import Cart
from tenpo.common.v1 import common_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.errors import NotFound

READ_SCOPE = "carts:read"
WRITE_SCOPE = "carts:write"
#: The order service closes carts into orders.
CHECKOUT_SCOPE = "carts:checkout"
PROMOTIONS_WRITE_SCOPE = "promotions:write"
REDEEM_SCOPE = "promotions:redeem"

#: Kinds whose own touchpoint a cart follows; staff and services act on a cart without
#: moving it to their back-office channel.
_SHOPPERS = (PrincipalKind.ANONYMOUS, PrincipalKind.CUSTOMER, PrincipalKind.DEVICE)
DEFAULT_CHANNEL = common_pb2.CHANNEL_WEB


def cart_not_found() -> NotFound:
    return NotFound("no such cart", reason="CART_NOT_FOUND")


def may_open(principal: Principal, cart: Cart, token: str, *, write: bool) -> bool:
    if principal.kind in (PrincipalKind.STAFF, PrincipalKind.SERVICE):
        if token and not (cart.customer_id is None and cart.opens_with(token)):
            # A service relaying a guest (the order service placing a guest's order) shows
            # the guest's token: it must open the cart, or the guest is not its holder.
            return False
        return principal.has_scope(WRITE_SCOPE) or (not write and principal.has_scope(READ_SCOPE))
    if cart.customer_id is not None:
        return principal.kind is PrincipalKind.CUSTOMER and principal.subject == cart.customer_id
    return cart.opens_with(token)


def open_cart(principal: Principal, cart: Cart | None, token: str, *, write: bool) -> Cart:
    if cart is None or not may_open(principal, cart, token, write=write):
        raise cart_not_found()
    return cart


def touchpoint(principal: Principal, cart: Cart | None = None) -> tuple[int, str | None]:
    """The channel and store a change comes from: the shopper's own; for staff and services,
    the cart's."""
    if principal.kind in _SHOPPERS:
        return principal.channel or DEFAULT_CHANNEL, principal.store_id
    if cart is not None:
        return cart.channel, cart.store_id
    return principal.channel or DEFAULT_CHANNEL, principal.store_id


def principal_key(principal: Principal) -> str:
    """Whom a rate limit counts against."""
    return f"{principal.kind.value}:{principal.subject}" if principal.is_authenticated else ""
