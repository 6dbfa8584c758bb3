"""IdentityService over gRPC against real PostgreSQL: registration, sign-in, refresh-token
rotation, sign-out, token attacks, signing keys, staff sign-in, who may call what, and the
housekeeping of expired sessions."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy as sa

from tenpo.customer.v1 import campaign_service_pb2 as campaign_api
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import events_pb2
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import loyalty_service_pb2 as loyalty_api
from tenpo.customer.v1 import resources_pb2 as pb
from tenpo.customer.v1 import store_card_service_pb2 as card_api
from tenpo.customer.v1.campaign_service_pb2_grpc import CampaignServiceStub
from tenpo.customer.v1.loyalty_service_pb2_grpc import LoyaltyServiceStub
from tenpo.customer.v1.store_card_service_pb2_grpc import StoreCardServiceStub
from tenpo.devtools.keys import DevKeys, generate_key
from tenpo.kit.auth import StaticJwks, TokenVerifier
from tenpo.kit.errors import Unauthenticated
from tests.services.conftest import AUDIENCE, ISSUER, Tokens, gateway_channel
from tests.services.customer.conftest import PASSWORD, Service, bearer, expect_error
from tests.services.customer.identity_helpers import (
    claims_of,
    client_admin,
    device,
    get_me,
)


async def test_register_signs_in_with_a_token_carrying_the_kit_claims(
    service: Service, dev_keys: DevKeys
) -> None:
    customer_id, _, auth = await service.register(email="  Hanako.Test@Example.JP ")
    token = auth[0][1].split()[1]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == dev_keys.kid
    claims = claims_of(token)
    assert claims["iss"] == ISSUER and claims["aud"] == AUDIENCE
    assert claims["sub"] == customer_id and claims["kind"] == "customer"
    assert claims["channel"] == "APP"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]
    assert set(claims["scope"].split()) == {
        "profile:read",
        "profile:write",
        "carts:write",
        "orders:write",
    }
    profile = (await get_me(service, auth)).customer
    assert profile.email == "Hanako.Test@example.jp"  # domain lower-cased, local part kept
    assert not profile.email_verified
    # The e-mail is unique however it is spelled.
    await expect_error(
        service.register(email="hanako.test@EXAMPLE.jp"),
        grpc.StatusCode.ALREADY_EXISTS,
        "EMAIL_TAKEN",
    )
    registered = await service.events(events_pb2.CustomerRegistered, customer_id)
    assert [e.customer_id for e in registered] == [customer_id]
    assert registered[0].channel == 2  # APP
    # Passwords never travel in events, nor are they stored readable.
    async with service.db.engine.connect() as conn:
        payloads = (await conn.execute(sa.text("SELECT payload FROM outbox"))).scalars().all()
        stored = (
            await conn.execute(
                sa.text("SELECT password_hash FROM customers WHERE id = :i"), {"i": customer_id}
            )
        ).scalar_one()
    assert all(PASSWORD.encode() not in p for p in payloads)
    assert stored.startswith("$argon2id$")


async def test_registering_directly_with_a_kiosk_header_binds_no_channel(
    service: Service,
) -> None:
    # The replay from the issue: calling the service directly with x-tenpo-channel: KIOSK
    # must not yield a token bound to the kiosk channel (nor any channel).
    for metadata in ((("x-tenpo-channel", "KIOSK"),), (("x-tenpo-channel", "APP"),)):
        registered = await service.identity.Register(
            ids.RegisterRequest(
                email=f"direct.{time.time_ns()}@example.jp",
                password=PASSWORD,
                name=pb.PersonName(family_name="山田", given_name="花子"),
            ),
            metadata=metadata,
        )
        assert "channel" not in claims_of(registered.tokens.access_token)
    # Through the gateway (which vouches for the key's channel) the channel sticks.
    _, _, app_session = await service.register("vouched")
    token = app_session[0][1].removeprefix("Bearer ")
    assert claims_of(token)["channel"] == "APP"


async def test_registration_rejects_bad_input_with_field_violations(service: Service) -> None:
    details = await expect_error(
        service.identity.Register(
            ids.RegisterRequest(
                email="not-an-email",
                password="short",
                name=pb.PersonName(family_name="x" * 51, given_name="", family_name_kana="yamada"),
                locale="japanese please",
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REGISTRATION_INVALID",
    )
    fields = {v.field for v in details.field_violations}
    assert {"email", "password", "customer.name.family_name", "customer.name.given_name"} <= fields
    assert {"customer.name.family_name_kana", "customer.locale"} <= fields
    for weak in ("password123", "aaaaaaaaaaaa", "x" * 129):
        await expect_error(
            service.identity.Register(
                ids.RegisterRequest(
                    email="weak@example.jp",
                    password=weak,
                    name=pb.PersonName(family_name="山田", given_name="花子"),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    await expect_error(
        service.identity.Register(
            ids.RegisterRequest(
                email="a" * 300 + "@example.jp",
                password=PASSWORD,
                name=pb.PersonName(family_name="山", given_name="花"),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_sign_in_refresh_rotation_and_reuse_revokes_the_family(service: Service) -> None:
    customer_id, email, _ = await service.register()
    first = (
        await service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))
    ).tokens
    assert first.refresh_token and first.token_type == "Bearer"
    second = (
        await service.identity.RefreshToken(
            ids.RefreshTokenRequest(refresh_token=first.refresh_token)
        )
    ).tokens
    assert second.refresh_token != first.refresh_token
    assert claims_of(second.access_token)["sub"] == customer_id
    await get_me(service, bearer(second.access_token))
    # The spent token comes back (a thief, or a client bug): the whole family dies, so the
    # legitimate holder's current token stops working too.
    await expect_error(
        service.identity.RefreshToken(ids.RefreshTokenRequest(refresh_token=first.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "REFRESH_TOKEN_REUSED",
    )
    await expect_error(
        service.identity.RefreshToken(ids.RefreshTokenRequest(refresh_token=second.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "REFRESH_TOKEN_INVALID",
    )
    # The channel is the one the gateway vouches for (from the publishable key), and
    # in-store channels come only with a device hand-off. A bare header is the caller's own
    # word and binds nothing.
    for metadata, expected in (
        (gateway_channel("WEB"), "WEB"),
        (gateway_channel("KIOSK"), None),
        (gateway_channel("POS"), None),
        ((("x-tenpo-channel", "APP"),), None),
    ):
        signed_in = await service.identity.SignIn(
            ids.SignInRequest(email=email, password=PASSWORD), metadata=metadata
        )
        assert claims_of(signed_in.tokens.access_token).get("channel") == expected
    # Other sessions are other families and survive.
    other = (
        await service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))
    ).tokens
    await service.identity.SignOut(ids.SignOutRequest(refresh_token=other.refresh_token))
    await expect_error(
        service.identity.RefreshToken(ids.RefreshTokenRequest(refresh_token=other.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "REFRESH_TOKEN_INVALID",
    )
    await expect_error(
        service.identity.RefreshToken(ids.RefreshTokenRequest(refresh_token="made-up")),
        grpc.StatusCode.UNAUTHENTICATED,
        "REFRESH_TOKEN_INVALID",
    )
    # Only hashes of refresh tokens are stored.
    async with service.db.engine.connect() as conn:
        dump = (
            await conn.execute(sa.text("SELECT string_agg(t::text, '') FROM refresh_tokens t"))
        ).scalar_one()
    assert first.refresh_token not in dump and second.refresh_token not in dump


async def test_sign_out_everywhere_and_concurrent_refresh_has_one_winner(service: Service) -> None:
    _, email, _ = await service.register()
    tokens = (
        await service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))
    ).tokens
    results = await asyncio.gather(
        *(
            service.identity.RefreshToken(
                ids.RefreshTokenRequest(refresh_token=tokens.refresh_token)
            )
            for _ in range(4)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    again = (
        await service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))
    ).tokens
    await service.identity.SignOut(
        ids.SignOutRequest(all_sessions=True), metadata=bearer(again.access_token)
    )
    await expect_error(
        service.identity.RefreshToken(ids.RefreshTokenRequest(refresh_token=again.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_token_attacks_are_rejected(
    service: Service, tokens: Tokens, dev_keys: DevKeys
) -> None:
    customer_id, _, auth = await service.register()
    victim_id, _, _ = await service.register()
    genuine = auth[0][1].split()[1]
    await get_me(service, auth)

    expired = tokens.mint(
        subject=customer_id,
        kind="customer",
        scopes=["profile:read"],
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    await expect_error(
        get_me(service, bearer(expired)), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED"
    )

    wrong_audience = tokens.mint(
        subject=customer_id,
        kind="customer",
        scopes=["profile:read"],
        extra_claims={"aud": "someone-else"},
    )
    await expect_error(
        get_me(service, bearer(wrong_audience)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_AUDIENCE_INVALID",
    )

    # Signed by an attacker's key that claims our kid.
    attacker_pem, _ = generate_key()
    forged = jwt.encode(
        claims_of(genuine), attacker_pem, algorithm="ES256", headers={"kid": dev_keys.kid}
    )
    await expect_error(
        get_me(service, bearer(forged)), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_SIGNATURE_INVALID"
    )

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = (
        f"{b64({'alg': 'none', 'kid': dev_keys.kid, 'typ': 'JWT'})}.{b64(claims_of(genuine))}."
    )
    await expect_error(
        get_me(service, bearer(unsigned)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_ALGORITHM_REJECTED",
    )

    # The same signature over claims changed to another customer's id.
    header, _, signature = genuine.split(".")
    tampered_claims = {**claims_of(genuine), "sub": victim_id}
    tampered = f"{header}.{b64(tampered_claims)}.{signature}"
    await expect_error(
        get_me(service, bearer(tampered)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_SIGNATURE_INVALID",
    )

    await expect_error(
        get_me(service, bearer("garbage")), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"
    )


async def test_jwks_publishes_the_key_and_rotation_keeps_old_tokens_valid(
    service: Service, service_factory: Callable[..., Any], dev_keys: DevKeys
) -> None:
    published = await service.identity.GetJwks(ids.GetJwksRequest())
    assert [(k.kid, k.kty, k.alg, k.use, k.crv) for k in published.keys] == [
        (dev_keys.kid, "EC", "ES256", "sig", "P-256")
    ]
    assert not any(k.n or k.e for k in published.keys)  # no private or foreign members
    _, _, old_auth = await service.register()
    old_token = old_auth[0][1].split()[1]

    # Rotate: a new key signs, the old one is still published.
    import tempfile

    new_pem, new_jwk = generate_key()
    new_key = Path(tempfile.mkdtemp()) / "new-key.pem"
    new_key.write_bytes(new_pem)
    rotated = await service_factory(signing_key_files=[new_key, dev_keys.private_key_path])
    jwks = await rotated.identity.GetJwks(ids.GetJwksRequest())
    assert [k.kid for k in jwks.keys] == [new_jwk["kid"], dev_keys.kid]
    _, _, new_auth = await rotated.register()
    new_token = new_auth[0][1].split()[1]
    assert jwt.get_unverified_header(new_token)["kid"] == new_jwk["kid"]

    document = {"keys": [{f.name: v for f, v in k.ListFields()} for k in jwks.keys]}
    verifier = TokenVerifier(StaticJwks(document), issuer=ISSUER, audience=AUDIENCE)
    for token in (old_token, new_token):
        principal = await verifier.verify(token)
        assert principal.kind.value == "customer"
    # Once the old key is dropped from the JWKS its tokens stop verifying.
    only_new = TokenVerifier(
        StaticJwks({"keys": document["keys"][:1]}), issuer=ISSUER, audience=AUDIENCE
    )
    await only_new.verify(new_token)
    with pytest.raises(Unauthenticated) as retired:
        await only_new.verify(old_token)
    assert retired.value.reason == "TOKEN_KEY_UNKNOWN"


async def test_staff_sign_in_carries_their_scopes(
    service_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Seeding also proves the demo data loads: customers, staff, devices.
    from services.customer.seed import DEMO_PASSWORD, STAFF_EMAIL, seed_demo_customers

    seeded = await service_factory()
    monkeypatch.setenv("TENPO_DATA_DIR", str(tmp_path))
    credentials = await seed_demo_customers(seeded.host.settings, seeded.db)
    # A kiosk, a mirror and a shelf in each of the three demo stores.
    assert len(credentials["devices"]) == 9
    written = tmp_path / "dev-credentials.json"
    assert json.loads(written.read_text()) == credentials
    assert written.stat().st_mode & 0o777 == 0o600
    staff = await seeded.identity.SignInStaff(
        ids.SignInStaffRequest(email=STAFF_EMAIL, password=DEMO_PASSWORD)
    )
    claims = claims_of(staff.tokens.access_token)
    assert claims["kind"] == "staff" and claims["channel"] == "BACK_OFFICE"
    assert "customers:read" in claims["scope"].split()
    # The demo staff reads the dev inbox (development seed only).
    assert "notifications:read" in claims["scope"].split()
    found = await seeded.customers.SearchCustomers(
        api.SearchCustomersRequest(name="やまだ"), metadata=bearer(staff.tokens.access_token)
    )
    assert [c.email for c in found.customers] == ["hanako.yamada@example.jp"]
    customer = await seeded.identity.SignIn(
        ids.SignInRequest(email=credentials["customers"][0]["email"], password=DEMO_PASSWORD)
    )
    assert customer.tokens.access_token
    # Her id is in the credentials (the order seed writes her order history under it).
    assert claims_of(customer.tokens.access_token)["sub"] == credentials["customers"][0]["id"]
    # Her demo store purchase earned points she can spend in the app.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{seeded.host.port}") as channel:
        balance = await LoyaltyServiceStub(channel).GetBalance(
            loyalty_api.GetBalanceRequest(customer_id="me"),
            metadata=bearer(customer.tokens.access_token),
        )
    assert balance.balance.balance == 128
    # Her store card holds the demo top-up, and the app's first-order campaign runs.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{seeded.host.port}") as channel:
        card = await StoreCardServiceStub(channel).GetStoreCard(
            card_api.GetStoreCardRequest(customer_id="me"),
            metadata=bearer(customer.tokens.access_token),
        )
        campaigns = await CampaignServiceStub(channel).ListCampaigns(
            campaign_api.ListCampaignsRequest(), metadata=bearer(staff.tokens.access_token)
        )
    assert card.card.balance.units == 5_000
    assert [c.audience.first_time for c in campaigns.campaigns] == [True]
    mirror = next(dev for dev in credentials["devices"] if dev["kind"] == "SMART_MIRROR")
    await seeded.identity.SignInClient(
        ids.SignInClientRequest(
            client_id=mirror["client_id"], client_secret=mirror["client_secret"]
        )
    )
    # A kiosk hands click & collect orders over in its store.
    kiosk = next(dev for dev in credentials["devices"] if dev["kind"] == "KIOSK")
    signed_in_kiosk = await seeded.identity.SignInClient(
        ids.SignInClientRequest(client_id=kiosk["client_id"], client_secret=kiosk["client_secret"])
    )
    assert {"orders:read", "orders:write"} <= set(signed_in_kiosk.tokens.scopes)
    # Shibuya's smart shelf reads the catalog and stock and records pick-ups: nothing more.
    shelf = next(
        dev
        for dev in credentials["devices"]
        if dev["kind"] == "SMART_SHELF" and dev["store_id"] == "tokyo-shibuya"
    )
    signed_in_shelf = await seeded.identity.SignInClient(
        ids.SignInClientRequest(client_id=shelf["client_id"], client_secret=shelf["client_secret"])
    )
    shelf_claims = claims_of(signed_in_shelf.tokens.access_token)
    assert (shelf_claims["channel"], shelf_claims["store"]) == ("SMART_SHELF", "tokyo-shibuya")
    assert set(shelf_claims["scope"].split()) == {
        "catalog:read",
        "inventory:read",
        "interactions:write",
    }
    # The order service's client signs in to a service token with the scopes it needs.
    order = credentials["services"]["order"]
    service = await seeded.identity.SignInClient(
        ids.SignInClientRequest(client_id=order["client_id"], client_secret=order["client_secret"])
    )
    service_claims = claims_of(service.tokens.access_token)
    assert service_claims["kind"] == "service"
    assert set(service_claims["scope"].split()) == {
        "inventory:write",
        "carts:read",
        "carts:checkout",
        "promotions:redeem",
        "loyalty:write",
    }
    # So does the notification service's (contacts, mail tokens, personal codes).
    notification = credentials["services"]["notification"]
    signed_in = await seeded.identity.SignInClient(
        ids.SignInClientRequest(
            client_id=notification["client_id"], client_secret=notification["client_secret"]
        )
    )
    assert set(claims_of(signed_in.tokens.access_token)["scope"].split()) == {
        "customers:read",
        "mail:send",
        "promotions:write",
        "carts:read",  # a guest's abandoned cart: the contact she left
        "orders:read",  # a guest's return by mail: her order's contact
    }
    gateway = credentials["services"]["gateway"]
    signed_in = await seeded.identity.SignInClient(
        ids.SignInClientRequest(
            client_id=gateway["client_id"], client_secret=gateway["client_secret"]
        )
    )
    assert set(claims_of(signed_in.tokens.access_token)["scope"].split()) == {
        "notifications:callbacks",
        "orders:write",
    }
    # Seeding again keeps the customers and rotates the device secrets.
    again = await seed_demo_customers(seeded.host.settings, seeded.db)
    assert [d["client_id"] for d in again["devices"]] == [
        d["client_id"] for d in credentials["devices"]
    ]
    await expect_error(
        seeded.identity.SignInClient(
            ids.SignInClientRequest(
                client_id=mirror["client_id"], client_secret=mirror["client_secret"]
            )
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_identity_methods_refuse_the_wrong_principal(
    service: Service, tokens: Tokens
) -> None:
    _, _, customer = await service.register()
    client_id, mirror = await device(service, tokens, pb.CLIENT_KIND_SMART_MIRROR)
    staff = client_admin(tokens)
    started = await service.identity.StartDeviceSession(
        ids.StartDeviceSessionRequest(), metadata=mirror
    )
    i = service.identity
    methods: dict[str, tuple[Callable[[Any], Any], set[str]]] = {
        # method: (call, principals allowed: customer / staff / device)
        "ChangePassword": (
            lambda md: i.ChangePassword(
                ids.ChangePasswordRequest(current_password=PASSWORD, new_password="x" * 12),
                metadata=md,
            ),
            {"customer"},
        ),
        "RequestEmailVerification": (
            lambda md: i.RequestEmailVerification(
                ids.RequestEmailVerificationRequest(), metadata=md
            ),
            {"customer"},
        ),
        "SignOutEverywhere": (
            lambda md: i.SignOut(ids.SignOutRequest(all_sessions=True), metadata=md),
            {"customer", "staff"},
        ),
        "CreateClient": (
            lambda md: i.CreateClient(
                ids.CreateClientRequest(
                    client=pb.Client(
                        display_name="x", kind=pb.CLIENT_KIND_KIOSK, store_id="tokyo-ginza"
                    )
                ),
                metadata=md,
            ),
            {"staff"},
        ),
        "ListClients": (lambda md: i.ListClients(ids.ListClientsRequest(), metadata=md), {"staff"}),
        "RevokeClient": (
            lambda md: i.RevokeClient(ids.RevokeClientRequest(client_id="cl_none"), metadata=md),
            {"staff"},
        ),
        "StartDeviceSession": (
            lambda md: i.StartDeviceSession(ids.StartDeviceSessionRequest(), metadata=md),
            {"device"},
        ),
        "ApproveDeviceSession": (
            lambda md: i.ApproveDeviceSession(
                ids.ApproveDeviceSessionRequest(user_code=started.user_code), metadata=md
            ),
            {"customer"},
        ),
        "ExchangeDeviceSession": (
            lambda md: i.ExchangeDeviceSession(
                ids.ExchangeDeviceSessionRequest(device_code=started.device_code), metadata=md
            ),
            {"device"},
        ),
    }
    principals = {"customer": customer, "staff": staff, "device": mirror}
    for method, (call, allowed) in methods.items():
        await expect_error(call(()), grpc.StatusCode.UNAUTHENTICATED)
        for who, metadata in principals.items():
            if who not in allowed:
                details = await expect_error(call(metadata), grpc.StatusCode.PERMISSION_DENIED)
                assert details.reason in {"PRINCIPAL_KIND_NOT_ALLOWED", "MISSING_SCOPE"}, method
    # A device token whose client was revoked cannot start hand-offs any more.
    await service.identity.RevokeClient(
        ids.RevokeClientRequest(client_id=client_id), metadata=staff
    )
    await expect_error(
        service.identity.StartDeviceSession(ids.StartDeviceSessionRequest(), metadata=mirror),
        grpc.StatusCode.PERMISSION_DENIED,
        "CLIENT_REVOKED",
    )


async def test_housekeeping_purges_only_what_expired(service_factory: Callable[..., Any]) -> None:
    from services.customer.usecases.bundle import build_use_cases

    fresh = await service_factory()
    _, email, _ = await fresh.register()
    await expect_error(
        fresh.identity.SignIn(ids.SignInRequest(email=email, password="wrong password!")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    cases = build_use_cases(fresh.host.settings, fresh.db)
    assert not any((await cases.sessions.purge_expired()).values())  # nothing is old yet
    later = datetime.now(UTC) + timedelta(days=40)
    cases.context.clock = lambda: later
    deleted = await cases.sessions.purge_expired()
    assert deleted == {
        "refresh_tokens": 1,
        "one_time_tokens": 1,
        "device_sessions": 0,
        "sign_in_attempts": 1,
    }
