"""Demo data (development): customers of 「みなと屋」 with profiles, addresses and consents, a
staff user, one client per demo store device and one per service that calls others (the
order service), whose credentials are printed and, when
TENPO_DATA_DIR is set, written to ``$TENPO_DATA_DIR/dev-credentials.json`` (mode 0600)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.protobuf import empty_pb2

from services.customer import domain as d
from services.customer.config import CustomerSettings
from services.customer.domain import campaigns as cd
from services.customer.domain.loyalty import LOYALTY_WRITE_SCOPE
from services.customer.domain.store_card import WRITE_SCOPE as STORE_CARD_SCOPE
from services.customer.store.customers import CustomerStore
from services.customer.usecases.bundle import build_use_cases
from services.customer.usecases.ledger import ChangeRequest
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database
from tenpo.kit.settings import Environment

#: Development only: printed next to the credentials, never a real secret.
DEMO_PASSWORD = "minatoya-demo-2026"  # noqa: S105
STAFF_EMAIL = "staff@minatoya.example"
#: The demo staff also reads the development inbox (the messages the system sent), which
#: production staff do not get by default.
STAFF_SCOPES = (*d.STAFF_SCOPES, "notifications:read")
#: Inventory's demo store locations (a device's store is an inventory location id).
STORES = ("tokyo-shibuya", "tokyo-shinjuku", "tokyo-ginza")
DEVICES = (
    # The kiosk also hands click & collect orders over against their pickup code (and sees
    # its store's pickups): orders:read and orders:write, in its own store only.
    (
        d.ClientKind.KIOSK,
        "kiosk",
        # The kiosk at the door shows the welcome banner too (greetings:read).
        (
            "catalog:read",
            "inventory:read",
            "carts:write",
            "interactions:write",
            "orders:read",
            "orders:write",
            "greetings:read",
        ),
    ),
    (
        d.ClientKind.SMART_MIRROR,
        "mirror",
        ("catalog:read", "inventory:read", "carts:write", "interactions:write"),
    ),
    # The smart shelf recognises a lifted item, shows its sizes in this store and records
    # the pick-up; it never holds a cart, so it has no carts:write.
    (
        d.ClientKind.SMART_SHELF,
        "shelf",
        ("catalog:read", "inventory:read", "interactions:write"),
    ),
)
#: Services that call others on their own credentials: a back-office-tool client each (its
#: tokens are service tokens), written under "services" for ``make run`` to hand over.
SERVICE_CLIENTS = (
    (
        "order",
        "order-service",
        (
            "inventory:write",
            "carts:read",
            "carts:checkout",
            "promotions:redeem",
            "loyalty:write",
        ),
    ),
    (
        "notification",
        "notification-service",
        ("customers:read", "mail:send", "promotions:write", "carts:read", "orders:read"),
    ),
    # The gateway forwards providers' signed delivery callbacks and carriers' signed
    # delivery updates as itself.
    ("gateway", "gateway-callbacks", ("notifications:callbacks", "orders:write")),
)
WORDING = "2026-04"
#: The demo customers' first store purchase, earning them points (1 per 100 yen).
DEMO_PURCHASE_YEN = 12_800
#: What the demo customers' store cards hold.
DEMO_STORE_CARD_YEN = 5_000

# (email, family, given, family kana, given kana, phone, birthday, store, address, consents)
CUSTOMERS: list[dict[str, Any]] = [
    {
        "email": "hanako.yamada@example.jp",
        "name": ("山田", "花子", "ヤマダ", "ハナコ"),
        "phone": "090-1234-5678",
        "birthday": (1990, 4, 12),
        "store": "tokyo-shibuya",
        "address": ("150-0041", "東京都", "渋谷区", ["神南1-2-3", "神南ハイツ402"]),
        "consents": [(d.ConsentPurpose.MARKETING, d.ConsentChannel.PUSH)],
    },
    {
        "email": "taro.suzuki@example.jp",
        "name": ("鈴木", "太郎", "スズキ", "タロウ"),
        "phone": "080-2345-6789",
        "birthday": (1985, 11, 3),
        "store": "tokyo-shinjuku",
        "address": ("160-0022", "東京都", "新宿区", ["新宿3-14-1"]),
        "consents": [
            (d.ConsentPurpose.PERSONALIZATION, d.ConsentChannel.EMAIL),
            (d.ConsentPurpose.MARKETING, d.ConsentChannel.SMS),
        ],
    },
    {
        "email": "yui.tanaka@example.jp",
        "name": ("田中", "結衣", "タナカ", "ユイ"),
        "phone": "070-3456-7890",
        "birthday": (1998, 7, 21),
        "store": "tokyo-ginza",
        "address": ("104-0061", "東京都", "中央区", ["銀座4-6-16"]),
        "consents": [(d.ConsentPurpose.ANALYTICS, d.ConsentChannel.PUSH)],
    },
    {
        "email": "kenji.sato@example.jp",
        "name": ("佐藤", "健二", "サトウ", "ケンジ"),
        "phone": "06-6345-1234",
        "birthday": (1972, 1, 30),
        "store": None,
        "address": ("530-0001", "大阪府", "大阪市北区", ["梅田1-1-3", "大阪駅前第3ビル12階"]),
        "consents": [(d.ConsentPurpose.MARKETING, d.ConsentChannel.EMAIL)],
    },
    {
        "email": "misaki.takahashi@example.jp",
        "name": ("高橋", "美咲", "タカハシ", "ミサキ"),
        "phone": "090-4567-8901",
        "birthday": (2001, 9, 9),
        "store": None,
        "address": ("542-0076", "大阪府", "大阪市中央区", ["難波5-1-60"]),
        "consents": [],
    },
]


def _at_pos(reference: str, store: str | None) -> ChangeRequest:
    """A demo change made at a store's POS (no request_id: the seed runs once per store)."""
    return ChangeRequest(reference, d.CHANNEL_POS, store or "", "", empty_pb2.Empty())


def _admin(customer_id: str) -> Principal:
    return Principal(
        kind=PrincipalKind.SERVICE,
        subject="customer-seed",
        scopes=frozenset({d.READ_SCOPE, d.WRITE_SCOPE, LOYALTY_WRITE_SCOPE, STORE_CARD_SCOPE}),
        channel=d.CHANNEL_WEB,
    )


async def seed_demo_customers(settings: CustomerSettings, db: Database) -> dict[str, Any]:
    """Create the demo data (customers only once), rotate the demo devices' secrets, and
    return (and print) the credentials."""
    if settings.environment is Environment.PRODUCTION:
        raise SystemExit("refusing to seed demo credentials in production")
    cases = build_use_cases(settings, db)
    async with db.unit_of_work() as uow:
        seeded = await CustomerStore(uow.session).any_exists()
    if not seeded:
        for entry in CUSTOMERS:
            family, given, family_kana, given_kana = entry["name"]
            customer, _ = await cases.sessions.register(
                email=entry["email"],
                password=DEMO_PASSWORD,
                name=d.PersonName(family, given, family_kana, given_kana),
                locale="ja-JP",
                channel=d.CHANNEL_WEB,
            )
            admin = _admin(str(customer.id))
            year, month, day = entry["birthday"]
            await cases.profiles.update_customer(
                admin,
                str(customer.id),
                {
                    "phone_number": entry["phone"],
                    "birthday": d.date(year, month, day),
                    "preferred_store_id": entry["store"],
                },
                etag="",
            )
            postal_code, prefecture, city, lines = entry["address"]
            await cases.addresses.create_address(
                admin,
                str(customer.id),
                label="自宅",
                postal=d.PostalAddress(
                    region_code="JP",
                    postal_code=postal_code,
                    administrative_area=prefecture,
                    locality=city,
                    address_lines=tuple(lines),
                    recipient=f"{family} {given}",
                    phone_number=entry["phone"],
                ),
                default_shipping=True,
                default_billing=True,
                request_id="",
                request=empty_pb2.Empty(),
            )
            for purpose, channel in entry["consents"]:
                await cases.consents.grant_consent(
                    admin,
                    str(customer.id),
                    purpose,
                    channel,
                    f"{purpose.name.lower()}-{channel.name.lower()}-{WORDING}",
                    request_id="",
                    request=empty_pb2.Empty(),
                )
            # A purchase at the POS of her store: points to spend in the app at once.
            await cases.loyalty.earn(
                admin,
                str(customer.id),
                yen=DEMO_PURCHASE_YEN,
                change=_at_pos("demo-pos-purchase", entry["store"]),
            )
            # Her prepaid store card, topped up at the same POS.
            await cases.store_cards.top_up(
                admin,
                str(customer.id),
                yen=DEMO_STORE_CARD_YEN,
                change=_at_pos("demo-pos-top-up", entry["store"]),
            )
        # A campaign to see at work: a first order in the app earns double plus 100 points.
        now = cases.context.clock()
        await cases.campaigns.create(
            Principal(
                kind=PrincipalKind.STAFF,
                subject="customer-seed",
                scopes=frozenset({LOYALTY_WRITE_SCOPE}),
                channel=d.CHANNEL_BACK_OFFICE,
            ),
            cd.Campaign(
                id=uuid.uuid4(),
                display_name="アプリで初めてのお買い物 ポイント2倍",
                start_at=now,
                end_at=now + timedelta(days=90),
                audience=cd.Audience(cd.AudienceKind.FIRST_TIME),
                channels=(d.CHANNEL_APP,),
                multiplier=2.0,
                bonus_points=100,
                per_member_limit=1,
                budget_points=1_000_000,
                given_points=0,
                created_at=now,
            ),
            "",
            empty_pb2.Empty(),
        )
    await cases.staff.ensure_staff(
        STAFF_EMAIL, "みなと屋 本部スタッフ", DEMO_PASSWORD, STAFF_SCOPES
    )
    devices = []
    for store_id in STORES:
        for kind, label, scopes in DEVICES:
            client, secret = await cases.clients.ensure_client(
                f"{store_id}-{label}-1", kind, store_id, scopes
            )
            devices.append(
                {
                    "client_id": client.id,
                    "client_secret": secret,
                    "kind": kind.name,
                    "store_id": store_id,
                    "name": client.display_name,
                }
            )
    services = {}
    for service, name, service_scopes in SERVICE_CLIENTS:
        client, secret = await cases.clients.ensure_client(
            name, d.ClientKind.BACK_OFFICE_TOOL, None, service_scopes
        )
        services[service] = {"client_id": client.id, "client_secret": secret}
    # Devices an earlier seed bound to stores that are no longer demo stores (before store
    # ids were inventory location ids: "shibuya") stop signing in.
    await cases.clients.retire_seed_clients(
        keep=[device["client_id"] for device in devices]
        + [entry["client_id"] for entry in services.values()]
    )
    # Their ids too: the order seed writes the demo customers' order history under them.
    customers = []
    async with db.unit_of_work() as uow:
        store = CustomerStore(uow.session)
        for c in CUSTOMERS:
            found = await store.credentials_by_email(d.normalize_email(c["email"]).key)
            entry = {"email": c["email"], "password": DEMO_PASSWORD}
            if found is not None:
                entry["id"] = str(found.id)
            customers.append(entry)
    credentials = {
        "note": "development credentials of the demo data; device secrets rotate on every seed",
        "customers": customers,
        "staff": {"email": STAFF_EMAIL, "password": DEMO_PASSWORD, "scopes": list(STAFF_SCOPES)},
        "devices": devices,
        "services": services,
    }
    _publish(credentials)
    return credentials


def _publish(credentials: dict[str, Any]) -> None:
    text = json.dumps(credentials, ensure_ascii=False, indent=2)
    data_dir = os.environ.get("TENPO_DATA_DIR")
    if data_dir:
        path = Path(data_dir) / "dev-credentials.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text + "\n")
        os.chmod(path, 0o600)
    sys.stdout.write("customer demo credentials (development only):\n" + text + "\n")
    sys.stdout.flush()
