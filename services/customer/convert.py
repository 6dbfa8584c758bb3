"""Proto ⇄ domain translation for the customer service (servicer and event payloads)."""

from __future__ import annotations

import uuid
from datetime import datetime

from google.type import date_pb2, money_pb2

from services.customer import domain as d
from services.customer.domain import loyalty as ld
from services.customer.domain import timeline as td
from services.customer.security import AccessToken
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import interaction_service_pb2 as ipb
from tenpo.customer.v1 import loyalty_service_pb2 as lpb
from tenpo.customer.v1 import resources_pb2 as pb
from tenpo.kit.wire import optional_enum as optional_enum
from tenpo.kit.wire import parse_id as parse_id
from tenpo.kit.wire import required_enum as required_enum
from tenpo.kit.wire import timestamp as timestamp


def _str_id(value: uuid.UUID | None) -> str:
    return str(value) if value else ""


def person_name(name: d.PersonName) -> pb.PersonName:
    return pb.PersonName(
        family_name=name.family_name,
        given_name=name.given_name,
        family_name_kana=name.family_name_kana,
        given_name_kana=name.given_name_kana,
    )


def from_person_name(message: pb.PersonName) -> d.PersonName:
    return d.PersonName(
        message.family_name,
        message.given_name,
        message.family_name_kana,
        message.given_name_kana,
    ).normalized()


def customer(value: d.Customer) -> pb.Customer:
    message = pb.Customer(
        id=str(value.id),
        name=person_name(value.name),
        email=value.email or "",
        email_verified=value.email_verified,
        phone_number=value.phone_number or "",
        locale=value.locale,
        preferred_store_id=value.preferred_store_id or "",
        default_shipping_address_id=_str_id(value.default_shipping_address_id),
        default_billing_address_id=_str_id(value.default_billing_address_id),
        state=int(value.state),  # type: ignore[arg-type]
        etag=value.etag,
        create_time=timestamp(value.created_at),
        update_time=timestamp(value.updated_at),
    )
    if value.birthday is not None:
        message.birthday.CopyFrom(
            date_pb2.Date(
                year=value.birthday.year, month=value.birthday.month, day=value.birthday.day
            )
        )
    return message


def postal_address(value: d.PostalAddress) -> common_pb2.PostalAddress:
    return common_pb2.PostalAddress(
        region_code=value.region_code,
        postal_code=value.postal_code,
        administrative_area=value.administrative_area,
        locality=value.locality,
        address_lines=list(value.address_lines),
        recipient=value.recipient,
        phone_number=value.phone_number,
    )


def from_postal_address(message: common_pb2.PostalAddress) -> d.PostalAddress:
    return d.PostalAddress(
        region_code=message.region_code,
        postal_code=message.postal_code,
        administrative_area=message.administrative_area,
        locality=message.locality,
        address_lines=tuple(message.address_lines),
        recipient=message.recipient,
        phone_number=message.phone_number,
    )


def address(value: d.Address, owner: d.Customer) -> pb.Address:
    return pb.Address(
        id=str(value.id),
        label=value.label,
        postal_address=postal_address(value.postal),
        default_shipping=owner.default_shipping_address_id == value.id,
        default_billing=owner.default_billing_address_id == value.id,
        etag=value.etag,
        create_time=timestamp(value.created_at),
        update_time=timestamp(value.updated_at),
    )


def consent_state(value: d.ConsentState) -> pb.ConsentState:
    return pb.ConsentState(
        purpose=int(value.purpose),  # type: ignore[arg-type]
        channel=int(value.channel),  # type: ignore[arg-type]
        status=int(value.status),  # type: ignore[arg-type]
        wording_version=value.wording_version,
        update_time=timestamp(value.updated_at),
    )


def consent_record(value: d.ConsentEntry) -> pb.ConsentRecord:
    return pb.ConsentRecord(
        id=str(value.id),
        purpose=int(value.purpose),  # type: ignore[arg-type]
        channel=int(value.channel),  # type: ignore[arg-type]
        action=int(value.action),  # type: ignore[arg-type]
        status=int(value.status),  # type: ignore[arg-type]
        wording_version=value.wording_version,
        source_channel=value.source_channel,  # type: ignore[arg-type]
        source_store_id=value.source_store_id or "",
        actor_kind=value.actor_kind,
        record_time=timestamp(value.recorded_at),
    )


def client(value: d.Client) -> pb.Client:
    return pb.Client(
        id=value.id,
        display_name=value.display_name,
        kind=int(value.kind),  # type: ignore[arg-type]
        channel=value.channel,  # type: ignore[arg-type]
        store_id=value.store_id or "",
        scopes=list(value.scopes),
        create_time=timestamp(value.created_at),
        revoke_time=timestamp(value.revoked_at),
    )


def token_set(
    access: AccessToken,
    subject: str,
    refresh_token: str | None = None,
    refresh_expires_at: datetime | None = None,
) -> pb.TokenSet:
    return pb.TokenSet(
        access_token=access.token,
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
        access_token_expire_time=timestamp(access.expires_at),
        refresh_token=refresh_token or "",
        refresh_token_expire_time=timestamp(refresh_expires_at),
        scopes=list(access.scopes),
        subject=subject,
    )


# ------------------------------------------------------------------------------ loyalty


def loyalty_balance(account: ld.Account) -> lpb.LoyaltyBalance:
    return lpb.LoyaltyBalance(
        customer_id=str(account.customer_id),
        balance=account.balance,
        reserved=account.reserved,
        available=account.available,
        version=account.version,
        update_time=timestamp(account.updated_at),
        pending=account.pending,
        tier=account.tier,
        tier_keep_time=timestamp(account.tier_keep_until),
        twelve_month_spend=money_pb2.Money(currency_code="JPY", units=account.twelve_month_spend),
    )


def ledger_entry(entry: ld.Entry) -> lpb.LedgerEntry:
    return lpb.LedgerEntry(
        id=str(entry.id),
        customer_id=str(entry.customer_id),
        kind=int(entry.kind),  # type: ignore[arg-type]
        points=entry.points,
        channel=entry.channel,  # type: ignore[arg-type]
        store_id=entry.store_id or "",
        request_id=entry.request_id,
        reference=entry.reference,
        expire_time=timestamp(entry.expires_at),
        create_time=timestamp(entry.created_at),
    )


def points_reservation(value: ld.Reservation) -> lpb.PointsReservation:
    return lpb.PointsReservation(
        id=str(value.id),
        customer_id=str(value.customer_id),
        points=value.amount,
        state=int(value.state),  # type: ignore[arg-type]
        reference=value.reference,
        expire_time=timestamp(value.expires_at),
        entry_id=_str_id(value.entry_id),
    )


def interaction(value: td.Interaction) -> ipb.Interaction:
    return ipb.Interaction(
        id=str(value.id),
        customer_id=_str_id(value.customer_id),
        kind=int(value.kind),  # type: ignore[arg-type]
        sku=value.sku,
        size=value.size,
        channel=value.channel,  # type: ignore[arg-type]
        store_id=value.store_id or "",
        device_id=value.device_id or "",
        summary=value.summary,
        create_time=timestamp(value.created_at),
        reference=value.reference,
        item_tag=value.item_tag,
    )
