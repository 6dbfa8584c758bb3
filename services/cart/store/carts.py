"""Cart repository: carts and their lines, rows ⇄ domain objects."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.cart.domain.carts import (
    Availability,
    Cart,
    CartStatus,
    Fulfillment,
    FulfillmentMethod,
    LineItem,
)
from services.cart.models import cart_lines, carts

_ACTIVE = int(CartStatus.ACTIVE)


def _fulfillment_json(f: Fulfillment) -> dict[str, Any]:
    return {"method": int(f.method), "store_id": f.store_id, "address": dict(f.address)}


def _fulfillment(data: dict[str, Any]) -> Fulfillment:
    if not data:
        return Fulfillment()
    return Fulfillment(
        method=FulfillmentMethod(data.get("method", 0)),
        store_id=data.get("store_id"),
        address=data.get("address") or {},
    )


def _cart_values(cart: Cart) -> dict[str, Any]:
    return {
        "id": cart.id,
        "customer_id": cart.customer_id,
        "guest_token_hash": cart.guest_token_hash,
        "status": int(cart.status),
        "channel": cart.channel,
        "store_id": cart.store_id,
        "currency": cart.currency,
        "fulfillment": _fulfillment_json(cart.fulfillment),
        "codes": list(cart.codes),
        "loyalty_points": cart.loyalty_points,
        "contact_email": cart.contact_email,
        "version": cart.version,
        "priced_channel": cart.priced_channel,
        "priced_at": cart.priced_at,
        "availability_checked_at": cart.availability_checked_at,
        "order_id": cart.order_id,
        "created_at": cart.created_at,
        "updated_at": cart.updated_at,
        "last_activity_at": cart.last_activity_at,
        "abandoned_at": cart.abandoned_at,
    }


def _line_values(cart_id: uuid.UUID, position: int, line: LineItem) -> dict[str, Any]:
    return {
        "id": line.id,
        "cart_id": cart_id,
        "position": position,
        "sku": line.sku,
        "quantity": line.quantity,
        "product_id": line.product_id,
        "title": line.title,
        "image_url": line.image_url,
        "unit_price": line.unit_price,
        "regular_price": line.regular_price,
        "tax_rate": line.tax_rate,
        "category_ids": sorted(line.category_ids),
        "channel": line.channel,
        "store_id": line.store_id,
        "offered": line.offered,
        "previous_unit_price": line.previous_unit_price,
        "availability": int(line.availability),
        "available_quantity": line.available_quantity,
        "created_at": line.created_at,
    }


def _line(row: Any) -> LineItem:
    return LineItem(
        id=row.id,
        sku=row.sku,
        quantity=row.quantity,
        product_id=row.product_id,
        title=row.title,
        image_url=row.image_url,
        unit_price=row.unit_price,
        regular_price=row.regular_price,
        tax_rate=row.tax_rate,
        category_ids=frozenset(row.category_ids),
        channel=row.channel,
        store_id=row.store_id,
        created_at=row.created_at,
        offered=row.offered,
        previous_unit_price=row.previous_unit_price,
        availability=Availability(row.availability),
        available_quantity=row.available_quantity,
    )


def _cart(row: Any, lines: Sequence[LineItem]) -> Cart:
    return Cart(
        id=row.id,
        customer_id=row.customer_id,
        status=CartStatus(row.status),
        channel=row.channel,
        store_id=row.store_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_activity_at=row.last_activity_at,
        currency=row.currency,
        guest_token_hash=row.guest_token_hash,
        lines=tuple(lines),
        fulfillment=_fulfillment(row.fulfillment),
        codes=tuple(row.codes),
        loyalty_points=row.loyalty_points,
        contact_email=row.contact_email,
        version=row.version,
        priced_channel=row.priced_channel,
        priced_at=row.priced_at,
        availability_checked_at=row.availability_checked_at,
        order_id=row.order_id,
        abandoned_at=row.abandoned_at,
    )


#: The line columns of the cart-with-lines join, prefixed so they do not clash with the
#: cart's own (id, channel, store_id, created_at).
_LINE_COLUMNS = [column.label(f"l_{column.name}") for column in cart_lines.c]


class _Prefixed:
    """A joined row's line columns under their own names, for ``_line``."""

    def __init__(self, mapping: Any) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        return self._mapping[f"l_{name}"]


class CartStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _with_lines(self, rows: Sequence[Any]) -> list[Cart]:
        if not rows:
            return []
        ids = [row.id for row in rows]
        line_rows = (
            await self.session.execute(
                sa.select(cart_lines)
                .where(cart_lines.c.cart_id.in_(ids))
                .order_by(cart_lines.c.cart_id, cart_lines.c.position)
            )
        ).all()
        by_cart: dict[uuid.UUID, list[LineItem]] = {}
        for row in line_rows:
            by_cart.setdefault(row.cart_id, []).append(_line(row))
        return [_cart(row, by_cart.get(row.id, [])) for row in rows]

    async def get(self, cart_id: uuid.UUID, *, lock: bool = False) -> Cart | None:
        """A cart with its lines, in one statement (a join; the lock covers the cart row)."""
        query = (
            sa.select(carts, *_LINE_COLUMNS)
            .select_from(carts.outerjoin(cart_lines, cart_lines.c.cart_id == carts.c.id))
            .where(carts.c.id == cart_id)
            .order_by(cart_lines.c.position)
        )
        if lock:
            query = query.with_for_update(of=carts)
        rows = (await self.session.execute(query)).all()
        if not rows:
            return None
        lines = [_line(_Prefixed(row._mapping)) for row in rows if row.l_id is not None]
        return _cart(rows[0], lines)

    async def lock_fresh(self, seen: Cart) -> Cart | None:
        """Lock the cart row and return the cart as it is now: ``seen`` itself when its
        version has not moved (every change bumps it), with the two columns the sweeps and
        price events set without a new version; else a fresh read. None if it is gone."""
        row = (
            await self.session.execute(
                sa.select(carts.c.version, carts.c.priced_at, carts.c.abandoned_at)
                .where(carts.c.id == seen.id)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        if row.version != seen.version:
            return await self.get(seen.id)
        return replace(seen, priced_at=row.priced_at, abandoned_at=row.abandoned_at)

    async def lock_many(self, cart_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Cart]:
        """Lock several carts in id order (two merges touching the same carts cannot
        deadlock)."""
        rows = (
            await self.session.execute(
                sa.select(carts)
                .where(carts.c.id.in_(list(cart_ids)))
                .order_by(carts.c.id)
                .with_for_update()
            )
        ).all()
        return {cart.id: cart for cart in await self._with_lines(rows)}

    async def active_for_customer(self, customer_id: str) -> Cart | None:
        row = (
            await self.session.execute(
                sa.select(carts).where(
                    carts.c.customer_id == customer_id, carts.c.status == _ACTIVE
                )
            )
        ).first()
        found = await self._with_lines([row] if row else [])
        return found[0] if found else None

    async def insert(self, cart: Cart) -> None:
        await self.session.execute(sa.insert(carts).values(_cart_values(cart)))
        await self._write_lines(cart)

    async def insert_active_if_absent(self, cart: Cart) -> bool:
        """Insert a customer's active cart unless one exists (the partial unique index
        decides between concurrent first uses); True if this one was inserted."""
        inserted = (
            await self.session.execute(
                pg.insert(carts)
                .values(_cart_values(cart))
                .on_conflict_do_nothing(
                    # The predicate as a literal: a bound parameter cannot prove the partial
                    # index applies once asyncpg's prepared statement turns generic (from the
                    # sixth execution on), and every first use then failed.
                    index_elements=[carts.c.customer_id],
                    index_where=sa.text(f"status = {int(_ACTIVE)}"),
                )
                .returning(carts.c.id)
            )
        ).first()
        return inserted is not None

    async def save(self, cart: Cart) -> None:
        values = _cart_values(cart)
        del values["id"], values["created_at"]
        await self.session.execute(sa.update(carts).where(carts.c.id == cart.id).values(values))
        await self.session.execute(sa.delete(cart_lines).where(cart_lines.c.cart_id == cart.id))
        await self._write_lines(cart)

    async def _write_lines(self, cart: Cart) -> None:
        if cart.lines:
            await self.session.execute(
                sa.insert(cart_lines),
                [_line_values(cart.id, i, line) for i, line in enumerate(cart.lines)],
            )

    async def mark_for_reprice(self, skus: Sequence[str]) -> int:
        """Active carts holding any of ``skus`` are repriced on their next read."""
        holding = sa.select(cart_lines.c.cart_id).where(cart_lines.c.sku.in_(list(skus)))
        result = await self.session.execute(
            sa.update(carts)
            .where(carts.c.status == _ACTIVE, carts.c.id.in_(holding))
            .values(priced_at=None)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def delete_for_customer(self, customer_id: str) -> int:
        result = await self.session.execute(
            sa.delete(carts).where(carts.c.customer_id == customer_id)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def claim_abandoned(self, idle_before: datetime, limit: int) -> list[Cart]:
        """Active carts with lines, of a customer or with a contact e-mail, idle since before
        ``idle_before`` and not yet announced for this idle period. Locked with SKIP LOCKED:
        replicas sweeping at once each take different carts."""
        has_lines = sa.exists().where(cart_lines.c.cart_id == carts.c.id)
        rows = (
            await self.session.execute(
                sa.select(carts)
                .where(
                    carts.c.status == _ACTIVE,
                    carts.c.last_activity_at < idle_before,
                    sa.or_(carts.c.customer_id.is_not(None), carts.c.contact_email.is_not(None)),
                    sa.or_(
                        carts.c.abandoned_at.is_(None),
                        carts.c.abandoned_at < carts.c.last_activity_at,
                    ),
                    has_lines,
                )
                .order_by(carts.c.last_activity_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        return await self._with_lines(rows)

    async def mark_abandoned(self, cart_ids: Sequence[uuid.UUID]) -> None:
        """Record which idle period was announced: the one that began at the cart's
        ``last_activity_at`` (independent of the sweeper's clock)."""
        await self.session.execute(
            sa.update(carts)
            .where(carts.c.id.in_(list(cart_ids)))
            .values(abandoned_at=carts.c.last_activity_at)
        )

    async def expire_guest_carts(self, idle_before: datetime, now: datetime, limit: int) -> int:
        stale = (
            sa.select(carts.c.id)
            .where(
                carts.c.status == _ACTIVE,
                carts.c.customer_id.is_(None),
                carts.c.last_activity_at < idle_before,
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        result = await self.session.execute(
            sa.update(carts)
            .where(carts.c.id.in_(stale))
            # An expired guest cart keeps no personal data: the reminder address goes.
            .values(
                status=int(CartStatus.EXPIRED),
                contact_email=None,
                updated_at=now,
                version=carts.c.version + 1,
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
