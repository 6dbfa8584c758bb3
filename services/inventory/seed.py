"""Demo data: the network of 「みなと屋」 (Minatoya): two DCs, an e-commerce FC and six stores
with their real coordinates; demo stock follows the catalog's SKUs as their events arrive."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from services.inventory import convert
from services.inventory import domain as d
from services.inventory.store import (
    DEMO_STOCKING_FLAG,
    LocationStore,
    SkuStore,
    StockStore,
    movement_row,
)
from tenpo.kit.db import Database, UnitOfWork

#: Who the ledger says received demo stock.
SYSTEM_ACTOR = "system:inventory"
CC = d.Capability.CLICK_AND_COLLECT
SHIP = d.Capability.SHIP_FROM_STORE
SAME_DAY = d.Capability.SAME_DAY_DELIVERY


def _location(
    id: str,
    name: str,
    type: d.LocationType,
    lat: float,
    lon: float,
    postal: str,
    prefecture: str,
    city: str,
    street: str,
    priority: int,
    capabilities: frozenset[d.Capability],
    *,
    ship_orders_per_day: int = 0,
    same_day_orders_per_day: int = 0,
    same_day_radius_km: float = 0.0,
) -> d.Location:
    return d.Location(
        id=id,
        display_name=name,
        type=type,
        geo_point=d.GeoPoint(lat, lon),
        address=d.Address("JP", postal, prefecture, city, (street,)),
        time_zone="Asia/Tokyo",
        priority=priority,
        capabilities=capabilities,
        low_stock_threshold=10 if type is not d.LocationType.STORE else 2,
        ship_from_store_capacity=d.DailyCapacity(orders_per_day=ship_orders_per_day),
        same_day_capacity=d.DailyCapacity(orders_per_day=same_day_orders_per_day),
        same_day_radius_km=same_day_radius_km,
    )


DC, FC, STORE = (
    d.LocationType.DISTRIBUTION_CENTER,
    d.LocationType.FULFILLMENT_CENTER,
    d.LocationType.STORE,
)

LOCATIONS = [
    _location(
        "dc-kanto",
        "みなと屋 関東DC (厚木)",
        DC,
        35.4433,
        139.3620,
        "243-0021",
        "神奈川県",
        "厚木市",
        "岡田3-1",
        20,
        frozenset({SAME_DAY}),
        same_day_radius_km=60,
    ),
    _location(
        "dc-kansai",
        "みなと屋 関西DC (茨木)",
        DC,
        34.8164,
        135.5686,
        "567-0034",
        "大阪府",
        "茨木市",
        "中穂積1-1",
        20,
        frozenset(),
    ),
    _location(
        "fc-chiba",
        "みなと屋 EC フルフィルメントセンター (印西)",
        FC,
        35.8322,
        140.1456,
        "270-1337",
        "千葉県",
        "印西市",
        "草深1-2",
        10,
        frozenset(),
    ),
    _location(
        "tokyo-shibuya",
        "みなと屋 渋谷店",
        STORE,
        35.6595,
        139.7005,
        "150-0043",
        "東京都",
        "渋谷区",
        "道玄坂2-1",
        50,
        frozenset({CC, SHIP, SAME_DAY}),
        # A store's staff pack parcels between serving customers: a few dozen a day.
        ship_orders_per_day=40,
        same_day_orders_per_day=20,
        same_day_radius_km=15,
    ),
    _location(
        "tokyo-shinjuku",
        "みなと屋 新宿店",
        STORE,
        35.6909,
        139.7003,
        "160-0022",
        "東京都",
        "新宿区",
        "新宿3-38",
        50,
        frozenset({CC, SAME_DAY}),
        same_day_orders_per_day=20,
        same_day_radius_km=15,
    ),
    _location(
        "tokyo-ginza",
        "みなと屋 銀座店",
        STORE,
        35.6717,
        139.7650,
        "104-0061",
        "東京都",
        "中央区",
        "銀座4-6",
        60,
        frozenset({CC}),
    ),
    _location(
        "osaka-umeda",
        "みなと屋 梅田店",
        STORE,
        34.7025,
        135.4959,
        "530-0001",
        "大阪府",
        "大阪市北区",
        "梅田3-1",
        50,
        frozenset({CC, SHIP}),
        ship_orders_per_day=30,
    ),
    _location(
        "nagoya-sakae",
        "みなと屋 名古屋栄店",
        STORE,
        35.1681,
        136.9089,
        "460-0008",
        "愛知県",
        "名古屋市中区",
        "栄3-5",
        50,
        frozenset({CC, SHIP}),
        ship_orders_per_day=30,
    ),
    _location(
        "fukuoka-tenjin",
        "みなと屋 福岡天神店",
        STORE,
        33.5914,
        130.3989,
        "810-0001",
        "福岡県",
        "福岡市中央区",
        "天神2-1",
        50,
        frozenset({CC, SHIP}),
        ship_orders_per_day=30,
    ),
]


async def seed_demo_network(db: Database) -> None:
    """Idempotent: existing locations are left alone; demo stocking is switched on, so every
    SKU the catalog announces (now or later) gets stock at every location."""
    async with db.unit_of_work() as uow:
        store = LocationStore(uow.session)
        for location in LOCATIONS:
            await store.insert(location.validate())
        await uow.commit()
    await enable_demo_stocking(db)


async def enable_demo_stocking(db: Database) -> None:
    """Switch demo stocking on and stock every SKU known so far."""
    async with db.unit_of_work() as uow:
        store = SkuStore(uow.session)
        await store.set_flag(DEMO_STOCKING_FLAG, True)
        known = await store.all_skus()
        if known:
            await stock_demo(uow, known, datetime.now(UTC))
        await uow.commit()


def demo_quantity(sku: str, location: d.Location) -> int:
    """Deterministic demo stock: plenty in DCs, some in the FC, a few (or none) in stores."""
    digest = int.from_bytes(hashlib.sha256(f"{sku}@{location.id}".encode()).digest()[:4], "big")
    if location.type is d.LocationType.DISTRIBUTION_CENTER:
        return 60 + digest % 140
    if location.type is d.LocationType.FULFILLMENT_CENTER:
        return 20 + digest % 60
    return max(0, digest % 14 - 3)


async def stock_demo(uow: UnitOfWork, skus: Sequence[str], now: datetime) -> None:
    """Receive deterministic demo stock for ``skus`` at every location that has none."""
    locations = await LocationStore(uow.session).all()
    stock = StockStore(uow.session)
    keys = [(sku, loc.id) for sku in skus for loc in locations]
    await stock.ensure(keys)
    locked = await stock.lock(keys)
    by_id = {loc.id: loc for loc in locations}
    receipts = [
        (level, demo_quantity(level.sku, by_id[level.location_id]))
        for level in locked.values()
        if level.on_hand == 0 and level.version == 0
    ]
    written = await stock.write([level.adjust(q) for level, q in receipts])
    await stock.add_movements(
        [
            movement_row(
                written[level.key],
                q,
                d.MovementReason.RECEIPT,
                request_id="",
                actor=SYSTEM_ACTOR,
                note="demo stock",
            )
            for level, q in receipts
            if q
        ]
    )
    for level in written.values():
        # Opening stock is news for live displays, not a "back in stock" for shoppers.
        uow.add_event(convert.stock_changed(level, now))
