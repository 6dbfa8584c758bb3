"""CatalogService over gRPC against real PostgreSQL: writes, visibility, concurrency, events."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from services.catalog.seed import jan_code
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc, events_pb2
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.common.v1 import common_pb2
from tenpo.kit.db import Database
from tenpo.kit.events import Consumer, EventBus, Subscription
from tenpo.kit.grpc_errors import decode_error
from tests.services.conftest import Tokens, gateway_channel

Stub = catalog_service_pb2_grpc.CatalogServiceStub


def new_product(
    code: str,
    *,
    status: int = pb.PRODUCT_STATUS_PUBLISHED,
    channels: list[int] | None = None,
    jan: int = 1,
) -> pb.Product:
    return pb.Product(
        code=code,
        titles=pb.LocalizedText(
            translations={"ja": "ローカットスニーカー", "en": "Low-top sneakers"}
        ),
        descriptions=pb.LocalizedText(
            translations={"ja": "軽いキャンバス。", "en": "Light canvas."}
        ),
        brand="MINATO",
        status=status,  # type: ignore[arg-type]
        channels=channels or [common_pb2.CHANNEL_WEB, common_pb2.CHANNEL_KIOSK],
        tax_class=pb.TAX_CLASS_STANDARD,
        variants=[
            pb.Variant(
                sku=f"{code}-27",
                options={"color": "white", "size": "27.0"},
                barcodes=[pb.Barcode(type=pb.BARCODE_TYPE_JAN, value=jan_code(jan))],
            )
        ],
    )


async def create(
    catalog: Stub, tokens: Tokens, product: pb.Product, request_id: str = ""
) -> pb.Product:
    response = await catalog.CreateProduct(
        api.CreateProductRequest(product=product, request_id=request_id), metadata=tokens.staff
    )
    return response.product


async def expect_error(call: object, code: grpc.StatusCode, reason: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() is code, caught.value.details()
    if reason is not None:
        assert decode_error(caught.value).reason == reason


async def test_staff_create_then_everyone_reads_in_their_language(
    catalog: Stub, tokens: Tokens
) -> None:
    created = await create(catalog, tokens, new_product("SNK-T1"))
    assert created.id and created.etag
    assert created.status == pb.PRODUCT_STATUS_PUBLISHED
    assert created.publish_time.seconds > 0

    anonymous = await catalog.GetProduct(
        api.GetProductRequest(id=created.id), metadata=gateway_channel("WEB")
    )
    assert anonymous.product.title == "ローカットスニーカー"
    english = await catalog.GetProduct(
        api.GetProductRequest(id=created.id), metadata=(("accept-language", "en-GB,en;q=0.8"),)
    )
    assert english.product.title == "Low-top sneakers"
    assert english.product.variants[0].barcodes[0].value == jan_code(1)


async def test_drafts_are_invisible_and_writes_need_staff(catalog: Stub, tokens: Tokens) -> None:
    draft = await create(catalog, tokens, new_product("SNK-T2", status=pb.PRODUCT_STATUS_DRAFT))
    await expect_error(
        catalog.GetProduct(api.GetProductRequest(id=draft.id)),
        grpc.StatusCode.NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )
    await expect_error(
        catalog.GetProduct(api.GetProductRequest(id=draft.id), metadata=tokens.customer),
        grpc.StatusCode.NOT_FOUND,
    )
    staff_view = await catalog.GetProduct(api.GetProductRequest(id=draft.id), metadata=tokens.staff)
    assert staff_view.product.status == pb.PRODUCT_STATUS_DRAFT

    await expect_error(
        catalog.CreateProduct(api.CreateProductRequest(product=new_product("X-1"))),
        grpc.StatusCode.UNAUTHENTICATED,
        "AUTHENTICATION_REQUIRED",
    )
    await expect_error(
        catalog.CreateProduct(
            api.CreateProductRequest(product=new_product("X-2")), metadata=tokens.customer
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        catalog.CreateProduct(
            api.CreateProductRequest(product=new_product("X-3")),
            metadata=tokens.staff_without_scope,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_SCOPE",
    )
    listed = await catalog.ListProducts(api.ListProductsRequest())
    assert [p.code for p in listed.products] == []


async def test_devices_see_only_their_channels_assortment(catalog: Stub, tokens: Tokens) -> None:
    web_only = await create(
        catalog, tokens, new_product("WEB-1", channels=[common_pb2.CHANNEL_WEB], jan=2)
    )
    in_store = await create(
        catalog, tokens, new_product("MIR-1", channels=[common_pb2.CHANNEL_SMART_MIRROR], jan=3)
    )
    mirror = tokens.device("SMART_MIRROR")
    await expect_error(
        catalog.GetProduct(api.GetProductRequest(id=web_only.id), metadata=mirror),
        grpc.StatusCode.NOT_FOUND,
    )
    seen = await catalog.ListProducts(api.ListProductsRequest(), metadata=mirror)
    assert [p.id for p in seen.products] == [in_store.id]
    looked_up = await catalog.LookupByBarcode(
        api.LookupByBarcodeRequest(code=jan_code(3)), metadata=mirror
    )
    assert looked_up.product.id == in_store.id
    await expect_error(
        catalog.LookupByBarcode(api.LookupByBarcodeRequest(code=jan_code(2)), metadata=mirror),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_bare_channel_header_reveals_no_store_only_products(
    catalog: Stub, tokens: Tokens
) -> None:
    # The replay from the issue: an anonymous direct caller naming KIOSK saw the store-only
    # assortment. The channel of an anonymous caller now comes from the gateway's proof only.
    store_only = await create(
        catalog, tokens, new_product("KSK-1", channels=[common_pb2.CHANNEL_KIOSK], jan=4)
    )
    bare = (("x-tenpo-channel", "KIOSK"),)
    listed = await catalog.ListProducts(api.ListProductsRequest(), metadata=bare)
    assert store_only.id not in [p.id for p in listed.products]
    await expect_error(
        catalog.GetProduct(api.GetProductRequest(id=store_only.id), metadata=bare),
        grpc.StatusCode.NOT_FOUND,
    )
    forged = (*bare, ("x-tenpo-channel-proof", "1800000000.bm90LWEtbWFj"))
    listed = await catalog.ListProducts(api.ListProductsRequest(), metadata=forged)
    assert store_only.id not in [p.id for p in listed.products]
    # A kiosk's own token, or the gateway vouching for the channel, still sees it.
    for metadata in (tokens.device("KIOSK"), gateway_channel("KIOSK")):
        listed = await catalog.ListProducts(api.ListProductsRequest(), metadata=metadata)
        assert store_only.id in [p.id for p in listed.products]


async def test_bad_input_is_rejected_with_field_violations_and_changes_nothing(
    catalog: Stub, tokens: Tokens
) -> None:
    bad = new_product("bad code")
    bad.variants[0].barcodes[0].value = "4901234567890"
    bad.media.append(pb.Media(url="http://insecure.example/a.jpg"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.CreateProduct(api.CreateProductRequest(product=bad), metadata=tokens.staff)
    details = decode_error(caught.value)
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in details.field_violations} >= {
        "product.code",
        "product.media[0].url",
    } or "barcodes" in str(details.field_violations)
    listed = await catalog.ListProducts(api.ListProductsRequest(), metadata=tokens.staff)
    assert listed.products == []
    await expect_error(
        catalog.GetProduct(api.GetProductRequest(id="not-a-uuid")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ID_INVALID",
    )
    await expect_error(
        catalog.ListProducts(api.ListProductsRequest(page_token="forged")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_create_is_idempotent_per_request_id(catalog: Stub, tokens: Tokens) -> None:
    first, again = await asyncio.gather(
        create(catalog, tokens, new_product("IDEM-1"), request_id="r-1"),
        create(catalog, tokens, new_product("IDEM-1"), request_id="r-1"),
    )
    assert first.id == again.id
    await expect_error(
        catalog.CreateProduct(
            api.CreateProductRequest(product=new_product("IDEM-2", jan=5), request_id="r-1"),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )


async def test_stale_etag_is_aborted(catalog: Stub, tokens: Tokens) -> None:
    product = await create(catalog, tokens, new_product("ETAG-1"))
    update = pb.Product(id=product.id, brand="Kaze Works", etag=product.etag)
    mask = field_mask_pb2.FieldMask(paths=["brand"])
    updated = (
        await catalog.UpdateProduct(
            api.UpdateProductRequest(product=update, update_mask=mask), metadata=tokens.staff
        )
    ).product
    assert updated.brand == "Kaze Works"
    assert updated.etag != product.etag
    await expect_error(
        catalog.UpdateProduct(
            api.UpdateProductRequest(product=update, update_mask=mask), metadata=tokens.staff
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )


async def test_update_mask_follows_aip_134(catalog: Stub, tokens: Tokens) -> None:
    product = await create(catalog, tokens, new_product("MASK-1", jan=41))

    async def update(change: pb.Product, paths: list[str] | None = None) -> pb.Product:
        mask = field_mask_pb2.FieldMask(paths=paths) if paths is not None else None
        response = await catalog.UpdateProduct(
            api.UpdateProductRequest(product=change, update_mask=mask), metadata=tokens.staff
        )
        return response.product

    # No mask: the fields set in the request change, the rest stay.
    implied = await update(pb.Product(id=product.id, brand="Kaze Works"))
    assert implied.brand == "Kaze Works"
    assert implied.code == product.code
    assert [v.sku for v in implied.variants] == ["MASK-1-27"]
    assert implied.descriptions.translations["ja"] == "軽いキャンバス。"

    # Named paths: exactly those, even when the request leaves them empty (brand cleared).
    named = await update(
        pb.Product(id=product.id, titles=pb.LocalizedText(translations={"ja": "新しい名前"})),
        ["titles", "brand"],
    )
    assert (named.title, named.brand) == ("新しい名前", "")
    assert named.descriptions.translations["ja"] == "軽いキャンバス。"

    # "*": every writable field is replaced; what the request leaves unset is cleared.
    full = pb.Product()
    full.CopyFrom(named)
    full.ClearField("descriptions")
    replaced = await update(full, ["*"])
    assert not replaced.descriptions.translations
    assert replaced.code == product.code

    for change, paths, reason in [
        (pb.Product(id=product.id, brand="x"), ["brand", "create_time"], "UPDATE_MASK_INVALID"),
        (pb.Product(id=product.id), None, "UPDATE_MASK_INVALID"),  # nothing to change
    ]:
        await expect_error(update(change, paths), grpc.StatusCode.INVALID_ARGUMENT, reason)
    unchanged = (
        await catalog.GetProduct(api.GetProductRequest(id=product.id), metadata=tokens.staff)
    ).product
    assert unchanged.etag == replaced.etag


async def test_category_update_mask_follows_aip_134(catalog: Stub, tokens: Tokens) -> None:
    created = (
        await catalog.CreateCategory(
            api.CreateCategoryRequest(
                category=pb.Category(
                    slug="bags", position=3, titles=pb.LocalizedText(translations={"ja": "かばん"})
                )
            ),
            metadata=tokens.staff,
        )
    ).category
    implied = (
        await catalog.UpdateCategory(
            api.UpdateCategoryRequest(category=pb.Category(id=created.id, slug="totes")),
            metadata=tokens.staff,
        )
    ).category
    assert (implied.slug, implied.position, implied.title) == ("totes", 3, "かばん")
    named = (
        await catalog.UpdateCategory(
            api.UpdateCategoryRequest(
                category=pb.Category(id=created.id),
                update_mask=field_mask_pb2.FieldMask(paths=["position"]),
            ),
            metadata=tokens.staff,
        )
    ).category
    assert (named.slug, named.position) == ("totes", 0)  # an explicit path can set zero
    await expect_error(
        catalog.UpdateCategory(
            api.UpdateCategoryRequest(
                category=pb.Category(id=created.id, slug="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["parent_id"]),
            ),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UPDATE_MASK_INVALID",
    )


async def test_concurrent_updates_never_lose_one(catalog: Stub, tokens: Tokens) -> None:
    product = await create(catalog, tokens, new_product("CONC-1"))
    # Same etag, different values: exactly one wins, the others are told to re-read.
    contenders = [
        catalog.UpdateProduct(
            api.UpdateProductRequest(
                product=pb.Product(id=product.id, brand=f"brand-{i}", etag=product.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["brand"]),
            ),
            metadata=tokens.staff,
        )
        for i in range(8)
    ]
    results = await asyncio.gather(*contenders, return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 7
    assert all(decode_error(e).reason == "ETAG_MISMATCH" for e in losers)

    # No etag, different fields: both changes survive (row lock, read-modify-write).
    await asyncio.gather(
        catalog.UpdateProduct(
            api.UpdateProductRequest(
                product=pb.Product(id=product.id, brand="both-1"),
                update_mask=field_mask_pb2.FieldMask(paths=["brand"]),
            ),
            metadata=tokens.staff,
        ),
        catalog.UpdateProduct(
            api.UpdateProductRequest(
                product=pb.Product(
                    id=product.id, descriptions=pb.LocalizedText(translations={"ja": "新しい説明"})
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["descriptions"]),
            ),
            metadata=tokens.staff,
        ),
    )
    final = (
        await catalog.GetProduct(api.GetProductRequest(id=product.id), metadata=tokens.staff)
    ).product
    assert final.brand == "both-1"
    assert final.description == "新しい説明"


async def test_lifecycle_and_delete(catalog: Stub, tokens: Tokens) -> None:
    draft = await create(catalog, tokens, new_product("LIFE-1", status=pb.PRODUCT_STATUS_DRAFT))
    await catalog.DeleteProduct(api.DeleteProductRequest(id=draft.id), metadata=tokens.staff)
    await expect_error(
        catalog.GetProduct(api.GetProductRequest(id=draft.id), metadata=tokens.staff),
        grpc.StatusCode.NOT_FOUND,
    )

    live = await create(catalog, tokens, new_product("LIFE-2", jan=7))
    await catalog.DeleteProduct(api.DeleteProductRequest(id=live.id), metadata=tokens.staff)
    archived = (
        await catalog.GetProduct(api.GetProductRequest(id=live.id), metadata=tokens.staff)
    ).product
    assert archived.status == pb.PRODUCT_STATUS_ARCHIVED
    await expect_error(
        catalog.GetProduct(api.GetProductRequest(id=live.id)), grpc.StatusCode.NOT_FOUND
    )
    back_to_draft = pb.Product(id=live.id, status=pb.PRODUCT_STATUS_DRAFT)
    await expect_error(
        catalog.UpdateProduct(
            api.UpdateProductRequest(
                product=back_to_draft, update_mask=field_mask_pb2.FieldMask(paths=["status"])
            ),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_STATUS_TRANSITION",
    )


async def test_prices_resolve_with_sale_and_tax(catalog: Stub, tokens: Tokens) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp
    from google.type import money_pb2

    product = await create(catalog, tokens, new_product("PRICE-1"))
    sku = product.variants[0].sku
    now = Timestamp()
    now.GetCurrentTime()
    later = Timestamp(seconds=now.seconds + 86_400)
    await catalog.SetPrices(
        api.SetPricesRequest(
            prices=[
                pb.Price(sku=sku, amount=money_pb2.Money(currency_code="JPY", units=11_000)),
                pb.Price(
                    sku=sku,
                    amount=money_pb2.Money(currency_code="JPY", units=8_800),
                    price_list="winter-sale",
                    valid_from=Timestamp(seconds=now.seconds - 60),
                    valid_until=later,
                ),
            ]
        ),
        metadata=tokens.staff,
    )
    resolved = (
        await catalog.GetPrices(api.GetPricesRequest(skus=[sku]), metadata=gateway_channel("WEB"))
    ).prices
    assert len(resolved) == 1
    assert resolved[0].amount.units == 8_800
    assert resolved[0].regular_amount.units == 11_000
    assert resolved[0].tax_amount.units == 800
    assert resolved[0].valid_until.seconds == later.seconds
    after_sale = (
        await catalog.GetPrices(
            api.GetPricesRequest(skus=[sku], at_time=Timestamp(seconds=later.seconds + 1))
        )
    ).prices
    assert after_sale[0].amount.units == 11_000

    await expect_error(
        catalog.SetPrices(
            api.SetPricesRequest(
                prices=[
                    pb.Price(
                        sku=sku,
                        amount=money_pb2.Money(currency_code="JPY", units=100, nanos=500_000_000),
                    )
                ]
            ),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "PRICE_INVALID",
    )


async def test_a_price_set_next_to_an_alike_one_applies(catalog: Stub, tokens: Tokens) -> None:
    # Found from outside: a staff price change sent as a new entry (no id) next to an equal
    # one — both the web channel's, open-ended — was one arbitrary row's (the oldest, in
    # practice), so the second and third changes never showed. The entry set last applies.
    from google.type import money_pb2

    product = await create(catalog, tokens, new_product("PRICE-2"))
    sku = product.variants[0].sku

    def web_price(units: int) -> pb.Price:
        return pb.Price(
            sku=sku,
            amount=money_pb2.Money(currency_code="JPY", units=units),
            channel=common_pb2.CHANNEL_WEB,
        )

    for units in (3_990, 1_234, 2_345, 3_456):
        await catalog.SetPrices(
            api.SetPricesRequest(prices=[web_price(units)]), metadata=tokens.staff
        )
        resolved = (
            await catalog.GetPrices(
                api.GetPricesRequest(skus=[sku]), metadata=gateway_channel("WEB")
            )
        ).prices
        assert [p.amount.units for p in resolved] == [units]
    # Two alike entries in one request: the later one.
    await catalog.SetPrices(
        api.SetPricesRequest(prices=[web_price(5_000), web_price(4_000)]), metadata=tokens.staff
    )
    resolved = (
        await catalog.GetPrices(api.GetPricesRequest(skus=[sku]), metadata=gateway_channel("WEB"))
    ).prices
    assert [p.amount.units for p in resolved] == [4_000]
    # Search's "from" price follows the same resolution.
    found = await catalog.SearchProducts(
        api.SearchProductsRequest(query=product.code, page_size=10),
        metadata=gateway_channel("WEB"),
    )
    [hit] = [r for r in found.results if r.product.id == product.id]
    assert hit.from_price.amount.units == 4_000


async def test_categories_tree_and_cycles(catalog: Stub, tokens: Tokens) -> None:
    def category(slug: str, parent: str = "") -> api.CreateCategoryRequest:
        return api.CreateCategoryRequest(
            category=pb.Category(
                slug=slug, parent_id=parent, titles=pb.LocalizedText(translations={"ja": slug})
            )
        )

    shoes = (await catalog.CreateCategory(category("shoes"), metadata=tokens.staff)).category
    sneakers = (
        await catalog.CreateCategory(category("sneakers", shoes.id), metadata=tokens.staff)
    ).category
    await expect_error(
        catalog.CreateCategory(category("sneakers", shoes.id), metadata=tokens.staff),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    await expect_error(
        catalog.MoveCategory(
            api.MoveCategoryRequest(id=shoes.id, new_parent_id=sneakers.id), metadata=tokens.staff
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CATEGORY_CYCLE",
    )
    tree = await catalog.ListCategories(api.ListCategoriesRequest())
    assert [c.slug for c in tree.categories] == ["shoes", "sneakers"]
    await expect_error(
        catalog.DeleteCategory(api.DeleteCategoryRequest(id=shoes.id), metadata=tokens.staff),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CATEGORY_NOT_EMPTY",
    )


async def test_import_applies_good_rows_and_reports_bad_ones(catalog: Stub, tokens: Tokens) -> None:
    rows = [
        api.ImportProductsRequest(
            product=new_product("IMP-1", jan=11),
            regular_prices_jpy={"IMP-1-27": 5_990},
            row_number=1,
        ),
        api.ImportProductsRequest(product=new_product("bad code", jan=12), row_number=2),
        api.ImportProductsRequest(
            product=new_product("IMP-3", jan=11), row_number=3
        ),  # JAN of IMP-1
        api.ImportProductsRequest(product=new_product("IMP-4", jan=14), row_number=4),
    ]

    async def stream():  # type: ignore[no-untyped-def]
        for row in rows:
            yield row

    summary = await catalog.ImportProducts(stream(), metadata=tokens.staff)
    assert (summary.created, summary.updated, summary.failed) == (2, 0, 2)
    assert {(f.row_number, f.reason) for f in summary.failures} == {
        (2, "PRODUCT_INVALID"),
        (3, "SKU_CONFLICT"),
    }

    again = await catalog.ImportProducts(stream(), metadata=tokens.staff)
    assert (again.created, again.updated, again.failed) == (0, 2, 2)
    prices = (await catalog.GetPrices(api.GetPricesRequest(skus=["IMP-1-27"]))).prices
    assert prices[0].amount.units == 5_990


async def test_publishing_emits_an_event_that_a_consumer_receives(
    catalog: Stub, tokens: Tokens, nats_url: str, database_url: str
) -> None:
    received: list[events_pb2.ProductPublished] = []

    async def on_published(uow: object, event: object) -> None:
        message = event.parse(events_pb2.ProductPublished)  # type: ignore[attr-defined]
        received.append(message)

    db = Database(database_url)  # the consumer's inbox lives next to the catalog's tables here
    bus = EventBus(nats_url)
    await bus.connect()
    durable = f"test-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        db,
        bus,
        Subscription(
            durable=durable,
            source_service="catalog",
            handlers={events_pb2.ProductPublished: on_published},
        ),
    )
    task = asyncio.create_task(consumer.run())
    try:
        product = await create(catalog, tokens, new_product("EVT-1", jan=21))
        for _ in range(200):
            if any(m.product.id == product.id for m in received):
                break
            await asyncio.sleep(0.05)
        mine = [m for m in received if m.product.id == product.id]
        assert len(mine) == 1
        assert mine[0].product.variants[0].sku == "EVT-1-27"
    finally:
        task.cancel()
        await bus.js.delete_consumer("TENPO_CATALOG", durable)
        await bus.close()
        await db.dispose()


async def test_values_the_database_cannot_store_are_invalid_arguments(
    catalog: Stub, tokens: Tokens
) -> None:
    # NUL is valid in a protobuf string but not in PostgreSQL text.
    await expect_error(
        catalog.BatchGetVariants(api.BatchGetVariantsRequest(skus=["SKU\x00X"])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALUE_NOT_STORABLE",
    )


async def test_permission_is_checked_before_validation(catalog: Stub, tokens: Tokens) -> None:
    # An incomplete write from a caller who may not write says "not allowed", not which
    # fields are missing; only a caller the contract admits learns about the fields.
    incomplete = api.CreateAttributeDefinitionRequest(
        attribute_definition=pb.AttributeDefinition(key="Not A Key")
    )
    for metadata, code, reason in [
        ((), grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_REQUIRED"),
        (tokens.customer, grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED"),
        (tokens.device("KIOSK"), grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED"),
        (tokens.staff_without_scope, grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await catalog.CreateAttributeDefinition(incomplete, metadata=metadata)
        assert caught.value.code() is code
        details = decode_error(caught.value)
        assert details.reason == reason
        assert not details.field_violations
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.CreateAttributeDefinition(incomplete, metadata=tokens.staff)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert decode_error(caught.value).field_violations


async def test_attribute_definitions_and_prices_page_by_keyset(
    catalog: Stub, tokens: Tokens
) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp
    from google.type import money_pb2

    for key in ("material", "fit", "season", "care", "origin"):
        await catalog.CreateAttributeDefinition(
            api.CreateAttributeDefinitionRequest(
                attribute_definition=pb.AttributeDefinition(
                    key=key,
                    type=pb.ATTRIBUTE_TYPE_TEXT,
                    labels=pb.LocalizedText(translations={"ja": key}),
                )
            ),
            metadata=tokens.staff,
        )
    keys: list[str] = []
    token = ""
    while True:
        page = await catalog.ListAttributeDefinitions(
            api.ListAttributeDefinitionsRequest(page_size=2, page_token=token)
        )
        assert len(page.attribute_definitions) <= 2
        keys.extend(a.key for a in page.attribute_definitions)
        token = page.next_page_token
        if not token:
            break
    assert keys == ["care", "fit", "material", "origin", "season"]

    product = await create(catalog, tokens, new_product("PAGE-1", jan=51))
    sku = product.variants[0].sku
    entries = [
        pb.Price(sku=sku, amount=money_pb2.Money(currency_code=currency, units=units))
        for currency, units in (("JPY", 5_000), ("USD", 40), ("EUR", 35))
    ]
    entries += [
        pb.Price(
            sku=sku,
            amount=money_pb2.Money(currency_code="JPY", units=4_000 + day),
            price_list=f"sale-{day}",
            valid_from=Timestamp(seconds=1_800_000_000 + day * 86_400),
        )
        for day in range(4)
    ]
    entries.append(
        pb.Price(sku=sku, amount=money_pb2.Money(currency_code="JPY", units=4_500), channel=2)
    )
    await catalog.SetPrices(api.SetPricesRequest(prices=entries), metadata=tokens.staff)
    everything = (
        await catalog.ListPrices(api.ListPricesRequest(sku=sku), metadata=tokens.staff)
    ).prices
    assert len(everything) == 8
    assert [(p.amount.currency_code, p.channel) for p in everything[:2]] == [
        ("EUR", 0),
        ("JPY", 0),
    ]
    assert everything[1].price_list == "regular"  # open-ended before the dated ones
    paged: list[str] = []
    token = ""
    while True:
        page = await catalog.ListPrices(
            api.ListPricesRequest(sku=sku, page_size=3, page_token=token), metadata=tokens.staff
        )
        paged.extend(p.id for p in page.prices)
        token = page.next_page_token
        if not token:
            break
    assert paged == [p.id for p in everything]

    second = (
        await catalog.ListPrices(api.ListPricesRequest(sku=sku, page_size=3), metadata=tokens.staff)
    ).next_page_token
    for request, reason in [
        (api.ListPricesRequest(sku="OTHER-SKU", page_token=second), "INVALID_PAGE_TOKEN"),
        (api.ListPricesRequest(sku=sku, page_size=-1), "INVALID_PAGE_SIZE"),
    ]:
        await expect_error(
            catalog.ListPrices(request, metadata=tokens.staff),
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
    await expect_error(
        catalog.ListAttributeDefinitions(api.ListAttributeDefinitionsRequest(page_token=second)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_concurrent_identical_set_prices_all_receive_the_stored_answer(
    catalog: Stub, tokens: Tokens
) -> None:
    from google.type import money_pb2

    product = await create(catalog, tokens, new_product("IDEM-P1", jan=61))
    sku = product.variants[0].sku
    request = api.SetPricesRequest(
        prices=[
            pb.Price(sku=sku, amount=money_pb2.Money(currency_code="JPY", units=7_700)),
            pb.Price(
                sku=sku,
                amount=money_pb2.Money(currency_code="JPY", units=7_000),
                channel=common_pb2.CHANNEL_APP,
            ),
        ],
        request_id=f"prices-{uuid.uuid4()}",
    )
    answers = await asyncio.gather(
        *(catalog.SetPrices(request, metadata=tokens.staff) for _ in range(100))
    )
    first = [p.id for p in answers[0].prices]
    assert len(set(first)) == 2
    assert all([p.id for p in answer.prices] == first for answer in answers)
    retried = await catalog.SetPrices(request, metadata=tokens.staff)
    assert [p.id for p in retried.prices] == first
    stored = (
        await catalog.ListPrices(api.ListPricesRequest(sku=sku), metadata=tokens.staff)
    ).prices
    assert sorted(p.id for p in stored) == sorted(first)

    other = api.SetPricesRequest()
    other.CopyFrom(request)
    other.prices[0].amount.units = 1
    await expect_error(
        catalog.SetPrices(other, metadata=tokens.staff),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
