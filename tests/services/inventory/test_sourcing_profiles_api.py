"""Sourcing profiles over the API: versions as data (draft → active → retired), who may
change them, bad input, and PlanFulfillment following the active version it names."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from services.inventory.domain.profiles import BUILT_IN_RULES
from services.inventory.usecases.profiles import ProfileCache
from tenpo.common.v1 import common_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.db import Database
from tenpo.kit.errors import NotFound
from tenpo.kit.grpc_errors import decode_error
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, expect_error, new_sku, receive

Shared = tuple[Stub, object, str]
TOKYO_STATION = common_pb2.GeoPoint(latitude=35.6812, longitude=139.7671)
ACTIVE = pb.SOURCING_PROFILE_VERSION_STATE_ACTIVE
DRAFT = pb.SOURCING_PROFILE_VERSION_STATE_DRAFT
RETIRED = pb.SOURCING_PROFILE_VERSION_STATE_RETIRED
DELIVERY = pb.FULFILLMENT_METHOD_DELIVERY
DC, FC, STORE = (
    pb.LOCATION_TYPE_DISTRIBUTION_CENTER,
    pb.LOCATION_TYPE_FULFILLMENT_CENTER,
    pb.LOCATION_TYPE_STORE,
)


def _sourcer(tokens: Tokens) -> tuple[tuple[str, str], ...]:
    """Staff tuning sourcing, who may not move stock."""
    return tokens.metadata(
        tokens.mint(subject="staff-ops-1", kind="staff", scopes=["inventory:sourcing"])
    )


def _version(first: int, *, description: str = "") -> pb.SourcingProfileVersion:
    """Location type first, then fewest shipments and distance; ``first`` leads the types."""
    types = [first] + [t for t in (DC, FC, STORE) if t != first]
    return pb.SourcingProfileVersion(
        description=description,
        criteria=[
            pb.SOURCING_CRITERION_LOCATION_TYPE,
            pb.SOURCING_CRITERION_FEWEST_SHIPMENTS,
            pb.SOURCING_CRITERION_DISTANCE,
        ],
        max_shipments=2,
        allowed_location_types=[pb.AllowedLocationTypes(method=DELIVERY, location_types=types)],
        fallbacks=[pb.SOURCING_FALLBACK_PARTIAL],
    )


async def _create(stub: Stub, tokens: Tokens, profile: str, version: pb.SourcingProfileVersion):  # type: ignore[no-untyped-def]
    return (
        await stub.CreateSourcingProfileVersion(
            api.CreateSourcingProfileVersionRequest(profile=profile, version=version),
            metadata=_sourcer(tokens),
        )
    ).version


async def _activate(stub: Stub, tokens: Tokens, profile: str, version: int):  # type: ignore[no-untyped-def]
    return (
        await stub.ActivateSourcingProfileVersion(
            api.ActivateSourcingProfileVersionRequest(profile=profile, version=version),
            metadata=_sourcer(tokens),
        )
    ).version


async def _plan(stub: Stub, sku: str, profile: str = "") -> pb.FulfillmentPlan:
    return (
        await stub.PlanFulfillment(
            api.PlanFulfillmentRequest(
                lines=[pb.StockLine(sku=sku, quantity=2)],
                delivery_point=TOKYO_STATION,
                sourcing_profile=profile,
            )
        )
    ).plan


async def _store_and_dc_stock(stub: Stub, tokens: Tokens) -> str:
    sku = new_sku("SP")
    await receive(stub, tokens, sku, "tokyo-shibuya", 5)  # a store that ships, near
    await receive(stub, tokens, sku, "dc-kanto", 5)
    return sku


async def test_the_default_profile_is_the_built_in_policy_and_says_so_in_plans(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    default = (
        await stub.GetSourcingProfileVersion(
            api.GetSourcingProfileVersionRequest(profile="default"), metadata=tokens.staff
        )
    ).version
    assert (default.name, default.state) == ("sourcingProfiles/default/versions/1", ACTIVE)
    assert list(default.criteria) == [int(c) for c in BUILT_IN_RULES.criteria]
    assert default.max_shipments == BUILT_IN_RULES.max_shipments
    assert list(default.fallbacks) == [int(f) for f in BUILT_IN_RULES.fallbacks]
    assert default.activate_time.seconds > 0
    sku = await _store_and_dc_stock(stub, tokens)
    plan = await _plan(stub, sku)
    assert (plan.sourcing_profile, plan.sourcing_profile_version) == ("default", 1)
    assert [a.location_id for a in plan.allocations] == ["tokyo-shibuya"]  # nearest that ships
    assert plan.explanation[0] == "decided by sourcingProfiles/default/versions/1"


async def test_a_profile_is_drafted_activated_replaced_and_its_history_stays(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    profile = f"p-{uuid.uuid4().hex[:8]}"
    sku = await _store_and_dc_stock(stub, tokens)
    first = await _create(stub, tokens, profile, _version(DC))
    assert (first.version, first.state, first.create_actor) == (1, DRAFT, "staff:staff-ops-1")
    # A draft decides nothing.
    await expect_error(
        _plan(stub, sku, profile), grpc.StatusCode.NOT_FOUND, "SOURCING_PROFILE_NOT_FOUND"
    )
    # A draft may change (AIP-134 mask, etag); a stale etag is refused.
    update = api.UpdateSourcingProfileVersionRequest(
        version=pb.SourcingProfileVersion(
            profile=profile, version=1, description="DC first", etag=first.etag
        )
    )
    update.update_mask.paths.append("description")
    changed = (await stub.UpdateSourcingProfileVersion(update, metadata=_sourcer(tokens))).version
    assert changed.description == "DC first" and changed.etag != first.etag
    assert changed.max_shipments == 2  # untouched by the mask
    await expect_error(
        stub.UpdateSourcingProfileVersion(update, metadata=_sourcer(tokens)),
        grpc.StatusCode.ABORTED,
    )
    active = await _activate(stub, tokens, profile, 1)
    assert active.state == ACTIVE and active.activate_actor == "staff:staff-ops-1"
    dc_first = await _plan(stub, sku, profile)
    assert [a.location_id for a in dc_first.allocations] == ["dc-kanto"]
    assert (dc_first.sourcing_profile, dc_first.sourcing_profile_version) == (profile, 1)
    # Once active it never changes.
    update.version.etag = ""
    await expect_error(
        stub.UpdateSourcingProfileVersion(update, metadata=_sourcer(tokens)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "SOURCING_PROFILE_VERSION_NOT_DRAFT",
    )
    second = await _create(stub, tokens, profile, _version(STORE, description="stores first"))
    assert second.version == 2
    assert (await _plan(stub, sku, profile)).sourcing_profile_version == 1  # still v1
    await _activate(stub, tokens, profile, 2)
    store_first = await _plan(stub, sku, profile)
    assert [a.location_id for a in store_first.allocations] == ["tokyo-shibuya"]
    assert store_first.sourcing_profile_version == 2
    # The version it replaced stays readable, retired; it cannot come back in place.
    old = (
        await stub.GetSourcingProfileVersion(
            api.GetSourcingProfileVersionRequest(profile=profile, version=1),
            metadata=tokens.staff,
        )
    ).version
    assert (old.state, old.description) == (RETIRED, "DC first") and old.retire_time.seconds
    await expect_error(
        stub.ActivateSourcingProfileVersion(
            api.ActivateSourcingProfileVersionRequest(profile=profile, version=1),
            metadata=_sourcer(tokens),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "SOURCING_PROFILE_VERSION_NOT_DRAFT",
    )
    # History, newest first, page by page; and the active version of every profile.
    first_page = await stub.ListSourcingProfileVersions(
        api.ListSourcingProfileVersionsRequest(profile=profile, page_size=1),
        metadata=tokens.staff,
    )
    assert [v.version for v in first_page.versions] == [2] and first_page.next_page_token
    rest = await stub.ListSourcingProfileVersions(
        api.ListSourcingProfileVersionsRequest(
            profile=profile, page_size=1, page_token=first_page.next_page_token
        ),
        metadata=tokens.staff,
    )
    assert [v.version for v in rest.versions] == [1] and not rest.next_page_token
    actives = await stub.ListSourcingProfileVersions(
        api.ListSourcingProfileVersionsRequest(page_size=200), metadata=tokens.staff
    )
    assert {(v.profile, v.version) for v in actives.versions} >= {("default", 1), (profile, 2)}
    assert all(v.state == ACTIVE for v in actives.versions)


async def test_concurrent_activations_leave_exactly_one_active_version(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    profile = f"race-{uuid.uuid4().hex[:8]}"
    drafts = [await _create(stub, tokens, profile, _version(DC)) for _ in range(4)]
    await asyncio.gather(*(_activate(stub, tokens, profile, v.version) for v in drafts))
    listed = await stub.ListSourcingProfileVersions(
        api.ListSourcingProfileVersionsRequest(profile=profile), metadata=tokens.staff
    )
    states = sorted(v.state for v in listed.versions)
    assert states == [ACTIVE, RETIRED, RETIRED, RETIRED]


async def test_creating_with_a_request_id_twice_creates_one_version(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    profile = f"idem-{uuid.uuid4().hex[:8]}"
    request = api.CreateSourcingProfileVersionRequest(
        profile=profile, version=_version(FC), request_id=uuid.uuid4().hex
    )
    answers = await asyncio.gather(
        *(stub.CreateSourcingProfileVersion(request, metadata=_sourcer(tokens)) for _ in range(5))
    )
    assert {a.version.version for a in answers} == {1}
    listed = await stub.ListSourcingProfileVersions(
        api.ListSourcingProfileVersionsRequest(profile=profile), metadata=tokens.staff
    )
    assert len(listed.versions) == 1


async def test_bad_versions_are_refused_with_the_field_and_change_nothing(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    profile = f"bad-{uuid.uuid4().hex[:8]}"
    cases: list[tuple[str, pb.SourcingProfileVersion, str, str]] = []
    unknown = _version(DC)
    unknown.criteria[0] = 99  # type: ignore[call-overload]
    cases.append((profile, unknown, "version.criteria[0]", "ENUM_INVALID"))
    cases.append(
        (
            profile,
            pb.SourcingProfileVersion(max_shipments=1),
            "version.criteria",
            "CRITERIA_REQUIRED",
        )
    )
    late_pickup = _version(DC)
    late_pickup.criteria.append(pb.SOURCING_CRITERION_PICKUP_STORE_FIRST)
    cases.append((profile, late_pickup, "version.criteria[3]", "CRITERION_ORDER_INVALID"))
    too_many = _version(DC)
    too_many.max_shipments = 11
    cases.append((profile, too_many, "version.max_shipments", "MAX_SHIPMENTS_INVALID"))
    twice = _version(DC)
    twice.allowed_location_types.append(
        pb.AllowedLocationTypes(method=DELIVERY, location_types=[DC])
    )
    cases.append((profile, twice, "version.allowed_location_types[1].method", "METHOD_REPEATED"))
    after_end = _version(DC)
    after_end.fallbacks.append(pb.SOURCING_FALLBACK_SPLIT_BEYOND_MAX)
    cases.append((profile, after_end, "version.fallbacks[0]", "FALLBACK_ORDER_INVALID"))
    cases.append(("Not A Name", _version(DC), "profile", "PROFILE_NAME_INVALID"))
    for name, version, field, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateSourcingProfileVersion(
                api.CreateSourcingProfileVersionRequest(profile=name, version=version),
                metadata=_sourcer(tokens),
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, field
        info = decode_error(caught.value)
        assert info.reason == reason, (field, info.reason)
        assert [v.field for v in info.field_violations] == [field]
    listed = await stub.ListSourcingProfileVersions(
        api.ListSourcingProfileVersionsRequest(profile=profile), metadata=tokens.staff
    )
    assert not listed.versions
    await expect_error(
        _plan(stub, new_sku(), "no-such-profile"),
        grpc.StatusCode.NOT_FOUND,
        "SOURCING_PROFILE_NOT_FOUND",
    )
    await expect_error(
        _plan(stub, new_sku(), "Bad Name"), grpc.StatusCode.INVALID_ARGUMENT, "PROFILE_NAME_INVALID"
    )
    await expect_error(
        stub.ActivateSourcingProfileVersion(
            api.ActivateSourcingProfileVersionRequest(profile="default", version=0),
            metadata=_sourcer(tokens),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VERSION_INVALID",
    )


async def test_only_staff_with_a_sourcing_scope_change_profiles(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    request = api.CreateSourcingProfileVersionRequest(profile="default", version=_version(DC))
    service = tokens.metadata(
        tokens.mint(subject="order-service", kind="service", scopes=["inventory:write"])
    )
    for metadata, code, reason in [
        ((), grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_REQUIRED"),
        (tokens.customer, grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED"),
        (service, grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED"),
        (tokens.staff_without_scope, grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE"),
    ]:
        await expect_error(
            stub.CreateSourcingProfileVersion(request, metadata=metadata), code, reason
        )
    await expect_error(
        stub.GetSourcingProfileVersion(api.GetSourcingProfileVersionRequest(profile="default")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    # A service reads (the order service may show which profile decides).
    read = await stub.GetSourcingProfileVersion(
        api.GetSourcingProfileVersionRequest(profile="default"), metadata=service
    )
    assert read.version.version == 1
    # Nothing was created by the refused calls.
    listed = await stub.ListSourcingProfileVersions(
        api.ListSourcingProfileVersionsRequest(profile="default"), metadata=service
    )
    assert [v.version for v in listed.versions] == [1]


async def test_another_replicas_cache_finds_a_new_profile_and_later_its_new_versions(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, url = shared_inventory
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        cache = ProfileCache(db, ttl=3600)  # another replica's, loaded before the writes
        profile = f"cache-{uuid.uuid4().hex[:8]}"
        with pytest.raises(NotFound) as caught:
            await cache.active(profile)
        assert caught.value.reason == "SOURCING_PROFILE_NOT_FOUND"
        first = await _create(stub, tokens, profile, _version(DC))
        await _activate(stub, tokens, profile, first.version)
        assert (await cache.active(profile)).version == 1  # a miss reads the database
        cache.invalidate()  # its refresh (every 2 s in the service) now holds the profile
        assert (await cache.active(profile)).version == 1
        second = await _create(stub, tokens, profile, _version(STORE))
        await _activate(stub, tokens, profile, second.version)
        assert (await cache.active(profile)).version == 1  # a known profile: until the refresh
        cache.invalidate()
        assert (await cache.active(profile)).version == 2
    finally:
        await db.dispose()
