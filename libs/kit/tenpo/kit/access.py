"""Kit layer: the access rule a method's contract states (``tenpo.common.v1.access``), and its
check against the caller.

Every rpc of a Tenpo service names who may call it in its proto; the call guard checks the
rule before the servicer runs (so permission is decided before any validation), and the
gateway reads the same rule from its descriptor set. Ownership (a customer reaching only
their own data) and data shaping stay with the service: the rule says who may call at all.

Errors raised by :meth:`AccessRule.check`, with the reasons the services used before the rule
moved into the contract: ``AUTHENTICATION_REQUIRED`` (UNAUTHENTICATED: an anonymous caller
where a principal is needed), ``PRINCIPAL_KIND_NOT_ALLOWED`` (metadata ``kind``) and
``MISSING_SCOPE`` (metadata ``scope``: the scopes of which one is needed), and
``DEVICE_SESSION_NOT_ALLOWED`` when a customer session handed to a device lacks the scope
(the customer's own session would have it).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool

from tenpo.common.v1 import access_pb2
from tenpo.kit import errors
from tenpo.kit.auth import Principal, PrincipalKind

#: Packages whose methods must state an access rule; others (health, reflection) need none.
RULED_PACKAGE_PREFIX = "tenpo."

_AUDIENCE_OF_KIND = {
    PrincipalKind.CUSTOMER: access_pb2.AUDIENCE_CUSTOMER,
    PrincipalKind.DEVICE: access_pb2.AUDIENCE_DEVICE,
    PrincipalKind.STAFF: access_pb2.AUDIENCE_STAFF,
    PrincipalKind.SERVICE: access_pb2.AUDIENCE_SERVICE,
}
#: Kinds that act on credentials an operator granted: their scopes are ``scopes``.
_OPERATOR_KINDS = frozenset({PrincipalKind.DEVICE, PrincipalKind.STAFF, PrincipalKind.SERVICE})


class AccessRuleMissing(LookupError):
    """A Tenpo method whose contract states no access rule: refused at start-up."""


@dataclass(frozen=True)
class AccessRule:
    """Who may call a method, as its proto says."""

    audiences: frozenset[int]
    scopes: frozenset[str] = frozenset()
    customer_scopes: frozenset[str] = frozenset()
    sign_in_rate_limit: bool = False

    @classmethod
    def from_proto(cls, access: access_pb2.Access) -> AccessRule:
        return cls(
            audiences=frozenset(access.audiences),
            scopes=frozenset(access.scopes),
            customer_scopes=frozenset(access.customer_scopes),
            sign_in_rate_limit=access.sign_in_rate_limit,
        )

    @classmethod
    def from_options(cls, options: descriptor_pb2.MethodOptions) -> AccessRule | None:
        """The rule of a method's options (as the descriptor set holds them); None if unset."""
        if not options.HasExtension(access_pb2.access):
            return None
        return cls.from_proto(options.Extensions[access_pb2.access])

    @property
    def admits_anonymous(self) -> bool:
        """Every caller may call, anonymous ones included."""
        return bool(self.audiences & {access_pb2.AUDIENCE_PUBLIC, access_pb2.AUDIENCE_CREDENTIALS})

    @property
    def needs_publishable_key(self) -> bool:
        """At the gateway, an anonymous caller needs a channel's publishable key (the
        request carries no credentials of its own)."""
        return access_pb2.AUDIENCE_CREDENTIALS not in self.audiences

    def check(self, principal: Principal) -> None:
        """Raise unless ``principal`` may call the method."""
        if self.admits_anonymous:
            return
        audience = _AUDIENCE_OF_KIND.get(principal.kind)
        if audience is None:
            raise errors.Unauthenticated(
                "this call needs an authenticated principal", reason="AUTHENTICATION_REQUIRED"
            )
        if audience not in self.audiences:
            raise errors.PermissionDenied(
                f"a {principal.kind.value} principal may not make this call",
                reason="PRINCIPAL_KIND_NOT_ALLOWED",
                metadata={"kind": principal.kind.value},
            )
        needed = self.scopes if principal.kind in _OPERATOR_KINDS else self.customer_scopes
        if needed and not needed & principal.scopes:
            wanted = " ".join(sorted(needed))
            if principal.session_device is not None:
                # The customer's own session would do: say so, the client can act on it.
                raise errors.PermissionDenied(
                    "a session handed to a device cannot do this",
                    reason="DEVICE_SESSION_NOT_ALLOWED",
                    metadata={"scope": wanted},
                )
            raise errors.PermissionDenied(
                f"missing scope: one of {wanted}" if len(needed) > 1 else f"missing scope {wanted}",
                reason="MISSING_SCOPE",
                metadata={"scope": wanted},
            )


def rule_for(
    method_path: str, pool: descriptor_pool.DescriptorPool | None = None
) -> AccessRule | None:
    """The rule of a registered method, by its gRPC path (``/tenpo.catalog.v1.X/Get``), from
    the generated descriptors; None for methods no Tenpo contract describes (health,
    reflection, handlers built by hand without a proto).

    Raises :class:`AccessRuleMissing` for a Tenpo contract method without a rule: a method
    nobody decided about is refused at start-up, not opened."""
    service, _, name = method_path.lstrip("/").rpartition("/")
    if not service.startswith(RULED_PACKAGE_PREFIX):
        return None
    try:
        method = (pool or descriptor_pool.Default()).FindMethodByName(f"{service}.{name}")
    except KeyError:
        return None
    options = method.GetOptions()
    if not options.HasExtension(access_pb2.access):
        raise AccessRuleMissing(f"{method_path}: the proto states no (tenpo.common.v1.access)")
    rule = AccessRule.from_proto(options.Extensions[access_pb2.access])
    if not rule.audiences or access_pb2.AUDIENCE_UNSPECIFIED in rule.audiences:
        raise AccessRuleMissing(f"{method_path}: the access rule names no audience")
    return rule
