"""The generated OpenAPI document: valid, complete, and true to what the gateway serves
(Schemathesis fuzzes it against a real catalog behind the gateway)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from tests.services.conftest import Tokens
from tests.services.gateway.conftest import GatewayFactory, SeededCatalog

SCHEMATHESIS_CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
MIN_REQUESTS = 1000


async def test_document_validates_and_carries_comments(
    seeded_catalog: SeededCatalog, start_gateway: GatewayFactory
) -> None:
    async with start_gateway(targets={"catalog": seeded_catalog.target}) as gw:
        response = await gw.client.get("/openapi.json")
        docs = await gw.client.get("/docs")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    validate(document)  # raises on an invalid OpenAPI 3.1 document
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    get_product = paths["/v1/products/{id}"]["get"]
    assert get_product["operationId"] == "GetProduct"
    assert get_product["description"].startswith("Get one product.")
    # PATCH /v1/products/{product.id} shares the path: its parameter is renamed, documented.
    patch = paths["/v1/products/{id}"]["patch"]
    assert "product.id" in patch["parameters"][0]["description"]
    # Product has REQUIRED fields; an update reads only the masked ones, so its body is the
    # resource without the required list.
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/tenpo.catalog.v1.Product_Update"
    }
    schemas = document["components"]["schemas"]
    product = schemas["tenpo.catalog.v1.Product"]
    assert product["properties"]["categoryIds"]["type"] == "array"
    assert "Merchant's product code" in product["properties"]["code"]["description"]
    assert "PRODUCT_STATUS_PUBLISHED" in schemas["tenpo.catalog.v1.ProductStatus"]["enum"]
    # Query parameters from the request fields left over by the path, lowerCamelCase.
    list_products = paths["/v1/products"]["get"]
    assert {p["name"] for p in list_products["parameters"]} >= {"pageSize", "pageToken"}
    # Errors documented once, in the AIP-193 shape.
    assert get_product["responses"]["404"] == {"$ref": "#/components/responses/Error404"}
    assert schemas["Error"]["properties"]["error"]["required"] == [
        "code",
        "message",
        "status",
        "details",
    ]
    # Only configured backends are exposed; the composed view always is.
    assert not any(p.startswith("/v1/customers") for p in paths)
    assert "/v1/storefront/products/{id}" in paths
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def _schemathesis() -> str:
    found = Path(sys.executable).with_name("schemathesis")
    return str(found) if found.exists() else (shutil.which("schemathesis") or "schemathesis")


# A few hundred generated requests through every backend: minutes on a busy 2-core machine.
@pytest.mark.timeout(900)
async def test_schemathesis_finds_no_server_errors(
    seeded_catalog: SeededCatalog, start_gateway: GatewayFactory, tokens: Tokens, tmp_path: Path
) -> None:
    staff = tokens.mint(
        subject="staff-fuzz",
        kind="staff",
        scopes=["catalog:write", "inventory:write"],
        channel="BACK_OFFICE",
        ttl=timedelta(hours=1),
    )
    async with start_gateway(
        targets={"catalog": seeded_catalog.target},
        principal_rate=100_000,
        principal_burst=100_000,
        access_log=False,
    ) as gw:
        report = tmp_path / "report.json"
        process = await asyncio.create_subprocess_exec(
            _schemathesis(),
            "run",
            f"{gw.base_url}/openapi.json",
            "--checks",
            SCHEMATHESIS_CHECKS,
            "--max-examples",
            "20",
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",
            "--seed",
            "20261123",
            "--no-shrink",
            "--generation-with-security-parameters",
            "false",
            "--generation-database",
            "none",
            "--suppress-health-check",
            "all",
            "--header",
            f"Authorization: Bearer {staff}",
            "--request-timeout",
            "10",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        output, _ = await process.communicate()
        served = gw.gateway.app.requests_served
        statuses = dict(gw.gateway.app.status_counts)
    text = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    Path("/tmp/schemathesis-gateway.txt").write_text(text)
    assert process.returncode == 0, text[-6000:]
    assert served >= MIN_REQUESTS, f"only {served} requests\n{text[-3000:]}"
    assert not [s for s in statuses if s >= 500], statuses
    if report.exists():
        json.loads(report.read_text())  # the run report is well-formed
