"""GDPR over gRPC against real PostgreSQL: export holds every table's rows of a customer;
erasure leaves none of their e-mail, name, phone or address anywhere in the database."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import sqlalchemy as sa
from google.type import date_pb2, money_pb2

from services.customer.domain import earning as ed
from services.customer.models import metadata as customer_metadata
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import campaign_service_pb2 as campaign_api
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import events_pb2
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import interaction_service_pb2 as timeline_api
from tenpo.customer.v1 import loyalty_service_pb2 as loyalty_api
from tenpo.customer.v1 import resources_pb2 as pb
from tenpo.customer.v1 import store_card_service_pb2 as card_api
from tenpo.customer.v1.campaign_service_pb2_grpc import CampaignServiceStub
from tenpo.customer.v1.interaction_service_pb2_grpc import InteractionServiceStub
from tenpo.customer.v1.loyalty_service_pb2_grpc import LoyaltyServiceStub
from tenpo.customer.v1.store_card_service_pb2_grpc import StoreCardServiceStub
from tenpo.kit.events import Consumer, EventBus, Subscription
from tenpo.kit.wire import timestamp
from tests.services.conftest import Tokens
from tests.services.customer.conftest import PASSWORD, Service, bearer, expect_error

PEOPLE = {
    "erase": {
        "name": ("勅使河原", "蘭丸", "テシガワラ", "ランマル"),
        "phone": ("090-5555-0123", "+819055550123"),
        "prefecture": "大阪府",
        "address": (
            "987-6543",
            "大阪市浪速区",
            "秘密町7-7-7",
            "隠れ家ハイツ909",
            "06-6123-4567",
            "+81661234567",
            "別荘",
        ),
    },
    "export": {
        "name": ("小鳥遊", "千尋", "タカナシ", "チヒロ"),
        "phone": ("070-3333-0789", "+817033330789"),
        "prefecture": "沖縄県",
        "address": (
            "900-0001",
            "那覇市",
            "港町3-3",
            "潮風ビル5階",
            "098-111-2222",
            "+81981112222",
            "事務所",
        ),
    },
    "other": {
        "name": ("東海林", "小雪", "ショウジ", "コユキ"),
        "phone": ("080-4444-0456", "+818044440456"),
        "prefecture": "北海道",
        "address": (
            "060-0001",
            "札幌市中央区",
            "北一条西2-2",
            "雪見荘101",
            "011-222-3333",
            "+81112223333",
            "実家",
        ),
    },
}


async def rich_customer(
    service: Service, tokens: Tokens, tag: str, person: str = "erase"
) -> dict[str, Any]:
    """A customer with something in every table: profile, address, consents, sessions,
    mailed tokens, failed sign-ins and a device hand-off."""
    data = PEOPLE[person]
    family, given, family_kana, given_kana = data["name"]
    phone, phone_e164 = data["phone"]
    postal_code, city, line1, line2, address_phone, address_phone_e164, label = data["address"]
    email = f"{tag}.{uuid.uuid4().hex[:8]}@example.jp"
    name = pb.PersonName(
        family_name=family,
        given_name=given,
        family_name_kana=family_kana,
        given_name_kana=given_kana,
    )
    customer_id, _, auth = await service.register(email=email, name=name)
    await service.customers.UpdateCustomer(
        api.UpdateCustomerRequest(
            customer=pb.Customer(
                id="me", phone_number=phone, birthday=date_pb2.Date(year=1980, month=3, day=3)
            ),
            update_mask={"paths": ["phone_number", "birthday"]},
        ),
        metadata=auth,
    )
    await service.customers.CreateAddress(
        api.CreateAddressRequest(
            customer_id="me",
            request_id=f"addr-{tag}",
            address=pb.Address(
                label=label,
                postal_address=common_pb2.PostalAddress(
                    region_code="JP",
                    postal_code=postal_code,
                    administrative_area=data["prefecture"],
                    locality=city,
                    address_lines=[line1, line2],
                    recipient=f"{family} {given}",
                    phone_number=address_phone,
                ),
            ),
        ),
        metadata=auth,
    )
    for purpose, channel in (
        (pb.CONSENT_PURPOSE_MARKETING, pb.CONSENT_CHANNEL_EMAIL),
        (pb.CONSENT_PURPOSE_ANALYTICS, pb.CONSENT_CHANNEL_PUSH),
    ):
        await service.customers.GrantConsent(
            api.GrantConsentRequest(
                customer_id="me", purpose=purpose, channel=channel, wording_version="v1"
            ),
            metadata=auth,
        )
    session = (
        await service.identity.SignIn(ids.SignInRequest(email=email, password=PASSWORD))
    ).tokens
    await service.identity.RequestPasswordReset(ids.RequestPasswordResetRequest(email=email))
    await service.reset_requests_handled()
    await expect_error(
        service.identity.SignIn(ids.SignInRequest(email=email, password="not the password")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    admin = tokens.metadata(
        tokens.mint(subject="staff-it-2", kind="staff", scopes=["clients:write", "catalog:read"])
    )
    mirror = await service.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(
                display_name="mirror", kind=pb.CLIENT_KIND_SMART_MIRROR, store_id="tokyo-ginza"
            )
        ),
        metadata=admin,
    )
    device = bearer(
        (
            await service.identity.SignInClient(
                ids.SignInClientRequest(
                    client_id=mirror.client.id, client_secret=mirror.client_secret
                )
            )
        ).tokens.access_token
    )
    started = await service.identity.StartDeviceSession(
        ids.StartDeviceSessionRequest(), metadata=device
    )
    await service.identity.ApproveDeviceSession(
        ids.ApproveDeviceSessionRequest(user_code=started.user_code), metadata=auth
    )
    # In the store: a try-on on the mirror she handed her session to, and loyalty points
    # (earned, held for a checkout, and a staff adjustment whose reason names her).
    handed = await service.identity.ExchangeDeviceSession(
        ids.ExchangeDeviceSessionRequest(device_code=started.device_code), metadata=device
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        await InteractionServiceStub(channel).RecordInteraction(
            timeline_api.RecordInteractionRequest(
                interaction=timeline_api.Interaction(
                    kind=timeline_api.INTERACTION_KIND_MIRROR_TRY_ON, sku="SKU-TEE-M", size="M"
                )
            ),
            metadata=bearer(handed.tokens.access_token),
        )
        points = LoyaltyServiceStub(channel)
        order = tokens.metadata(
            tokens.mint(subject="order", kind="service", scopes=["loyalty:write"])
        )
        await points.EarnPoints(
            loyalty_api.EarnPointsRequest(
                customer_id=customer_id,
                amount=money_pb2.Money(currency_code="JPY", units=5000),
                reference="order-1",
                request_id=f"earn-{tag}",
            ),
            metadata=order,
        )
        await points.ReservePoints(
            loyalty_api.ReservePointsRequest(
                customer_id=customer_id, points=10, reference="order-2", request_id=f"r-{tag}"
            ),
            metadata=order,
        )
        await points.AdjustPoints(
            loyalty_api.AdjustPointsRequest(
                customer_id=customer_id, points=5, reason=f"{family}様へのお詫び"
            ),
            metadata=order,
        )
        # A prepaid store card topped up at a POS, with a payment held; and a campaign
        # the order below takes part in.
        card = StoreCardServiceStub(channel)
        cashier = tokens.metadata(
            tokens.mint(
                subject="pos",
                kind="device",
                scopes=["storecard:write"],
                channel="POS",
                store_id="tokyo-ginza",
            )
        )
        await card.TopUpStoreCard(
            card_api.TopUpStoreCardRequest(
                customer_id=customer_id,
                amount=money_pb2.Money(currency_code="JPY", units=3000),
                reference="receipt-1",
            ),
            metadata=cashier,
        )
        await card.ReserveStoreCardPayment(
            card_api.ReserveStoreCardPaymentRequest(
                customer_id=customer_id,
                amount=money_pb2.Money(currency_code="JPY", units=1000),
                reference="sale-1",
            ),
            metadata=cashier,
        )
        now = datetime.now(UTC)
        await CampaignServiceStub(channel).CreateCampaign(
            campaign_api.CreateCampaignRequest(
                campaign=campaign_api.Campaign(
                    display_name=f"pos {tag}",
                    start_time=timestamp(now - timedelta(hours=1)),
                    end_time=timestamp(now + timedelta(days=1)),
                    audience=campaign_api.CampaignAudience(everyone=True),
                    channels=[common_pb2.CHANNEL_POS],
                    bonus_points=3,
                )
            ),
            metadata=tokens.metadata(
                tokens.mint(subject="staff-camp", kind="staff", scopes=["loyalty:write"])
            ),
        )
    await project_an_order(service, customer_id, tag)
    await announce_birthday(service, month=3, day=3)
    return {
        "id": customer_id,
        "auth": auth,
        "refresh_token": session.refresh_token,
        "email": email,
        "personal": [
            email,
            email.split("@")[0],
            family,
            given,
            family_kana,
            given_kana,
            phone_e164,
            phone,
            address_phone_e164,
            postal_code,
            line1,
            line2,
            city,
            label,
        ],
    }


async def announce_birthday(service: Service, month: int, day: int) -> None:
    """The daily sweep on her birthday (noon in Tokyo) this year."""
    cases = service.host.runtime.parts["use_cases"]
    context = cases.context
    real = context.clock
    context.clock = lambda: datetime(real().year, month, day, 3, 0, tzinfo=UTC)
    try:
        await cases.segments.announce_birthdays()
    finally:
        context.clock = real


async def project_an_order(service: Service, customer_id: str, tag: str) -> None:
    """An order and a return as the order service's events bring them (the use case the
    consumer calls; test_earning.py goes through NATS)."""
    cases = service.host.runtime.parts["use_cases"]
    order_id = f"order-{tag}-{uuid.uuid4().hex[:6]}"
    async with service.host.runtime.db.unit_of_work() as uow:
        await cases.earning.order_placed(
            uow,
            ed.OrderFacts(
                order_id=order_id,
                order_number="N-1",
                customer_id=uuid.UUID(customer_id),
                channel=common_pb2.CHANNEL_POS,
                store_id="tokyo-ginza",
                total_yen=8_000,
                units=2,
                placed_at=datetime.now(UTC),
            ),
        )
        await cases.earning.return_received(
            uow,
            ed.ReturnFacts(
                return_id=f"{order_id}-r",
                order_id=order_id,
                customer_id=uuid.UUID(customer_id),
                refund_yen=4_000,
                units=1,
                received_at=datetime.now(UTC),
            ),
        )
        # The consumer recomputes her segments in the same transaction.
        await cases.segments.recompute(uow, uuid.UUID(customer_id))
        await uow.commit()


async def tables_referring_to_customers(service: Service) -> set[str]:
    """Every table of the service's schema with a foreign key to customers, plus the ones
    that name a customer without a foreign key (refresh tokens, the lockout counters)."""
    referring = {
        table.name
        for table in customer_metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column.table.name == "customers"
    }
    return referring | {"customers", "refresh_tokens", "sign_in_attempts"}


async def rows_mentioning(service: Service, customer_id: str) -> dict[str, int]:
    """Rows per table with the customer's id in any column, text or bytes."""
    counts: dict[str, int] = {}
    async with service.db.engine.connect() as conn:
        for table in await all_tables(service):
            for row in (await conn.execute(sa.text(f'SELECT * FROM "{table}"'))).all():  # noqa: S608
                raw = b" ".join(
                    bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                    for v in row
                    if v is not None
                )
                if customer_id.encode() in raw:
                    counts[table] = counts.get(table, 0) + 1
    return counts


async def all_tables(service: Service) -> list[str]:
    async with service.db.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        )
        return [r.tablename for r in rows]


async def test_export_holds_every_tables_rows_and_no_credentials(
    service: Service, tokens: Tokens
) -> None:
    someone = await rich_customer(service, tokens, "export", "export")
    other = await rich_customer(service, tokens, "bystander", "other")
    exported = await service.customers.ExportCustomerData(
        api.ExportCustomerDataRequest(customer_id="me"), metadata=someone["auth"]
    )
    assert exported.content_type == "application/json"
    document = json.loads(exported.json)
    assert document["customer_id"] == someone["id"]
    tables = document["tables"]
    assert await tables_referring_to_customers(service) <= set(tables)
    assert set(tables) <= set(await all_tables(service))
    # Engagement data too: points, pending earnings, tier, orders, store card, campaigns.
    assert {
        "loyalty_accounts",
        "loyalty_entries",
        "loyalty_earnings",
        "customer_orders",
        "order_returns",
        "store_cards",
        "store_card_entries",
        "store_card_holds",
        "campaign_awards",
    } <= set(tables)
    assert tables["loyalty_accounts"][0]["tier"] == "STANDARD"
    assert tables["campaign_awards"][0]["points"] == 3
    for name, rows in tables.items():
        assert rows, f"{name} exported no rows"
    # Every row anywhere in the database that names the customer is in the export.
    mentioning = await rows_mentioning(service, someone["id"])
    assert {"customers", "addresses", "outbox", "idempotency_keys"} <= set(mentioning)
    for table, count in mentioning.items():
        assert len(tables.get(table, [])) == count, table
    [reset] = await service.events(events_pb2.PasswordResetRequested, someone["id"])
    exported_reset = [
        e for e in tables["outbox"] if e["event_type"].endswith("PasswordResetRequested")
    ]
    assert exported_reset[0]["payload"]["tokenId"] == reset.token_id
    # The secret exists only in the mailer's hands, never in events or the export.
    assert await service.mailed_token(reset) not in exported.json
    [profile] = tables["customers"]
    assert profile["email"] == someone["email"] and profile["phone_number"] == "+817033330789"
    assert tables["addresses"][0]["address_lines"] == ["港町3-3", "潮風ビル5階"]
    assert tables["sign_in_attempts"][0]["failures"] == 1
    [account] = tables["loyalty_accounts"]
    assert (account["balance"], account["reserved"]) == (55, 10)
    assert sorted(e["points"] for e in tables["loyalty_entries"]) == [5, 50]
    assert tables["loyalty_reservations"][0]["reference"] == "order-2"
    kinds = sorted((i["kind"], i["sku"]) for i in tables["interactions"])
    # The try-on, and the two entries the ledger projected into the timeline.
    assert kinds == [(2, "SKU-TEE-M"), (4, ""), (4, "")]
    text = exported.json
    assert other["email"] not in text
    for secret_column in ("password_hash", "token_hash", "secret_hash", "device_code_hash"):
        assert secret_column not in text
    assert someone["refresh_token"] not in text


async def test_erasure_leaves_no_personal_data_in_any_table(
    service: Service, tokens: Tokens
) -> None:
    erased = await rich_customer(service, tokens, "erase")
    kept = await rich_customer(service, tokens, "keep", "other")
    response = await service.customers.EraseCustomer(
        api.EraseCustomerRequest(customer_id="me"), metadata=erased["auth"]
    )
    assert response.customer.state == pb.CUSTOMER_STATE_ERASED
    assert response.customer.id == erased["id"] and not response.customer.email

    found = await scan(service, erased["personal"])
    assert not found, f"personal data left after erasure: {found}"
    # The scan does find a customer who was not erased: it would have caught leftovers.
    kept_in = {table for table, _ in await scan(service, kept["personal"])}
    assert kept_in >= {"customers", "addresses"}
    # Events carry ids only: not even a live customer's personal data is in the outbox.
    assert "outbox" not in kept_in

    [event] = await service.events(events_pb2.CustomerErased, erased["id"])
    assert event.customer_id == erased["id"] and event.erase_time.seconds > 0
    await expect_error(
        service.customers.GetCustomer(
            api.GetCustomerRequest(customer_id="me"), metadata=erased["auth"]
        ),
        grpc.StatusCode.NOT_FOUND,
        "CUSTOMER_NOT_FOUND",
    )
    await expect_error(
        service.identity.RefreshToken(
            ids.RefreshTokenRequest(refresh_token=erased["refresh_token"])
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await expect_error(
        service.identity.SignIn(ids.SignInRequest(email=erased["email"], password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )
    # What accounting needs stays: the id, the state, when it happened. Staff see that much.
    reader = tokens.metadata(
        tokens.mint(subject="staff-dpo", kind="staff", scopes=["customers:read", "customers:write"])
    )
    remains = (
        await service.customers.GetCustomer(
            api.GetCustomerRequest(customer_id=erased["id"]), metadata=reader
        )
    ).customer
    assert remains.state == pb.CUSTOMER_STATE_ERASED and remains.create_time.seconds > 0
    again = await service.customers.EraseCustomer(
        api.EraseCustomerRequest(customer_id=erased["id"]), metadata=reader
    )
    assert again.customer.state == pb.CUSTOMER_STATE_ERASED
    assert len(await service.events(events_pb2.CustomerErased, erased["id"])) == 1
    # What she did in stores is gone; the points ledger stays, pseudonymous, as the
    # accounting record (the adjustment's reason, which named her, is blank).
    async with service.db.engine.connect() as conn:
        left = await conn.execute(
            sa.text("SELECT count(*) FROM interactions WHERE customer_id = :c"),
            {"c": uuid.UUID(erased["id"])},
        )
        assert left.scalar_one() == 0
        ledger = await conn.execute(
            sa.text("SELECT points, reference FROM loyalty_entries WHERE customer_id = :c"),
            {"c": uuid.UUID(erased["id"])},
        )
        assert sorted(ledger.all()) == [(5, ""), (50, "order-1")]
        # Campaign participation goes; orders, earnings (with the bonus), the tier and the
        # store card's ledger stay as ids and amounts.
        counts = {}
        for table in (
            "campaign_awards",
            "customer_orders",
            "order_returns",
            "loyalty_earnings",
            "store_card_entries",
        ):
            counted = await conn.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE customer_id = :c"),  # noqa: S608
                {"c": uuid.UUID(erased["id"])},
            )
            counts[table] = counted.scalar_one()
        assert counts == {
            "campaign_awards": 0,
            "customer_orders": 1,
            "order_returns": 1,
            "loyalty_earnings": 1,
            "store_card_entries": 1,
        }
    # Nothing changes for her any more: no top-up, and a late order event earns nothing.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        await expect_error(
            StoreCardServiceStub(channel).TopUpStoreCard(
                card_api.TopUpStoreCardRequest(
                    customer_id=erased["id"],
                    amount=money_pb2.Money(currency_code="JPY", units=100),
                    reference="r",
                ),
                metadata=tokens.metadata(
                    tokens.mint(subject="staff-c", kind="staff", scopes=["storecard:write"])
                ),
            ),
            grpc.StatusCode.NOT_FOUND,
            "CUSTOMER_NOT_FOUND",
        )
    await project_an_order(service, erased["id"], "late")
    async with service.db.engine.connect() as conn:
        late = await conn.execute(
            sa.text("SELECT count(*) FROM customer_orders WHERE customer_id = :c"),
            {"c": uuid.UUID(erased["id"])},
        )
        assert late.scalar_one() == 1
    # The address is free again.
    await service.register(email=erased["email"])


async def scan(service: Service, needles: list[str]) -> list[tuple[str, str]]:
    """(table, needle) for every needle found in any column of any table, text or binary
    (event payloads in the outbox are protobuf bytes)."""
    hits: list[tuple[str, str]] = []
    async with service.db.engine.connect() as conn:
        for table in await all_tables(service):
            rows = (await conn.execute(sa.text(f'SELECT * FROM "{table}"'))).all()  # noqa: S608
            for row in rows:
                for value in row:
                    if value is None:
                        continue
                    raw = (
                        bytes(value)
                        if isinstance(value, bytes | memoryview)
                        else str(value).encode()
                    )
                    hits.extend((table, n) for n in needles if n.encode() in raw)
    return sorted(set(hits))


async def test_erasure_reaches_consumers_through_the_outbox(
    service: Service, nats_url: str
) -> None:
    received: list[events_pb2.CustomerErased] = []

    async def on_erased(uow: object, event: Any) -> None:
        received.append(event.parse(events_pb2.CustomerErased))

    bus = EventBus(nats_url)
    await bus.connect()
    durable = f"test-{uuid.uuid4().hex[:8]}"
    # The consumer's inbox lives next to the customer tables here.
    consumer = Consumer(
        service.db,
        bus,
        Subscription(
            durable=durable,
            source_service="customer",
            handlers={events_pb2.CustomerErased: on_erased},
        ),
    )
    task = asyncio.create_task(consumer.run())
    try:
        customer_id, _, auth = await service.register("relay")
        await service.customers.EraseCustomer(
            api.EraseCustomerRequest(customer_id="me"), metadata=auth
        )
        for _ in range(200):
            if any(m.customer_id == customer_id for m in received):
                break
            await asyncio.sleep(0.05)
        assert [m.customer_id for m in received if m.customer_id == customer_id] == [customer_id]
    finally:
        task.cancel()
        await bus.js.delete_consumer("TENPO_CUSTOMER", durable)
        await bus.close()
