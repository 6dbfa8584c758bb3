"""Every domain enum that mirrors a proto enum matches it, names and values, in every service.

Domains import no protobuf (an import contract), so their enums restate the contract's by
hand and the servicers convert by value: a value added on one side only would be read as
another member, or fail at run time. Enums are found by walking each service package, so a
module moved by a refactor is still checked, and a new enum must either mirror its proto
namesake or be listed below as the service's own."""

from __future__ import annotations

import importlib
import pkgutil
from enum import IntEnum
from types import ModuleType

import pytest
from google.protobuf.descriptor import EnumDescriptor, FileDescriptor

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import resources_pb2 as catalog_pb
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import identity_service_pb2 as identity_api
from tenpo.customer.v1 import interaction_service_pb2 as interaction_api
from tenpo.customer.v1 import loyalty_service_pb2 as loyalty_api
from tenpo.customer.v1 import resources_pb2 as customer_pb
from tenpo.customer.v1 import store_card_service_pb2 as store_card_api
from tenpo.inventory.v1 import events_pb2 as inventory_events
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.order.v1 import resources_pb2 as order_pb

CONTRACTS: dict[str, tuple[FileDescriptor, ...]] = {
    "catalog": (catalog_pb.DESCRIPTOR, catalog_api.DESCRIPTOR),
    "inventory": (inventory_pb.DESCRIPTOR, inventory_api.DESCRIPTOR, inventory_events.DESCRIPTOR),
    "customer": (
        customer_pb.DESCRIPTOR,
        identity_api.DESCRIPTOR,
        loyalty_api.DESCRIPTOR,
        interaction_api.DESCRIPTOR,
        store_card_api.DESCRIPTOR,
    ),
    "order": (order_pb.DESCRIPTOR,),
}
#: Enums that mirror nothing on the wire, and why.
OWN_ENUMS = {
    "customer": {
        "TokenPurpose": "what a mailed single-use token is for; never on the wire",
        "SubjectKind": "whose session a refresh token continues; stored, never sent",
        "AudienceKind": "which CampaignAudience oneof field is set; the oneof is on the wire",
        "EarningState": "an order earning's state, stored; the wire shows it as pending points",
    },
    "inventory": {
        "StockSignal": "which stock event a change announces; the event types are the wire form",
    },
    "catalog": {},
    "order": {"SagaStep": "the checkout saga's steps, stored in the order row; never sent"},
}
#: Mirrors the test must find, so that it cannot pass by finding nothing.
EXPECTED = {
    "catalog": {
        "ProductStatus",
        "TaxClass",
        "BarcodeType",
        "AttributeType",
        "RelationType",
        "SearchSort",
    },
    "inventory": {
        "LocationType",
        "Capability",
        "MovementReason",
        "ReservationState",
        "TransferState",
        "AllocationMethod",
        "SourcingCriterion",
        "FulfillmentMethod",
        "SourcingFallback",
        "SourcingProfileVersionState",
    },
    "customer": {
        "CustomerState",
        "ConsentPurpose",
        "ConsentChannel",
        "ConsentStatus",
        "ConsentAction",
        "ClientKind",
        "LedgerEntryKind",
        "ReservationState",
        "InteractionKind",
        "SuggestionReason",
        "StoreCardEntryKind",
        "StoreCardHoldState",
    },
    "order": {
        "OrderStatus",
        "PaymentMethod",
        "PaymentState",
        "FulfillmentMethod",
        "FulfillmentType",
        "FulfillmentStatus",
        "CaptureState",
    },
}


def _modules(service: str) -> list[ModuleType]:
    """Every module of ``services.<service>`` except migrations (Alembic scripts) and the
    entry point."""
    package = importlib.import_module(f"services.{service}")
    found = [package]
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        parts = info.name.split(".")
        if "migrations" in parts or parts[-1] == "__main__":
            continue
        found.append(importlib.import_module(info.name))
    return found


def _domain_enums(service: str) -> dict[str, type[IntEnum]]:
    enums: dict[str, type[IntEnum]] = {}
    for module in _modules(service):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, IntEnum)
                and value.__module__.startswith(f"services.{service}")
            ):
                enums[value.__name__] = value
    return enums


def _proto_enums(service: str) -> dict[str, EnumDescriptor]:
    found: dict[str, EnumDescriptor] = {}
    for file in CONTRACTS[service]:
        found.update(file.enum_types_by_name)
        for message in file.message_types_by_name.values():
            found.update(message.enum_types_by_name)
    return found


def _prefix(enum: EnumDescriptor) -> str:
    """``SearchSort`` → ``SEARCH_SORT_`` (buf's ENUM_VALUE_PREFIX rule)."""
    name = enum.name
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper() + "_"


def _wire_members(enum: EnumDescriptor) -> dict[str, int]:
    prefix = _prefix(enum)
    members = {}
    for value in enum.values:
        assert value.name.startswith(prefix), value.name
        if value.number != 0:  # *_UNSPECIFIED: "not set", never a domain value
            members[value.name.removeprefix(prefix)] = value.number
    return members


@pytest.mark.parametrize("service", sorted(CONTRACTS))
def test_domain_enums_match_their_proto_enums(service: str) -> None:
    domain = _domain_enums(service)
    wire = _proto_enums(service)
    assert EXPECTED[service] <= set(domain), EXPECTED[service] - set(domain)
    for name, enum in sorted(domain.items()):
        if name in OWN_ENUMS[service]:
            assert name not in wire, f"{name} is listed as the service's own, yet on the wire"
            continue
        assert name in wire, (
            f"services.{service}: {name} mirrors no proto enum; add it to OWN_ENUMS with a "
            "reason if it is the service's own"
        )
        assert {m.name: m.value for m in enum} == _wire_members(wire[name]), name


def test_channel_constants_match_the_common_channel() -> None:
    from services.catalog import domain as catalog
    from services.customer import domain as customer

    wire = _wire_members(common_pb2.Channel.DESCRIPTOR)
    assert {v: k for k, v in wire.items()} == customer.CHANNEL_NAMES
    for name, number in wire.items():
        assert getattr(customer, f"CHANNEL_{name}") == number
    assert catalog.DEFAULT_CHANNEL == common_pb2.CHANNEL_WEB


def test_a_mismatch_would_be_caught() -> None:
    """The comparison itself: one value off, one member missing, one extra."""

    class Shifted(IntEnum):
        RELEVANCE = 1
        PRICE_ASCENDING = 3
        PRICE_DESCENDING = 2
        NEWEST = 4

    class Missing(IntEnum):
        RELEVANCE = 1

    wire = _wire_members(catalog_api.SearchSort.DESCRIPTOR)
    for wrong in (Shifted, Missing):
        assert {m.name: m.value for m in wrong} != wire
