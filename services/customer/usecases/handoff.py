"""Customer use cases: the device hand-off (a customer approves a code a device shows)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from services.customer import domain as d
from services.customer.domain import timeline as td
from services.customer.security import new_secret
from services.customer.security import secret_hash as hash_secret
from services.customer.store.clients import ClientStore
from services.customer.store.customers import CustomerStore
from services.customer.store.handoff import DeviceSessionStore
from services.customer.store.timeline import TimelineStore
from services.customer.usecases.common import (
    IssuedTokens,
    UseCase,
    bounded,
    customer_not_found,
    require_full_customer_session,
)
from services.customer.usecases.greetings import checked_in
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

#: Live hand-off codes one device may hold at once.
MAX_LIVE_DEVICE_SESSIONS = 5


class Handoff(UseCase):
    """A customer's session handed to an in-store device (RFC 8628 in spirit)."""

    async def _live_device(self, uow: UnitOfWork, principal: Principal) -> d.Client:
        principal.require_any_kind(PrincipalKind.DEVICE)
        client = await ClientStore(uow.session).get(principal.subject)
        if client is None or client.revoked_at is not None or not client.kind.in_store:
            raise PermissionDenied("this device may not hand off sessions", reason="CLIENT_REVOKED")
        return client

    async def start_device_session(self, principal: Principal) -> tuple[d.DeviceSession, str]:
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            client = await self._live_device(uow, principal)
            store = DeviceSessionStore(uow.session)
            await store.purge_expired(client.id, now - timedelta(days=1))
            if await store.live_count(client.id, now) >= MAX_LIVE_DEVICE_SESSIONS:
                raise ResourceExhausted(
                    "too many open hand-offs on this device; wait for them to expire",
                    reason="TOO_MANY_DEVICE_SESSIONS",
                )
            device_code = new_secret()
            for _ in range(5):
                session = d.DeviceSession(
                    id=uuid.uuid4(),
                    client_id=client.id,
                    user_code=d.new_user_code(),
                    channel=client.channel,
                    store_id=client.store_id,
                    created_at=now,
                    expires_at=now + self.policy.device_code_ttl,
                )
                if await store.insert(session, hash_secret(device_code)):
                    break
            else:  # pragma: no cover - 20^8 codes make five collisions in a row absurd
                raise ResourceExhausted("no free hand-off code", reason="DEVICE_CODES_EXHAUSTED")
            await uow.commit()
        return session, device_code

    async def approve_device_session(
        self, principal: Principal, user_code: str
    ) -> tuple[d.DeviceSession, d.Client, datetime]:
        customer_id = require_full_customer_session(principal)
        bounded(user_code, "user_code", 32)
        code = d.normalize_user_code(user_code)
        if code is None:
            raise d.invalid("user_code", "a code like BDFH-KMPR", "USER_CODE_INVALID")
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            customer = await CustomerStore(uow.session).get(customer_id)
            if customer is None or customer.is_erased:
                raise customer_not_found()
            store = DeviceSessionStore(uow.session)
            session = await store.by_user_code(code)
            if session is None:
                raise NotFound("no device shows this code", reason="DEVICE_SESSION_NOT_FOUND")
            if session.approved_by is not None:
                raise FailedPrecondition(
                    "this code was already approved", reason="DEVICE_SESSION_ALREADY_APPROVED"
                )
            if session.expired(now) or session.consumed_at is not None:
                raise FailedPrecondition("this code has expired", reason="DEVICE_SESSION_EXPIRED")
            client = await ClientStore(uow.session).get(session.client_id)
            if client is None or client.revoked_at is not None:
                raise FailedPrecondition("this device is no longer active", reason="CLIENT_REVOKED")
            await store.approve(session.id, customer_id, now)
            await uow.commit()
        latest_end = session.expires_at + self.policy.device_session_token_ttl
        return session, client, latest_end

    async def exchange_device_session(
        self, principal: Principal, device_code: str
    ) -> tuple[uuid.UUID, IssuedTokens] | None:
        """None while pending; the customer and their device-bound token once approved."""
        bounded(device_code, "device_code", 128)
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            client = await self._live_device(uow, principal)
            store = DeviceSessionStore(uow.session)
            session = await store.by_device_code(hash_secret(device_code))
            # Another device's handle is as good as none: the handle alone proves nothing.
            if session is None or session.client_id != client.id:
                raise NotFound("no such hand-off", reason="DEVICE_SESSION_NOT_FOUND")
            if session.consumed_at is not None:
                raise FailedPrecondition(
                    "this hand-off was already used", reason="DEVICE_SESSION_CONSUMED"
                )
            if session.expired(now):
                raise FailedPrecondition(
                    "this hand-off has expired", reason="DEVICE_SESSION_EXPIRED"
                )
            if session.approved_by is None:
                return None
            customer = await CustomerStore(uow.session).get(session.approved_by)
            if customer is None or customer.is_erased:
                raise FailedPrecondition("the customer is gone", reason="DEVICE_SESSION_EXPIRED")
            await store.consume(session.id, now)
            # What she did on this device before signing in (anonymous try-ons) is hers.
            since = session.created_at - td.ANONYMOUS_LINK_WINDOW
            await TimelineStore(uow.session).link_anonymous(
                client.id, customer.id, session.id, since, now
            )
            if client.kind is d.ClientKind.KIOSK and session.store_id:
                # Handing her session to a store's kiosk is checking in at that store.
                checked_in(uow, customer.id, session.store_id, now)
            access = self.keys.sign(
                subject=str(customer.id),
                kind=PrincipalKind.CUSTOMER.value,
                now=now,
                ttl=self.policy.device_session_token_ttl,
                scopes=d.DEVICE_SESSION_SCOPES,
                channel=d.CHANNEL_NAMES.get(session.channel),
                store_id=session.store_id,
                device=client.id,
            )
            await uow.commit()
        return customer.id, IssuedTokens(access, str(customer.id))
