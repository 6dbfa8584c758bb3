"""The demo touchpoints' static serving: on in development only, only listed file types
inside the examples folder, every page under a same-origin CSP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.gateway.config import EXAMPLES_DIR, GatewaySettings
from services.gateway.examples import EXAMPLES_CSP
from tests.services.gateway.conftest import GatewayFactory

PRODUCTION = {
    "environment": "production",
    "auth_jwks_url": "https://auth.example/.well-known/jwks.json",
    "page_token_secret": "s" * 40,
    "channel_assertion_secret": "c" * 40,
    "cors_allowed_origins": ["https://shop.example"],
    "publishable_keys": {"pk_live_web_1": "WEB"},
}


def test_examples_are_off_in_production_and_cannot_be_turned_on() -> None:
    assert GatewaySettings(**PRODUCTION).serve_examples is False
    with pytest.raises(ValidationError, match="serve_examples is refused"):
        GatewaySettings(**PRODUCTION | {"serve_examples": True})
    test = GatewaySettings(environment="test", publishable_keys={"pk_test_web_1": "WEB"})
    assert test.serve_examples is False
    assert GatewaySettings().serve_examples is True  # development


def test_the_pages_are_in_the_source_tree() -> None:
    for page in ("index.html", "shop/index.html", "kiosk/index.html", "mirror/index.html"):
        assert (EXAMPLES_DIR / page).is_file(), page
    for page in ("shelf/index.html", "shelf/app.js"):
        assert (EXAMPLES_DIR / page).is_file(), page
    for page in ("staff/index.html", "inbox/index.html", "lib/api.js"):
        assert (EXAMPLES_DIR / page).is_file(), page


def test_the_pages_hold_no_secret() -> None:
    # Publishable keys only: no client secret, token or demo password in what is served.
    secrets = re.compile(r"cs_[\w-]{20,}|eyJ[\w-]{20,}|minatoya-demo-\d+|sk_\w+")
    served = [f for f in EXAMPLES_DIR.rglob("*") if f.suffix in (".html", ".js", ".css")]
    assert len(served) >= 10
    for file in served:
        assert not secrets.search(file.read_text()), file


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "examples"
    (root / "shop").mkdir(parents=True)
    (root / "index.html").write_text("<h1>index</h1>")
    (root / "shop" / "index.html").write_text("<h1>shop</h1>")
    (root / "shop" / "app.js").write_text("export const x = 1;")
    (root / "products.csv").write_text("code,title\n")
    (root / ".env").write_text("SECRET=1\n")
    (tmp_path / "outside.html").write_text("<h1>outside</h1>")
    return root


async def test_pages_are_served_with_a_same_origin_csp(
    start_gateway: GatewayFactory, site: Path
) -> None:
    async with start_gateway(examples_dir=site) as gw:
        bare = await gw.client.get("/examples")
        index = await gw.client.get("/examples/")
        shop = await gw.client.get("/examples/shop/")
        script = await gw.client.get("/examples/shop/app.js")
        # Edited while the gateway runs: the next request sees it.
        (site / "shop" / "index.html").write_text("<h1>shop v2</h1>")
        edited = await gw.client.get("/examples/shop/index.html")
    assert bare.status_code == 308
    assert bare.headers["location"] == "/examples/"
    assert index.status_code == 200
    assert index.text == "<h1>index</h1>"
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert index.headers["content-security-policy"] == EXAMPLES_CSP.decode()
    assert "'unsafe-inline'" not in index.headers["content-security-policy"]
    assert index.headers["x-content-type-options"] == "nosniff"
    assert shop.text == "<h1>shop</h1>"
    assert script.headers["content-type"].startswith("text/javascript")
    assert edited.text == "<h1>shop v2</h1>"


@pytest.mark.parametrize(
    "path",
    [
        "/examples/products.csv",  # not a listed type
        "/examples/.env",  # hidden
        "/examples/..%2Foutside.html",  # out of the folder, encoded
        "/examples/shop/..%2F..%2Foutside.html",
        "/examples/shop/%2e%2e/%2e%2e/outside.html",
        "/examples/shop\\..\\..\\outside.html",
        "/examples/missing.html",
        "/examples/shop//index.html",
        "/examples/%00.html",
    ],
)
async def test_nothing_else_is_reachable(
    start_gateway: GatewayFactory, site: Path, path: str
) -> None:
    async with start_gateway(examples_dir=site) as gw:
        response = await gw.client.get(path)
    assert response.status_code == 404, path
    assert response.json()["error"]["details"][0]["reason"] == "ROUTE_NOT_FOUND"


async def test_off_means_no_route(start_gateway: GatewayFactory, site: Path) -> None:
    async with start_gateway(examples_dir=site, serve_examples=False) as gw:
        response = await gw.client.get("/examples/")
    assert response.status_code == 404
