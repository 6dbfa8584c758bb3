"""The gateway in front of the real customer service: sign-up with the web's publishable key,
the issued token accepted by the gateway (JWKS) and forwarded, ownership left to the
service, sign-in without any key."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.kit import migrations
from tenpo.kit.server import running
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory

customer_app = pytest.importorskip("services.customer.app")
customer_fixtures = pytest.importorskip("tests.services.customer.conftest")

PASSWORD = "correct horse battery staple"
NAME = {
    "familyName": "山田",
    "givenName": "花子",
    "familyNameKana": "ヤマダ",
    "givenNameKana": "ハナコ",
}


@pytest_asyncio.fixture(scope="module")
async def customer_target(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[str]:
    name = f"test_gw_cust_{uuid.uuid4().hex[:10]}"
    url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
    try:
        definition = customer_app.definition
        await migrations.upgrade(definition.migrations, url)
        settings = customer_fixtures.customer_settings(url, nats_url, dev_keys, log_level="WARNING")
        async with running(definition, settings) as host:
            yield f"127.0.0.1:{host.port}"
    finally:
        drop_database(postgres_admin_url, name)


async def test_sign_up_sign_in_and_own_profile_through_the_gateway(
    customer_target: str, start_gateway: GatewayFactory
) -> None:
    email = f"gw.{uuid.uuid4().hex[:10]}@example.jp"
    async with start_gateway(targets={"customer": customer_target}) as gw:
        anonymous = await gw.client.post(
            "/v1/identity:register", json={"email": email, "password": PASSWORD, "name": NAME}
        )
        assert anonymous.status_code == 401  # sign-up needs the channel's key

        registered = await gw.client.post(
            "/v1/identity:register",
            json={"email": email, "password": PASSWORD, "name": NAME},
            headers={"x-api-key": WEB_KEY},
        )
        assert registered.status_code == 200, registered.text
        customer_id = registered.json()["customer"]["id"]

        # Sign-in carries its own credentials: no key needed.
        signed_in = await gw.client.post(
            "/v1/identity:signIn", json={"email": email, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        token = signed_in.json()["tokens"]["accessToken"]
        me = {"authorization": f"Bearer {token}"}

        profile = await gw.client.get(f"/v1/customers/{customer_id}", headers=me)
        assert profile.status_code == 200, profile.text
        assert profile.json()["id"] == customer_id

        # Personal data is not for publishable keys, nor for another customer.
        keyed = await gw.client.get(f"/v1/customers/{customer_id}", headers={"x-api-key": WEB_KEY})
        assert keyed.status_code in (401, 403, 404)
        other = await gw.client.get(f"/v1/customers/{uuid.uuid4()}", headers=me)
        assert other.status_code in (403, 404)
        assert other.json()["error"]["details"][0]["@type"].endswith("ErrorInfo")

        wrong = await gw.client.post(
            "/v1/identity:signIn", json={"email": email, "password": "wrong password!"}
        )
        assert wrong.status_code == 401
