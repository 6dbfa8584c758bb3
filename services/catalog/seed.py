"""Demo data: a Japanese apparel and footwear retailer (「みなと屋」 / Minatoya), seeded through
the use cases so every product also reaches the outbox and the other services."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf import empty_pb2

from services.catalog import domain as d
from services.catalog.usecases import Catalog, Viewer
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database

#: JAN codes under a fictional GS1 Japan company prefix (49 + 5 digits).
JAN_COMPANY_PREFIX = "4912345"
SEED_PRINCIPAL = Principal(
    kind=PrincipalKind.SERVICE, subject="catalog-seed", scopes=frozenset({"catalog:write"})
)
ALL_CHANNELS = frozenset({1, 2, 3, 4, 5, 6})  # web, app, kiosk, mirror, shelf, POS
STORE_ONLY = frozenset({3, 4, 5, 6})

# (slug, ja, en, parent slug)
CATEGORIES = [
    ("shoes", "シューズ", "Shoes", None),
    ("sneakers", "スニーカー", "Sneakers", "shoes"),
    ("boots", "ブーツ", "Boots", "shoes"),
    ("sandals", "サンダル", "Sandals", "shoes"),
    ("tops", "トップス", "Tops", None),
    ("t-shirts", "Tシャツ", "T-shirts", "tops"),
    ("shirts", "シャツ", "Shirts", "tops"),
    ("knitwear", "ニット", "Knitwear", "tops"),
    ("outerwear", "アウター", "Outerwear", None),
    ("bottoms", "ボトムス", "Bottoms", None),
    ("accessories", "小物", "Accessories", None),
    ("socks", "ソックス", "Socks", "accessories"),
    ("bags", "バッグ", "Bags", "accessories"),
]

COLORS = [
    ("white", "ホワイト", "White"),
    ("black", "ブラック", "Black"),
    ("navy", "ネイビー", "Navy"),
    ("beige", "ベージュ", "Beige"),
    ("olive", "オリーブ", "Olive"),
    ("red", "レッド", "Red"),
    ("gray", "グレー", "Gray"),
    ("brown", "ブラウン", "Brown"),
]

# (kind, category, ja noun, en noun, sizes, base price, material, styles)
LINES = [
    (
        "SNK",
        "sneakers",
        "スニーカー",
        "Sneakers",
        ["24.0", "25.0", "26.0", "27.0", "28.0"],
        8_900,
        "canvas",
        [
            ("ローカット", "Low-top"),
            ("ハイカット", "High-top"),
            ("レザー", "Leather"),
            ("ランニング", "Running"),
        ],
    ),
    (
        "BOT",
        "boots",
        "ブーツ",
        "Boots",
        ["24.0", "25.0", "26.0", "27.0"],
        19_800,
        "leather",
        [("サイドゴア", "Side-gore"), ("レースアップ", "Lace-up")],
    ),
    (
        "SDL",
        "sandals",
        "サンダル",
        "Sandals",
        ["S", "M", "L"],
        4_900,
        "rubber",
        [("スポーツ", "Sport"), ("雪駄風", "Setta-style")],
    ),
    (
        "TEE",
        "t-shirts",
        "Tシャツ",
        "T-shirt",
        ["S", "M", "L", "XL"],
        2_990,
        "cotton",
        [
            ("オーガニックコットン", "Organic cotton"),
            ("ポケット付き", "Pocket"),
            ("ロングスリーブ", "Long-sleeve"),
            ("ヘビーウェイト", "Heavyweight"),
        ],
    ),
    (
        "SHT",
        "shirts",
        "シャツ",
        "Shirt",
        ["S", "M", "L", "XL"],
        5_990,
        "linen",
        [("オックスフォード", "Oxford"), ("リネン", "Linen"), ("デニム", "Denim")],
    ),
    (
        "KNT",
        "knitwear",
        "ニット",
        "Knit",
        ["S", "M", "L"],
        7_990,
        "wool",
        [("カシミヤ混", "Cashmere-blend"), ("ケーブル編み", "Cable-knit")],
    ),
    (
        "OUT",
        "outerwear",
        "ジャケット",
        "Jacket",
        ["S", "M", "L", "XL"],
        14_900,
        "polyester",
        [("ダウン", "Down"), ("マウンテンパーカー", "Mountain parka"), ("コーチ", "Coach")],
    ),
    (
        "PNT",
        "bottoms",
        "パンツ",
        "Trousers",
        ["S", "M", "L", "XL"],
        6_990,
        "cotton",
        [("ワイドデニム", "Wide denim"), ("チノ", "Chino"), ("イージー", "Easy")],
    ),
    (
        "SOX",
        "socks",
        "ソックス",
        "Socks",
        ["M", "L"],
        990,
        "cotton",
        [("3足組", "3-pack"), ("和柄", "Japanese-pattern")],
    ),
    (
        "BAG",
        "bags",
        "バッグ",
        "Bag",
        ["F"],
        3_990,
        "canvas",
        [("トート", "Tote"), ("サコッシュ", "Sacoche")],
    ),
]
BRANDS = ["MINATO", "Kaze Works", "山と街", "URBAN SHIKI"]


def jan_code(item_number: int) -> str:
    body = f"{JAN_COMPANY_PREFIX}{item_number:05d}"
    return body + str(d.gtin_check_digit(body))


async def seed_demo_catalog(db: Database, *, now: datetime | None = None) -> int:
    """Create the demo catalog unless products exist; returns the number of products created."""
    catalog = Catalog(db)
    existing = await catalog.list_products(
        Viewer(staff=True, channel=0), status=None, category_id=None, after=None, limit=1
    )
    if existing:
        return 0
    moment = now or datetime.now(UTC)

    await catalog.create_attribute_definition(
        SEED_PRINCIPAL,
        d.AttributeDefinition(
            key="material",
            type=d.AttributeType.ENUM,
            labels={"ja": "素材", "en": "Material"},
            options={
                "cotton": {"ja": "コットン", "en": "Cotton"},
                "linen": {"ja": "リネン", "en": "Linen"},
                "wool": {"ja": "ウール", "en": "Wool"},
                "leather": {"ja": "レザー", "en": "Leather"},
                "canvas": {"ja": "キャンバス", "en": "Canvas"},
                "rubber": {"ja": "ラバー", "en": "Rubber"},
                "polyester": {"ja": "ポリエステル", "en": "Polyester"},
            },
            facetable=True,
        ),
    )
    await catalog.create_attribute_definition(
        SEED_PRINCIPAL,
        d.AttributeDefinition(
            key="water_resistant",
            type=d.AttributeType.BOOLEAN,
            labels={"ja": "撥水", "en": "Water-resistant"},
        ),
    )
    await catalog.create_attribute_definition(
        SEED_PRINCIPAL,
        d.AttributeDefinition(
            key="made_in", type=d.AttributeType.TEXT, labels={"ja": "生産国", "en": "Made in"}
        ),
    )

    category_ids: dict[str, uuid.UUID] = {}
    for position, (slug, ja, en, parent) in enumerate(CATEGORIES):
        category = d.Category(
            id=uuid.uuid4(),
            parent_id=category_ids[parent] if parent else None,
            slug=slug,
            titles={"ja": ja, "en": en},
            position=position,
        )
        await catalog.categories.create_category(SEED_PRINCIPAL, category)
        category_ids[slug] = category.id

    item_number = itertools.count(1)
    created: dict[str, list[d.Product]] = {}
    count = 0
    for line_index, (
        kind,
        category_slug,
        noun_ja,
        noun_en,
        sizes,
        base_price,
        material,
        styles,
    ) in enumerate(LINES):
        for style_index, (style_ja, style_en) in enumerate(styles):
            for color_index, (color, color_ja, color_en) in enumerate(COLORS):
                count += 1
                brand = BRANDS[(line_index + style_index) % len(BRANDS)]
                code = f"{kind}-{style_index + 1:02d}{color_index + 1:02d}"
                variants = tuple(
                    d.Variant(
                        sku=f"{code}-{size.replace('.', '')}",
                        options={"color": color, "size": size},
                        barcodes=(d.Barcode(d.BarcodeType.JAN, jan_code(next(item_number))),),
                    )
                    for size in sizes
                )
                # Every seventh product is sold only in stores (kiosk, mirror, shelf, POS).
                channels = STORE_ONLY if count % 7 == 0 else ALL_CHANNELS
                product = await catalog.create_product(
                    SEED_PRINCIPAL,
                    {
                        "code": code,
                        "titles": {
                            "ja": f"{style_ja}{noun_ja}（{color_ja}）",
                            "en": f"{style_en} {noun_en} ({color_en})",
                        },
                        "descriptions": {
                            "ja": f"{brand}の{style_ja}{noun_ja}。"
                            f"毎日の街歩きに合わせやすい{color_ja}。",
                            "en": f"{style_en} {noun_en.lower()} by {brand} "
                            f"in {color_en.lower()}, easy to wear every day.",
                        },
                        "brand": brand,
                        "category_ids": (category_ids[category_slug],),
                        "channels": channels,
                        "tax_class": d.TaxClass.STANDARD,
                        "attributes": (
                            d.AttributeValue("material", material),
                            d.AttributeValue("water_resistant", kind in ("BOT", "OUT")),
                            d.AttributeValue(
                                "made_in", "日本" if style_index % 2 == 0 else "Portugal"
                            ),
                        ),
                        "media": (
                            d.MediaItem(
                                f"https://images.minatoya.example/{code.lower()}/main.jpg",
                                {
                                    "ja": f"{style_ja}{noun_ja} {color_ja}",
                                    "en": f"{style_en} {noun_en} {color_en}",
                                },
                            ),
                        ),
                        "variants": variants,
                    },
                    d.ProductStatus.PUBLISHED,
                )
                created.setdefault(kind, []).append(product)
                price = base_price + 1_000 * style_index
                entries = [
                    d.PriceEntry(uuid.uuid4(), v.sku, d.Money("JPY", Decimal(price)))
                    for v in variants
                ]
                if color_index == 0:
                    # A winter sale on the white colourway: 20 % off for two weeks.
                    entries.extend(
                        d.PriceEntry(
                            uuid.uuid4(),
                            v.sku,
                            d.Money("JPY", Decimal(int(price * 0.8))),
                            price_list="winter-sale",
                            valid_from=moment - timedelta(days=1),
                            valid_until=moment + timedelta(days=14),
                        )
                        for v in variants
                    )
                await catalog.prices.set_prices(
                    SEED_PRINCIPAL, entries, request_id="", request=empty_pb2.Empty()
                )

    # Relations: what goes with what (the smart mirror's suggestions), accessories, up-sells.
    pairs = [
        ("TEE", "PNT", d.RelationType.GOES_WITH),
        ("SHT", "PNT", d.RelationType.GOES_WITH),
        ("SNK", "SOX", d.RelationType.ACCESSORY),
        ("PNT", "SNK", d.RelationType.GOES_WITH),
        ("KNT", "OUT", d.RelationType.GOES_WITH),
        ("SDL", "BAG", d.RelationType.CROSS_SELL),
    ]
    for source_kind, target_kind, relation in pairs:
        for i, product in enumerate(created[source_kind]):
            targets = created[target_kind]
            picks = [targets[(i + k) % len(targets)] for k in range(3)]
            await catalog.set_relations(
                SEED_PRINCIPAL,
                product.id,
                [relation],
                [(relation, t.id, n) for n, t in enumerate(picks)],
            )
    for products in created.values():
        for cheaper, dearer in itertools.pairwise(products[:: len(COLORS)]):
            await catalog.set_relations(
                SEED_PRINCIPAL,
                cheaper.id,
                [d.RelationType.UP_SELL],
                [(d.RelationType.UP_SELL, dearer.id, 0)],
            )
    return count
