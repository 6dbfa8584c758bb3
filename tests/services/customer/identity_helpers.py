"""Helpers of the identity API tests: a staff token that manages clients, a signed-in device,
a token's claims."""

from __future__ import annotations

from typing import Any

import jwt

from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.customer.conftest import Service, bearer

CLIENT_ADMIN_SCOPES = ["clients:write", "catalog:read", "inventory:read", "customers:read"]


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def me(metadata: Any) -> Any:
    return {"metadata": metadata}


async def get_me(service: Service, metadata: Any) -> api.GetCustomerResponse:
    return await service.customers.GetCustomer(
        api.GetCustomerRequest(customer_id="me"), metadata=metadata
    )


def client_admin(tokens: Tokens) -> Any:
    return tokens.metadata(
        tokens.mint(subject="staff-it-1", kind="staff", scopes=CLIENT_ADMIN_SCOPES)
    )


async def device(
    service: Service, tokens: Tokens, kind: int, store: str = "tokyo-shibuya"
) -> tuple[str, Any]:
    created = await service.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(
                display_name=f"{store} device", kind=kind, store_id=store, scopes=["catalog:read"]
            )
        ),
        metadata=client_admin(tokens),
    )
    signed_in = await service.identity.SignInClient(
        ids.SignInClientRequest(client_id=created.client.id, client_secret=created.client_secret)
    )
    return created.client.id, bearer(signed_in.tokens.access_token)
