"""CatalogService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal

from grpc.aio import ServicerContext

from services.catalog import convert
from services.catalog import domain as d
from services.catalog.usecases import Catalog, Viewer
from services.catalog.usecases.imports import ImportRow, ImportRowData
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc as api_grpc
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.common.v1 import common_pb2
from tenpo.kit import wire
from tenpo.kit.auth import current_principal
from tenpo.kit.errors import FieldViolation, InvalidArgument, NotFound
from tenpo.kit.fieldmask import update_paths
from tenpo.kit.pagination import PageTokenCodec, page_size

#: Category fields UpdateCategory may change (the proto and domain names agree).
CATEGORY_UPDATABLE = ("titles", "slug", "position")


def _language(requested: str, context: ServicerContext) -> str:
    accept = next(
        (str(v) for k, v in (context.invocation_metadata() or ()) if k == "accept-language"), ""
    )
    return d.pick_language(requested, accept)


def _status(value: int, path: str) -> d.ProductStatus | None:
    if value == pb.PRODUCT_STATUS_UNSPECIFIED:
        return None
    try:
        return d.ProductStatus(value)
    except ValueError:
        raise InvalidArgument(
            "unknown status",
            reason="STATUS_INVALID",
            field_violations=[FieldViolation(path, "unknown")],
        ) from None


class CatalogServicer(api_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog, page_tokens: PageTokenCodec) -> None:
        self.catalog = catalog
        self.page_tokens = page_tokens
        self._render = catalog.render

    # ----------------------------------------------------------------------- products

    async def GetProduct(
        self, request: api.GetProductRequest, context: ServicerContext
    ) -> api.GetProductResponse:
        return await self.catalog.get_product_response(
            convert.parse_id(request.id, "id"),
            Viewer.of(current_principal()),
            _language(request.language_code, context),
        )

    async def BatchGetProducts(
        self, request: api.BatchGetProductsRequest, context: ServicerContext
    ) -> api.BatchGetProductsResponse:
        ids = [convert.parse_id(value, f"ids[{i}]") for i, value in enumerate(request.ids)]
        found = await self.catalog.batch_get_products(ids, Viewer.of(current_principal()))
        language = _language(request.language_code, context)
        return api.BatchGetProductsResponse(
            products=[await self._render(p, language) for p in found]
        )

    async def ListProducts(
        self, request: api.ListProductsRequest, context: ServicerContext
    ) -> api.ListProductsResponse:
        viewer = Viewer.of(current_principal())
        size = page_size(request.page_size, default=50, maximum=200)
        status = _status(request.status, "status")
        category = (
            convert.parse_id(request.category_id, "category_id") if request.category_id else None
        )
        shape = {
            "c": request.category_id,
            "s": int(status or 0),
            "v": viewer.staff,
            "ch": viewer.channel,
        }
        position = self.page_tokens.decode_keyset(request.page_token, query=shape)
        after = (position[0], convert.parse_id(position[1], "page_token")) if position else None
        found = await self.catalog.list_products(
            viewer, status=status, category_id=category, after=after, limit=size + 1
        )
        page, next_token = self.page_tokens.keyset_page(
            found, size, lambda p: (p.created_at, p.id), query=shape
        )
        language = _language(request.language_code, context)
        return api.ListProductsResponse(
            products=[await self._render(p, language) for p in page], next_page_token=next_token
        )

    async def CreateProduct(
        self, request: api.CreateProductRequest, context: ServicerContext
    ) -> api.CreateProductResponse:
        fields = convert.product_fields(request.product)
        status = _status(request.product.status, "product.status") or d.ProductStatus.DRAFT
        product = await self.catalog.create_product(
            current_principal(), fields, status, request_id=request.request_id, request=request
        )
        return api.CreateProductResponse(product=await self._render(product, d.DEFAULT_LANGUAGE))

    async def UpdateProduct(
        self, request: api.UpdateProductRequest, context: ServicerContext
    ) -> api.UpdateProductResponse:
        product_id = convert.parse_id(request.product.id, "product.id")
        fields = convert.product_fields(request.product)
        paths = update_paths(request.update_mask.paths, request.product, convert.MASKABLE_FIELDS)
        changes = {
            convert.MASKABLE_FIELDS[p]: fields[convert.MASKABLE_FIELDS[p]]
            for p in paths
            if p != "status"
        }
        status = _status(request.product.status, "product.status") if "status" in paths else None
        product = await self.catalog.update_product(
            current_principal(), product_id, changes, etag=request.product.etag, status=status
        )
        return api.UpdateProductResponse(product=await self._render(product, d.DEFAULT_LANGUAGE))

    async def DeleteProduct(
        self, request: api.DeleteProductRequest, context: ServicerContext
    ) -> api.DeleteProductResponse:
        await self.catalog.delete_product(
            current_principal(), convert.parse_id(request.id, "id"), request.etag
        )
        return api.DeleteProductResponse()

    async def GetVariant(
        self, request: api.GetVariantRequest, context: ServicerContext
    ) -> api.GetVariantResponse:
        found = await self.catalog.get_variants([request.sku], Viewer.of(current_principal()))
        if not found:
            raise NotFound("no such SKU", reason="SKU_NOT_FOUND", metadata={"sku": request.sku})
        variant, product = found[0]
        definitions = await self.catalog.attribute_definitions()
        return api.GetVariantResponse(
            variant=convert.variant(
                variant, product.id, definitions, _language(request.language_code, context)
            )
        )

    async def BatchGetVariants(
        self, request: api.BatchGetVariantsRequest, context: ServicerContext
    ) -> api.BatchGetVariantsResponse:
        found = await self.catalog.get_variants(list(request.skus), Viewer.of(current_principal()))
        definitions = await self.catalog.attribute_definitions()
        language = _language(request.language_code, context)
        return api.BatchGetVariantsResponse(
            variants=[convert.variant(v, p.id, definitions, language) for v, p in found]
        )

    async def LookupByBarcode(
        self, request: api.LookupByBarcodeRequest, context: ServicerContext
    ) -> api.LookupByBarcodeResponse:
        variant, product, matched = await self.catalog.lookup_barcode(
            request.code, Viewer.of(current_principal())
        )
        language = _language(request.language_code, context)
        definitions = await self.catalog.attribute_definitions()
        return api.LookupByBarcodeResponse(
            variant=convert.variant(variant, product.id, definitions, language),
            product=await self._render(product, language),
            matched_type=int(matched),  # type: ignore[arg-type]
        )

    async def SearchProducts(
        self, request: api.SearchProductsRequest, context: ServicerContext
    ) -> api.SearchProductsResponse:
        viewer = Viewer.of(current_principal())
        query = self.catalog.search_query(
            viewer,
            page_size=request.page_size,
            text=request.query,
            channel=wire.optional_enum(common_pb2.Channel, request.channel, "channel") or 0,
            currency=request.currency_code,
            category_ids=[
                convert.parse_id(c, f"category_ids[{i}]")
                for i, c in enumerate(request.category_ids)
            ],
            brands=list(request.brands),
            attribute_filters=[(f.key, list(f.values)) for f in request.attribute_filters],
            min_price=request.min_price,
            max_price=request.max_price,
            sort=int(request.sort),
        )
        cursor = self.page_tokens.decode(request.page_token, query=query.fingerprint())
        offset = int(cursor.get("o", 0))
        language = _language(request.language_code, context)
        found = await self.catalog.search(query.at_offset(offset), viewer, language)
        response = api.SearchProductsResponse(total_size=found.total)
        for product, from_price in found.hits:
            result = api.SearchResult(product=await self._render(product, language))
            if from_price is not None:
                result.from_price.CopyFrom(
                    pb.ResolvedPrice(
                        amount=convert.money(d.Money(query.currency, Decimal(from_price))),
                        tax_class=int(product.tax_class),  # type: ignore[arg-type]
                        tax_rate_percent=float(product.tax_class.rate_percent),
                    )
                )
            response.results.append(result)
        if found.next_offset is not None:
            response.next_page_token = self.page_tokens.encode(
                {"o": found.next_offset}, query=query.fingerprint()
            )
        response.facets.extend(
            api.Facet(
                field=facet.field,
                values=[
                    api.FacetValue(value=v.value, label=v.label, count=v.count)
                    for v in facet.values
                ],
            )
            for facet in found.facets
        )
        return response

    async def ListRelatedProducts(
        self, request: api.ListRelatedProductsRequest, context: ServicerContext
    ) -> api.ListRelatedProductsResponse:
        product_id = convert.parse_id(request.product_id, "product_id")
        types = [
            wire.required_enum(d.RelationType, t, f"types[{i}]")
            for i, t in enumerate(request.types)
            if t
        ]
        size = page_size(request.page_size, default=20, maximum=100)
        related = await self.catalog.related_products(
            product_id, types, Viewer.of(current_principal()), size
        )
        language = _language(request.language_code, context)
        return api.ListRelatedProductsResponse(
            related=[
                api.RelatedProduct(type=int(kind), product=await self._render(p, language))  # type: ignore[arg-type]
                for kind, p in related
            ]
        )

    async def SetProductRelations(
        self, request: api.SetProductRelationsRequest, context: ServicerContext
    ) -> api.SetProductRelationsResponse:
        product_id = convert.parse_id(request.product_id, "product_id")
        new = []
        for i, relation in enumerate(request.relations):
            if relation.product_id and relation.product_id != request.product_id:
                raise InvalidArgument(
                    "relation starts from another product",
                    reason="RELATION_INVALID",
                    field_violations=[
                        FieldViolation(f"relations[{i}].product_id", "must match product_id")
                    ],
                )
            if not relation.type:
                raise InvalidArgument(
                    "relation type is required",
                    reason="REQUIRED_FIELD_MISSING",
                    field_violations=[FieldViolation(f"relations[{i}].type", "is required")],
                )
            new.append(
                (
                    wire.required_enum(d.RelationType, relation.type, f"relations[{i}].type"),
                    convert.parse_id(
                        relation.related_product_id, f"relations[{i}].related_product_id"
                    ),
                    relation.position or i,
                )
            )
        result = await self.catalog.set_relations(
            current_principal(),
            product_id,
            [
                wire.required_enum(d.RelationType, t, f"types[{i}]")
                for i, t in enumerate(request.types)
                if t
            ],
            new,
        )
        return api.SetProductRelationsResponse(
            relations=[
                pb.ProductRelation(
                    product_id=str(product_id),
                    related_product_id=str(r),
                    type=k,  # type: ignore[arg-type]
                    position=p,
                )
                for k, r, p in result
            ]
        )

    # --------------------------------------------------------------------- categories

    async def GetCategory(
        self, request: api.GetCategoryRequest, context: ServicerContext
    ) -> api.GetCategoryResponse:
        category = await self.catalog.categories.get_category(convert.parse_id(request.id, "id"))
        return api.GetCategoryResponse(
            category=convert.category(category, _language(request.language_code, context))
        )

    async def ListCategories(
        self, request: api.ListCategoriesRequest, context: ServicerContext
    ) -> api.ListCategoriesResponse:
        parent = convert.parse_id(request.parent_id, "parent_id") if request.parent_id else None
        size = page_size(request.page_size, default=200, maximum=500)
        shape = {"p": request.parent_id}
        offset = int(self.page_tokens.decode(request.page_token, query=shape).get("o", 0))
        everything = await self.catalog.categories.list_categories(parent)
        language = _language(request.language_code, context)
        response = api.ListCategoriesResponse(
            categories=[convert.category(c, language) for c in everything[offset : offset + size]]
        )
        if offset + size < len(everything):
            response.next_page_token = self.page_tokens.encode({"o": offset + size}, query=shape)
        return response

    async def CreateCategory(
        self, request: api.CreateCategoryRequest, context: ServicerContext
    ) -> api.CreateCategoryResponse:
        message = request.category
        category = d.Category(
            id=uuid.uuid4(),
            parent_id=convert.parse_id(message.parent_id, "category.parent_id")
            if message.parent_id
            else None,
            slug=message.slug.strip(),
            titles={k: v.strip() for k, v in message.titles.translations.items() if v.strip()},
            position=message.position,
        )
        created = await self.catalog.categories.create_category(current_principal(), category)
        return api.CreateCategoryResponse(category=convert.category(created, d.DEFAULT_LANGUAGE))

    async def UpdateCategory(
        self, request: api.UpdateCategoryRequest, context: ServicerContext
    ) -> api.UpdateCategoryResponse:
        message = request.category
        paths = update_paths(request.update_mask.paths, message, CATEGORY_UPDATABLE)
        values = {
            "titles": {k: v.strip() for k, v in message.titles.translations.items() if v.strip()},
            "slug": message.slug.strip(),
            "position": message.position,
        }
        updated = await self.catalog.categories.update_category(
            current_principal(),
            convert.parse_id(message.id, "category.id"),
            {p: values[p] for p in paths},
            message.etag,
        )
        return api.UpdateCategoryResponse(category=convert.category(updated, d.DEFAULT_LANGUAGE))

    async def MoveCategory(
        self, request: api.MoveCategoryRequest, context: ServicerContext
    ) -> api.MoveCategoryResponse:
        moved = await self.catalog.categories.move_category(
            current_principal(),
            convert.parse_id(request.id, "id"),
            convert.parse_id(request.new_parent_id, "new_parent_id")
            if request.new_parent_id
            else None,
            request.etag,
        )
        return api.MoveCategoryResponse(category=convert.category(moved, d.DEFAULT_LANGUAGE))

    async def DeleteCategory(
        self, request: api.DeleteCategoryRequest, context: ServicerContext
    ) -> api.DeleteCategoryResponse:
        await self.catalog.categories.delete_category(
            current_principal(), convert.parse_id(request.id, "id")
        )
        return api.DeleteCategoryResponse()

    # --------------------------------------------------------------------- attributes

    async def CreateAttributeDefinition(
        self, request: api.CreateAttributeDefinitionRequest, context: ServicerContext
    ) -> api.CreateAttributeDefinitionResponse:
        definition = convert.from_attribute_definition(request.attribute_definition)
        created = await self.catalog.create_attribute_definition(current_principal(), definition)
        return api.CreateAttributeDefinitionResponse(
            attribute_definition=convert.attribute_definition(created, d.DEFAULT_LANGUAGE)
        )

    async def ListAttributeDefinitions(
        self, request: api.ListAttributeDefinitionsRequest, context: ServicerContext
    ) -> api.ListAttributeDefinitionsResponse:
        size = page_size(request.page_size, default=100, maximum=500)
        cursor = self.page_tokens.decode(request.page_token, query="attribute_definitions")
        found = await self.catalog.list_attribute_definitions(
            after=str(cursor.get("k", "")), limit=size + 1
        )
        language = _language(request.language_code, context)
        response = api.ListAttributeDefinitionsResponse(
            attribute_definitions=[convert.attribute_definition(v, language) for v in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = self.page_tokens.encode(
                {"k": found[size - 1].key}, query="attribute_definitions"
            )
        return response

    # ------------------------------------------------------------------------- prices

    async def GetPrices(
        self, request: api.GetPricesRequest, context: ServicerContext
    ) -> api.GetPricesResponse:
        principal = current_principal()
        viewer = Viewer.of(principal)
        channel = (
            wire.required_enum(common_pb2.Channel, request.channel, "channel")
            if viewer.staff and request.channel
            else viewer.channel
        )
        resolved = await self.catalog.prices.resolve_prices(
            list(request.skus),
            channel=channel,
            currency=(request.currency_code or "JPY").upper(),
            at=convert.from_timestamp(request.at_time, request.HasField("at_time"), "at_time"),
        )
        return api.GetPricesResponse(
            prices=[
                convert.resolved_price(sku, resolution, tax) for sku, resolution, tax in resolved
            ]
        )

    async def SetPrices(
        self, request: api.SetPricesRequest, context: ServicerContext
    ) -> api.SetPricesResponse:
        entries = [convert.from_price(p, f"prices[{i}]") for i, p in enumerate(request.prices)]
        stored = await self.catalog.prices.set_prices(
            current_principal(), entries, request_id=request.request_id, request=request
        )
        return api.SetPricesResponse(prices=[convert.price(e) for e in stored])

    async def ListPrices(
        self, request: api.ListPricesRequest, context: ServicerContext
    ) -> api.ListPricesResponse:
        size = page_size(request.page_size, default=100, maximum=500)
        shape = {"sku": request.sku}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        after = None
        if cursor:
            valid_from = datetime.fromisoformat(cursor["f"]) if cursor["f"] else None
            after = (str(cursor["c"]), int(cursor["ch"]), valid_from, uuid.UUID(cursor["i"]))
        found = await self.catalog.prices.list_prices(
            current_principal(), request.sku, after=after, limit=size + 1
        )
        response = api.ListPricesResponse(prices=[convert.price(e) for e in found[:size]])
        if len(found) > size:
            last = found[size - 1]
            position = {
                "c": last.price.currency,
                "ch": last.channel,
                "f": last.valid_from.isoformat() if last.valid_from else None,
                "i": str(last.id),
            }
            response.next_page_token = self.page_tokens.encode(position, query=shape)
        return response

    async def DeletePrice(
        self, request: api.DeletePriceRequest, context: ServicerContext
    ) -> api.DeletePriceResponse:
        await self.catalog.prices.delete_price(
            current_principal(), convert.parse_id(request.id, "id")
        )
        return api.DeletePriceResponse()

    # ------------------------------------------------------------------------- import

    async def ImportProducts(
        self, request_iterator: AsyncIterator[api.ImportProductsRequest], context: ServicerContext
    ) -> api.ImportProductsResponse:
        async def rows() -> AsyncIterator[ImportRow]:
            async for message in request_iterator:
                yield ImportRow(message.row_number, message.product.code, _import_reader(message))

        summary = await self.catalog.import_products(current_principal(), rows())
        return api.ImportProductsResponse(
            created=summary.created,
            updated=summary.updated,
            failed=summary.failed,
            failures=[
                api.ImportFailure(
                    row_number=f.row_number,
                    code=f.code,
                    reason=f.reason,
                    message=f.message,
                    field=f.field,
                )
                for f in summary.failures
            ],
        )


def _import_reader(message: api.ImportProductsRequest) -> Callable[[], ImportRowData]:
    def read() -> ImportRowData:
        return ImportRowData(
            fields=convert.product_fields(message.product),
            status=_status(message.product.status, "product.status"),
            regular_prices_jpy=dict(message.regular_prices_jpy),
        )

    return read
