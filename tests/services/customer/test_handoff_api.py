"""The device hand-off over gRPC against real PostgreSQL: a customer approves a device's code
in her app, the device exchanges it once for a token bound to it; codes expire; concurrent
approvals (and registrations) have one winner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc

from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.customer.conftest import Service, bearer, expect_error
from tests.services.customer.identity_helpers import (
    claims_of,
    device,
    get_me,
)


async def test_device_hand_off(service: Service, tokens: Tokens) -> None:
    mirror_id, mirror = await device(service, tokens, pb.CLIENT_KIND_SMART_MIRROR)
    _, kiosk = await device(service, tokens, pb.CLIENT_KIND_KIOSK)
    customer_id, _, customer = await service.register()
    _, _, stranger = await service.register()

    started = await service.identity.StartDeviceSession(
        ids.StartDeviceSessionRequest(), metadata=mirror
    )
    assert len(started.user_code) == 9 and started.user_code[4] == "-"
    assert started.qr_payload.endswith(started.user_code)
    assert started.expire_time.seconds - time.time() <= 300 + 5
    exchange = ids.ExchangeDeviceSessionRequest(device_code=started.device_code)
    pending = await service.identity.ExchangeDeviceSession(exchange, metadata=mirror)
    assert pending.state == pb.DEVICE_SESSION_STATE_PENDING and not pending.tokens.access_token

    # Only a signed-in customer approves, and only once.
    approve = ids.ApproveDeviceSessionRequest(user_code=started.user_code.lower().replace("-", " "))
    await expect_error(
        service.identity.ApproveDeviceSession(approve), grpc.StatusCode.UNAUTHENTICATED
    )
    await expect_error(
        service.identity.ApproveDeviceSession(approve, metadata=kiosk),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    approved = await service.identity.ApproveDeviceSession(approve, metadata=customer)
    assert approved.device_name == "tokyo-shibuya device" and approved.store_id == "tokyo-shibuya"
    await expect_error(
        service.identity.ApproveDeviceSession(approve, metadata=stranger),
        grpc.StatusCode.FAILED_PRECONDITION,
        "DEVICE_SESSION_ALREADY_APPROVED",
    )
    await expect_error(
        service.identity.ApproveDeviceSession(
            ids.ApproveDeviceSessionRequest(user_code="BCDF-GHJK"), metadata=customer
        ),
        grpc.StatusCode.NOT_FOUND,
        "DEVICE_SESSION_NOT_FOUND",
    )
    # The handle alone is worth nothing on another device.
    await expect_error(
        service.identity.ExchangeDeviceSession(exchange, metadata=kiosk),
        grpc.StatusCode.NOT_FOUND,
        "DEVICE_SESSION_NOT_FOUND",
    )
    handed = await service.identity.ExchangeDeviceSession(exchange, metadata=mirror)
    assert handed.state == pb.DEVICE_SESSION_STATE_APPROVED and handed.customer_id == customer_id
    assert not handed.tokens.refresh_token
    claims = claims_of(handed.tokens.access_token)
    assert (claims["kind"], claims["sub"], claims["dev"]) == ("customer", customer_id, mirror_id)
    assert (claims["channel"], claims["store"]) == ("SMART_MIRROR", "tokyo-shibuya")
    assert claims["exp"] - claims["iat"] == 600
    assert set(claims["scope"].split()) == {"profile:read", "carts:write"}
    await expect_error(
        service.identity.ExchangeDeviceSession(exchange, metadata=mirror),
        grpc.StatusCode.FAILED_PRECONDITION,
        "DEVICE_SESSION_CONSUMED",
    )

    # On the mirror the customer's session reads, and does nothing else.
    on_mirror = bearer(handed.tokens.access_token)
    assert (await get_me(service, on_mirror)).customer.id == customer_id
    await expect_error(
        service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(
                customer=pb.Customer(id="me", locale="en-US"), update_mask={"paths": ["locale"]}
            ),
            metadata=on_mirror,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        service.customers.ExportCustomerData(
            api.ExportCustomerDataRequest(customer_id="me"), metadata=on_mirror
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    again = await service.identity.StartDeviceSession(
        ids.StartDeviceSessionRequest(), metadata=kiosk
    )
    await expect_error(
        service.identity.ApproveDeviceSession(
            ids.ApproveDeviceSessionRequest(user_code=again.user_code), metadata=on_mirror
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "DEVICE_SESSION_NOT_ALLOWED",
    )
    # Customers and staff do not start hand-offs; only devices do.
    await expect_error(
        service.identity.StartDeviceSession(ids.StartDeviceSessionRequest(), metadata=customer),
        grpc.StatusCode.PERMISSION_DENIED,
        "PRINCIPAL_KIND_NOT_ALLOWED",
    )


async def test_device_hand_off_codes_expire(
    service_factory: Callable[..., Any], tokens: Tokens
) -> None:
    short = await service_factory(device_session_code_ttl_seconds=1)
    _, mirror = await device(short, tokens, pb.CLIENT_KIND_SMART_MIRROR)
    _, _, customer = await short.register()
    started = await short.identity.StartDeviceSession(
        ids.StartDeviceSessionRequest(), metadata=mirror
    )
    await asyncio.sleep(1.1)
    await expect_error(
        short.identity.ApproveDeviceSession(
            ids.ApproveDeviceSessionRequest(user_code=started.user_code), metadata=customer
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "DEVICE_SESSION_EXPIRED",
    )
    await expect_error(
        short.identity.ExchangeDeviceSession(
            ids.ExchangeDeviceSessionRequest(device_code=started.device_code), metadata=mirror
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "DEVICE_SESSION_EXPIRED",
    )


async def test_concurrent_registrations_and_approvals_have_one_winner(
    service: Service, tokens: Tokens
) -> None:
    email = f"race.{time.time_ns()}@example.jp"
    outcomes = await asyncio.gather(
        *(service.register(email=email) for _ in range(4)), return_exceptions=True
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(
        o.code() is grpc.StatusCode.ALREADY_EXISTS
        for o in outcomes
        if isinstance(o, grpc.aio.AioRpcError)
    )

    _, kiosk = await device(service, tokens, pb.CLIENT_KIND_KIOSK)
    started = await service.identity.StartDeviceSession(
        ids.StartDeviceSessionRequest(), metadata=kiosk
    )
    customers = [(await service.register())[2] for _ in range(3)]
    approvals = await asyncio.gather(
        *(
            service.identity.ApproveDeviceSession(
                ids.ApproveDeviceSessionRequest(user_code=started.user_code), metadata=c
            )
            for c in customers
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(a, BaseException) for a in approvals) == 1
