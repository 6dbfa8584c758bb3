"""Machine clients over gRPC: tokens bound to their channel, store and scopes; a device
client's store is an inventory location id, asked of inventory (with a deadline) when the
client is created; the demo devices are bound to inventory's demo stores."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from services.customer import domain as d
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.customer.conftest import SLOW_LOCATION, Inventory, Service, expect_error
from tests.services.customer.identity_helpers import claims_of, client_admin


def _kiosk(store_id: str, kind: int = pb.CLIENT_KIND_KIOSK) -> ids.CreateClientRequest:
    return ids.CreateClientRequest(
        client=pb.Client(
            display_name="kiosk 1", kind=kind, store_id=store_id, scopes=["catalog:read"]
        )
    )


async def _clients_of(service: Service, tokens: Tokens, store_id: str) -> list[str]:
    listed = await service.identity.ListClients(
        ids.ListClientsRequest(store_id=store_id, show_revoked=True),
        metadata=client_admin(tokens),
    )
    return [c.id for c in listed.clients]


async def test_a_device_store_must_be_an_inventory_store(
    service: Service, tokens: Tokens, inventory: Inventory
) -> None:
    admin = client_admin(tokens)
    created = await service.identity.CreateClient(_kiosk("tokyo-shinjuku"), metadata=admin)
    assert created.client.store_id == "tokyo-shinjuku"
    assert "tokyo-shinjuku" in inventory.servicer.asked

    # The old demo ids ("shibuya") and typos are not locations: refused, nothing created.
    for unknown in ("shibuya", "tokyo-shibuya-2"):
        details = await expect_error(
            service.identity.CreateClient(_kiosk(unknown), metadata=admin),
            grpc.StatusCode.INVALID_ARGUMENT,
            "STORE_UNKNOWN",
        )
        assert [v.field for v in details.field_violations] == ["client.store_id"]
        assert await _clients_of(service, tokens, unknown) == []
        assert unknown in inventory.servicer.asked

    # A distribution centre is a location, but no shop for a kiosk; a back-office tool may
    # belong to one.
    await expect_error(
        service.identity.CreateClient(_kiosk("dc-kanto"), metadata=admin),
        grpc.StatusCode.INVALID_ARGUMENT,
        "STORE_UNKNOWN",
    )
    assert await _clients_of(service, tokens, "dc-kanto") == []
    tool = await service.identity.CreateClient(
        _kiosk("dc-kanto", pb.CLIENT_KIND_BACK_OFFICE_TOOL), metadata=admin
    )
    assert tool.client.store_id == "dc-kanto"


async def test_permission_and_input_are_checked_before_inventory_is_asked(
    service: Service, tokens: Tokens, inventory: Inventory
) -> None:
    before = len(inventory.servicer.asked)
    await expect_error(
        service.identity.CreateClient(_kiosk("tokyo-ginza"), metadata=tokens.customer),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        service.identity.CreateClient(_kiosk("Not A Store!"), metadata=client_admin(tokens)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert len(inventory.servicer.asked) == before


async def test_an_unanswering_inventory_is_unavailable_within_the_deadline(
    service_factory: Callable[..., Any], tokens: Tokens, inventory: Inventory
) -> None:
    impatient: Service = await service_factory(inventory_timeout_seconds=0.3)
    await expect_error(
        impatient.identity.CreateClient(_kiosk(SLOW_LOCATION), metadata=client_admin(tokens)),
        grpc.StatusCode.UNAVAILABLE,
        "INVENTORY_UNAVAILABLE",
    )
    assert inventory.servicer.stalled.is_set()  # it was asked, and gave up waiting
    assert await _clients_of(impatient, tokens, SLOW_LOCATION) == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("target", "reason"),
    [("", "INVENTORY_NOT_CONFIGURED"), ("closed", "INVENTORY_UNAVAILABLE")],
)
async def test_without_inventory_no_device_client_is_created(
    service_factory: Callable[..., Any], tokens: Tokens, target: str, reason: str
) -> None:
    address = f"127.0.0.1:{_closed_port()}" if target == "closed" else target
    alone: Service = await service_factory(inventory_target=address)
    await expect_error(
        alone.identity.CreateClient(_kiosk("tokyo-ginza"), metadata=client_admin(tokens)),
        grpc.StatusCode.UNAVAILABLE,
        reason,
    )
    assert await _clients_of(alone, tokens, "tokyo-ginza") == []
    # Clients without a store do not need inventory.
    tool = await alone.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(display_name="crm", kind=pb.CLIENT_KIND_BACK_OFFICE_TOOL)
        ),
        metadata=client_admin(tokens),
    )
    assert tool.client.id


def test_demo_devices_and_customers_use_inventory_demo_store_ids() -> None:
    from services.customer import seed as customer_seed
    from services.inventory import seed as inventory_seed
    from services.inventory.domain import LocationType

    stores = {loc.id for loc in inventory_seed.LOCATIONS if loc.type is LocationType.STORE}
    assert set(customer_seed.STORES) <= stores
    preferred = {c["store"] for c in customer_seed.CUSTOMERS if c["store"]}
    assert preferred <= stores


async def test_seeding_retires_devices_bound_to_old_store_ids(
    service_factory: Callable[..., Any],
) -> None:
    from services.customer.seed import seed_demo_customers
    from services.customer.usecases.bundle import build_use_cases

    seeded: Service = await service_factory()
    cases = build_use_cases(seeded.host.settings, seeded.db)
    old, old_secret = await cases.clients.ensure_client(
        "shibuya-kiosk-1", d.ClientKind.KIOSK, "shibuya", ["catalog:read"]
    )
    credentials = await seed_demo_customers(seeded.host.settings, seeded.db)
    assert {dev["store_id"] for dev in credentials["devices"]} == {
        "tokyo-shibuya",
        "tokyo-shinjuku",
        "tokyo-ginza",
    }
    await expect_error(
        seeded.identity.SignInClient(
            ids.SignInClientRequest(client_id=old.id, client_secret=old_secret)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CLIENT_CREDENTIALS",
    )
    kiosk = credentials["devices"][0]
    signed_in = await seeded.identity.SignInClient(
        ids.SignInClientRequest(client_id=kiosk["client_id"], client_secret=kiosk["client_secret"])
    )
    assert signed_in.tokens.access_token


async def test_seeding_again_gives_an_older_seed_client_the_seeds_scopes(
    service_factory: Callable[..., Any],
) -> None:
    # A data directory from before the kiosks handed pickups over: its kiosk had no order
    # scopes; the next `make run` (which seeds again) gives them.
    from services.customer.seed import seed_demo_customers
    from services.customer.usecases.bundle import build_use_cases

    seeded: Service = await service_factory()
    cases = build_use_cases(seeded.host.settings, seeded.db)
    old, _ = await cases.clients.ensure_client(
        "tokyo-shibuya-kiosk-1", d.ClientKind.KIOSK, "tokyo-shibuya", ["catalog:read"]
    )
    credentials = await seed_demo_customers(seeded.host.settings, seeded.db)
    kiosk = next(dev for dev in credentials["devices"] if dev["client_id"] == old.id)
    signed_in = await seeded.identity.SignInClient(
        ids.SignInClientRequest(client_id=kiosk["client_id"], client_secret=kiosk["client_secret"])
    )
    assert {"orders:read", "orders:write", "carts:write"} <= set(signed_in.tokens.scopes)


async def test_clients_get_tokens_bound_to_channel_store_and_scopes(
    service: Service, tokens: Tokens
) -> None:
    admin = client_admin(tokens)
    created = await service.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(
                display_name="Shibuya kiosk 1",
                kind=pb.CLIENT_KIND_KIOSK,
                store_id="tokyo-shibuya",
                scopes=["catalog:read", "inventory:read"],
            )
        ),
        metadata=admin,
    )
    client, secret = created.client, created.client_secret
    assert client.id.startswith("cl_") and secret.startswith("cs_")
    assert client.channel == 3  # KIOSK
    signed_in = await service.identity.SignInClient(
        ids.SignInClientRequest(client_id=client.id, client_secret=secret)
    )
    assert not signed_in.tokens.refresh_token
    claims = claims_of(signed_in.tokens.access_token)
    assert (claims["kind"], claims["sub"], claims["channel"], claims["store"]) == (
        "device",
        client.id,
        "KIOSK",
        "tokyo-shibuya",
    )
    assert claims["scope"] == "catalog:read inventory:read"

    await expect_error(
        service.identity.SignInClient(
            ids.SignInClientRequest(client_id=client.id, client_secret=secret + "x")
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CLIENT_CREDENTIALS",
    )
    async with service.db.engine.connect() as conn:
        dump = (
            await conn.execute(sa.text("SELECT string_agg(c::text, '') FROM clients c"))
        ).scalar_one()
    assert secret not in dump and secret[3:] not in dump

    back_office = await service.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(
                display_name="CRM sync",
                kind=pb.CLIENT_KIND_BACK_OFFICE_TOOL,
                scopes=["customers:read"],
            )
        ),
        metadata=admin,
    )
    tool = await service.identity.SignInClient(
        ids.SignInClientRequest(
            client_id=back_office.client.id, client_secret=back_office.client_secret
        )
    )
    assert claims_of(tool.tokens.access_token)["kind"] == "service"

    # Nobody delegates what they do not hold, nor the power to mint credentials.
    details = await expect_error(
        service.identity.CreateClient(
            ids.CreateClientRequest(
                client=pb.Client(
                    display_name="x",
                    kind=pb.CLIENT_KIND_POS,
                    store_id="",
                    scopes=["orders:write", "clients:write", "BAD"],
                )
            ),
            metadata=admin,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CLIENT_INVALID",
    )
    assert {v.field for v in details.field_violations} == {
        "client.store_id",
        "client.scopes[0]",
        "client.scopes[1]",
        "client.scopes[2]",
    }
    await expect_error(
        service.identity.CreateClient(
            ids.CreateClientRequest(
                client=pb.Client(
                    display_name="x", kind=pb.CLIENT_KIND_KIOSK, store_id="tokyo-shibuya"
                )
            ),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_SCOPE",
    )
    for n in range(3):
        await service.identity.CreateClient(
            ids.CreateClientRequest(
                client=pb.Client(
                    display_name=f"shelf {n}",
                    kind=pb.CLIENT_KIND_SMART_SHELF,
                    store_id="osaka-umeda",
                )
            ),
            metadata=admin,
        )
    seen: list[str] = []
    page_token = ""
    while True:
        listed = await service.identity.ListClients(
            ids.ListClientsRequest(store_id="osaka-umeda", page_size=2, page_token=page_token),
            metadata=admin,
        )
        seen.extend(c.display_name for c in listed.clients)
        page_token = listed.next_page_token
        if not page_token:
            break
    assert seen == ["shelf 2", "shelf 1", "shelf 0"]  # newest first, each once

    revoked = await service.identity.RevokeClient(
        ids.RevokeClientRequest(client_id=client.id), metadata=admin
    )
    assert revoked.client.HasField("revoke_time")
    await expect_error(
        service.identity.SignInClient(
            ids.SignInClientRequest(client_id=client.id, client_secret=secret)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CLIENT_CREDENTIALS",
    )
