"""Customer use cases: the consent ledger (purpose × channel, double opt-in)."""

from __future__ import annotations

import uuid
from dataclasses import replace

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.customer import convert
from services.customer import domain as d
from services.customer.store.consents import ConsentStore
from services.customer.usecases.common import (
    Context,
    UseCase,
    acting_for,
    load_customer,
)
from services.customer.usecases.mail_tokens import MailTokens
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import (
    FailedPrecondition,
)
from tenpo.kit.idempotency import idempotent


def consent_key(state: d.ConsentState) -> tuple[int, int]:
    """A consent state's position in ListConsents (its keyset key)."""
    return int(state.purpose), int(state.channel)


class Consents(UseCase):
    """The consent ledger: grants, revocations, confirmations, history."""

    def __init__(self, context: Context, mail: MailTokens) -> None:
        super().__init__(context)
        self.mail = mail

    async def list_consents(
        self,
        principal: Principal,
        customer_ref: str,
        *,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[d.ConsentState]:
        """Current states by (purpose, channel), the page after the ``after`` key."""
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
            entries = await ConsentStore(uow.session).all_of(customer_id)
        # Every purpose × channel has a state (a bounded, small set), so the page is cut
        # from all of them; the key is the enum pair, which never changes for a state.
        states = sorted(d.current_consents(entries), key=consent_key)
        return [s for s in states if after is None or consent_key(s) > after][:limit]

    async def _state_of(
        self,
        uow: UnitOfWork,
        customer_id: uuid.UUID,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
    ) -> d.ConsentState:
        states = d.current_consents(await ConsentStore(uow.session).all_of(customer_id))
        return next(s for s in states if s.purpose is purpose and s.channel is channel)

    async def _record(
        self,
        uow: UnitOfWork,
        principal: Principal,
        customer: d.Customer,
        previous: d.ConsentState,
        action: d.ConsentAction,
        status: d.ConsentStatus,
        wording_version: str,
    ) -> d.ConsentState:
        now = self.clock()
        entry = d.ConsentEntry(
            id=uuid.uuid4(),
            customer_id=customer.id,
            purpose=previous.purpose,
            channel=previous.channel,
            action=action,
            status=status,
            wording_version=wording_version,
            source_channel=principal.channel,
            source_store_id=principal.store_id,
            actor_kind=principal.kind.value,
            recorded_at=now,
        )
        await ConsentStore(uow.session).append(entry)
        state = d.ConsentState(previous.purpose, previous.channel, status, wording_version, now)
        uow.add_event(
            events_pb2.ConsentChanged(
                customer_id=str(customer.id),
                consent=convert.consent_state(state),
                previous_status=int(previous.status),  # type: ignore[arg-type]
            )
        )
        return state

    async def _change_consent(
        self,
        principal: Principal,
        customer_ref: str,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
        wording_version: str,
        *,
        grant: bool,
        request_id: str,
        request: Message,
    ) -> d.ConsentState:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        d.validate_wording_version(wording_version)
        async with self.db.unit_of_work() as uow:
            # The customer row lock serialises ledger appends: the derived state a change is
            # based on cannot shift underneath it.
            customer = await load_customer(uow, customer_id, principal, lock=True)

            async def change() -> wrappers_pb2.StringValue:
                previous = await self._state_of(uow, customer_id, purpose, channel)
                if grant:
                    outcome = d.grant_outcome(purpose, channel, previous.status)
                elif previous.status is d.ConsentStatus.REVOKED:
                    outcome = None
                else:
                    outcome = (d.ConsentAction.REVOKE, d.ConsentStatus.REVOKED)
                if outcome is None:
                    return wrappers_pb2.StringValue()
                action, status = outcome
                await self._record(
                    uow, principal, customer, previous, action, status, wording_version
                )
                if status is d.ConsentStatus.PENDING_CONFIRMATION:
                    await self._send_consent_confirmation(
                        uow, customer, purpose, channel, wording_version
                    )
                return wrappers_pb2.StringValue()

            await idempotent(
                uow,
                scope=f"{'Grant' if grant else 'Revoke'}Consent:{customer_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=change,
            )
            state = await self._state_of(uow, customer_id, purpose, channel)
            await uow.commit()
        return state

    async def _send_consent_confirmation(
        self,
        uow: UnitOfWork,
        customer: d.Customer,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
        wording_version: str,
    ) -> None:
        token_id, expires = await self.mail.mail_token(
            uow,
            customer,
            d.TokenPurpose.CONFIRM_CONSENT,
            self.policy.consent_confirmation_ttl,
            {"purpose": int(purpose), "channel": int(channel), "wording_version": wording_version},
        )
        uow.add_event(
            events_pb2.ConsentConfirmationRequested(
                customer_id=str(customer.id),
                purpose=int(purpose),  # type: ignore[arg-type]
                channel=int(channel),  # type: ignore[arg-type]
                token_id=str(token_id),
                expire_time=convert.timestamp(expires),
            )
        )

    async def grant_consent(
        self,
        principal: Principal,
        customer_ref: str,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
        wording_version: str,
        *,
        request_id: str,
        request: Message,
    ) -> d.ConsentState:
        return await self._change_consent(
            principal,
            customer_ref,
            purpose,
            channel,
            wording_version,
            grant=True,
            request_id=request_id,
            request=request,
        )

    async def revoke_consent(
        self,
        principal: Principal,
        customer_ref: str,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
        wording_version: str,
        *,
        request_id: str,
        request: Message,
    ) -> d.ConsentState:
        return await self._change_consent(
            principal,
            customer_ref,
            purpose,
            channel,
            wording_version,
            grant=False,
            request_id=request_id,
            request=request,
        )

    async def confirm_consent(self, principal: Principal, token: str) -> d.ConsentState:
        async with self.db.unit_of_work() as uow:
            customer, subject = await self.mail.redeem(
                uow, token, d.TokenPurpose.CONFIRM_CONSENT, "CONFIRMATION_TOKEN_INVALID"
            )
            purpose = d.ConsentPurpose(subject["purpose"])
            channel = d.ConsentChannel(subject["channel"])
            previous = await self._state_of(uow, customer.id, purpose, channel)
            if previous.status is not d.ConsentStatus.PENDING_CONFIRMATION:
                raise FailedPrecondition(
                    "this consent is no longer waiting for confirmation",
                    reason="CONSENT_NOT_PENDING",
                )
            # Whoever clicks the link acts for the customer the mail went to.
            actor = (
                replace(principal, kind=PrincipalKind.CUSTOMER)
                if not principal.is_authenticated
                else principal
            )
            state = await self._record(
                uow,
                actor,
                customer,
                previous,
                d.ConsentAction.CONFIRM,
                d.ConsentStatus.GRANTED,
                str(subject["wording_version"]),
            )
            await uow.commit()
        return state

    async def consent_history(
        self,
        principal: Principal,
        customer_ref: str,
        *,
        purpose: d.ConsentPurpose | None,
        channel: d.ConsentChannel | None,
        before_seq: int | None,
        limit: int,
    ) -> list[tuple[int, d.ConsentEntry]]:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
            return await ConsentStore(uow.session).history(
                customer_id, purpose=purpose, channel=channel, before_seq=before_seq, limit=limit
            )
