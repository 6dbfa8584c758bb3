"""Inventory use cases: the projection of the catalog's SKUs (stock needs a known SKU)."""

from __future__ import annotations

from collections.abc import Sequence

from services.inventory import seed
from services.inventory.store import DEMO_STOCKING_FLAG, SkuStore
from services.inventory.usecases.common import Context
from tenpo.kit.db import UnitOfWork


class CatalogProjection:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def record_product(
        self, uow: UnitOfWork, product_id: str, skus: Sequence[str], *, archived: bool
    ) -> None:
        store = SkuStore(uow.session)
        new = await store.upsert(product_id, skus, archived=archived)
        if new and await store.flag(DEMO_STOCKING_FLAG):
            # A demo installation stocks every SKU as the catalog announces it.
            await seed.stock_demo(uow, new, self.context.clock())

    async def archive_skus(self, uow: UnitOfWork, skus: Sequence[str]) -> None:
        await SkuStore(uow.session).archive(skus)
