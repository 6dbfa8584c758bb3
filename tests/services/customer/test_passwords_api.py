"""Passwords over gRPC against real PostgreSQL: the sign-in lockout (also under concurrent
attempts) and the password reset by a single-use mailed token."""

from __future__ import annotations

import asyncio

import grpc

from tenpo.customer.v1 import events_pb2
from tenpo.customer.v1 import identity_service_pb2 as ids
from tests.services.customer.conftest import PASSWORD, Service, expect_error


async def test_failed_sign_ins_lock_without_revealing_whether_the_email_exists(
    service: Service,
) -> None:
    _, email, _ = await service.register()
    unknown = "nobody.here@example.jp"
    outcomes: dict[str, list[tuple[grpc.StatusCode, str | None]]] = {}
    for address in (email, unknown):
        seen = []
        for _ in range(3):  # lockout_threshold in the tests
            details = await expect_error(
                service.identity.SignIn(
                    ids.SignInRequest(email=address, password="wrong password!")
                ),
                grpc.StatusCode.UNAUTHENTICATED,
                "INVALID_CREDENTIALS",
            )
            seen.append((details.code, details.message))
        # Now even the right password is refused, the same way for both addresses.
        locked = await expect_error(
            service.identity.SignIn(ids.SignInRequest(email=address, password=PASSWORD)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "SIGN_IN_LOCKED",
        )
        assert locked.metadata["retry_after_seconds"] == "1"
        assert "retry after 1 s" in locked.message
        seen.append((locked.code, locked.message))
        outcomes[address] = seen
    assert outcomes[email] == outcomes[unknown]
    await asyncio.sleep(1.1)
    signed_in = await service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))
    assert signed_in.tokens.access_token
    # A success resets the count: one more failure does not lock.
    await expect_error(
        service.identity.SignIn(ids.SignInRequest(email=email, password="wrong password!")),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )
    await service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))


async def test_parallel_guesses_cannot_slip_past_the_lock(service: Service) -> None:
    _, email, _ = await service.register()
    outcomes = await asyncio.gather(
        *(
            service.identity.SignIn(ids.SignInRequest(email=email, password=f"guess number {n}"))
            for n in range(12)
        ),
        return_exceptions=True,
    )
    codes = [o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(codes) == 12
    # Exactly the threshold's worth of guesses reached the password check.
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 3
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 9


async def test_password_reset_by_single_use_token(service: Service) -> None:
    customer_id, email, _ = await service.register()
    session = (
        await service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))
    ).tokens
    await service.identity.RequestPasswordReset(
        ids.RequestPasswordResetRequest(email="ghost@example.jp")
    )
    await service.identity.RequestPasswordReset(
        ids.RequestPasswordResetRequest(email=email.upper())
    )
    await service.identity.RequestPasswordReset(
        ids.RequestPasswordResetRequest(email=email)
    )  # cooled down
    await service.reset_requests_handled()
    requested = await service.events(events_pb2.PasswordResetRequested, customer_id)
    assert len(requested) == 1
    mailed = await service.mailed(requested[0])
    assert mailed.email == email and mailed.token and mailed.customer_id == customer_id
    assert not await service.events(events_pb2.PasswordResetRequested, "ghost")
    token = mailed.token

    await expect_error(
        service.identity.ResetPassword(ids.ResetPasswordRequest(token=token, new_password="short")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "PASSWORD_TOO_WEAK",
    )
    new_password = "a brand new passphrase"
    await service.identity.ResetPassword(
        ids.ResetPasswordRequest(token=token, new_password=new_password)
    )
    await expect_error(
        service.identity.ResetPassword(
            ids.ResetPasswordRequest(token=token, new_password="another new one!")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "RESET_TOKEN_INVALID",
    )
    await expect_error(
        service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )
    await service.identity.SignIn(ids.SignInRequest(email=email, password=new_password))
    # Sessions from before the reset are gone.
    await expect_error(
        service.identity.RefreshToken(ids.RefreshTokenRequest(refresh_token=session.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )

