"""Catalog use cases: one method per command or query; each owns its transaction."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.catalog import convert
from services.catalog import domain as d
from services.catalog.search import SearchPage, SearchQuery, facet_attribute_keys
from services.catalog.search import search as run_search
from services.catalog.store import AttributeStore, CategoryStore, PriceStore, ProductStore
from tenpo.catalog.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    check_etag,
)
from tenpo.kit.idempotency import idempotent

WRITE_SCOPE = "catalog:write"
MAX_BATCH = 200


@dataclass(frozen=True)
class Viewer:
    """Who is looking: staff see every state and channel; others their channel's published
    products."""

    staff: bool
    channel: int

    @classmethod
    def of(cls, principal: Principal) -> Viewer:
        return cls(staff=principal.is_staff, channel=principal.channel or d.DEFAULT_CHANNEL)


def require_writer(principal: Principal) -> None:
    """Only back-office staff (or a trusted service) with catalog:write change the catalog."""
    principal.require_authenticated()
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    principal.require_scope(WRITE_SCOPE)


class ProductCache:
    """Hot products by id, for GetProduct at device scale. Entries are dropped on this
    process's own writes and on product events from other replicas; a TTL bounds staleness
    if an invalidation is ever missed."""

    def __init__(self, *, size: int = 20_000, ttl_seconds: float = 60.0) -> None:
        self._entries: OrderedDict[uuid.UUID, tuple[float, d.Product]] = OrderedDict()
        self._size = size
        self._ttl = ttl_seconds

    def get(self, product_id: uuid.UUID) -> d.Product | None:
        entry = self._entries.get(product_id)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[product_id]
            return None
        return entry[1]

    def put(self, product: d.Product) -> None:
        self._entries[product.id] = (time.monotonic() + self._ttl, product)
        self._entries.move_to_end(product.id)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def invalidate(self, product_id: uuid.UUID) -> None:
        self._entries.pop(product_id, None)

    def clear(self) -> None:
        self._entries.clear()


class Catalog:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache_ttl_seconds: float = 60.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.cache = ProductCache(ttl_seconds=cache_ttl_seconds)
        self._definitions: dict[str, d.AttributeDefinition] | None = None
        # Category titles for facet labels: read on every search, changed rarely.
        self._category_titles: tuple[float, dict[str, Mapping[str, str]]] | None = None

    # ------------------------------------------------------------------------ reading

    async def attribute_definitions(self) -> dict[str, d.AttributeDefinition]:
        if self._definitions is None:
            async with self.db.unit_of_work() as uow:
                self._definitions = await AttributeStore(uow.session).all()
        return self._definitions

    async def get_product(self, product_id: uuid.UUID, viewer: Viewer) -> d.Product:
        product = self.cache.get(product_id)
        if product is None:
            async with self.db.unit_of_work() as uow:
                product = await ProductStore(uow.session).get(product_id)
            if product is None:
                raise _product_not_found(product_id)
            self.cache.put(product)
        if not product.is_visible_to(staff=viewer.staff, channel=viewer.channel):
            # Invisible is indistinguishable from absent (AIP-193).
            raise _product_not_found(product_id)
        return product

    async def batch_get_products(self, ids: Sequence[uuid.UUID], viewer: Viewer) -> list[d.Product]:
        _bounded("ids", ids, 100)
        missing = [i for i in ids if self.cache.get(i) is None]
        if missing:
            async with self.db.unit_of_work() as uow:
                for product in (await ProductStore(uow.session).get_many(missing)).values():
                    self.cache.put(product)
        found = [self.cache.get(i) for i in dict.fromkeys(ids)]
        return [
            p
            for p in found
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
        _bounded("skus", skus, MAX_BATCH)
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

    async def search(self, query: SearchQuery) -> SearchPage:
        definitions = await self.attribute_definitions()
        async with self.db.unit_of_work() as uow:
            return await run_search(uow.session, query, facet_attribute_keys(definitions))

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
            return await self.get_product(uuid.UUID(created.value), Viewer(staff=True, channel=0))
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
                raise _product_not_found(product_id)
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
        self.cache.invalidate(product_id)
        return updated

    async def delete_product(self, principal: Principal, product_id: uuid.UUID, etag: str) -> None:
        """Drafts are deleted; a product that was ever published is archived, since orders
        refer to it."""
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = ProductStore(uow.session)
            current = await store.get(product_id, for_update=True)
            if current is None:
                raise _product_not_found(product_id)
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
        self.cache.invalidate(product_id)

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
        _bounded("relations", new, 200)
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
                raise _product_not_found(product_id)
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

    # --------------------------------------------------------------------- categories

    async def list_categories(self, parent_id: uuid.UUID | None) -> list[d.Category]:
        async with self.db.unit_of_work() as uow:
            everything = await CategoryStore(uow.session).all()
        if parent_id is not None:
            return [c for c in everything if c.parent_id == parent_id]
        return _tree_order(everything)

    async def category_titles(self) -> dict[str, Mapping[str, str]]:
        """Titles of every category by id, cached for half a minute (labels only)."""
        now = time.monotonic()
        if self._category_titles is None or self._category_titles[0] < now:
            titles = {str(c.id): c.titles for c in await self.list_categories(None)}
            self._category_titles = (now + 30.0, titles)
        return self._category_titles[1]

    async def get_category(self, category_id: uuid.UUID) -> d.Category:
        async with self.db.unit_of_work() as uow:
            category = await CategoryStore(uow.session).get(category_id)
        if category is None:
            raise NotFound("no such category", reason="CATEGORY_NOT_FOUND")
        return category

    async def create_category(self, principal: Principal, category: d.Category) -> d.Category:
        require_writer(principal)
        d.validate_category(category)
        async with self.db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            if category.parent_id and await store.get(category.parent_id) is None:
                raise FailedPrecondition(
                    "parent category not found",
                    reason="CATEGORY_NOT_FOUND",
                    field_violations=[FieldViolation("category.parent_id", "no such category")],
                )
            if await store.slug_taken(category.parent_id, category.slug, None):
                raise AlreadyExists(
                    "a sibling has this slug",
                    reason="CATEGORY_SLUG_TAKEN",
                    field_violations=[FieldViolation("category.slug", "already used by a sibling")],
                )
            await store.insert(category)
            await uow.commit()
        self._category_titles = None
        return category

    async def update_category(
        self, principal: Principal, category_id: uuid.UUID, changes: Mapping[str, Any], etag: str
    ) -> d.Category:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            current = await store.get(category_id, for_update=True)
            if current is None:
                raise NotFound("no such category", reason="CATEGORY_NOT_FOUND")
            check_etag(etag, current.etag, "category")
            updated = replace(current, **changes, version=current.version + 1)
            d.validate_category(updated)
            if updated.slug != current.slug and await store.slug_taken(
                updated.parent_id, updated.slug, category_id
            ):
                raise AlreadyExists("a sibling has this slug", reason="CATEGORY_SLUG_TAKEN")
            await store.update(updated)
            await uow.commit()
        self._category_titles = None
        return updated

    async def move_category(
        self, principal: Principal, category_id: uuid.UUID, new_parent: uuid.UUID | None, etag: str
    ) -> d.Category:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            current = await store.get(category_id, for_update=True)
            if current is None:
                raise NotFound("no such category", reason="CATEGORY_NOT_FOUND")
            check_etag(etag, current.etag, "category")
            parents = await store.parents()
            if new_parent is not None and new_parent not in parents:
                raise FailedPrecondition("new parent not found", reason="CATEGORY_NOT_FOUND")
            d.ensure_no_cycle(category_id, new_parent, parents)
            if await store.slug_taken(new_parent, current.slug, category_id):
                raise AlreadyExists(
                    "the new parent already has a child with this slug",
                    reason="CATEGORY_SLUG_TAKEN",
                )
            moved = replace(current, parent_id=new_parent, version=current.version + 1)
            await store.update(moved)
            await uow.commit()
        self._category_titles = None
        return moved

    async def delete_category(self, principal: Principal, category_id: uuid.UUID) -> None:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            if await store.get(category_id, for_update=True) is None:
                raise NotFound("no such category", reason="CATEGORY_NOT_FOUND")
            if await store.is_in_use(category_id):
                raise FailedPrecondition(
                    "the category still has children or products", reason="CATEGORY_NOT_EMPTY"
                )
            await store.delete(category_id)
            await uow.commit()
        self._category_titles = None

    # --------------------------------------------------------------------- attributes

    async def create_attribute_definition(
        self, principal: Principal, definition: d.AttributeDefinition
    ) -> d.AttributeDefinition:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            if not await AttributeStore(uow.session).insert(definition):
                raise AlreadyExists(f"attribute {definition.key} exists", reason="ATTRIBUTE_EXISTS")
            await uow.commit()
        self._definitions = None
        return definition

    # ------------------------------------------------------------------------- prices

    async def resolve_prices(
        self, skus: Sequence[str], *, channel: int, currency: str, at: datetime | None
    ) -> list[tuple[str, d.PriceResolution, d.TaxClass]]:
        _bounded("skus", skus, MAX_BATCH)
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
        _bounded("prices", entries, 500)
        for i, entry in enumerate(entries):
            d.validate_price(entry, f"prices[{i}]")
        async with self.db.unit_of_work() as uow:

            async def apply() -> wrappers_pb2.StringValue:
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
                return wrappers_pb2.StringValue(value="ok")

            await idempotent(
                uow,
                scope="SetPrices",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=apply,
            )
            await uow.commit()
        return list(entries)

    async def list_prices(self, principal: Principal, sku: str) -> list[d.PriceEntry]:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            return (await PriceStore(uow.session).for_skus([sku])).get(sku, [])

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

    # ------------------------------------------------------------------------- import

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
                            f"price for SKU {sku} not in the product", reason="SKU_NOT_FOUND"
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
        self.cache.invalidate(product.id)
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


def _tree_order(categories: Sequence[d.Category]) -> list[d.Category]:
    children: dict[uuid.UUID | None, list[d.Category]] = {}
    for c in categories:
        children.setdefault(c.parent_id, []).append(c)
    ordered: list[d.Category] = []

    def walk(parent: uuid.UUID | None) -> None:
        for child in sorted(children.get(parent, []), key=lambda c: (c.position, c.slug)):
            ordered.append(child)
            walk(child.id)

    walk(None)
    return ordered


def _bounded(name: str, values: Sequence[Any], limit: int) -> None:
    if len(values) > limit:
        raise InvalidArgument(
            f"at most {limit} {name}",
            reason="TOO_MANY_ITEMS",
            field_violations=[FieldViolation(name, f"at most {limit}")],
        )


def _product_not_found(product_id: uuid.UUID) -> NotFound:
    return NotFound("no such product", reason="PRODUCT_NOT_FOUND", metadata={"id": str(product_id)})
