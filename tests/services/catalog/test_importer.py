"""The import CLI's file readers, and a CSV import end to end through the gRPC stream."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from services.catalog.importer import ImportFileError, import_file, read_csv, read_jsonl
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.kit.server import ServiceHost
from tests.services.conftest import Tokens, gateway_channel

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "products.csv"


def test_csv_rows_group_into_products_by_code() -> None:
    with EXAMPLE.open(encoding="utf-8") as handle:
        requests = list(read_csv(handle, {"sneakers": "cat-1"}))
    assert [r.product.code for r in requests] == ["IMP-SNK-01", "IMP-TEE-01"]
    sneakers = requests[0].product
    assert [v.sku for v in sneakers.variants] == ["IMP-SNK-01-260", "IMP-SNK-01-270"]
    assert list(sneakers.category_ids) == ["cat-1"]
    assert sneakers.status == pb.PRODUCT_STATUS_PUBLISHED
    assert requests[0].regular_prices_jpy["IMP-SNK-01-270"] == 7990
    assert requests[1].product.titles.translations["ja"] == "藍染めTシャツ"


def test_unreadable_files_are_refused() -> None:
    with pytest.raises(ImportFileError, match="columns"):
        list(read_csv(io.StringIO("name,price\nx,1\n"), {}))
    with pytest.raises(ImportFileError, match="line 2"):
        list(read_jsonl(['{"product": {"code": "A"}}', "{not json"]))


async def test_csv_import_through_the_service(
    catalog: catalog_service_pb2_grpc.CatalogServiceStub,
    catalog_host: ServiceHost,
    tokens: Tokens,  # type: ignore[type-arg]
) -> None:
    for slug in ("sneakers", "t-shirts"):
        await catalog.CreateCategory(
            api.CreateCategoryRequest(
                category=pb.Category(slug=slug, titles=pb.LocalizedText(translations={"ja": slug}))
            ),
            metadata=tokens.staff,
        )
    token = tokens.staff[0][1].removeprefix("Bearer ")
    summary = await import_file(EXAMPLE, f"127.0.0.1:{catalog_host.port}", token)
    assert (summary.created, summary.failed) == (2, 0), summary.failures
    found = await catalog.LookupByBarcode(
        api.LookupByBarcodeRequest(code="4912345990037"), metadata=gateway_channel("APP")
    )
    assert found.product.code == "IMP-TEE-01"
    assert found.product.category_ids
