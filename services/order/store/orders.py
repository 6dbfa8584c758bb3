"""Orders and their sagas in SQL: rows ⇄ domain objects, the saga's lease."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.order.domain.orders import (
    Fulfillment,
    FulfillmentMethod,
    Order,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    PaymentState,
    Totals,
    format_number,
    pseudonymized_address,
)
from services.order.domain.saga import FailureKind, SagaPhase, SagaStep
from services.order.models import (
    fulfillments,
    order_numbers,
    order_returns,
    orders,
    return_authorizations,
)


@dataclass(frozen=True)
class Saga:
    """An order with the state of its checkout saga."""

    order: Order
    step: SagaStep
    phase: SagaPhase
    attempts: int
    request_hash: bytes
    card_token: str | None
    failure_kind: str | None
    failure_message: str | None
    #: ErrorInfo metadata of the failure's answer (e.g. the location out of capacity).
    failure_metadata: dict[str, str] = field(default_factory=dict)


def _fulfillment_json(value: Fulfillment | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"method": int(value.method), "store_id": value.store_id, "address": value.address}


def _order_values(order: Order) -> dict[str, Any]:
    return {
        "status": int(order.status),
        "payment_state": int(order.payment_state),
        "failure_reason": order.failure_reason,
        "channel": order.channel,
        "store_id": order.store_id,
        "currency": order.currency,
        "lines": [asdict(line) for line in order.lines],
        "fulfillment": _fulfillment_json(order.fulfillment),
        "totals": asdict(order.totals),
        "refs": order.refs,
        "contact_email": order.contact_email,
        "contact_phone": order.contact_phone,
    }


#: The columns ``_order_values`` writes.
_ORDER_COLUMNS = (
    "status",
    "payment_state",
    "failure_reason",
    "channel",
    "store_id",
    "currency",
    "lines",
    "fulfillment",
    "totals",
    "refs",
    "contact_email",
    "contact_phone",
)


def _order(row: Any) -> Order:
    fulfillment = None
    if row.fulfillment:
        fulfillment = Fulfillment(
            FulfillmentMethod(row.fulfillment["method"]),
            row.fulfillment.get("store_id"),
            row.fulfillment.get("address"),
        )
    return Order(
        id=row.id,
        number=row.number,
        customer_id=row.customer_id,
        cart_id=row.cart_id,
        cart_etag=row.cart_etag,
        status=OrderStatus(row.status),
        payment_method=PaymentMethod(row.payment_method),
        payment_state=PaymentState(row.payment_state),
        failure_reason=row.failure_reason,
        channel=row.channel,
        store_id=row.store_id,
        currency=row.currency,
        lines=tuple(OrderLine(**line) for line in row.lines),
        fulfillment=fulfillment,
        totals=Totals(**row.totals) if row.totals else Totals(0, 0, 0, 0),
        created_at=row.created_at,
        updated_at=row.updated_at,
        refs=dict(row.refs),
        contact_email=row.contact_email,
        contact_phone=row.contact_phone,
    )


def _saga(row: Any) -> Saga:
    return Saga(
        order=_order(row),
        step=SagaStep(row.saga_step),
        phase=SagaPhase(row.saga_phase),
        attempts=row.saga_attempts,
        request_hash=row.request_hash,
        card_token=row.card_token,
        failure_kind=row.failure_kind,
        failure_message=row.failure_message,
        failure_metadata=dict(row.failure_metadata or {}),
    )


@functools.lru_cache(maxsize=16)
def _save_statement(*, conditional: bool, keep_card: bool, failure: bool, done: bool) -> Any:
    """The saga's write, built once per shape with every value a parameter (``v_<name>``):
    the saga writes several times per checkout, and building and cache-keying an UPDATE
    of a dozen literal values each time was its largest CPU cost."""

    def value(name: str) -> Any:
        return sa.bindparam(f"v_{name}", type_=orders.c[name].type)

    values: dict[str, Any] = {name: value(name) for name in _ORDER_COLUMNS}
    # An erasure that happened while the saga ran wins over the saga's copy.
    erased = orders.c.erased_at.is_(None)
    values["contact_email"] = sa.case((erased, value("contact_email")), else_=None)
    values["contact_phone"] = sa.case((erased, value("contact_phone")), else_=None)
    values["fulfillment"] = sa.case((erased, value("fulfillment")), else_=orders.c.fulfillment)
    values |= {
        "saga_step": sa.bindparam("v_step", type_=sa.Integer),
        "saga_phase": sa.bindparam("v_phase", type_=sa.Text),
        "lease_until": sa.func.now() + sa.bindparam("v_lease", type_=sa.Interval),
        "updated_at": sa.func.now(),
    }
    if not keep_card:
        values["card_token"] = None
    if failure:
        for name in ("failure_kind", "failure_message", "failure_metadata"):
            values[name] = value(name)
    if done:
        values["lease_owner"] = None
        values["lease_until"] = None
    query = sa.update(orders).where(orders.c.id == sa.bindparam("v_order_id")).values(**values)
    if conditional:
        query = query.where(orders.c.lease_owner == sa.bindparam("v_owner", type_=sa.Text))
    return query.returning(orders.c.id)


#: A failed checkout may go only if nothing refers to it (it never has a fulfilment, a return
#: or a return authorization; the guard keeps it so).
_NOTHING_HANGS_ON_IT = (
    ~sa.exists().where(fulfillments.c.order_id == orders.c.id),
    ~sa.exists().where(order_returns.c.order_id == orders.c.id),
    ~sa.exists().where(return_authorizations.c.order_id == orders.c.id),
)


class OrderStore:
    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        # A connection in autocommit (``Database.autocommit``) for the saga's writes and
        # reads of one statement each: one round trip, no BEGIN/COMMIT around it.
        self.session = session

    async def insert_pending(
        self,
        *,
        order_id: uuid.UUID,
        customer_id: str,
        cart_id: str,
        cart_etag: str,
        payment_method: PaymentMethod,
        card_token: str,
        request_key: str,
        request_hash: bytes,
        lease_owner: str,
        lease: timedelta,
        contact: tuple[str | None, str | None] | None = None,
    ) -> Saga | None:
        """Record a new saga, leased to ``lease_owner`` (a guest's ``contact``: e-mail and
        phone, as normalized), as stored; None when ``request_key`` already
        has one, or the cart has a saga still running (a concurrent insert of the same key
        or cart waits for the first to commit)."""
        number = sa.func.concat(
            "T-", sa.func.lpad(sa.cast(order_numbers.next_value(), sa.Text), 6, "0")
        )
        inserted = await self.session.execute(
            pg.insert(orders)
            .values(
                id=order_id,
                number=number,
                customer_id=customer_id,
                cart_id=cart_id,
                cart_etag=cart_etag,
                request_key=request_key,
                request_hash=request_hash,
                status=int(OrderStatus.PENDING),
                payment_method=int(payment_method),
                payment_state=int(PaymentState.NONE),
                card_token=card_token or None,
                saga_step=int(SagaStep.FREEZE_CART),
                saga_phase=SagaPhase.FORWARD.value,
                lease_owner=lease_owner,
                lease_until=sa.func.now() + lease,
                contact_email=contact[0] if contact else None,
                contact_phone=contact[1] if contact else None,
            )
            .on_conflict_do_nothing()
            .returning(orders)
        )
        row = inserted.first()
        return _saga(row) if row else None

    async def retire_unavailable(self, request_key: str, request_hash: bytes) -> bool:
        """Free ``request_key`` from its attempt when a dependency not answering ended it
        (FAILED, kind UNAVAILABLE, saga done: nothing held) and ``request_hash`` is that
        request's: the retry the answer asked for starts a new attempt instead of hearing
        UNAVAILABLE until the row is swept. The old row keeps its failure under the key
        suffixed with its id. True when retired (a concurrent retry finds nothing to
        retire once the first commits)."""
        retired = await self.session.execute(
            sa.update(orders)
            .where(
                orders.c.request_key == request_key,
                orders.c.request_hash == request_hash,
                orders.c.status == int(OrderStatus.FAILED),
                orders.c.saga_phase == SagaPhase.DONE.value,
                orders.c.failure_kind == FailureKind.UNAVAILABLE.value,
            )
            .values(
                request_key=sa.func.concat(
                    orders.c.request_key, ":retried:", sa.cast(orders.c.id, sa.Text)
                )
            )
        )
        return bool(getattr(retired, "rowcount", 0))

    async def by_request_key(self, request_key: str) -> Saga | None:
        row = (
            await self.session.execute(sa.select(orders).where(orders.c.request_key == request_key))
        ).first()
        return _saga(row) if row else None

    async def get(self, order_id: uuid.UUID, *, for_update: bool = False) -> Saga | None:
        query = sa.select(orders).where(orders.c.id == order_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return _saga(row) if row else None

    async def save(
        self,
        order: Order,
        *,
        step: SagaStep,
        phase: SagaPhase,
        lease_owner: str | None,
        lease: timedelta,
        keep_card: bool = True,
        failure: tuple[str, str] | None = None,
        failure_metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Persist the order and its saga position, renewing the lease; False when the
        lease was lost to another runner (this one must stop)."""
        statement = _save_statement(
            conditional=lease_owner is not None,
            keep_card=keep_card,
            failure=failure is not None,
            done=phase is SagaPhase.DONE,
        )
        params = {f"v_{name}": value for name, value in _order_values(order).items()}
        params |= {
            "v_order_id": order.id,
            "v_step": int(step),
            "v_phase": phase.value,
            "v_lease": lease,
            "v_owner": lease_owner,
        }
        if failure is not None:
            params["v_failure_kind"], params["v_failure_message"] = failure
            params["v_failure_metadata"] = dict(failure_metadata) if failure_metadata else None
        result = await self.session.execute(statement, params)
        return result.first() is not None

    async def backdate(self, order_id: uuid.UUID, at: datetime) -> None:
        """Date an order and its fulfilments ``at`` (demo history written after the fact)."""
        await self.session.execute(
            sa.update(orders).where(orders.c.id == order_id).values(created_at=at, updated_at=at)
        )
        await self.session.execute(
            sa.update(fulfillments)
            .where(fulfillments.c.order_id == order_id)
            .values(created_at=at, updated_at=at)
        )

    async def lease_to(self, order_id: uuid.UUID, owner: str, lease: timedelta) -> None:
        """Hand the saga to ``owner`` (its caller holds the row lock): a runner that had it
        loses it at its next write."""
        await self.session.execute(
            sa.update(orders)
            .where(orders.c.id == order_id)
            .values(lease_owner=owner, lease_until=sa.func.now() + lease)
        )

    async def claim_stale(self, owner: str, lease: timedelta, limit: int) -> list[uuid.UUID]:
        """Lease up to ``limit`` sagas whose runner's lease ran out (a crash, a lost
        process). SKIP LOCKED: replicas sweeping at once never take the same saga."""
        stale = (
            sa.select(orders.c.id)
            .where(
                orders.c.saga_phase != SagaPhase.DONE.value, orders.c.lease_until < sa.func.now()
            )
            .order_by(orders.c.lease_until)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = await self.session.execute(
            sa.update(orders)
            .where(orders.c.id.in_(stale))
            .values(
                lease_owner=owner,
                lease_until=sa.func.now() + lease,
                saga_attempts=orders.c.saga_attempts + 1,
            )
            .returning(orders.c.id)
        )
        return [row.id for row in rows]

    async def search(
        self,
        *,
        number: str | None,
        email: str | None,
        phone: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Order]:
        """Placed-or-later orders (never running or failed checkouts) by one criterion,
        newest first."""
        query = sa.select(orders).where(
            orders.c.status.notin_([int(OrderStatus.PENDING), int(OrderStatus.FAILED)])
        )
        if number is not None:
            query = query.where(orders.c.number == number)
        if email is not None:
            query = query.where(orders.c.contact_email == email)
        if phone is not None:
            query = query.where(orders.c.contact_phone == phone)
        if after is not None:
            query = query.where(sa.tuple_(orders.c.created_at, orders.c.id) < sa.tuple_(*after))
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
        return [_order(row) for row in await self.session.execute(query)]

    async def pseudonymize_customer(self, customer_id: str) -> int:
        """An erased customer's orders lose their personal data (contact, address beyond
        the prefecture); amounts, tax, lines, dates and numbers stay. The number changed."""
        return await self._pseudonymize(
            sa.select(orders.c.id, orders.c.fulfillment)
            .where(orders.c.customer_id == customer_id, orders.c.erased_at.is_(None))
            .with_for_update()
        )

    async def pseudonymize_guest_orders(self, placed_before: datetime, limit: int) -> int:
        """Finished guest orders placed before ``placed_before`` lose their personal data,
        as an erased customer's do; running ones keep it. The number changed."""
        done = [int(OrderStatus.COMPLETED), int(OrderStatus.CANCELLED), int(OrderStatus.FAILED)]
        return await self._pseudonymize(
            sa.select(orders.c.id, orders.c.fulfillment)
            .where(
                orders.c.customer_id == "",
                orders.c.erased_at.is_(None),
                orders.c.created_at < placed_before,
                orders.c.status.in_(done),
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )

    async def _pseudonymize(self, query: Any) -> int:
        rows = (await self.session.execute(query)).all()
        for row in rows:
            fulfillment = dict(row.fulfillment) if row.fulfillment else None
            if fulfillment is not None:
                fulfillment["address"] = pseudonymized_address(fulfillment.get("address"))
            await self.session.execute(
                sa.update(orders)
                .where(orders.c.id == row.id)
                .values(
                    contact_email=None,
                    contact_phone=None,
                    card_token=None,
                    fulfillment=fulfillment,
                    erased_at=sa.func.now(),
                )
            )
        return len(rows)

    async def delete_failed(self, failed_before: datetime, limit: int) -> list[uuid.UUID]:
        """Delete up to ``limit`` failed checkouts whose saga is done (every compensation
        made) and that failed before ``failed_before``; their ids. Nothing else:
        an order that ever had a fulfilment, a return or a return authorization is kept
        (a failed checkout never has one; the guard keeps it so). SKIP LOCKED: sweepers on
        several replicas never wait for, nor delete, the same rows."""
        doomed = (
            sa.select(orders.c.id)
            .where(
                orders.c.status == int(OrderStatus.FAILED),
                orders.c.saga_phase == SagaPhase.DONE.value,
                orders.c.updated_at < failed_before,
                *_NOTHING_HANGS_ON_IT,
            )
            .order_by(orders.c.updated_at)
            .limit(limit)
            .with_for_update(of=orders, skip_locked=True)
            .scalar_subquery()
        )
        rows = await self.session.execute(
            sa.delete(orders).where(orders.c.id.in_(doomed)).returning(orders.c.id)
        )
        return [row.id for row in rows]

    async def delete_failed_beyond(self, keep: int, limit: int) -> list[uuid.UUID]:
        """Delete up to ``limit`` failed checkouts (saga done) of customers who have more
        than ``keep``, oldest first, keeping each customer's newest ``keep``; their ids.
        Guest orders (no customer id: anonymous callers cannot be told apart) are left to
        the retention. Two sweepers may pick the same rows: a row deleted meanwhile is
        skipped by the other's DELETE, so each goes once."""
        ranked = (
            sa.select(
                orders.c.id,
                sa.func.row_number()
                .over(
                    partition_by=orders.c.customer_id,
                    order_by=(orders.c.updated_at.desc(), orders.c.id.desc()),
                )
                .label("rank"),
            )
            .where(
                orders.c.status == int(OrderStatus.FAILED),
                orders.c.saga_phase == SagaPhase.DONE.value,
                orders.c.customer_id != "",
            )
            .subquery()
        )
        doomed = sa.select(ranked.c.id).where(ranked.c.rank > keep).limit(limit)
        rows = await self.session.execute(
            sa.delete(orders)
            .where(
                orders.c.id.in_(doomed.scalar_subquery()),
                orders.c.status == int(OrderStatus.FAILED),
                *_NOTHING_HANGS_ON_IT,
            )
            .returning(orders.c.id)
        )
        return [row.id for row in rows]

    async def list_for_customer(
        self,
        customer_id: str,
        statuses: Sequence[OrderStatus],
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Order]:
        query = sa.select(orders).where(orders.c.customer_id == customer_id)
        if statuses:
            query = query.where(orders.c.status.in_([int(s) for s in statuses]))
        else:
            query = query.where(orders.c.status != int(OrderStatus.FAILED))
        if after is not None:
            query = query.where(sa.tuple_(orders.c.created_at, orders.c.id) < sa.tuple_(*after))
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
        return [_order(row) for row in await self.session.execute(query)]


__all__ = ["OrderStore", "Saga", "format_number"]
