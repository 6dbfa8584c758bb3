"""Access rules from the contracts: the rule's check, every Tenpo method states one, and the
call guard enforces it before the servicer runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pool

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc as catalog_grpc
from tenpo.common.v1 import access_pb2
from tenpo.customer.v1 import customer_service_pb2, identity_service_pb2
from tenpo.devtools.keys import DevKeys, ensure_dev_keys, mint_token
from tenpo.inventory.v1 import inventory_service_pb2
from tenpo.kit.access import AccessRule, rule_for
from tenpo.kit.auth import FileJwks, Principal, PrincipalKind, TokenVerifier
from tenpo.kit.errors import DomainError
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.guard import CallGuard, GuardedServer

ISSUER = "https://auth.test.tenpo"
SERVICE_FILES = (
    catalog_api.DESCRIPTOR,
    inventory_service_pb2.DESCRIPTOR,
    identity_service_pb2.DESCRIPTOR,
    customer_service_pb2.DESCRIPTOR,
)
WRITERS = AccessRule(
    audiences=frozenset({access_pb2.AUDIENCE_STAFF, access_pb2.AUDIENCE_SERVICE}),
    scopes=frozenset({"catalog:write"}),
)
OWNED = AccessRule(
    audiences=frozenset({access_pb2.AUDIENCE_CUSTOMER, access_pb2.AUDIENCE_STAFF}),
    scopes=frozenset({"customers:read"}),
    customer_scopes=frozenset({"profile:read"}),
)


def _principal(kind: PrincipalKind, *scopes: str) -> Principal:
    if kind is PrincipalKind.ANONYMOUS:
        return Principal.anonymous()
    return Principal(kind=kind, subject="x", scopes=frozenset(scopes))


def _refusal(rule: AccessRule, principal: Principal) -> tuple[str, str] | None:
    try:
        rule.check(principal)
    except DomainError as error:
        return type(error).__name__, error.reason
    return None


@pytest.mark.parametrize(
    ("rule", "principal", "refusal"),
    [
        (
            WRITERS,
            _principal(PrincipalKind.ANONYMOUS),
            ("Unauthenticated", "AUTHENTICATION_REQUIRED"),
        ),
        (
            WRITERS,
            _principal(PrincipalKind.CUSTOMER, "catalog:write"),
            ("PermissionDenied", "PRINCIPAL_KIND_NOT_ALLOWED"),
        ),
        (
            WRITERS,
            _principal(PrincipalKind.DEVICE, "catalog:write"),
            ("PermissionDenied", "PRINCIPAL_KIND_NOT_ALLOWED"),
        ),
        (WRITERS, _principal(PrincipalKind.STAFF), ("PermissionDenied", "MISSING_SCOPE")),
        (WRITERS, _principal(PrincipalKind.STAFF, "catalog:write"), None),
        (WRITERS, _principal(PrincipalKind.SERVICE, "catalog:write", "other:read"), None),
        # Customers are held to customer_scopes, staff to scopes: never the other way round.
        (OWNED, _principal(PrincipalKind.CUSTOMER, "profile:read"), None),
        (
            OWNED,
            _principal(PrincipalKind.CUSTOMER, "customers:read"),
            ("PermissionDenied", "MISSING_SCOPE"),
        ),
        (
            OWNED,
            _principal(PrincipalKind.STAFF, "profile:read"),
            ("PermissionDenied", "MISSING_SCOPE"),
        ),
        (OWNED, _principal(PrincipalKind.STAFF, "customers:read"), None),
        (
            OWNED,
            _principal(PrincipalKind.SERVICE, "customers:read"),
            ("PermissionDenied", "PRINCIPAL_KIND_NOT_ALLOWED"),
        ),
    ],
)
def test_rule_check(
    rule: AccessRule, principal: Principal, refusal: tuple[str, str] | None
) -> None:
    assert _refusal(rule, principal) == refusal


def test_a_handed_off_session_is_told_why() -> None:
    on_mirror = Principal(
        kind=PrincipalKind.CUSTOMER,
        subject="c",
        scopes=frozenset({"profile:read"}),
        session_device="mirror-1",
    )
    writers = AccessRule(
        audiences=frozenset({access_pb2.AUDIENCE_CUSTOMER}),
        customer_scopes=frozenset({"profile:write"}),
    )
    assert _refusal(writers, on_mirror) == ("PermissionDenied", "DEVICE_SESSION_NOT_ALLOWED")
    assert _refusal(OWNED, on_mirror) is None


def test_one_of_the_scopes_suffices_and_public_admits_everyone() -> None:
    readers = AccessRule(
        audiences=frozenset({access_pb2.AUDIENCE_STAFF}),
        scopes=frozenset({"inventory:read", "inventory:write"}),
    )
    assert _refusal(readers, _principal(PrincipalKind.STAFF, "inventory:write")) is None
    with pytest.raises(DomainError) as caught:
        readers.check(_principal(PrincipalKind.STAFF, "x:y"))
    assert caught.value.metadata == {"scope": "inventory:read inventory:write"}
    for audience in (access_pb2.AUDIENCE_PUBLIC, access_pb2.AUDIENCE_CREDENTIALS):
        public = AccessRule(audiences=frozenset({audience}), scopes=frozenset({"a:b"}))
        for kind in PrincipalKind:
            assert _refusal(public, _principal(kind)) is None
    assert AccessRule(audiences=frozenset({access_pb2.AUDIENCE_PUBLIC})).needs_publishable_key
    assert not AccessRule(
        audiences=frozenset({access_pb2.AUDIENCE_CREDENTIALS})
    ).needs_publishable_key


def test_every_tenpo_method_states_an_access_rule() -> None:
    checked = 0
    for file in SERVICE_FILES:
        for service in file.services_by_name.values():
            for method in service.methods:
                rule = rule_for(f"/{service.full_name}/{method.name}")
                assert rule is not None, method.full_name
                assert rule.audiences, method.full_name
                assert access_pb2.AUDIENCE_UNSPECIFIED not in rule.audiences, method.full_name
                checked += 1
    assert checked > 70


def test_rules_match_what_the_services_decided() -> None:
    """Spot checks of the contract against the behaviour the services had before it."""

    def rule(path: str) -> AccessRule:
        found = rule_for(path)
        assert found is not None
        return found

    sign_in = rule("/tenpo.customer.v1.IdentityService/SignIn")
    assert sign_in.sign_in_rate_limit and not sign_in.needs_publishable_key
    register = rule("/tenpo.customer.v1.IdentityService/Register")
    assert register.sign_in_rate_limit and register.needs_publishable_key
    assert rule("/tenpo.catalog.v1.CatalogService/GetProduct").admits_anonymous
    assert not rule("/tenpo.catalog.v1.CatalogService/CreateAttributeDefinition").admits_anonymous
    assert rule("/tenpo.catalog.v1.CatalogService/ImportProducts") == WRITERS
    reserve = rule("/tenpo.inventory.v1.InventoryService/ReserveStock")
    assert access_pb2.AUDIENCE_CUSTOMER in reserve.audiences
    assert access_pb2.AUDIENCE_DEVICE in reserve.audiences
    assert rule("/tenpo.customer.v1.CustomerService/ExportCustomerData").customer_scopes == {
        "profile:write"
    }


def test_methods_outside_the_contracts_have_no_rule() -> None:
    assert rule_for("/grpc.health.v1.Health/Check") is None
    assert rule_for("/tenpo.kittest.v1.SampleService/Echo") is None  # built by hand, no proto


def test_rule_for_reads_the_pool_it_is_given() -> None:
    empty = descriptor_pool.DescriptorPool()
    assert rule_for("/tenpo.catalog.v1.CatalogService/GetProduct", empty) is None


# --- the guard -----------------------------------------------------------------------------


class RecordingCatalog(catalog_grpc.CatalogServiceServicer):
    """Answers like a servicer that validates first (as the real one does): an incomplete
    definition is INVALID_ARGUMENT. Records whether it ran."""

    def __init__(self) -> None:
        self.calls = 0

    async def CreateAttributeDefinition(self, request: Any, context: Any) -> Any:
        self.calls += 1
        from tenpo.kit.errors import FieldViolation, InvalidArgument

        raise InvalidArgument(
            "incomplete", field_violations=[FieldViolation("attribute_definition.key", "required")]
        )

    async def GetProduct(self, request: Any, context: Any) -> Any:
        self.calls += 1
        return catalog_api.GetProductResponse()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    return ensure_dev_keys(tmp_path_factory.mktemp("access-keys"))


@pytest_asyncio.fixture
async def guarded_catalog(keys: DevKeys) -> AsyncIterator[tuple[RecordingCatalog, str]]:
    verifier = TokenVerifier(FileJwks(keys.jwks_path), issuer=ISSUER, audience="tenpo")
    server = grpc.aio.server()
    servicer = RecordingCatalog()
    catalog_grpc.add_CatalogServiceServicer_to_server(
        servicer,
        GuardedServer(server, CallGuard(verifier)),  # type: ignore[arg-type]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _bearer(keys: DevKeys, kind: str, *scopes: str) -> tuple[tuple[str, str], ...]:
    token = mint_token(
        keys.private_key_pem,
        keys.kid,
        issuer=ISSUER,
        audience="tenpo",
        subject=f"{kind}-1",
        kind=kind,
        scopes=list(scopes),
        channel="KIOSK" if kind == "device" else None,
    )
    return (("authorization", f"Bearer {token}"),)


async def test_guard_checks_permission_before_the_servicer_runs(
    guarded_catalog: tuple[RecordingCatalog, str], keys: DevKeys
) -> None:
    servicer, target = guarded_catalog
    incomplete = catalog_api.CreateAttributeDefinitionRequest()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = catalog_grpc.CatalogServiceStub(channel)
        refusals = {}
        for who, metadata in {
            "anonymous": (),
            "customer": _bearer(keys, "customer", "profile:read", "profile:write"),
            "device": _bearer(keys, "device", "catalog:write"),
            "staff without scope": _bearer(keys, "staff", "customers:read"),
        }.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreateAttributeDefinition(incomplete, metadata=metadata)
            refusals[who] = (caught.value.code(), decode_error(caught.value).reason)
        assert servicer.calls == 0  # no refused caller reached the servicer
        assert refusals == {
            "anonymous": (grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_REQUIRED"),
            "customer": (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED"),
            "device": (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED"),
            "staff without scope": (grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE"),
        }
        # Only a caller the contract admits reaches validation.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateAttributeDefinition(
                incomplete, metadata=_bearer(keys, "staff", "catalog:write")
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert servicer.calls == 1
        # A public method admits the anonymous caller.
        await stub.GetProduct(catalog_api.GetProductRequest(id="x"))
        assert servicer.calls == 2


def test_a_tenpo_method_without_a_rule_is_refused_at_registration() -> None:
    from google.protobuf import descriptor_pb2

    from tenpo.kit.access import AccessRuleMissing

    file = descriptor_pb2.FileDescriptorProto(
        name="tenpo/fake/v1/fake.proto", package="tenpo.fake.v1", syntax="proto3"
    )
    file.message_type.add(name="Empty")
    service = file.service.add(name="FakeService")
    service.method.add(
        name="Open", input_type=".tenpo.fake.v1.Empty", output_type=".tenpo.fake.v1.Empty"
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    with pytest.raises(AccessRuleMissing, match="states no"):
        rule_for("/tenpo.fake.v1.FakeService/Open", pool)
