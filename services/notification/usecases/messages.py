"""Message use cases: compose a message under the rules (in the caller's transaction), and
deliver due messages through the providers (any replica, SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.notification.customers import CustomerDirectory
from services.notification.domain import rules, tracking
from services.notification.domain import templates as td
from services.notification.providers.ports import (
    EmailSender,
    OutgoingEmail,
    ProviderRejected,
    ProviderUnavailable,
    PushSender,
    SmsSender,
)
from services.notification.push_store import PushStore
from services.notification.store import (
    DEFERRED,
    FAILED,
    QUEUED,
    SENT,
    SKIPPED,
    MessageStore,
    RecipientStore,
    TemplateStore,
)
from services.notification.tracing import continued_trace, current_trace
from services.notification.usecases.recipients import Recipients
from services.notification.wakeup import MESSAGES, notify
from tenpo.kit import wire
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import DomainError, NotFound, Unavailable
from tenpo.kit.idempotency import idempotent
from tenpo.kit.metrics import MESSAGES_SENT
from tenpo.notification.v1 import events_pb2 as events

log = logging.getLogger(__name__)
REDACTED = "[redacted]"
MAX_ATTEMPTS = 8
#: The address a push message records: it goes to every subscription of the customer.
PUSH_ADDRESS = "push"
MAX_PROVIDER_IDS = 1000


@dataclass(frozen=True)
class _Outgoing:
    """A claimed message, ready for its provider."""

    row: Any
    channel: td.Channel
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]
    #: Columns to store once sent (the redacted rendering of a mail with a secret).
    updates: dict[str, Any]
    #: Push: the customer's subscriptions, each sent the message.
    push_targets: tuple[dict[str, object], ...] = ()


@dataclass(frozen=True)
class Providers:
    email: EmailSender
    sms: SmsSender
    push: PushSender


@dataclass(frozen=True)
class Policy:
    quiet_hours: rules.QuietHours
    daily_cap: int
    default_time_zone: str
    public_base_url: str
    tracking_secret: bytes
    shop_base_url: str


def zone(name: str, fallback: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or fallback)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(fallback)


class Messages:
    def __init__(
        self,
        db: Database,
        recipients: Recipients,
        directory: CustomerDirectory,
        providers: Providers,
        policy: Policy,
    ) -> None:
        self.db = db
        self.recipients = recipients
        self.directory = directory
        self.providers = providers
        self.policy = policy
        #: Set when a message is queued, so the sender looks at once.
        self.queued = asyncio.Event()

    async def send(
        self,
        caller: str,
        *,
        customer_id: uuid.UUID,
        template_key: str,
        channel: td.Channel,
        data: dict[str, Any],
        request_id: str,
        request: Message,
    ) -> Any:
        """SendMessage: one message per caller and request_id (also its dedupe key), under
        every rule; concurrent retries have one effect and answer the same message."""
        dedupe = f"request:{caller}:{request_id or uuid.uuid4()}"
        async with self.db.unit_of_work() as uow:

            async def send() -> wrappers_pb2.StringValue:
                row = await self.compose(
                    uow,
                    customer_id=customer_id,
                    template_key=template_key,
                    channel=channel,
                    data=data,
                    dedupe_key=dedupe,
                )
                return wrappers_pb2.StringValue(value=str(row.id))

            message_id = await idempotent(
                uow,
                scope=f"SendMessage:{caller}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=send,
            )
            row = await MessageStore(uow.session).get(uuid.UUID(message_id.value))
            await uow.commit()
        self.queued.set()
        return row

    async def compose(
        self,
        uow: UnitOfWork,
        *,
        customer_id: uuid.UUID | None,
        template_key: str,
        channel: td.Channel,
        data: dict[str, Any],
        dedupe_key: str,
        journey_id: uuid.UUID | None = None,
        mail_token_id: str = "",
        guest_email: str = "",
    ) -> Any:
        """The message for (dedupe_key, template, channel): created once, under the rules;
        a second call returns the first one (one event → at most one message per template).
        Messages whose link secret is issued at send time are rendered then. A guest (no
        customer, ``guest_email``) left her address for this very reminder: that is her
        consent; suppressions (unsubscribe, bounce) still apply, caps are per customer."""
        store = MessageStore(uow.session)
        contact = await self.recipients.contact(uow, customer_id) if customer_id else None
        language = td.language_of(contact.locale if contact else "")
        template = await TemplateStore(uow.session).find(template_key, channel, language)
        if template is None:
            raise NotFound(
                f"no {channel.name} template {template_key!r}", reason="TEMPLATE_NOT_FOUND"
            )
        now = datetime.now(UTC)
        time_zone = zone(contact.time_zone if contact else "", self.policy.default_time_zone)
        address = ""
        if customer_id is None:
            address = guest_email if channel is td.Channel.EMAIL else ""
        elif mail_token_id:
            address = "(issued at send time)"
        elif channel is td.Channel.PUSH:
            # Push reaches her browsers and apps, not an address.
            subscribed = await PushStore(uow.session).of_customer(customer_id)
            address = PUSH_ADDRESS if subscribed else ""
        elif contact is not None:
            address = {td.Channel.EMAIL: contact.email, td.Channel.SMS: contact.phone}.get(
                channel, ""
            )
        recipients = RecipientStore(uow.session)
        suppressed, marketing_only = await recipients.suppression(channel, address)
        facts = rules.Facts(
            address=address,
            time_zone=time_zone,
            consented=customer_id is None
            or await recipients.marketing_consent(customer_id, channel),
            suppressed=suppressed,
            suppressed_marketing_only=marketing_only,
            marketing_sent_today=await store.marketing_since(
                customer_id, rules.local_day_start(now, time_zone)
            )
            if customer_id
            else 0,
        )
        decision = rules.decide(
            category=template.category,
            channel=channel,
            cap_policy=template.cap_policy,
            facts=facts,
            now=now,
            quiet_hours=self.policy.quiet_hours,
            daily_cap=self.policy.daily_cap,
        )
        message_id = uuid.uuid4()
        # Every template may use these; the caller's data comes on top.
        variables = {
            "name": contact.given_name if contact else "",
            "shop_url": self.policy.shop_base_url,
            **data,
        }
        values: dict[str, Any] = {
            "id": message_id,
            "customer_id": customer_id,
            "dedupe_key": dedupe_key,
            "template_key": template.key,
            "template_version": template.version,
            "channel": int(channel),
            "category": int(template.category),
            "status": QUEUED,
            "status_reason": decision.reason,
            "to_address": address if not mail_token_id else "",
            "data": data,
            "mail_token_id": mail_token_id,
            "journey_id": journey_id,
            "scheduled_at": now,
            "trace": current_trace(),
        }
        links: list[str] = []
        if decision.outcome is rules.Outcome.SKIP:
            values["status"] = SKIPPED
        else:
            if decision.outcome is rules.Outcome.DEFER:
                values.update(status=DEFERRED, scheduled_at=decision.not_before)
            if not mail_token_id:
                try:
                    rendered, links = self._render(template, variables, message_id)
                except DomainError as error:  # over the segment budget, a missing variable
                    values.update(status=SKIPPED, status_reason=error.reason)
                else:
                    values.update(
                        subject=rendered.subject,
                        text_body=rendered.text_body,
                        html_body=rendered.html_body,
                        segments=rendered.segments,
                    )
        row = await store.insert(values)
        if row is None:
            return await store.by_dedupe(dedupe_key, template.key, channel)
        await store.add_links(message_id, links)
        if row.status in (QUEUED, DEFERRED):
            await notify(uow.session, MESSAGES)
        if row.status == SKIPPED:
            uow.add_event(
                events.MessageSkipped(
                    message_id=str(message_id),
                    customer_id=str(customer_id or ""),
                    template_key=template.key,
                    channel=int(channel),  # type: ignore[arg-type]
                    reason=row.status_reason,
                )
            )
        return row

    def _render(
        self, template: td.Template, data: dict[str, Any], message_id: uuid.UUID
    ) -> tuple[td.Rendered, list[str]]:
        rendered = td.render(template, data)
        if template.channel is not td.Channel.EMAIL or not rendered.html_body:
            return rendered, []
        secret, base = self.policy.tracking_secret, self.policy.public_base_url
        html, links = tracking.rewrite_links(
            rendered.html_body,
            lambda i: f"{base}/v1/t/c/{tracking.sign(secret, tracking.CLICK, message_id.bytes, i)}",
        )
        pixel = f"{base}/v1/t/o/{tracking.sign(secret, tracking.OPEN, message_id.bytes)}"
        html = tracking.add_pixel(html, pixel)
        return td.Rendered(rendered.subject, rendered.text_body, html), links

    # -- delivery ---------------------------------------------------------------------

    async def deliver_due(self, limit: int) -> int:
        """Send one batch of due messages; returns how many were handled. The rows stay
        locked while their provider calls run, so no other replica sends them too. Reads
        and writes go one by one on the transaction's connection; the provider calls of the
        batch run side by side (each provider bounds its own connections)."""
        async with self.db.unit_of_work() as uow:
            store = MessageStore(uow.session)
            rows = await store.claim_due(limit)
            ready: list[_Outgoing] = []
            for row in rows:
                try:
                    prepared = await self._prepare(uow, row)
                except Exception as error:  # recorded per message, the batch goes on
                    await self._record_failure(store, row, error)
                    continue
                if prepared is not None:
                    ready.append(prepared)
            outcomes = await asyncio.gather(
                *(self._hand_over(o) for o in ready), return_exceptions=True
            )
            for outgoing, outcome in zip(ready, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    await self._record_failure(store, outgoing.row, outcome)
                else:
                    await self._record_sent(uow, store, outgoing, outcome)
            await uow.commit()
        return len(rows)

    async def _prepare(self, uow: UnitOfWork, row: Any) -> _Outgoing | None:
        """What to hand to the provider; None when a rule says the message goes no more."""
        channel = td.Channel(row.channel)
        if row.category == int(td.Category.MARKETING):
            # Consent and suppressions may have changed while the message waited.
            recipients = RecipientStore(uow.session)
            suppressed, _ = await recipients.suppression(channel, row.to_address)
            # A guest's consent is the address she left for this reminder (see compose).
            consented = row.customer_id is None or await recipients.marketing_consent(
                row.customer_id, channel
            )
            if suppressed or not consented:
                await MessageStore(uow.session).update(
                    row.id,
                    status=SKIPPED,
                    status_reason="SUPPRESSED" if suppressed else "NO_CONSENT",
                )
                return None
        push_targets: tuple[dict[str, object], ...] = ()
        if channel is td.Channel.PUSH:
            found = await PushStore(uow.session).of_customer(row.customer_id)
            if not found:
                raise DomainError("no push subscription is known", reason="UNREACHABLE")
            push_targets = tuple(x.as_provider_info() for x in found)
        updates: dict[str, Any] = {}
        subject, text, html, to = row.subject, row.text_body, row.html_body, row.to_address
        if row.mail_token_id:
            subject, text, html, to, updates = await self._render_with_token(uow, row)
        headers: dict[str, str] = {}
        if channel is td.Channel.EMAIL and row.category == int(td.Category.MARKETING):
            token = tracking.sign(self.policy.tracking_secret, tracking.UNSUBSCRIBE, row.id.bytes)
            headers["List-Unsubscribe"] = f"<{self.policy.public_base_url}/v1/t/u/{token}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return _Outgoing(row, channel, to, subject, text, html, headers, updates, push_targets)

    async def _hand_over(self, o: _Outgoing) -> str:
        # The trace of the event that caused the message continues into the provider call.
        with continued_trace(f"send {o.channel.name.lower()}", o.row.trace):
            if o.channel is td.Channel.EMAIL:
                return await self.providers.email.send(
                    OutgoingEmail(
                        to=o.to, subject=o.subject, text=o.text, html=o.html, headers=o.headers
                    )
                )
            if o.channel is td.Channel.PUSH:
                return await self._push(o)
            return await self.providers.sms.send(o.to, o.text)

    async def _push(self, o: _Outgoing) -> str:
        """Every subscribed browser gets it; sent when one accepted it."""
        outcomes = await asyncio.gather(
            *(self.providers.push.send(t, o.subject, o.text) for t in o.push_targets),
            return_exceptions=True,
        )
        accepted = [x for x in outcomes if isinstance(x, str)]
        if accepted:
            return ",".join(accepted)[:MAX_PROVIDER_IDS]
        failure = outcomes[0]
        assert isinstance(failure, BaseException)
        raise failure

    async def _record_sent(
        self, uow: UnitOfWork, store: MessageStore, o: _Outgoing, provider_id: str
    ) -> None:
        row = o.row
        sent = await store.update(
            row.id,
            status=SENT,
            sent_at=datetime.now(UTC),
            data={},
            provider_id=provider_id,
            **o.updates,
        )
        uow.add_event(
            events.MessageSent(
                message_id=str(row.id),
                customer_id=str(row.customer_id or ""),
                template_key=row.template_key,
                channel=row.channel,
                journey_id=str(row.journey_id or ""),
                send_time=wire.timestamp(sent.sent_at),
            )
        )
        uow.count(MESSAGES_SENT, channel=o.channel.name)

    async def _record_failure(self, store: MessageStore, row: Any, error: BaseException) -> None:
        if isinstance(error, ProviderRejected):
            log.info(
                "provider rejected a message",
                extra={"message_id": str(row.id), "error": str(error)},
            )
            await store.update(row.id, status=FAILED, status_reason="PROVIDER_REJECTED")
            return
        if isinstance(error, DomainError) and not isinstance(error, Unavailable):
            await store.update(row.id, status=SKIPPED, status_reason=error.reason)
            return
        if not isinstance(error, ProviderUnavailable | Unavailable):
            # A bug must not block the batch: this message is retried, the rest go on.
            log.error(
                "unexpected error delivering a message",
                exc_info=error,
                extra={"message_id": str(row.id)},
            )
        # The provider, or the customer service issuing a mail's secret, is down.
        attempts = row.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            await store.update(row.id, status=FAILED, status_reason="PROVIDER_UNAVAILABLE")
            return
        log.warning(
            "message retried later",
            extra={"message_id": str(row.id), "error": str(error), "attempt": attempts},
        )
        await store.update(
            row.id,
            attempts=attempts,
            scheduled_at=datetime.now(UTC) + timedelta(seconds=min(2**attempts, 300)),
        )

    async def _render_with_token(
        self, uow: UnitOfWork, row: Any
    ) -> tuple[str, str, str, str, dict[str, Any]]:
        """Render an account mail with the secret the customer service issues now; what is
        stored has the secret replaced (the secret is never stored nor logged)."""
        issued = await self.directory.mail_token(row.mail_token_id)
        if issued is None:
            raise DomainError(
                "the mail's token is spent or its customer erased", reason="MAIL_TOKEN_SPENT"
            )
        template = await TemplateStore(uow.session).find(
            row.template_key, td.Channel(row.channel), td.language_of(issued.locale)
        )
        if template is None:
            raise DomainError("the template is gone", reason="TEMPLATE_NOT_FOUND")
        data = dict(row.data)
        base = {"name": issued.given_name, "shop_url": self.policy.shop_base_url}
        real = td.render(template, {**data, **base, "token": issued.token})
        stored = td.render(template, {**data, **base, "token": REDACTED})
        return (
            real.subject,
            real.text_body,
            real.html_body,
            issued.email,
            {
                "subject": stored.subject,
                "text_body": stored.text_body,
                "html_body": stored.html_body,
                "to_address": issued.email,
            },
        )

    async def run_delivery(self, poll_seconds: float, batch_size: int) -> None:
        while True:
            self.queued.clear()
            try:
                handled = await self.deliver_due(batch_size)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery round failed; retrying")
                handled = 0
                await asyncio.sleep(poll_seconds)
            if handled >= batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queued.wait(), poll_seconds)

    # -- queries --------------------------------------------------------------------

    async def get(self, message_id: uuid.UUID) -> Any:
        async with self.db.unit_of_work() as uow:
            row = await MessageStore(uow.session).get(message_id)
        if row is None:
            raise NotFound("no such message", reason="MESSAGE_NOT_FOUND")
        return row

    async def list(
        self, customer_id: uuid.UUID | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[Any]:
        async with self.db.unit_of_work() as uow:
            return await MessageStore(uow.session).list_page(customer_id, after, limit)
