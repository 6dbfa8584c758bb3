"""HTTP details of the ASGI layer: 405 names the allowed methods; the probe endpoints."""

from __future__ import annotations

from tests.services.gateway.conftest import WEB_KEY, GatewayFactory, InventoryHandle


async def test_405_carries_allow(start_gateway: GatewayFactory) -> None:
    async with start_gateway(targets={"catalog": "127.0.0.1:9"}) as gw:
        products = await gw.client.put("/v1/products", headers={"x-api-key": WEB_KEY})
        docs = await gw.client.post("/docs")
        missing = await gw.client.put("/v1/nothing-here")
    assert products.status_code == 405
    assert products.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert products.json()["error"]["details"][0]["reason"] == "METHOD_NOT_ALLOWED"
    assert docs.status_code == 405
    assert docs.headers["allow"] == "GET, HEAD, OPTIONS"
    assert missing.status_code == 404
    assert "allow" not in missing.headers


async def test_probe_endpoints_need_no_key_and_ask_no_backend(
    start_gateway: GatewayFactory,
) -> None:
    # The catalog target answers nothing: readiness is the gateway's own, not its backends'
    # (draining turns /readyz to 503 and leaves /livez at 200: test_streams.py).
    async with start_gateway(targets={"catalog": "127.0.0.1:9"}) as gw:
        answers = {path: await gw.client.get(path) for path in ("/readyz", "/healthz", "/livez")}
    assert {path: r.status_code for path, r in answers.items()} == {
        "/readyz": 200,
        "/healthz": 200,
        "/livez": 200,
    }
    assert answers["/readyz"].json() == {"status": "SERVING"}
    assert answers["/livez"].json() == {"status": "ALIVE"}


async def test_head_is_get_without_content(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory
) -> None:
    """Found from outside: HEAD /readyz and /livez (what some load balancers and uptime
    checks send) were 405, so such a probe would take every gateway out of rotation. HEAD
    is now GET without content (RFC 9110) everywhere but on streams, which it would open
    only to drop: those say 405 with Allow."""
    fake_inventory.fake.stock.update({"SKU-A": 5})
    async with start_gateway(targets={"inventory": fake_inventory.target}) as gw:
        heads = {p: await gw.client.head(p) for p in ("/readyz", "/livez", "/openapi.json")}
        full = await gw.client.get("/openapi.json")
        stream = await gw.client.head("/v1/stream/availability", params={"skus": "SKU-A"})
        put = await gw.client.put("/readyz")
    for path, answer in heads.items():
        assert answer.status_code == 200, path
        assert answer.content == b""
        assert answer.headers["content-type"] == "application/json"
    assert heads["/openapi.json"].headers["content-length"] == full.headers["content-length"]
    assert stream.status_code == 405
    assert stream.headers["allow"] == "GET, OPTIONS"
    assert fake_inventory.fake.seen_metadata == []  # no backend stream was opened
    assert put.headers["allow"] == "GET, HEAD, OPTIONS"


def test_render_cache_reuses_json_within_its_byte_budget() -> None:
    from services.gateway.descriptors import HttpBinding, load_schema
    from services.gateway.http import RenderCache
    from services.gateway.routes import build_route
    from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api

    method = load_schema().method("tenpo.catalog.v1.CatalogService.GetProduct")
    assert method is not None
    route = build_route(method, HttpBinding("GET", "/v1/products/{id}", "", "product"))

    def raw(i: int) -> bytes:
        return catalog_api.GetProductResponse(
            product={"id": f"p-{i}", "code": "X" * 40}
        ).SerializeToString()

    cache = RenderCache(max_bytes=8 * 150)  # an entry (~110 bytes) may take an eighth
    first = cache.get(route, raw(0))
    assert first == b'{"id":"p-0","code":"' + b"X" * 40 + b'"}'
    assert cache.get(route, raw(0)) is first  # rendered once
    for i in range(1, 30):
        cache.get(route, raw(i))
        cache.get(route, raw(0))  # keeps p-0 the most recently used
    assert 0 < cache.bytes_held <= 8 * 150
    assert cache.get(route, raw(0)) is first  # never evicted: least recently used go first
    assert RenderCache(max_bytes=0).get(route, raw(1)) == cache.get(route, raw(1))  # off


async def test_requests_are_measured_per_route_template_and_status(
    start_gateway: GatewayFactory,
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tenpo.kit.metrics import HTTP_SERVER_DURATION, HttpMetrics

    reader = InMemoryMetricReader()
    async with start_gateway(targets={"catalog": "127.0.0.1:9"}) as gw:
        gw.gateway.app.metrics = HttpMetrics(MeterProvider(metric_readers=[reader]))
        for _ in range(2):
            assert (await gw.client.get("/healthz")).status_code == 200
        product = await gw.client.get("/v1/products/p-secret-42", headers={"x-api-key": WEB_KEY})
        missing = await gw.client.get("/v1/nothing-here")
    data = reader.get_metrics_data()
    assert data is not None
    counts = {
        (
            point.attributes["http.request.method"],
            point.attributes["http.route"],
            point.attributes["http.response.status_code"],
        ): point.count
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == HTTP_SERVER_DURATION
        for point in metric.data.data_points
    }
    assert counts[("GET", "/healthz", 200)] == 2
    assert counts[("GET", "unmatched", missing.status_code)] == 1
    # The template, never the concrete path (ids and e-mails stay out of metrics).
    (product_route,) = [r for m, r, s in counts if s == product.status_code and "products" in r]
    assert "{" in product_route
    assert "p-secret-42" not in str(counts)
