"""Catalog use cases: products, relations, attribute definitions, search and import; the
category tree and prices are their own parts (``categories``, ``prices``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.catalog import convert
from services.catalog import domain as d
from services.catalog.search import facet_attribute_keys
from services.catalog.search import search as run_search
from services.catalog.store import AttributeStore, CategoryStore, PriceStore, ProductStore
from services.catalog.usecases.access import (
    MAX_BATCH,
    STAFF,
    Viewer,
    bounded,
    product_not_found,
    require_writer,
)
from services.catalog.usecases.caches import CachedProduct, CatalogCaches
from services.catalog.usecases.categories import Categories
from services.catalog.usecases.imports import ImportRow, ImportSummary
from services.catalog.usecases.prices import Prices
from services.catalog.usecases.search import SearchResults, labelled_facets
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import events_pb2
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.kit import pagination
from tenpo.kit.auth import Principal
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    check_etag,
)
from tenpo.kit.idempotency import idempotent


class Catalog:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache_ttl_seconds: float = 60.0,
        reference_ttl_seconds: float = 30.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.caches = CatalogCaches(
            db, product_ttl_seconds=cache_ttl_seconds, reference_ttl_seconds=reference_ttl_seconds
        )
        self.categories = Categories(db, self.caches)
        self.prices = Prices(db, clock)

    # ------------------------------------------------------------------------ reading

    async def _cached(self, product_id: uuid.UUID) -> CachedProduct:
        try:
            # Indexing, not .get(): cachetools' get() checks the key twice, and this is the
            # hot path of every device.
            return self.caches.products[product_id]
        except KeyError:
            pass
        async with self.db.unit_of_work() as uow:
            product = await ProductStore(uow.session).get(product_id)
        if product is None:
            raise product_not_found(product_id)
        return self.caches.remember(product) or CachedProduct(product)

    async def get_product(self, product_id: uuid.UUID, viewer: Viewer) -> d.Product:
        product = (await self._cached(product_id)).product
        if not product.is_visible_to(staff=viewer.staff, channel=viewer.channel):
            # Invisible is indistinguishable from absent (AIP-193).
            raise product_not_found(product_id)
        return product

    async def get_product_response(
        self, product_id: uuid.UUID, viewer: Viewer, language: str
    ) -> api.GetProductResponse:
        """GetProduct's answer, rendered once per product version and language: the hot
        path of every device, so a cached product costs one lookup and no conversion. (The
        one use case that returns a wire message: that is what it caches.)"""
        try:
            entry = self.caches.products[product_id]
        except KeyError:
            entry = await self._cached(product_id)
        if not entry.product.is_visible_to(staff=viewer.staff, channel=viewer.channel):
            raise product_not_found(product_id)
        response = entry.responses.get(language)
        if response is None:
            response = await self.caches.get_product_response(entry, language)
        return response

    async def render(self, product: d.Product, language: str) -> pb.Product:
        """The product as a message in ``language``, converted once per version."""
        return await self.caches.message(product, language)

    async def batch_get_products(self, ids: Sequence[uuid.UUID], viewer: Viewer) -> list[d.Product]:
        bounded("ids", ids, 100)
        found: dict[uuid.UUID, d.Product] = {}
        missing = []
        for product_id in dict.fromkeys(ids):
            try:
                found[product_id] = self.caches.products[product_id].product
            except KeyError:
                missing.append(product_id)
        if missing:
            async with self.db.unit_of_work() as uow:
                loaded = await ProductStore(uow.session).get_many(missing)
            for product in loaded.values():
                self.caches.remember(product)
            found.update(loaded)
        return [
            p
            for p in (found.get(i) for i in dict.fromkeys(ids))
            if p is not None and p.is_visible_to(staff=viewer.staff, channel=viewer.channel)
        ]

    async def list_products(
        self,
        viewer: Viewer,
        *,
        status: d.ProductStatus | None,
        category_id: uuid.UUID | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[d.Product]:
        statuses = (
            [int(status)]
            if status and viewer.staff
            else (
                [int(s) for s in d.ProductStatus]
                if viewer.staff
                else [int(d.ProductStatus.PUBLISHED)]
            )
        )
        async with self.db.unit_of_work() as uow:
            categories = None
            if category_id is not None:
                categories = await CategoryStore(uow.session).descendants([category_id])
            return await ProductStore(uow.session).list_page(
                statuses=statuses,
                channel=None if viewer.staff else viewer.channel,
                category_ids=categories,
                after=after,
                limit=limit,
            )

    async def get_variants(
        self, skus: Sequence[str], viewer: Viewer
    ) -> list[tuple[d.Variant, d.Product]]:
        bounded("skus", skus, MAX_BATCH)
        async with self.db.unit_of_work() as uow:
            owners = await ProductStore(uow.session).product_ids_for_skus(skus)
        products = (
            {p.id: p for p in await self.batch_get_products(list(set(owners.values())), viewer)}
            if owners
            else {}
        )
        result = []
        for sku in dict.fromkeys(skus):
            product = products.get(owners.get(sku))  # type: ignore[arg-type]
            if product is None:
                continue
            result.append((next(v for v in product.variants if v.sku == sku), product))
        return result

    async def lookup_barcode(
        self, code: str, viewer: Viewer
    ) -> tuple[d.Variant, d.Product, d.BarcodeType]:
        cleaned = code.strip()
        if not cleaned or len(cleaned) > 64:
            raise InvalidArgument(
                "code must be 1-64 characters",
                reason="BARCODE_INVALID",
                field_violations=[FieldViolation("code", "1-64 characters")],
            )
        gtin = d.normalize_gtin(cleaned) or d.sgtin96_to_gtin(cleaned)
        async with self.db.unit_of_work() as uow:
            match = await ProductStore(uow.session).lookup_barcode(
                cleaned.lower() if gtin is None else cleaned, gtin
            )
        if match is None:
            raise NotFound("no variant has this code", reason="BARCODE_NOT_FOUND")
        found = await self.get_variants([match[0]], viewer)
        if not found:
            raise NotFound("no variant has this code", reason="BARCODE_NOT_FOUND")
        variant, product = found[0]
        return variant, product, match[1]

    async def related_products(
        self, product_id: uuid.UUID, types: Sequence[d.RelationType], viewer: Viewer, limit: int
    ) -> list[tuple[d.RelationType, d.Product]]:
        await self.get_product(product_id, viewer)  # not-found and visibility first
        async with self.db.unit_of_work() as uow:
            rows = await ProductStore(uow.session).relations_of(product_id, [int(t) for t in types])
        visible = {
            p.id: p for p in await self.batch_get_products([r[1] for r in rows][:100], viewer)
        }
        return [
            (d.RelationType(kind), visible[related])
            for kind, related, _ in rows
            if related in visible
        ][:limit]

    # ------------------------------------------------------------------------- search

    def search_query(self, viewer: Viewer, *, page_size: int, **criteria: Any) -> d.SearchQuery:
        """The search the caller asked for, validated, with the defaults applied: shoppers
        search their own channel's published products, 24 per page (at most 100)."""
        return d.SearchQuery.build(
            staff=viewer.staff,
            viewer_channel=viewer.channel,
            limit=pagination.page_size(page_size, default=24, maximum=100),
            **criteria,
        )

    async def search(self, query: d.SearchQuery, viewer: Viewer, language: str) -> SearchResults:
        definitions = await self.attribute_definitions()
        async with self.db.unit_of_work() as uow:
            page = await run_search(uow.session, query, facet_attribute_keys(definitions))
        products = {
            p.id: p for p in await self.batch_get_products([h[0] for h in page.hits], viewer)
        }
        return SearchResults(
            hits=[(products[i], price) for i, price in page.hits if i in products],
            total=page.total,
            facets=labelled_facets(
                page.facets, definitions, await self.categories.category_titles(), language
            ),
            next_offset=query.next_offset(page.total),
        )

    # ------------------------------------------------------------------------ writing

    async def create_product(
        self,
        principal: Principal,
        fields: Mapping[str, Any],
        status: d.ProductStatus,
        *,
        request_id: str = "",
        request: Message | None = None,
    ) -> d.Product:
        require_writer(principal)
        definitions = await self.attribute_definitions()
        now = self.clock()
        draft = d.Product(id=uuid.uuid4(), created_at=now, updated_at=now, **fields)
        d.validate_product(draft, definitions)
        product = draft.transition(status, now) if status is not d.ProductStatus.DRAFT else draft

        async with self.db.unit_of_work() as uow:

            async def create() -> wrappers_pb2.StringValue:
                await self._check_references(uow, product)
                store = ProductStore(uow.session)
                if await store.find_by_code(product.code) is not None:
                    raise AlreadyExists(
                        f"product code {product.code} exists",
                        reason="PRODUCT_CODE_TAKEN",
                        field_violations=[FieldViolation("product.code", "already in use")],
                    )
                titles = await CategoryStore(uow.session).titles_of(product.category_ids)
                await store.save(product, category_titles=titles, is_new=True)
                self._announce(uow, None, product, definitions)
                return wrappers_pb2.StringValue(value=str(product.id))

            created = await idempotent(
                uow,
                scope="CreateProduct",
                request_id=request_id,
                request=request or wrappers_pb2.StringValue(),
                response_type=wrappers_pb2.StringValue,
                action=create,
            )
            await uow.commit()
        if created.value != str(product.id):  # a retry: answer with the first result
            return await self.get_product(uuid.UUID(created.value), STAFF)
        return product

    async def update_product(
        self,
        principal: Principal,
        product_id: uuid.UUID,
        changes: Mapping[str, Any],
        *,
        etag: str,
        status: d.ProductStatus | None,
    ) -> d.Product:
        require_writer(principal)
        definitions = await self.attribute_definitions()
        async with self.db.unit_of_work() as uow:
            store = ProductStore(uow.session)
            current = await store.get(product_id, for_update=True)
            if current is None:
                raise product_not_found(product_id)
            check_etag(etag, current.etag, "product")
            now = self.clock()
            updated = replace(current, **changes, version=current.version + 1, updated_at=now)
            d.validate_product(updated, definitions)
            if status is not None:
                updated = updated.transition(status, now)
            if updated.status is d.ProductStatus.PUBLISHED:
                updated.ensure_publishable()  # an edit must not break a live product
            if updated.code != current.code:
                other = await store.find_by_code(updated.code)
                if other is not None and other.id != product_id:
                    raise AlreadyExists(
                        f"product code {updated.code} exists", reason="PRODUCT_CODE_TAKEN"
                    )
            await self._check_references(uow, updated)
            titles = await CategoryStore(uow.session).titles_of(updated.category_ids)
            await store.save(updated, category_titles=titles, is_new=False)
            self._announce(uow, current, updated, definitions)
            await uow.commit()
        self.caches.forget(product_id)
        return updated

    async def delete_product(self, principal: Principal, product_id: uuid.UUID, etag: str) -> None:
        """Drafts are deleted; a product that was ever published is archived, since orders
        refer to it."""
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = ProductStore(uow.session)
            current = await store.get(product_id, for_update=True)
            if current is None:
                raise product_not_found(product_id)
            check_etag(etag, current.etag, "product")
            if current.status is d.ProductStatus.DRAFT and current.published_at is None:
                await store.delete(product_id)
                uow.add_event(
                    events_pb2.ProductArchived(
                        product_id=str(product_id), skus=current.skus, deleted=True
                    )
                )
            elif current.status is not d.ProductStatus.ARCHIVED:
                now = self.clock()
                archived = replace(
                    current.transition(d.ProductStatus.ARCHIVED, now),
                    version=current.version + 1,
                    updated_at=now,
                )
                titles = await CategoryStore(uow.session).titles_of(archived.category_ids)
                await store.save(archived, category_titles=titles, is_new=False)
                self._announce(uow, current, archived, await self.attribute_definitions())
            await uow.commit()
        self.caches.forget(product_id)

    async def _check_references(self, uow: UnitOfWork, product: d.Product) -> None:
        """Categories exist; SKUs and barcodes are not another product's. A conflict with
        another product is SKU_CONFLICT (it wins over a missing category)."""
        missing: list[FieldViolation] = []
        conflicts: list[FieldViolation] = []
        existing = await CategoryStore(uow.session).existing_ids(product.category_ids)
        for i, category_id in enumerate(product.category_ids):
            if category_id not in existing:
                missing.append(FieldViolation(f"product.category_ids[{i}]", "no such category"))
        store = ProductStore(uow.session)
        owners = await store.product_ids_for_skus(product.skus)
        for i, v in enumerate(product.variants):
            if owners.get(v.sku, product.id) != product.id:
                conflicts.append(
                    FieldViolation(f"product.variants[{i}].sku", "SKU belongs to another product")
                )
        taken = set(
            await store.taken_barcodes(
                [b.value for v in product.variants for b in v.barcodes], product.id
            )
        )
        for i, v in enumerate(product.variants):
            for j, b in enumerate(v.barcodes):
                if b.value in taken:
                    conflicts.append(
                        FieldViolation(
                            f"product.variants[{i}].barcodes[{j}]",
                            "barcode belongs to another product",
                        )
                    )
        if conflicts or missing:
            raise FailedPrecondition(
                "the product refers to data it cannot use",
                reason="SKU_CONFLICT" if conflicts else "CATEGORY_NOT_FOUND",
                field_violations=[*conflicts, *missing],
            )

    def _announce(
        self,
        uow: UnitOfWork,
        before: d.Product | None,
        after: d.Product,
        definitions: Mapping[str, d.AttributeDefinition],
    ) -> None:
        snapshot = convert.product(after, definitions, d.DEFAULT_LANGUAGE)
        changed = _changed_fields(before, after)
        uow.add_event(events_pb2.ProductUpdated(product=snapshot, changed_fields=changed))
        was = before.status if before else None
        if after.status is d.ProductStatus.PUBLISHED and was is not d.ProductStatus.PUBLISHED:
            uow.add_event(events_pb2.ProductPublished(product=snapshot))
        if after.status is d.ProductStatus.ARCHIVED and was is not d.ProductStatus.ARCHIVED:
            uow.add_event(events_pb2.ProductArchived(product_id=str(after.id), skus=after.skus))

    async def set_relations(
        self,
        principal: Principal,
        product_id: uuid.UUID,
        types: Sequence[d.RelationType],
        new: Sequence[tuple[d.RelationType, uuid.UUID, int]],
    ) -> list[tuple[int, uuid.UUID, int]]:
        require_writer(principal)
        if not types:
            raise InvalidArgument(
                "name the relation types being replaced",
                reason="REQUIRED_FIELD_MISSING",
                field_violations=[FieldViolation("types", "is required")],
            )
        bounded("relations", new, 200)
        problems = []
        for i, (kind, related, _) in enumerate(new):
            if kind not in types:
                problems.append(
                    FieldViolation(f"relations[{i}].type", "not among the replaced types")
                )
            if related == product_id:
                problems.append(
                    FieldViolation(
                        f"relations[{i}].related_product_id", "a product cannot relate to itself"
                    )
                )
        if problems:
            raise InvalidArgument(
                "invalid relations", reason="RELATION_INVALID", field_violations=problems
            )
        async with self.db.unit_of_work() as uow:
            store = ProductStore(uow.session)
            if await store.get(product_id, for_update=True) is None:
                raise product_not_found(product_id)
            existing = await store.get_many([r[1] for r in new])
            missing = [
                FieldViolation(f"relations[{i}].related_product_id", "no such product")
                for i, r in enumerate(new)
                if r[1] not in existing
            ]
            if missing:
                raise FailedPrecondition(
                    "related product not found",
                    reason="PRODUCT_NOT_FOUND",
                    field_violations=missing,
                )
            unique = {(int(k), r): p for k, r, p in new}
            await store.replace_relations(
                product_id, [int(t) for t in types], [(k, r, p) for (k, r), p in unique.items()]
            )
            result = await store.relations_of(product_id, [])
            await uow.commit()
        return result

    # --------------------------------------------------------------------- attributes

    async def attribute_definitions(self) -> dict[str, d.AttributeDefinition]:
        return await self.caches.definitions.get()

    async def list_attribute_definitions(
        self, *, after: str, limit: int
    ) -> list[d.AttributeDefinition]:
        """A page of definitions by key, after the key ``after``: a keyset over the cached
        table (a few hundred keys at most), so paging costs no SQL."""
        definitions = await self.attribute_definitions()
        return [definitions[k] for k in sorted(definitions) if k > after][:limit]

    async def create_attribute_definition(
        self, principal: Principal, definition: d.AttributeDefinition
    ) -> d.AttributeDefinition:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            if not await AttributeStore(uow.session).insert(definition):
                raise AlreadyExists(f"attribute {definition.key} exists", reason="ATTRIBUTE_EXISTS")
            await uow.commit()
        self.caches.definitions.invalidate()
        return definition

    # ------------------------------------------------------------------------- import

    async def import_products(
        self, principal: Principal, rows: AsyncIterable[ImportRow]
    ) -> ImportSummary:
        """Upsert every row; a row that fails is reported in the summary and the rest go on
        (each row is its own transaction)."""
        require_writer(principal)  # refuse before reading a whole file
        summary = ImportSummary()
        async for row in rows:
            try:
                data = row.read()
                created = await self.import_product(
                    principal, data.fields, data.status, data.regular_prices_jpy
                )
            except DomainError as error:
                summary.fail(row, error)
            else:
                summary.succeeded(created)
        return summary

    async def import_product(
        self,
        principal: Principal,
        fields: Mapping[str, Any],
        status: d.ProductStatus | None,
        regular_prices_jpy: Mapping[str, int],
    ) -> bool:
        """Upsert one product by code, else by SKU; returns True when it was created."""
        require_writer(principal)
        definitions = await self.attribute_definitions()
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            store = ProductStore(uow.session)
            existing = await store.find_by_code(str(fields["code"]))
            if existing is None:
                owners = await store.product_ids_for_skus([v.sku for v in fields["variants"]])
                if len(set(owners.values())) > 1:
                    raise FailedPrecondition(
                        "SKUs belong to several products", reason="SKU_CONFLICT"
                    )
                if owners:
                    existing = await store.get(next(iter(owners.values())), for_update=True)
            if existing is None:
                product = d.Product(id=uuid.uuid4(), created_at=now, updated_at=now, **fields)
                d.validate_product(product, definitions)
                if status is not None and status is not d.ProductStatus.DRAFT:
                    product = product.transition(status, now)
            else:
                product = replace(existing, **fields, version=existing.version + 1, updated_at=now)
                d.validate_product(product, definitions)
                if status is not None:
                    product = product.transition(status, now)
            await self._check_references(uow, product)
            titles = await CategoryStore(uow.session).titles_of(product.category_ids)
            await store.save(product, category_titles=titles, is_new=existing is None)
            self._announce(uow, existing, product, definitions)
            if regular_prices_jpy:
                prices = PriceStore(uow.session)
                current = await prices.for_skus(list(regular_prices_jpy), "JPY")
                for sku, amount in regular_prices_jpy.items():
                    if sku not in product.skus:
                        raise InvalidArgument(
                            f"price for SKU {sku} not in the product",
                            reason="SKU_NOT_FOUND",
                            field_violations=[
                                FieldViolation(f"regular_prices_jpy[{sku}]", "no such SKU")
                            ],
                        )
                    regular = next(
                        (
                            e
                            for e in current.get(sku, [])
                            if e.price_list == "regular" and e.channel == 0 and not e.time_limited
                        ),
                        None,
                    )
                    entry = d.PriceEntry(
                        id=regular.id if regular else uuid.uuid4(),
                        sku=sku,
                        price=d.Money("JPY", d.Decimal(amount)),
                    )
                    d.validate_price(entry, f"regular_prices_jpy[{sku}]")
                    await prices.upsert(entry)
            await uow.commit()
        self.caches.forget(product.id)
        return existing is None


def _changed_fields(before: d.Product | None, after: d.Product) -> list[str]:
    names = [
        "code",
        "titles",
        "descriptions",
        "brand",
        "status",
        "category_ids",
        "channels",
        "tax_class",
        "attributes",
        "media",
        "variants",
    ]
    if before is None:
        return names
    return [n for n in names if getattr(before, n) != getattr(after, n)]
