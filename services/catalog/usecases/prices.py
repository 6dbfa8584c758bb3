"""Catalog use cases: price entries per SKU, and resolving the price that applies."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from google.protobuf.message import Message

from services.catalog import convert
from services.catalog import domain as d
from services.catalog.store import PriceStore, ProductStore
from services.catalog.usecases.access import MAX_BATCH, bounded, require_writer
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import events_pb2
from tenpo.kit.auth import Principal
from tenpo.kit.db import Database
from tenpo.kit.errors import FailedPrecondition, FieldViolation, NotFound
from tenpo.kit.idempotency import idempotent


class Prices:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    async def resolve_prices(
        self, skus: Sequence[str], *, channel: int, currency: str, at: datetime | None
    ) -> list[tuple[str, d.PriceResolution, d.TaxClass]]:
        bounded("skus", skus, MAX_BATCH)
        moment = at or self.clock()
        async with self.db.unit_of_work() as uow:
            entries = await PriceStore(uow.session).for_skus(skus, currency)
            owners = await ProductStore(uow.session).product_ids_for_skus(skus)
            products = await ProductStore(uow.session).get_many(list(set(owners.values())))
        result = []
        for sku in dict.fromkeys(skus):
            resolution = d.resolve_price(
                entries.get(sku, ()), channel=channel, currency=currency, at=moment
            )
            product = products.get(owners.get(sku))  # type: ignore[arg-type]
            if resolution is not None and product is not None:
                result.append((sku, resolution, product.tax_class))
        return result

    async def set_prices(
        self,
        principal: Principal,
        entries: Sequence[d.PriceEntry],
        *,
        request_id: str,
        request: Message,
    ) -> list[d.PriceEntry]:
        require_writer(principal)
        bounded("prices", entries, 500)
        for i, entry in enumerate(entries):
            d.validate_price(entry, f"prices[{i}]")
        async with self.db.unit_of_work() as uow:

            async def apply() -> api.SetPricesResponse:
                owners = await ProductStore(uow.session).product_ids_for_skus(
                    [e.sku for e in entries]
                )
                unknown = [
                    FieldViolation(f"prices[{i}].sku", "no such SKU")
                    for i, e in enumerate(entries)
                    if e.sku not in owners
                ]
                if unknown:
                    raise FailedPrecondition(
                        "unknown SKU", reason="SKU_NOT_FOUND", field_violations=unknown
                    )
                store = PriceStore(uow.session)
                for entry in entries:
                    await store.upsert(entry)
                after = await store.for_skus(sorted({e.sku for e in entries}))
                for sku, sku_entries in after.items():
                    uow.add_event(
                        events_pb2.PriceChanged(
                            sku=sku,
                            prices=[convert.price(e) for e in sku_entries],
                            change_time=convert.timestamp(self.clock()),
                        )
                    )
                # What is stored is the answer itself: a new entry's id is drawn per call,
                # so a retry must receive these ids, not the ones it drew.
                return api.SetPricesResponse(prices=[convert.price(e) for e in entries])

            stored = await idempotent(
                uow,
                # Not "SetPrices": rows of that scope hold the old "ok" marker, not entries.
                scope="SetPrices.entries",
                request_id=request_id,
                request=request,
                response_type=api.SetPricesResponse,
                action=apply,
            )
            await uow.commit()
        return [convert.from_price(p, f"prices[{i}]") for i, p in enumerate(stored.prices)]

    async def list_prices(
        self,
        principal: Principal,
        sku: str,
        *,
        after: tuple[str, int, datetime | None, uuid.UUID] | None,
        limit: int,
    ) -> list[d.PriceEntry]:
        """A page of the SKU's entries after the position ``after`` (see PriceStore.page)."""
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            return await PriceStore(uow.session).page(sku, after=after, limit=limit)

    async def delete_price(self, principal: Principal, price_id: uuid.UUID) -> None:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = PriceStore(uow.session)
            entry = await store.get(price_id)
            if entry is None:
                raise NotFound("no such price", reason="PRICE_NOT_FOUND")
            await store.delete(price_id)
            remaining = (await store.for_skus([entry.sku])).get(entry.sku, [])
            uow.add_event(
                events_pb2.PriceChanged(
                    sku=entry.sku,
                    prices=[convert.price(e) for e in remaining],
                    change_time=convert.timestamp(self.clock()),
                )
            )
            await uow.commit()
