"""The import CLI: streaming readers that report bad rows and go on, the progress display,
and imports end to end through the gRPC stream (bad rows in the middle, more categories
than one page)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest

from services.catalog import domain as d
from services.catalog.app import import_command
from services.catalog.config import CatalogSettings
from services.catalog.importer import (
    ImportFileError,
    Progress,
    RowFailure,
    Tally,
    import_file,
    read_csv,
    read_jsonl,
)
from services.catalog.store import CategoryStore
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.kit.db import Database
from tenpo.kit.server import ServiceHost
from tests.services.conftest import Tokens, gateway_channel

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE = EXAMPLES / "products.csv"
HEADER = "code,sku,title_ja,categories,channels,status,jan,price_jpy\n"


def failures_of(items: list[object]) -> list[tuple[int, str, str]]:
    return [(f.row_number, f.field, f.reason) for f in items if isinstance(f, RowFailure)]


def products_of(items: list[object]) -> list[str]:
    return [r.product.code for r in items if isinstance(r, api.ImportProductsRequest)]


def test_csv_rows_group_into_products_by_code() -> None:
    with EXAMPLE.open(encoding="utf-8") as handle:
        requests = list(read_csv(handle, {"sneakers": "cat-1", "t-shirts": "cat-2"}))
    assert products_of(requests) == ["IMP-SNK-01", "IMP-TEE-01"]
    sneakers = requests[0].product  # type: ignore[union-attr]
    assert [v.sku for v in sneakers.variants] == ["IMP-SNK-01-260", "IMP-SNK-01-270"]
    assert list(sneakers.category_ids) == ["cat-1"]
    assert sneakers.status == pb.PRODUCT_STATUS_PUBLISHED
    assert requests[0].regular_prices_jpy["IMP-SNK-01-270"] == 7990  # type: ignore[union-attr]
    assert requests[1].product.titles.translations["ja"] == "藍染めTシャツ"  # type: ignore[union-attr]


def test_bad_csv_rows_are_reported_one_by_one_and_the_rest_goes_on() -> None:
    rows = [
        "A-1,A-1-S,靴,shoes,WEB|APP,PUBLISHED,,7990",
        'A-1,A-1-M,靴,shoes,WEB|APP,PUBLISHED,,"8,990"',
        "B-1,B-1-S,帽子,shoes,WEB|TV,PUBLISHED,,1000",  # row 4: unknown channel
        "C-1,C-1-S,鞄,shoes,WEB,PUBLISHED,,12.5",  # row 5: not whole yen
        "C-1,C-1-M,鞄,shoes,WEB,PUBLISHED,,1200",
        "D-1,D-1-S,傘,umbrellas,WEB,SOLD,,900",  # row 7: unknown category and status
        ",X-1,?,shoes,WEB,,,1",  # row 8: no code
        "A-1,A-1-L,靴,shoes,WEB,PUBLISHED,,7990",  # row 9: A-1 again, not adjacent
        "E-1,,襟,shoes,WEB,DRAFT,,1",  # row 10: no SKU
        "F-1,F-1-S,服,shoes,KIOSK,DRAFT,,3000",
    ]
    tally = Tally()
    items = list(read_csv(io.StringIO(HEADER + "\n".join(rows) + "\n"), {"shoes": "c1"}, tally))
    assert products_of(items) == ["A-1", "F-1"]
    assert failures_of(items) == [
        (4, "channels", "CHANNEL_UNKNOWN"),
        (5, "price_jpy", "PRICE_INVALID"),
        (7, "categories", "CATEGORY_NOT_FOUND"),
        (7, "status", "STATUS_INVALID"),
        (8, "code", "REQUIRED_FIELD_MISSING"),
        (9, "code", "ROWS_NOT_ADJACENT"),
        (10, "sku", "REQUIRED_FIELD_MISSING"),
    ]
    a = items[0]
    assert isinstance(a, api.ImportProductsRequest)
    assert dict(a.regular_prices_jpy) == {"A-1-S": 7990, "A-1-M": 8990}
    assert "TV" in next(f.message for f in items if isinstance(f, RowFailure))
    assert tally.rows == len(rows)


def test_bad_json_lines_are_reported_and_the_rest_goes_on() -> None:
    lines = [
        '{"product": {"code": "J-1", "titles": {"translations": {"ja": "靴"}}}}',
        '{"product": {"code": "J-2", "colour": "red"}}',
        "{not json",
        "",
        '{"product": {"code": "J-5"}, "regularPricesJpy": {"J-5-S": "100"}}',
    ]
    items = list(read_jsonl(lines))
    assert products_of(items) == ["J-1", "J-5"]
    assert [(f.row_number, f.code, f.reason) for f in items if isinstance(f, RowFailure)] == [
        (2, "J-2", "ROW_INVALID"),
        (3, "", "ROW_INVALID"),
    ]
    assert [r.row_number for r in items if isinstance(r, api.ImportProductsRequest)] == [1, 5]


def test_a_file_without_the_required_columns_is_refused() -> None:
    with pytest.raises(ImportFileError, match="columns"):
        list(read_csv(io.StringIO("name,price\nx,1\n"), {}))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_redraws_one_line_on_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, interactive=True, interval=1.0, clock=clock)
    clock.now += 2
    progress.update(1000, 0)
    clock.now += 0.5
    progress.update(1500, 0)  # within the interval: not drawn
    progress.say("row 7 X-1: price_jpy: PRICE_INVALID whole yen expected")
    clock.now += 2
    progress.update(4000, 1)
    progress.close()
    assert out.getvalue() == (
        "\r1,000 rows, 500 rows/s, 0 errors\x1b[K"
        "\r\x1b[Krow 7 X-1: price_jpy: PRICE_INVALID whole yen expected\n"
        "\r4,000 rows, 889 rows/s, 1 errors\x1b[K\n"
    )


def test_progress_in_a_log_is_plain_periodic_lines() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, interactive=False, interval=10.0, clock=clock)
    for second in range(1, 26):
        clock.now += 1
        progress.update(second * 100, 0)
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "progress: 100 rows, 100 rows/s, 0 errors",
        "progress: 1,100 rows, 100 rows/s, 0 errors",
        "progress: 2,100 rows, 100 rows/s, 0 errors",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


async def create_categories(
    catalog: catalog_service_pb2_grpc.CatalogServiceStub, tokens: Tokens, *slugs: str
) -> None:
    for slug in slugs:
        await catalog.CreateCategory(
            api.CreateCategoryRequest(
                category=pb.Category(slug=slug, titles=pb.LocalizedText(translations={"ja": slug}))
            ),
            metadata=tokens.staff,
        )


async def test_csv_import_through_the_service(
    catalog: catalog_service_pb2_grpc.CatalogServiceStub,
    catalog_host: ServiceHost,  # type: ignore[type-arg]
    tokens: Tokens,
) -> None:
    await create_categories(catalog, tokens, "sneakers", "t-shirts")
    token = tokens.staff[0][1].removeprefix("Bearer ")
    out = io.StringIO()
    report = await import_file(EXAMPLE, f"127.0.0.1:{catalog_host.port}", token, out=out)
    assert (report.created, report.failed, report.rows) == (2, 0, 3), report.failures
    found = await catalog.LookupByBarcode(
        api.LookupByBarcodeRequest(code="4912345990037"), metadata=gateway_channel("APP")
    )
    assert found.product.code == "IMP-TEE-01"
    assert found.product.category_ids


async def test_jsonl_example_imports_through_the_service(
    catalog: catalog_service_pb2_grpc.CatalogServiceStub,
    catalog_host: ServiceHost,  # type: ignore[type-arg]
    tokens: Tokens,
) -> None:
    token = tokens.staff[0][1].removeprefix("Bearer ")
    path = EXAMPLES / "products.jsonl"
    report = await import_file(path, f"127.0.0.1:{catalog_host.port}", token, out=io.StringIO())
    assert (report.created, report.failed, report.rows) == (2, 0, 2), report.failures
    prices = (await catalog.GetPrices(api.GetPricesRequest(skus=["IMP-SCF-01-NV"]))).prices
    assert prices[0].amount.units == 5500


async def test_bad_rows_in_the_middle_are_listed_and_the_exit_code_says_so(
    catalog: catalog_service_pb2_grpc.CatalogServiceStub,
    catalog_host: ServiceHost,  # type: ignore[type-arg]
    tokens: Tokens,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await create_categories(catalog, tokens, "shoes")
    rows = [f"GOOD-{n},GOOD-{n}-S,靴{n},shoes,WEB,PUBLISHED,,{1000 + n}" for n in range(6)]
    rows[2] = "BAD-CH,BAD-CH-S,靴,shoes,WEB|TV,PUBLISHED,,1000"  # refused by the file check
    rows[3] = "BAD CODE,BAD-CODE-S,靴,shoes,WEB,PUBLISHED,,1000"  # refused by the service
    rows[4] = "BAD-PRICE,BAD-PRICE-S,靴,shoes,WEB,PUBLISHED,,¥1000"
    path = tmp_path / "products.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    settings = CatalogSettings(grpc_port=catalog_host.port)
    token = tokens.staff[0][1].removeprefix("Bearer ")

    # Batches of two: the service's answer for the first batches arrives mid-file.
    code = await import_command(settings, [str(path), "--token", token, "--batch-size", "2"])
    output = capsys.readouterr().out
    assert code == 1
    assert "row 4 BAD-CH: channels: CHANNEL_UNKNOWN" in output
    assert "row 5 BAD CODE: product.code: PRODUCT_INVALID" in output
    assert "row 6 BAD-PRICE: price_jpy: PRICE_INVALID" in output
    assert output.rstrip().endswith("created 3, updated 0, failed 3")
    for n in (0, 1, 5):
        got = await catalog.BatchGetVariants(api.BatchGetVariantsRequest(skus=[f"GOOD-{n}-S"]))
        assert len(got.variants) == 1
    prices = (await catalog.GetPrices(api.GetPricesRequest(skus=["GOOD-5-S"]))).prices
    assert prices[0].amount.units == 1005

    path.write_text(HEADER + rows[0] + "\n", encoding="utf-8")
    assert await import_command(settings, [str(path), "--token", token]) == 0
    assert capsys.readouterr().out.rstrip().endswith("created 0, updated 1, failed 0")
    assert await import_command(settings, [str(tmp_path / "missing.csv"), "--token", token]) == 2


async def test_every_category_resolves_even_beyond_the_first_page(
    catalog: catalog_service_pb2_grpc.CatalogServiceStub,
    catalog_host: ServiceHost,  # type: ignore[type-arg]
    tokens: Tokens,
    database_url: str,
    tmp_path: Path,
) -> None:
    db = Database(database_url)
    try:
        async with db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            for n in range(501):  # one more than a page of ListCategories
                await store.insert(
                    d.Category(uuid.uuid4(), None, f"c-{n:03d}", {"ja": f"分類{n}"}, position=n)
                )
            for parent in ("mens", "womens"):
                parent_id = uuid.uuid4()
                await store.insert(d.Category(parent_id, None, parent, {"ja": parent}, 999))
                await store.insert(d.Category(uuid.uuid4(), parent_id, "sale", {"ja": "セール"}))
            await uow.commit()
    finally:
        await db.dispose()
    path = tmp_path / "deep.csv"
    path.write_text(
        HEADER
        + "LAST-1,LAST-1-S,最後,c-500|womens/sale,WEB,PUBLISHED,,500\n"
        + "AMB-1,AMB-1-S,曖昧,sale,WEB,PUBLISHED,,500\n",
        encoding="utf-8",
    )
    token = tokens.staff[0][1].removeprefix("Bearer ")
    report = await import_file(path, f"127.0.0.1:{catalog_host.port}", token, out=io.StringIO())
    assert report.created == 1
    assert [(f.row_number, f.reason) for f in report.failures] == [(3, "CATEGORY_AMBIGUOUS")]
    variant = (
        await catalog.BatchGetVariants(
            api.BatchGetVariantsRequest(skus=["LAST-1-S"]), metadata=tokens.staff
        )
    ).variants[0]
    product = (
        await catalog.GetProduct(
            api.GetProductRequest(id=variant.product_id), metadata=tokens.staff
        )
    ).product
    titles = {
        (await catalog.GetCategory(api.GetCategoryRequest(id=c))).category.slug
        for c in product.category_ids
    }
    assert titles == {"c-500", "sale"}
