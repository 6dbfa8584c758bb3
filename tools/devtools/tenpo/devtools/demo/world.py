"""What the demo knows of a running Tenpo and its people: the gateway, the development
credentials `make run` wrote, the touchpoints (a shopper's web shop or app, store devices,
store staff) and where messages can be read (the dev inbox API, the mail catcher)."""

from __future__ import annotations

import email
import email.policy
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import httpx

from tenpo.devtools.demo.api import DEV_APP_KEY, DEV_WEB_KEY, Api, ApiError, request_id

T = TypeVar("T")
PASSWORD = "demo-shopper-2026"  # noqa: S105 (the demo shoppers' own, development only)
#: How long an "eventually" (an event crossing services, a journey's message) is waited for:
#: generous, as the demo and its tests run on busy machines.
EVENTUALLY = 60.0


class JourneyFailed(AssertionError):
    """A journey did not go as the story says; the message says what was seen instead."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise JourneyFailed(message)


def eventually(probe: Callable[[], T | None], what: str, timeout: float = EVENTUALLY) -> T:
    """``probe()``'s first truthy answer, asked every half second for up to ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            found = probe()
        except ApiError as error:
            found, last = None, error
        else:
            last = found
        if found:
            return found
        if time.monotonic() > deadline:
            raise JourneyFailed(f"{what}: not within {timeout:.0f} s (last seen: {last})")
        time.sleep(0.5)


@dataclass
class Narrator:
    """Says which touchpoint did what; every line is also kept (the tests read them)."""

    out: TextIO | None = field(default_factory=lambda: sys.stdout)  # the one of this moment
    lines: list[str] = field(default_factory=list)

    def __call__(self, who: str, what: str) -> None:
        line = f"  {who:<16} {what}"
        self.lines.append(line)
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def title(self, text: str) -> None:
        self.lines.append(text)
        if self.out is not None:
            print(f"\n{text}", file=self.out, flush=True)


@dataclass
class Customer:
    """A shopper signed in on one touchpoint (her phone's app or the web shop)."""

    name: str
    email: str
    id: str
    api: Api
    touchpoint: str

    def on(self, api: Api, touchpoint: str) -> Customer:
        """The same customer on another touchpoint (a device she handed her session to)."""
        return Customer(self.name, self.email, self.id, api, touchpoint)

    def cart(self) -> dict[str, Any]:
        return unwrap(self.api.get("/v1/carts:active"), "cart")

    def set_phone(self, phone: str) -> None:
        # UpdateCustomer's body is the customer itself; the mask travels in the query.
        self.api.patch("/v1/customers/me", {"phoneNumber": phone}, updateMask="phoneNumber")

    def try_on(self, sku: str, size: str) -> dict[str, Any]:
        """A mirror's try-on, recorded on whoever's token this touchpoint holds."""
        return record_try_on(self.api, sku, size)

    def add(self, sku: str, quantity: int = 1) -> dict[str, Any]:
        cart = self.cart()
        added = self.api.post(
            f"/v1/carts/{cart['id']}/lineItems",
            {"sku": sku, "quantity": quantity, "requestId": request_id()},
        )
        return unwrap(added, "cart")

    def update_cart(self, cart: dict[str, Any], mask: str) -> dict[str, Any]:
        updated = self.api.patch(
            f"/v1/carts/{cart['id']}",
            {"cart": cart, "updateMask": mask, "requestId": request_id()},
        )
        return unwrap(updated, "cart")

    def fulfil(
        self, method: str, store_id: str = "", address: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        cart = self.cart()
        fulfillment: dict[str, Any] = {"method": f"FULFILLMENT_METHOD_{method}"}
        if store_id:
            fulfillment["storeId"] = store_id
        if address:
            fulfillment["address"] = address
        return self.update_cart({"id": cart["id"], "fulfillment": fulfillment}, "fulfillment")

    def place_order(self, cart: dict[str, Any], payment: str = "CARD") -> dict[str, Any]:
        body: dict[str, Any] = {"method": f"PAYMENT_METHOD_{payment}"}
        if payment == "CARD":
            body["cardToken"] = "4242424242424242"  # the sandbox PSP's approving test card
        placed = self.api.post(
            "/v1/orders",
            {
                "cartId": cart["id"],
                "cartEtag": cart["etag"],
                "payment": body,
                "requestId": request_id(),
            },
        )
        return unwrap(placed, "order")

    def order(self, order_id: str) -> dict[str, Any]:
        return unwrap(self.api.get(f"/v1/orders/{order_id}"), "order")

    def settled(self, order: dict[str, Any]) -> dict[str, Any]:
        """The order once its saga is through (PLACED, or COMPLETED for a carry-out)."""
        return eventually(
            lambda: (
                found
                if (found := self.order(order["id"]))["status"]
                not in ("ORDER_STATUS_PENDING", "ORDER_STATUS_CONFIRMED")
                else None
            ),
            f"order {order.get('orderNumber')} settled",
        )


@dataclass
class Device:
    """A store device signed in with its client credentials (bound to its store)."""

    kind: str
    store_id: str
    name: str
    api: Api

    @property
    def label(self) -> str:
        return f"{self.kind.lower().replace('smart_', '')} {self.store_id.split('-')[-1]}"

    def hand_off(self, customer: Customer, say: Narrator) -> Customer:
        """ "Continue on this device": the device shows a code, she approves it on her phone,
        the device gets her session (scoped to what a device may do for her)."""
        started = self.api.post("/v1/deviceSessions")
        say(
            self.label, f"shows the hand-off code {started['userCode']} (QR {started['qrPayload']})"
        )
        approved = customer.api.post(
            "/v1/deviceSessions:approve", {"userCode": started["userCode"]}
        )
        say(customer.touchpoint, f"{customer.name} approves it for {approved['deviceName']}")

        def exchanged() -> dict[str, Any] | None:
            answer = self.api.post(
                "/v1/deviceSessions:exchange", {"deviceCode": started["deviceCode"]}
            )
            return answer if answer.get("tokens", {}).get("accessToken") else None

        tokens = eventually(exchanged, "the device session exchanged")["tokens"]
        say(self.label, f"now acts for {customer.name} (her session, this store)")
        return customer.on(self.api.as_(tokens["accessToken"]), self.label)


@dataclass
class Shop:
    """A running Tenpo as its touchpoints see it."""

    base_url: str
    credentials: dict[str, Any]
    #: `make run`'s data directory: the mail catcher's .eml files (her mailbox) are there.
    data_dir: Path | None
    say: Narrator
    web_key: str = DEV_WEB_KEY
    app_key: str = DEV_APP_KEY
    http: httpx.Client = field(init=False)
    _staff: Api | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=30.0)

    def close(self) -> None:
        self.http.close()

    @classmethod
    def from_data_dir(cls, base_url: str, data_dir: Path, say: Narrator) -> Shop:
        path = data_dir / "dev-credentials.json"
        try:
            credentials = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SystemExit(
                f"{path} is missing: start the system with `make run` first (or name its data "
                "directory with --data-dir)"
            ) from None
        return cls(base_url, credentials, data_dir, say)

    def web(self) -> Api:
        return Api(self.http, self.web_key)

    def app(self) -> Api:
        return Api(self.http, self.app_key)

    def staff(self) -> Api:
        """Store staff signed in with the development staff account."""
        if self._staff is None:
            staff = self.credentials["staff"]
            signed_in = Api(self.http).post(
                "/v1/identity:signInStaff",
                {"email": staff["email"], "password": staff["password"]},
            )
            self._staff = Api(self.http, token=signed_in["tokens"]["accessToken"])
        return self._staff

    def back_office(self) -> Api:
        """The head office's marketing tool: the development staff token `make run` wrote
        (its scopes include managing notification journeys, which a store's staff lack)."""
        path = self.data_dir / "dev-staff-token" if self.data_dir else None
        if path is None or not path.is_file():
            raise JourneyFailed("the development staff token (dev-staff-token) is missing")
        return Api(self.http, token=path.read_text(encoding="utf-8").strip())

    def device(self, kind: str, store_id: str) -> Device:
        entry = next(
            (
                d
                for d in self.credentials["devices"]
                if d["kind"] == kind and d["store_id"] == store_id
            ),
            None,
        )
        if entry is None:
            raise JourneyFailed(f"no {kind} of {store_id} in the development credentials")
        signed_in = Api(self.http).post(
            "/v1/clients:signIn",
            {"clientId": entry["client_id"], "clientSecret": entry["client_secret"]},
        )
        return Device(
            kind, store_id, entry["name"], Api(self.http, token=signed_in["tokens"]["accessToken"])
        )

    def register(self, family: str, given: str, *, app: bool = False) -> Customer:
        """A new shopper signs up on the web shop (or the app): her own e-mail, signed in."""
        email_address = f"demo.{uuid.uuid4().hex[:10]}@example.jp"
        api = self.app() if app else self.web()
        registered = api.post(
            "/v1/identity:register",
            {
                "email": email_address,
                "password": PASSWORD,
                "name": {"familyName": family, "givenName": given},
            },
        )
        touchpoint = "app" if app else "web shop"
        customer = Customer(
            f"{family} {given}",
            email_address,
            registered["customer"]["id"],
            api.as_(registered["tokens"]["accessToken"]),
            touchpoint,
        )
        self.say(touchpoint, f"{customer.name} signs up ({email_address})")
        return customer

    def sign_in(self, customer: Customer, *, app: bool = False) -> Customer:
        api = self.app() if app else self.web()
        signed_in = api.post("/v1/identity:signIn", {"email": customer.email, "password": PASSWORD})
        return customer.on(
            api.as_(signed_in["tokens"]["accessToken"]), "app" if app else "web shop"
        )

    def receive_stock(self, store_id: str, sku: str, quantity: int) -> None:
        """Goods arrive at a store (so each story has the stock it needs)."""
        self.staff().post(
            f"/v1/locations/{store_id}/stockLevels/{sku}:adjust",
            {"quantity": quantity, "reason": "MOVEMENT_REASON_RECEIPT", "requestId": request_id()},
        )
        self.say("staff", f"{store_id} receives {quantity} × {sku}")

    # -- messages -------------------------------------------------------------------------

    def messages(self, customer_id: str) -> list[dict[str, Any]]:
        """What the notification service sent (or holds) for her: the dev inbox's source."""
        found = self.staff().get("/v1/messages", customerId=customer_id, pageSize=100)
        return list(found.get("messages", []))

    def message(
        self,
        customer_id: str,
        template_key: str,
        *,
        statuses: tuple[str, ...] = ("SENT",),
        timeout: float = EVENTUALLY,
    ) -> dict[str, Any]:
        wanted = {f"MESSAGE_STATUS_{s}" for s in statuses}

        def probe() -> dict[str, Any] | None:
            return next(
                (
                    m
                    for m in self.messages(customer_id)
                    if m.get("templateKey") == template_key and m.get("status") in wanted
                ),
                None,
            )

        return eventually(probe, f"message {template_key} ({'/'.join(statuses)})", timeout)

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        """Her mailbox: the mails the mail catcher received for her, oldest first."""
        if self.data_dir is None:
            raise JourneyFailed("reading her mailbox needs the stack's data directory")
        found = []
        for path in sorted((self.data_dir / "mail").glob("*.eml"), key=lambda p: p.stat().st_mtime):
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if isinstance(parsed, email.message.EmailMessage) and address in str(parsed["To"]):
                found.append(parsed)
        return found


def record_try_on(api: Api, sku: str, size: str, *, item_tag: str = "") -> dict[str, Any]:
    """A mirror's try-on; ``item_tag`` is the RFID tag of the pair it read, if it read one."""
    interaction = {"kind": "INTERACTION_KIND_MIRROR_TRY_ON", "sku": sku, "size": size}
    if item_tag:
        interaction["itemTag"] = item_tag
    # RecordInteraction's body is the interaction; the request id travels in the query.
    return unwrap(api.post("/v1/interactions", interaction, requestId=request_id()), "interaction")


def unwrap(response: dict[str, Any], name: str) -> dict[str, Any]:
    """The resource of a response, whether the route's response_body unwrapped it or not."""
    inner = response.get(name)
    return inner if isinstance(inner, dict) else response


def body_text(mail: email.message.EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain", "html"))
    return str(part.get_content()) if part is not None else ""
