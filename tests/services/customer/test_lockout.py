"""One sign-in attempt under the lockout counters (usecases/lockout.py), on real PostgreSQL:
the password is hashed whether or not the address exists, and an attempt that ends without
an answer leaves nothing counted in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from services.customer import domain as d
from services.customer.usecases.bundle import CustomerUseCases
from services.customer.usecases.common import throttle_key
from tenpo.customer.v1 import identity_service_pb2 as ids
from tests.services.customer.conftest import Service, expect_error


def _cases(service: Service) -> CustomerUseCases:
    return service.host.runtime.parts["use_cases"]  # type: ignore[no-any-return]


async def _in_flight(service: Service, email: str) -> int:
    email_key = d.email_lookup_key(email)
    assert email_key is not None
    async with service.db.engine.connect() as conn:
        found = (
            await conn.execute(
                sa.text("SELECT in_flight FROM sign_in_attempts WHERE key = :k"),
                {"k": throttle_key("customer", email_key)},
            )
        ).scalar_one_or_none()
    return int(found or 0)


async def test_an_unknown_address_costs_one_hash_like_a_known_one(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, email, _ = await service.register()
    passwords = _cases(service).context.passwords
    checked: list[str | None] = []
    verify = passwords.verify

    async def counting(stored: str | None, password: str) -> bool:
        checked.append(stored)
        return await verify(stored, password)

    monkeypatch.setattr(passwords, "verify", counting)
    for address in (email, f"nobody.{email}"):
        await expect_error(
            service.identity.SignIn(ids.SignInRequest(email=address, password="wrong password!")),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )
    assert len(checked) == 2  # one hash each: the known hash, then the decoy (None)
    assert checked[0] is not None and checked[1] is None


async def test_an_attempt_cancelled_mid_check_leaves_nothing_in_flight(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, email, _ = await service.register()
    passwords = _cases(service).context.passwords
    entered = asyncio.Event()

    async def stuck(stored: str | None, password: str) -> Any:
        entered.set()
        await asyncio.Event().wait()  # never answers: the caller gives up

    monkeypatch.setattr(passwords, "verify", stuck)
    attempt = asyncio.create_task(
        _cases(service).sessions.sign_in(email=email, password="wrong password!", channel=0)
    )
    await asyncio.wait_for(entered.wait(), timeout=30)
    assert await _in_flight(service, email) == 1  # counted while it checks
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    assert await _in_flight(service, email) == 0  # withdrawn, not counted as a failure
