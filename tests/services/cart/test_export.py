"""CartService.ExportCustomerData: her carts with their lines, nobody else's, no credentials;
who may ask (the customer herself, staff and services with customers:read)."""

from __future__ import annotations

import json
import uuid

import grpc

from tenpo.cart.v1 import cart_service_pb2 as api
from tests.services.cart.conftest import (
    Clients,
    Upstreams,
    customer,
    expect_error,
    new_sku,
    service,
    staff,
)
from tests.services.conftest import Tokens


async def test_a_customer_exports_her_carts_and_lines_without_credentials(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 3300)
    upstreams.inventory.stock[sku] = 5
    her, someone = str(uuid.uuid4()), str(uuid.uuid4())
    for subject in (her, someone):
        created = await cart.carts.CreateCart(
            api.CreateCartRequest(), metadata=customer(tokens, subject)
        )
        await cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=created.cart.id, sku=sku, quantity=2),
            metadata=customer(tokens, subject),
        )
    # A customer's own session carries profile:write (a session handed to a store device
    # does not, and may not export).
    exported = await cart.carts.ExportCustomerData(
        api.ExportCustomerDataRequest(customer_id="me"),
        metadata=customer(tokens, her, scopes=["profile:write"]),
    )
    assert exported.content_type == "application/json"
    document = json.loads(exported.json)
    assert (document["service"], document["customer_id"]) == ("cart", her)
    tables = document["tables"]
    [mine] = tables["carts"]
    assert mine["customer_id"] == her and "guest_token_hash" not in mine
    [line] = tables["cart_lines"]
    assert (line["cart_id"], line["sku"], line["quantity"]) == (mine["id"], sku, 2)
    assert someone not in exported.json
    assert document["left_out"]["carts"] == ["guest_token_hash"]

    by_service = await cart.carts.ExportCustomerData(
        api.ExportCustomerDataRequest(customer_id=her),
        metadata=service(tokens, "customers:read"),
    )
    assert json.loads(by_service.json)["tables"]["carts"][0]["id"] == mine["id"]


async def test_only_she_and_staff_with_the_scope_may_export_and_bad_ids_are_named(
    cart: Clients, tokens: Tokens
) -> None:
    her = str(uuid.uuid4())
    request = api.ExportCustomerDataRequest(customer_id=her)
    await expect_error(
        cart.carts.ExportCustomerData(
            request, metadata=customer(tokens, str(uuid.uuid4()), scopes=["profile:write"])
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_RESOURCE_OWNER",
    )
    await expect_error(
        cart.carts.ExportCustomerData(request, metadata=customer(tokens, her)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        cart.carts.ExportCustomerData(request, metadata=staff(tokens, "promotions:write")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        cart.carts.ExportCustomerData(
            api.ExportCustomerDataRequest(customer_id="not-an-id"),
            metadata=staff(tokens, "customers:read"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ID_INVALID",
    )
    empty = await cart.carts.ExportCustomerData(request, metadata=staff(tokens, "customers:read"))
    assert json.loads(empty.json)["tables"]["carts"] == []
