"""CustomerService over gRPC against real PostgreSQL: profiles, addresses, consent ledger,
staff search, the ownership matrix, export and erasure."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.type import date_pb2

from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import events_pb2
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.customer.conftest import PASSWORD, Service, expect_error

Metadata = tuple[tuple[str, str], ...]


def home(
    line: str = "神南1-2-3", postal_code: str = "150-0041", recipient: str = "山田 花子"
) -> pb.Address:
    return pb.Address(
        label="自宅",
        postal_address=common_pb2.PostalAddress(
            region_code="JP",
            postal_code=postal_code,
            administrative_area="東京都",
            locality="渋谷区",
            address_lines=[line],
            recipient=recipient,
            phone_number="03-1234-5678",
        ),
    )


def staff(tokens: Tokens, *scopes: str) -> Metadata:
    return tokens.metadata(
        tokens.mint(subject="staff-cs-9", kind="staff", scopes=list(scopes), channel="CALL_CENTER")
    )


def mask(*paths: str) -> dict[str, list[str]]:
    return {"paths": list(paths)}


# ----------------------------------------------------------------------------- profiles


async def test_update_profile_with_mask_and_etag(service: Service) -> None:
    customer_id, _, auth = await service.register()
    current = (
        await service.customers.GetCustomer(api.GetCustomerRequest(customer_id="me"), metadata=auth)
    ).customer
    changed = pb.Customer(
        id="me",
        etag=current.etag,
        name=pb.PersonName(
            family_name="山田", given_name="花", family_name_kana="やまだ", given_name_kana="ﾊﾅ"
        ),
        phone_number="090-1234-5678",
        birthday=date_pb2.Date(year=1990, month=4, day=12),
        locale="en-US",
        preferred_store_id="tokyo-shibuya",
    )
    updated = (
        await service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(
                customer=changed,
                update_mask=mask("name", "phone_number", "birthday", "preferred_store_id"),
            ),
            metadata=auth,
        )
    ).customer
    assert updated.name.given_name == "花"
    assert (updated.name.family_name_kana, updated.name.given_name_kana) == (
        "ヤマダ",
        "ハナ",
    )  # folded to katakana
    assert updated.phone_number == "+819012345678"
    assert (updated.birthday.year, updated.birthday.month, updated.birthday.day) == (1990, 4, 12)
    assert updated.preferred_store_id == "tokyo-shibuya"
    assert updated.locale == "ja-JP"  # not in the mask: untouched
    assert updated.etag != current.etag
    # A stale etag loses.
    await expect_error(
        service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(
                customer=pb.Customer(id=customer_id, etag=current.etag, locale="en-US"),
                update_mask=mask("locale"),
            ),
            metadata=auth,
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    for bad_mask in (mask(), mask("state"), mask("email_verified")):
        await expect_error(
            service.customers.UpdateCustomer(
                api.UpdateCustomerRequest(customer=pb.Customer(id="me"), update_mask=bad_mask),
                metadata=auth,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "UPDATE_MASK_INVALID",
        )
    events = await service.events(events_pb2.CustomerUpdated, customer_id)
    assert sorted(events[-1].changed_fields) == [
        "birthday",
        "name",
        "phone_number",
        "preferred_store_id",
    ]


async def test_changing_the_email_needs_verification_again(service: Service) -> None:
    customer_id, _, auth = await service.register()
    [first] = await service.events(events_pb2.EmailVerificationRequested, customer_id)
    await service.identity.VerifyEmail(
        ids.VerifyEmailRequest(token=await service.mailed_token(first))
    )
    _, taken, _ = await service.register()
    await expect_error(
        service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(
                customer=pb.Customer(id="me", email=taken.upper()), update_mask=mask("email")
            ),
            metadata=auth,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "EMAIL_TAKEN",
    )
    new_email = f"moved.{uuid.uuid4().hex[:8]}@example.jp"
    updated = (
        await service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(
                customer=pb.Customer(id="me", email=new_email), update_mask=mask("email")
            ),
            metadata=auth,
        )
    ).customer
    assert updated.email == new_email and not updated.email_verified
    sent = await service.events(events_pb2.EmailVerificationRequested, customer_id)
    assert (await service.mailed(sent[-1])).email == new_email
    # The old mail's token (already used) and only the new one verifies the new address.
    await service.identity.VerifyEmail(
        ids.VerifyEmailRequest(token=await service.mailed_token(sent[-1]))
    )
    await service.identity.SignIn(ids.SignInRequest(email=new_email, password=PASSWORD))


async def test_bad_profile_and_address_input_is_rejected_with_field_violations(
    service: Service,
) -> None:
    _, _, auth = await service.register()
    details = await expect_error(
        service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(
                customer=pb.Customer(
                    id="me",
                    name=pb.PersonName(
                        family_name="山" * 51, given_name="花子", family_name_kana="山田"
                    ),
                    phone_number="12345",
                    birthday=date_pb2.Date(year=2999, month=1, day=1),
                    locale="x" * 40,
                    preferred_store_id="Shibuya Store!",
                ),
                update_mask=mask(
                    "name", "phone_number", "birthday", "locale", "preferred_store_id"
                ),
            ),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CUSTOMER_INVALID",
    )
    assert {v.field for v in details.field_violations} == {
        "customer.name.family_name",
        "customer.name.family_name_kana",
        "customer.phone_number",
        "customer.birthday",
        "customer.locale",
        "customer.preferred_store_id",
    }
    await expect_error(
        service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(
                customer=pb.Customer(id="me", birthday=date_pb2.Date(year=1990, month=2, day=30)),
                update_mask=mask("birthday"),
            ),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    bad = home()
    bad.postal_address.postal_code = "1500041x"
    bad.postal_address.address_lines[:] = ["x" * 201, "", "b", "c"]
    bad.postal_address.recipient = ""
    bad.postal_address.phone_number = "not a phone"
    bad.label = "l" * 51
    await expect_error(
        service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=bad), metadata=auth
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    bad.label = "自宅"
    details = await expect_error(
        service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=bad), metadata=auth
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ADDRESS_INVALID",
    )
    prefix = "address.postal_address"
    assert {v.field for v in details.field_violations} == {
        f"{prefix}.postal_code",
        f"{prefix}.address_lines",
        f"{prefix}.address_lines[0]",
        f"{prefix}.recipient",
        f"{prefix}.phone_number",
    }
    listed = await service.customers.ListAddresses(
        api.ListAddressesRequest(customer_id="me"), metadata=auth
    )
    assert not listed.addresses  # nothing half-written
    await expect_error(
        service.customers.GetCustomer(api.GetCustomerRequest(customer_id=""), metadata=auth),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CUSTOMER_ID_REQUIRED",
    )


# ---------------------------------------------------------------------------- addresses


async def test_address_book_with_defaults(service: Service) -> None:
    customer_id, _, auth = await service.register()
    first = (
        await service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=home(), request_id="addr-1"),
            metadata=auth,
        )
    ).address
    assert first.default_shipping and first.default_billing  # the first one becomes the default
    assert first.postal_address.phone_number == "+81312345678"
    retried = (
        await service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=home(), request_id="addr-1"),
            metadata=auth,
        )
    ).address
    assert retried.id == first.id
    office = home("丸の内1-1-1", "100-0005")
    office.label = "会社"
    office.default_shipping = True
    second = (
        await service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id=customer_id, address=office), metadata=auth
        )
    ).address
    assert second.default_shipping and not second.default_billing
    profile = (
        await service.customers.GetCustomer(api.GetCustomerRequest(customer_id="me"), metadata=auth)
    ).customer
    assert (profile.default_shipping_address_id, profile.default_billing_address_id) == (
        second.id,
        first.id,
    )

    page = await service.customers.ListAddresses(
        api.ListAddressesRequest(customer_id="me", page_size=1), metadata=auth
    )
    assert [a.id for a in page.addresses] == [first.id] and page.next_page_token
    rest = await service.customers.ListAddresses(
        api.ListAddressesRequest(customer_id="me", page_size=1, page_token=page.next_page_token),
        metadata=auth,
    )
    assert [a.id for a in rest.addresses] == [second.id] and not rest.next_page_token

    renamed = (
        await service.customers.UpdateAddress(
            api.UpdateAddressRequest(
                customer_id="me",
                address=pb.Address(
                    id=first.id, label="実家", etag=first.etag, default_shipping=True
                ),
                update_mask=mask("label", "default_shipping"),
            ),
            metadata=auth,
        )
    ).address
    assert renamed.label == "実家" and renamed.default_shipping
    await expect_error(
        service.customers.UpdateAddress(
            api.UpdateAddressRequest(
                customer_id="me",
                address=pb.Address(id=first.id, label="x", etag=first.etag),
                update_mask=mask("label"),
            ),
            metadata=auth,
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await service.customers.DeleteAddress(
        api.DeleteAddressRequest(customer_id="me", address_id=first.id), metadata=auth
    )
    profile = (
        await service.customers.GetCustomer(api.GetCustomerRequest(customer_id="me"), metadata=auth)
    ).customer
    assert profile.default_shipping_address_id == "" and profile.default_billing_address_id == ""
    await expect_error(
        service.customers.DeleteAddress(
            api.DeleteAddressRequest(customer_id="me", address_id=first.id), metadata=auth
        ),
        grpc.StatusCode.NOT_FOUND,
        "ADDRESS_NOT_FOUND",
    )
    for _ in range(19):
        await service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=home()), metadata=auth
        )
    await expect_error(
        service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=home()), metadata=auth
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TOO_MANY_ADDRESSES",
    )


# ----------------------------------------------------------------------------- consents


async def test_consent_ledger_with_double_opt_in_for_marketing_mail(service: Service) -> None:
    customer_id, _, auth = await service.register()
    marketing, personalization = pb.CONSENT_PURPOSE_MARKETING, pb.CONSENT_PURPOSE_PERSONALIZATION

    async def grant(purpose: int, channel: int, version: str = "v2026-04") -> pb.ConsentState:
        response = await service.customers.GrantConsent(
            api.GrantConsentRequest(
                customer_id="me", purpose=purpose, channel=channel, wording_version=version
            ),
            metadata=auth,  # type: ignore[arg-type]
        )
        return response.consent

    assert (await grant(marketing, pb.CONSENT_CHANNEL_PUSH)).status == pb.CONSENT_STATUS_GRANTED
    assert (
        await grant(marketing, pb.CONSENT_CHANNEL_PUSH)
    ).status == pb.CONSENT_STATUS_GRANTED  # no-op
    pending = await grant(marketing, pb.CONSENT_CHANNEL_EMAIL)
    assert pending.status == pb.CONSENT_STATUS_PENDING_CONFIRMATION
    [asked] = await service.events(events_pb2.ConsentConfirmationRequested, customer_id)
    assert asked.purpose == marketing and asked.channel == pb.CONSENT_CHANNEL_EMAIL
    asked_token = await service.mailed_token(asked)

    states = (
        await service.customers.ListConsents(
            api.ListConsentsRequest(customer_id="me"), metadata=auth
        )
    ).consents
    assert len(states) == 9
    by_key = {(s.purpose, s.channel): s.status for s in states}
    assert by_key[(marketing, pb.CONSENT_CHANNEL_EMAIL)] == pb.CONSENT_STATUS_PENDING_CONFIRMATION
    assert by_key[(personalization, pb.CONSENT_CHANNEL_SMS)] == pb.CONSENT_STATUS_NOT_SET

    confirmed = await service.customers.ConfirmConsent(api.ConfirmConsentRequest(token=asked_token))
    assert confirmed.consent.status == pb.CONSENT_STATUS_GRANTED
    await expect_error(
        service.customers.ConfirmConsent(api.ConfirmConsentRequest(token=asked_token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CONFIRMATION_TOKEN_INVALID",
    )
    revoked = await service.customers.RevokeConsent(
        api.RevokeConsentRequest(
            customer_id="me",
            purpose=marketing,
            channel=pb.CONSENT_CHANNEL_EMAIL,
            wording_version="v2026-05",
        ),
        metadata=auth,
    )
    assert revoked.consent.status == pb.CONSENT_STATUS_REVOKED
    # A confirmation that arrives after the customer changed their mind grants nothing.
    await grant(marketing, pb.CONSENT_CHANNEL_EMAIL)
    late = await service.mailed_token(
        (await service.events(events_pb2.ConsentConfirmationRequested, customer_id))[-1]
    )
    await service.customers.RevokeConsent(
        api.RevokeConsentRequest(
            customer_id="me",
            purpose=marketing,
            channel=pb.CONSENT_CHANNEL_EMAIL,
            wording_version="v2026-05",
        ),
        metadata=auth,
    )
    await expect_error(
        service.customers.ConfirmConsent(api.ConfirmConsentRequest(token=late)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONSENT_NOT_PENDING",
    )

    history = await service.customers.ListConsentHistory(
        api.ListConsentHistoryRequest(
            customer_id="me", channel=pb.CONSENT_CHANNEL_EMAIL, page_size=3
        ),
        metadata=auth,
    )
    assert [r.action for r in history.records] == [
        pb.CONSENT_ACTION_REVOKE,
        pb.CONSENT_ACTION_REQUEST,
        pb.CONSENT_ACTION_REVOKE,
    ]
    rest = await service.customers.ListConsentHistory(
        api.ListConsentHistoryRequest(
            customer_id="me",
            channel=pb.CONSENT_CHANNEL_EMAIL,
            page_size=3,
            page_token=history.next_page_token,
        ),
        metadata=auth,
    )
    assert [(r.action, r.status) for r in rest.records] == [
        (pb.CONSENT_ACTION_CONFIRM, pb.CONSENT_STATUS_GRANTED),
        (pb.CONSENT_ACTION_REQUEST, pb.CONSENT_STATUS_PENDING_CONFIRMATION),
    ]
    oldest = rest.records[-1]
    assert oldest.wording_version == "v2026-04" and oldest.source_channel == common_pb2.CHANNEL_APP
    assert oldest.actor_kind == "customer" and oldest.record_time.seconds > 0
    changes = await service.events(events_pb2.ConsentChanged, customer_id)
    assert len(changes) == 6  # push grant, request, confirm, revoke, request, revoke

    await expect_error(
        service.customers.GrantConsent(
            api.GrantConsentRequest(
                customer_id="me", purpose=marketing, channel=pb.CONSENT_CHANNEL_SMS
            ),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "WORDING_VERSION_INVALID",
    )
    await expect_error(
        service.customers.GrantConsent(
            api.GrantConsentRequest(customer_id="me", wording_version="v1"), metadata=auth
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUIRED_FIELD_MISSING",
    )


async def test_staff_search_by_email_phone_and_name(service: Service, tokens: Tokens) -> None:
    name = pb.PersonName(
        family_name="五十嵐", given_name="蓮", family_name_kana="イガラシ", given_name_kana="レン"
    )
    customer_id, email, auth = await service.register(name=name)
    await service.customers.UpdateCustomer(
        api.UpdateCustomerRequest(
            customer=pb.Customer(id="me", phone_number="+81 80-9876-5432"),
            update_mask=mask("phone_number"),
        ),
        metadata=auth,
    )
    reader = staff(tokens, "customers:read")
    for request in (
        api.SearchCustomersRequest(email=email.upper()),
        api.SearchCustomersRequest(phone_number="080-9876-5432"),
        api.SearchCustomersRequest(name="いがらし"),
        api.SearchCustomersRequest(name="ｲｶﾞﾗｼ"),
        api.SearchCustomersRequest(name="五十嵐 蓮"),
    ):
        found = await service.customers.SearchCustomers(request, metadata=reader)
        assert [c.id for c in found.customers] == [customer_id], request
    # Pages of a broad search: each customer once, newest first, same as one big page.
    for _ in range(3):
        await service.register(name=pb.PersonName(family_name="五十嵐", given_name="葵"))
    everyone = await service.customers.SearchCustomers(
        api.SearchCustomersRequest(name="五十嵐", page_size=100), metadata=reader
    )
    assert len(everyone.customers) == 4 and not everyone.next_page_token
    paged: list[str] = []
    token = ""
    while True:
        page = await service.customers.SearchCustomers(
            api.SearchCustomersRequest(name="五十嵐", page_size=3, page_token=token),
            metadata=reader,
        )
        paged.extend(c.id for c in page.customers)
        token = page.next_page_token
        if not token:
            break
    assert paged == [c.id for c in everyone.customers]
    await expect_error(
        service.customers.SearchCustomers(
            api.SearchCustomersRequest(name="葵", page_token=page.next_page_token or "forged"),
            metadata=reader,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    await expect_error(
        service.customers.SearchCustomers(
            api.SearchCustomersRequest(name="x" * 101), metadata=reader
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        service.customers.SearchCustomers(api.SearchCustomersRequest(), metadata=reader),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        service.customers.SearchCustomers(
            api.SearchCustomersRequest(name="いがらし"), metadata=auth
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        service.customers.SearchCustomers(
            api.SearchCustomersRequest(name="いがらし"), metadata=tokens.staff
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_SCOPE",
    )


# ----------------------------------------------------------------------------- ownership

Call = Callable[[str, Metadata], Awaitable[Any]]


def calls(service: Service, address_id: str) -> dict[str, tuple[Call, bool]]:
    """Every CustomerService method on one customer: (call, is_write)."""
    c = service.customers
    consent = {
        "purpose": pb.CONSENT_PURPOSE_ANALYTICS,
        "channel": pb.CONSENT_CHANNEL_PUSH,
        "wording_version": "v1",
    }
    return {
        "GetCustomer": (
            lambda cid, md: c.GetCustomer(api.GetCustomerRequest(customer_id=cid), metadata=md),
            False,
        ),
        "UpdateCustomer": (
            lambda cid, md: c.UpdateCustomer(
                api.UpdateCustomerRequest(
                    customer=pb.Customer(id=cid, locale="en-US"), update_mask=mask("locale")
                ),
                metadata=md,
            ),
            True,
        ),
        "ListAddresses": (
            lambda cid, md: c.ListAddresses(api.ListAddressesRequest(customer_id=cid), metadata=md),
            False,
        ),
        "CreateAddress": (
            lambda cid, md: c.CreateAddress(
                api.CreateAddressRequest(customer_id=cid, address=home()), metadata=md
            ),
            True,
        ),
        "UpdateAddress": (
            lambda cid, md: c.UpdateAddress(
                api.UpdateAddressRequest(
                    customer_id=cid,
                    address=pb.Address(id=address_id, label="x"),
                    update_mask=mask("label"),
                ),
                metadata=md,
            ),
            True,
        ),
        "ListConsents": (
            lambda cid, md: c.ListConsents(api.ListConsentsRequest(customer_id=cid), metadata=md),
            False,
        ),
        "GrantConsent": (
            lambda cid, md: c.GrantConsent(
                api.GrantConsentRequest(customer_id=cid, **consent), metadata=md
            ),  # type: ignore[arg-type]
            True,
        ),
        "RevokeConsent": (
            lambda cid, md: c.RevokeConsent(
                api.RevokeConsentRequest(customer_id=cid, **consent), metadata=md
            ),  # type: ignore[arg-type]
            True,
        ),
        "ListConsentHistory": (
            lambda cid, md: c.ListConsentHistory(
                api.ListConsentHistoryRequest(customer_id=cid), metadata=md
            ),
            False,
        ),
        "ExportCustomerData": (
            lambda cid, md: c.ExportCustomerData(
                api.ExportCustomerDataRequest(customer_id=cid), metadata=md
            ),
            False,
        ),
        "DeleteAddress": (
            lambda cid, md: c.DeleteAddress(
                api.DeleteAddressRequest(customer_id=cid, address_id=address_id), metadata=md
            ),
            True,
        ),
        "EraseCustomer": (
            lambda cid, md: c.EraseCustomer(api.EraseCustomerRequest(customer_id=cid), metadata=md),
            True,
        ),
    }


async def test_every_method_refuses_the_wrong_principal(service: Service, tokens: Tokens) -> None:
    victim_id, _, victim = await service.register("victim")
    victim_address = (
        await service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=home()), metadata=victim
        )
    ).address.id
    stranger_id, _, stranger = await service.register("stranger")
    stranger_address = (
        await service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=home()), metadata=stranger
        )
    ).address.id
    missing_id = str(uuid.uuid4())
    wrong_principals: dict[str, tuple[Metadata, grpc.StatusCode]] = {
        "another customer": (stranger, grpc.StatusCode.PERMISSION_DENIED),
        "staff without customer scopes": (tokens.staff, grpc.StatusCode.PERMISSION_DENIED),
        "a device on its own credentials": (
            tokens.device("KIOSK"),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        "anonymous": ((), grpc.StatusCode.UNAUTHENTICATED),
    }
    matrix = calls(service, victim_address)
    for method, (call, is_write) in matrix.items():
        for who, (metadata, code) in wrong_principals.items():
            for target in (victim_id, missing_id):  # a stranger cannot tell missing from forbidden
                details = await expect_error(call(target, metadata), code)
                assert details.code is code, (method, who)
        if is_write:
            # Staff who may only read are refused every change.
            await expect_error(
                call(victim_id, staff(tokens, "customers:read")),
                grpc.StatusCode.PERMISSION_DENIED,
                "MISSING_SCOPE",
            )
        else:
            await call(victim_id, staff(tokens, "customers:read"))
        # Staff with the right scope get past permissions and learn the id is unknown.
        await expect_error(
            call(missing_id, staff(tokens, "customers:read", "customers:write")),
            grpc.StatusCode.NOT_FOUND,
        )

    # Someone else's address through one's own book does not exist (AIP-193: NOT_FOUND).
    for method in ("UpdateAddress", "DeleteAddress"):
        call, _ = calls(service, victim_address)[method]
        await expect_error(call("me", stranger), grpc.StatusCode.NOT_FOUND, "ADDRESS_NOT_FOUND")

    # Nothing of the victim changed; the owner (and staff with the scope) may do it all.
    profile = (
        await service.customers.GetCustomer(
            api.GetCustomerRequest(customer_id="me"), metadata=victim
        )
    ).customer
    assert profile.locale == "ja-JP"
    owner_calls = calls(service, victim_address)
    for method, (call, _) in owner_calls.items():
        if method != "EraseCustomer":
            await call("me", victim)
    editor = staff(tokens, "customers:read", "customers:write")
    for call, _ in calls(service, stranger_address).values():
        await call(stranger_id, editor)
    await owner_calls["EraseCustomer"][0]("me", victim)
    await expect_error(
        owner_calls["GetCustomer"][0]("me", victim), grpc.StatusCode.NOT_FOUND, "CUSTOMER_NOT_FOUND"
    )


async def test_oversized_and_malformed_input_is_refused_with_field_violations(
    service: Service, tokens: Tokens
) -> None:
    _, _, auth = await service.register()
    huge = "界" * 10_000
    reader = staff(tokens, "customers:read")
    cases: list[tuple[str, Awaitable[Any], str]] = [
        ("email", service.identity.SignIn(ids.SignInRequest(email=huge, password="x")), "email"),
        (
            "email",
            service.identity.SignIn(ids.SignInRequest(email="no-at-sign", password="x")),
            "email",
        ),
        (
            "password",
            service.identity.SignIn(ids.SignInRequest(email="a@example.jp", password=huge)),
            "password",
        ),
        (
            "refresh",
            service.identity.RefreshToken(ids.RefreshTokenRequest(refresh_token=huge)),
            "refresh_token",
        ),
        (
            "reset",
            service.identity.RequestPasswordReset(ids.RequestPasswordResetRequest(email=huge)),
            "email",
        ),
        (
            "code",
            service.identity.ApproveDeviceSession(
                ids.ApproveDeviceSessionRequest(user_code=huge), metadata=auth
            ),
            "user_code",
        ),
        (
            "search",
            service.customers.SearchCustomers(
                api.SearchCustomersRequest(name=huge), metadata=reader
            ),
            "name",
        ),
        (
            "phone search",
            service.customers.SearchCustomers(
                api.SearchCustomersRequest(phone_number="call me"), metadata=reader
            ),
            "phone_number",
        ),
        (
            "wording",
            service.customers.GrantConsent(
                api.GrantConsentRequest(
                    customer_id="me",
                    purpose=pb.CONSENT_PURPOSE_ANALYTICS,
                    channel=pb.CONSENT_CHANNEL_PUSH,
                    wording_version=huge,
                ),
                metadata=auth,
            ),
            "wording_version",
        ),
        (
            "address line",
            service.customers.CreateAddress(
                api.CreateAddressRequest(customer_id="me", address=home(line=huge)), metadata=auth
            ),
            "address.postal_address.address_lines[0]",
        ),
        (
            "request id",
            service.customers.CreateAddress(
                api.CreateAddressRequest(customer_id="me", address=home(), request_id=huge),
                metadata=auth,
            ),
            "request_id",
        ),
        (
            "address id",
            service.customers.DeleteAddress(
                api.DeleteAddressRequest(customer_id="me", address_id=huge), metadata=auth
            ),
            "address_id",
        ),
        (
            "email",
            service.customers.UpdateCustomer(
                api.UpdateCustomerRequest(
                    customer=pb.Customer(id="me", email="x@@example"), update_mask=mask("email")
                ),
                metadata=auth,
            ),
            "customer.email",
        ),
        (
            "page size",
            service.customers.ListConsentHistory(
                api.ListConsentHistoryRequest(customer_id="me", page_size=-1), metadata=auth
            ),
            "page_size",
        ),
    ]
    for label, call, field in cases:
        details = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert field in {v.field for v in details.field_violations}, (label, details)
        assert huge not in details.message  # input is never echoed back
