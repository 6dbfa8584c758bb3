"""Passwords over gRPC against real PostgreSQL: the sign-in lockout (also under concurrent
attempts) and the password reset by a single-use mailed token."""

from __future__ import annotations

import asyncio

import grpc
import sqlalchemy as sa

from services.customer import domain as d
from services.customer.usecases.common import throttle_key
from tenpo.customer.v1 import events_pb2
from tenpo.customer.v1 import identity_service_pb2 as ids
from tests.services.customer.conftest import PASSWORD, Service, expect_error


async def counters(service: Service, email: str) -> tuple[int, int, bool] | None:
    """The sign-in counters of a customer's e-mail: failures, in flight, locked."""
    email_key = d.email_lookup_key(email)
    assert email_key is not None
    async with service.db.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT failures, in_flight, locked_until IS NOT NULL AS locked"
                    " FROM sign_in_attempts WHERE key = :k"
                ),
                {"k": throttle_key("customer", email_key)},
            )
        ).first()
    return (row.failures, row.in_flight, row.locked) if row else None


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


async def test_concurrent_correct_sign_ins_never_lock_while_wrong_ones_still_do(
    service: Service,
) -> None:
    # Found from outside: every attempt was counted as a failure before its password was
    # checked, so the threshold's worth of concurrent correct sign-ins locked the account.
    _, email, _ = await service.register()
    for _ in range(3):  # rounds, so the counters of a round are seen by the next
        outcomes = await asyncio.gather(
            *(
                service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))
                for _ in range(8)  # well above lockout_threshold (3 in the tests)
            ),
            return_exceptions=True,
        )
        assert [o for o in outcomes if isinstance(o, BaseException)] == []
        assert all(o.tokens.access_token for o in outcomes if not isinstance(o, BaseException))
    # Nothing counted against her, nothing left in flight (the row goes with the last).
    assert await counters(service, email) in (None, (0, 0, False))

    # Wrong passwords still lock, concurrently or not: exactly the threshold's worth of
    # guesses reach the password check, then even the right password is refused.
    guesses = await asyncio.gather(
        *(
            service.identity.SignIn(ids.SignInRequest(email=email, password=f"guess no. {n}"))
            for n in range(8)
        ),
        return_exceptions=True,
    )
    codes = [g.code() for g in guesses if isinstance(g, grpc.aio.AioRpcError)]
    assert len(codes) == 8
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 3
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 5
    await expect_error(
        service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SIGN_IN_LOCKED",
    )


async def test_correct_and_wrong_sign_ins_at_once_never_pass_more_guesses_than_the_threshold(
    service: Service,
) -> None:
    # The owner signing in on several devices while someone guesses: her sign-ins may
    # forgive earlier failures, but no more than the threshold's worth of guesses is ever
    # checked between two of her successes, and none of hers is refused for a lock that
    # only her own attempts could have set.
    _, email, _ = await service.register()
    calls = [
        service.identity.SignIn(
            ids.SignInRequest(email=email, password=PASSWORD if n % 2 else f"guess no. {n}")
        )
        for n in range(12)
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    wrong = [o for n, o in enumerate(outcomes) if n % 2 == 0]
    right = [o for n, o in enumerate(outcomes) if n % 2]
    assert all(isinstance(o, grpc.aio.AioRpcError) for o in wrong)
    assert {o.code() for o in wrong if isinstance(o, grpc.aio.AioRpcError)} <= {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
    # A correct one is refused only by a lock, which only guesses can set.
    refused = [o for o in right if isinstance(o, grpc.aio.AioRpcError)]
    assert all(o.code() is grpc.StatusCode.RESOURCE_EXHAUSTED for o in refused)
    found = await counters(service, email)
    assert found is None or found[1] == 0  # every admitted attempt was settled
