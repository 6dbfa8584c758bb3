"""Customer persistence: rows ⇄ domain objects over the unit of work's session."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    CUSTOMER_TABLES,
    SECRET_COLUMNS,
    addresses,
    clients,
    consent_events,
    customers,
    device_sessions,
    one_time_tokens,
    refresh_tokens,
    sign_in_attempts,
    staff_users,
)
from tenpo.kit.db import idempotency_table, outbox_table

# ---------------------------------------------------------------------------- customers


def _customer(row: RowMapping) -> d.Customer:
    return d.Customer(
        id=row["id"],
        email=row["email"],
        email_key=row["email_key"],
        email_verified=row["email_verified"],
        name=d.PersonName(
            row["family_name"] or "",
            row["given_name"] or "",
            row["family_name_kana"] or "",
            row["given_name_kana"] or "",
        ),
        phone_number=row["phone_number"],
        birthday=row["birthday"],
        locale=row["locale"],
        preferred_store_id=row["preferred_store_id"],
        default_shipping_address_id=row["default_shipping_address_id"],
        default_billing_address_id=row["default_billing_address_id"],
        state=d.CustomerState(row["state"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        erased_at=row["erased_at"],
    )


def _customer_values(customer: d.Customer) -> dict[str, Any]:
    return {
        "email": customer.email,
        "email_key": customer.email_key,
        "email_verified": customer.email_verified,
        "family_name": customer.name.family_name or None,
        "given_name": customer.name.given_name or None,
        "family_name_kana": customer.name.family_name_kana or None,
        "given_name_kana": customer.name.given_name_kana or None,
        "phone_number": customer.phone_number,
        "birthday": customer.birthday,
        "locale": customer.locale,
        "preferred_store_id": customer.preferred_store_id,
        "default_shipping_address_id": customer.default_shipping_address_id,
        "default_billing_address_id": customer.default_billing_address_id,
        "state": int(customer.state),
        "search_text": "" if customer.is_erased else customer.name.search_text(),
        "version": customer.version,
        "updated_at": customer.updated_at,
        "erased_at": customer.erased_at,
    }


@dataclass(frozen=True)
class Credentials:
    id: uuid.UUID
    password_hash: str | None
    state: d.CustomerState


class CustomerStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: uuid.UUID, *, for_update: bool = False) -> d.Customer | None:
        query = sa.select(customers).where(customers.c.id == customer_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _customer(row) if row else None

    async def credentials_by_email(self, email_key: str) -> Credentials | None:
        row = (
            await self.session.execute(
                sa.select(customers.c.id, customers.c.password_hash, customers.c.state).where(
                    customers.c.email_key == email_key
                )
            )
        ).first()
        return Credentials(row.id, row.password_hash, d.CustomerState(row.state)) if row else None

    async def password_hash(self, customer_id: uuid.UUID) -> str | None:
        return (
            await self.session.execute(
                sa.select(customers.c.password_hash).where(customers.c.id == customer_id)
            )
        ).scalar()

    async def email_taken(self, email_key: str, exclude: uuid.UUID | None = None) -> bool:
        query = sa.select(customers.c.id).where(customers.c.email_key == email_key)
        if exclude is not None:
            query = query.where(customers.c.id != exclude)
        return (await self.session.execute(query)).first() is not None

    async def insert(self, customer: d.Customer, password_hash: str) -> bool:
        """False when the e-mail is taken (lost a race with another registration)."""
        result = await self.session.execute(
            pg.insert(customers)
            .values(
                id=customer.id,
                created_at=customer.created_at,
                password_hash=password_hash,
                **_customer_values(customer),
            )
            .on_conflict_do_nothing(index_elements=[customers.c.email_key])
            .returning(customers.c.id)
        )
        return result.first() is not None

    async def update(self, customer: d.Customer) -> None:
        await self.session.execute(
            sa.update(customers)
            .where(customers.c.id == customer.id)
            .values(**_customer_values(customer))
        )

    async def set_password(self, customer_id: uuid.UUID, password_hash: str) -> None:
        await self.session.execute(
            sa.update(customers)
            .where(customers.c.id == customer_id)
            .values(password_hash=password_hash, updated_at=sa.func.now())
        )

    async def clear_password(self, customer_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.update(customers).where(customers.c.id == customer_id).values(password_hash=None)
        )

    async def search(
        self,
        *,
        email_key: str | None,
        phone: str | None,
        name: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[d.Customer]:
        query = sa.select(customers).where(customers.c.state == int(d.CustomerState.ACTIVE))
        if email_key is not None:
            query = query.where(customers.c.email_key == email_key)
        elif phone is not None:
            query = query.where(customers.c.phone_number == phone)
        elif name is not None:
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(customers.c.search_text.like(f"%{escaped}%"))
        if after is not None:
            query = query.where(
                sa.tuple_(customers.c.created_at, customers.c.id) < sa.tuple_(*after)
            )
        query = query.order_by(customers.c.created_at.desc(), customers.c.id.desc()).limit(limit)
        return [_customer(r) for r in (await self.session.execute(query)).mappings()]

    async def any_exists(self) -> bool:
        return (await self.session.execute(sa.select(customers.c.id).limit(1))).first() is not None


# ---------------------------------------------------------------------------- addresses


def _address(row: RowMapping) -> d.Address:
    return d.Address(
        id=row["id"],
        customer_id=row["customer_id"],
        label=row["label"],
        postal=d.PostalAddress(
            region_code=row["region_code"],
            postal_code=row["postal_code"],
            administrative_area=row["administrative_area"],
            locality=row["locality"],
            address_lines=tuple(row["address_lines"]),
            recipient=row["recipient"],
            phone_number=row["phone_number"],
        ),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _address_values(address: d.Address) -> dict[str, Any]:
    p = address.postal
    return {
        "label": address.label,
        "region_code": p.region_code,
        "postal_code": p.postal_code,
        "administrative_area": p.administrative_area,
        "locality": p.locality,
        "address_lines": list(p.address_lines),
        "recipient": p.recipient,
        "phone_number": p.phone_number,
        "version": address.version,
        "updated_at": address.updated_at,
    }


class AddressStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: uuid.UUID, address_id: uuid.UUID) -> d.Address | None:
        row = (
            (
                await self.session.execute(
                    sa.select(addresses)
                    .where(addresses.c.id == address_id, addresses.c.customer_id == customer_id)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return _address(row) if row else None

    async def count(self, customer_id: uuid.UUID) -> int:
        return int(
            (
                await self.session.execute(
                    sa.select(sa.func.count())
                    .select_from(addresses)
                    .where(addresses.c.customer_id == customer_id)
                )
            ).scalar_one()
        )

    async def list_page(
        self, customer_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[d.Address]:
        query = sa.select(addresses).where(addresses.c.customer_id == customer_id)
        if after is not None:
            query = query.where(
                sa.tuple_(addresses.c.created_at, addresses.c.id) > sa.tuple_(*after)
            )
        query = query.order_by(addresses.c.created_at, addresses.c.id).limit(limit)
        return [_address(r) for r in (await self.session.execute(query)).mappings()]

    async def insert(self, address: d.Address) -> None:
        await self.session.execute(
            sa.insert(addresses).values(
                id=address.id,
                customer_id=address.customer_id,
                created_at=address.created_at,
                **_address_values(address),
            )
        )

    async def update(self, address: d.Address) -> None:
        await self.session.execute(
            sa.update(addresses)
            .where(addresses.c.id == address.id)
            .values(**_address_values(address))
        )

    async def delete(self, address_id: uuid.UUID) -> None:
        await self.session.execute(sa.delete(addresses).where(addresses.c.id == address_id))


# ----------------------------------------------------------------------------- consents


def _consent(row: RowMapping) -> d.ConsentEntry:
    return d.ConsentEntry(
        id=row["id"],
        customer_id=row["customer_id"],
        purpose=d.ConsentPurpose(row["purpose"]),
        channel=d.ConsentChannel(row["channel"]),
        action=d.ConsentAction(row["action"]),
        status=d.ConsentStatus(row["status"]),
        wording_version=row["wording_version"],
        source_channel=row["source_channel"],
        source_store_id=row["source_store_id"],
        actor_kind=row["actor_kind"],
        recorded_at=row["recorded_at"],
    )


class ConsentStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all_of(self, customer_id: uuid.UUID) -> list[d.ConsentEntry]:
        rows = await self.session.execute(
            sa.select(consent_events)
            .where(consent_events.c.customer_id == customer_id)
            .order_by(consent_events.c.seq)
        )
        return [_consent(r) for r in rows.mappings()]

    async def history(
        self,
        customer_id: uuid.UUID,
        *,
        purpose: d.ConsentPurpose | None,
        channel: d.ConsentChannel | None,
        before_seq: int | None,
        limit: int,
    ) -> list[tuple[int, d.ConsentEntry]]:
        query = sa.select(consent_events).where(consent_events.c.customer_id == customer_id)
        if purpose is not None:
            query = query.where(consent_events.c.purpose == int(purpose))
        if channel is not None:
            query = query.where(consent_events.c.channel == int(channel))
        if before_seq is not None:
            query = query.where(consent_events.c.seq < before_seq)
        query = query.order_by(consent_events.c.seq.desc()).limit(limit)
        return [(r["seq"], _consent(r)) for r in (await self.session.execute(query)).mappings()]

    async def append(self, entry: d.ConsentEntry) -> None:
        await self.session.execute(
            sa.insert(consent_events).values(
                id=entry.id,
                customer_id=entry.customer_id,
                purpose=int(entry.purpose),
                channel=int(entry.channel),
                action=int(entry.action),
                status=int(entry.status),
                wording_version=entry.wording_version,
                source_channel=entry.source_channel,
                source_store_id=entry.source_store_id,
                actor_kind=entry.actor_kind,
                recorded_at=entry.recorded_at,
            )
        )


# ------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class RefreshRecord:
    id: uuid.UUID
    family_id: uuid.UUID
    subject_kind: d.SubjectKind
    subject_id: uuid.UUID
    channel: int
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class OneTimeRecord:
    id: uuid.UUID
    customer_id: uuid.UUID
    purpose: d.TokenPurpose
    subject: Mapping[str, Any]
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


class TokenStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_refresh(
        self,
        *,
        token_hash: bytes,
        family_id: uuid.UUID,
        subject_kind: d.SubjectKind,
        subject_id: uuid.UUID,
        channel: int,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        await self.session.execute(
            sa.insert(refresh_tokens).values(
                id=uuid.uuid4(),
                family_id=family_id,
                subject_kind=int(subject_kind),
                subject_id=subject_id,
                token_hash=token_hash,
                channel=channel,
                created_at=now,
                expires_at=expires_at,
            )
        )

    async def refresh_by_hash(self, token_hash: bytes) -> RefreshRecord | None:
        # Locked: two concurrent refreshes with one token must not both succeed.
        row = (
            (
                await self.session.execute(
                    sa.select(refresh_tokens)
                    .where(refresh_tokens.c.token_hash == token_hash)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return RefreshRecord(
            id=row["id"],
            family_id=row["family_id"],
            subject_kind=d.SubjectKind(row["subject_kind"]),
            subject_id=row["subject_id"],
            channel=row["channel"],
            expires_at=row["expires_at"],
            used_at=row["used_at"],
            revoked_at=row["revoked_at"],
        )

    async def mark_used(self, token_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(refresh_tokens).where(refresh_tokens.c.id == token_id).values(used_at=now)
        )

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_subject(
        self, subject_kind: d.SubjectKind, subject_id: uuid.UUID, now: datetime
    ) -> None:
        await self.session.execute(
            sa.update(refresh_tokens)
            .where(
                refresh_tokens.c.subject_kind == int(subject_kind),
                refresh_tokens.c.subject_id == subject_id,
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )

    async def add_one_time(
        self,
        *,
        customer_id: uuid.UUID,
        purpose: d.TokenPurpose,
        token_hash: bytes,
        subject: Mapping[str, Any],
        now: datetime,
        expires_at: datetime,
    ) -> None:
        await self.session.execute(
            sa.insert(one_time_tokens).values(
                id=uuid.uuid4(),
                customer_id=customer_id,
                purpose=int(purpose),
                token_hash=token_hash,
                subject=dict(subject),
                created_at=now,
                expires_at=expires_at,
            )
        )

    async def one_time_by_hash(self, token_hash: bytes) -> OneTimeRecord | None:
        row = (
            (
                await self.session.execute(
                    sa.select(one_time_tokens)
                    .where(one_time_tokens.c.token_hash == token_hash)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return OneTimeRecord(
            id=row["id"],
            customer_id=row["customer_id"],
            purpose=d.TokenPurpose(row["purpose"]),
            subject=dict(row["subject"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            used_at=row["used_at"],
        )

    async def latest_one_time(
        self, customer_id: uuid.UUID, purpose: d.TokenPurpose
    ) -> datetime | None:
        return (
            await self.session.execute(
                sa.select(sa.func.max(one_time_tokens.c.created_at)).where(
                    one_time_tokens.c.customer_id == customer_id,
                    one_time_tokens.c.purpose == int(purpose),
                )
            )
        ).scalar()

    async def use_one_time(self, token_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(one_time_tokens).where(one_time_tokens.c.id == token_id).values(used_at=now)
        )

    async def spend_all(
        self, customer_id: uuid.UUID, purpose: d.TokenPurpose, now: datetime
    ) -> None:
        """Every outstanding token of a purpose stops working (e.g. after a reset)."""
        await self.session.execute(
            sa.update(one_time_tokens)
            .where(
                one_time_tokens.c.customer_id == customer_id,
                one_time_tokens.c.purpose == int(purpose),
                one_time_tokens.c.used_at.is_(None),
            )
            .values(used_at=now)
        )


# ------------------------------------------------------------------------------ lockout


@dataclass(frozen=True)
class Attempts:
    failures: int
    locked_until: datetime | None


class ThrottleStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_row(self, key: bytes) -> Attempts:
        """The counters for ``key``, row-locked until the transaction ends: concurrent
        attempts on one e-mail queue here, so none slips past a lock."""
        await self.session.execute(
            pg.insert(sign_in_attempts).values(key=key, failures=0).on_conflict_do_nothing()
        )
        row = (
            await self.session.execute(
                sa.select(sign_in_attempts.c.failures, sign_in_attempts.c.locked_until)
                .where(sign_in_attempts.c.key == key)
                .with_for_update()
            )
        ).one()
        return Attempts(row.failures, row.locked_until)

    async def save(
        self, key: bytes, failures: int, locked_until: datetime | None, now: datetime
    ) -> None:
        await self.session.execute(
            sa.update(sign_in_attempts)
            .where(sign_in_attempts.c.key == key)
            .values(failures=failures, locked_until=locked_until, last_failure_at=now)
        )

    async def clear(self, key: bytes) -> None:
        await self.session.execute(sa.delete(sign_in_attempts).where(sign_in_attempts.c.key == key))

    async def get(self, key: bytes) -> dict[str, Any] | None:
        row = (
            (
                await self.session.execute(
                    sa.select(sign_in_attempts).where(sign_in_attempts.c.key == key)
                )
            )
            .mappings()
            .first()
        )
        return {k: v for k, v in row.items() if k != "key"} if row else None


# -------------------------------------------------------------------------------- staff


@dataclass(frozen=True)
class StaffUser:
    id: uuid.UUID
    email: str
    display_name: str
    password_hash: str
    scopes: tuple[str, ...]
    disabled: bool


class StaffStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_email(self, email_key: str) -> StaffUser | None:
        row = (
            (
                await self.session.execute(
                    sa.select(staff_users).where(staff_users.c.email_key == email_key)
                )
            )
            .mappings()
            .first()
        )
        return self._to_domain(row) if row else None

    async def get(self, staff_id: uuid.UUID) -> StaffUser | None:
        row = (
            (await self.session.execute(sa.select(staff_users).where(staff_users.c.id == staff_id)))
            .mappings()
            .first()
        )
        return self._to_domain(row) if row else None

    @staticmethod
    def _to_domain(row: RowMapping) -> StaffUser:
        return StaffUser(
            id=row["id"],
            email=row["email"],
            display_name=row["display_name"],
            password_hash=row["password_hash"],
            scopes=tuple(row["scopes"]),
            disabled=row["disabled_at"] is not None,
        )

    async def upsert(
        self, email: d.Email, display_name: str, password_hash: str, scopes: Sequence[str]
    ) -> None:
        insert = pg.insert(staff_users).values(
            id=uuid.uuid4(),
            email=email.address,
            email_key=email.key,
            display_name=display_name,
            password_hash=password_hash,
            scopes=list(scopes),
        )
        await self.session.execute(
            insert.on_conflict_do_update(
                index_elements=[staff_users.c.email_key],
                set_={
                    "display_name": insert.excluded.display_name,
                    "password_hash": insert.excluded.password_hash,
                    "scopes": insert.excluded.scopes,
                },
            )
        )


# ------------------------------------------------------------------------------ clients


def _client(row: RowMapping) -> d.Client:
    return d.Client(
        id=row["id"],
        display_name=row["display_name"],
        kind=d.ClientKind(row["kind"]),
        store_id=row["store_id"],
        scopes=tuple(row["scopes"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class ClientStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, client: d.Client, secret_hash: bytes) -> None:
        await self.session.execute(
            sa.insert(clients).values(
                id=client.id,
                display_name=client.display_name,
                kind=int(client.kind),
                store_id=client.store_id,
                scopes=list(client.scopes),
                secret_hash=secret_hash,
                created_by=client.created_by,
                created_at=client.created_at,
            )
        )

    async def with_secret(self, client_id: str) -> tuple[d.Client, bytes] | None:
        row = (
            (await self.session.execute(sa.select(clients).where(clients.c.id == client_id)))
            .mappings()
            .first()
        )
        return (_client(row), row["secret_hash"]) if row else None

    async def get(self, client_id: str, *, for_update: bool = False) -> d.Client | None:
        query = sa.select(clients).where(clients.c.id == client_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _client(row) if row else None

    async def find(self, kind: d.ClientKind, store_id: str | None, name: str) -> d.Client | None:
        row = (
            (
                await self.session.execute(
                    sa.select(clients).where(
                        clients.c.kind == int(kind),
                        clients.c.store_id.is_not_distinct_from(store_id),
                        clients.c.display_name == name,
                        clients.c.revoked_at.is_(None),
                    )
                )
            )
            .mappings()
            .first()
        )
        return _client(row) if row else None

    async def set_secret(self, client_id: str, secret_hash: bytes) -> None:
        await self.session.execute(
            sa.update(clients).where(clients.c.id == client_id).values(secret_hash=secret_hash)
        )

    async def revoke(self, client_id: str, now: datetime) -> None:
        await self.session.execute(
            sa.update(clients).where(clients.c.id == client_id).values(revoked_at=now)
        )

    async def list_page(
        self,
        *,
        store_id: str | None,
        show_revoked: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[d.Client]:
        query = sa.select(clients)
        if store_id is not None:
            query = query.where(clients.c.store_id == store_id)
        if not show_revoked:
            query = query.where(clients.c.revoked_at.is_(None))
        if after is not None:
            query = query.where(sa.tuple_(clients.c.created_at, clients.c.id) < sa.tuple_(*after))
        query = query.order_by(clients.c.created_at.desc(), clients.c.id.desc()).limit(limit)
        return [_client(r) for r in (await self.session.execute(query)).mappings()]


# ---------------------------------------------------------------------- device sessions


def _device_session(row: RowMapping) -> d.DeviceSession:
    return d.DeviceSession(
        id=row["id"],
        client_id=row["client_id"],
        user_code=row["user_code"],
        channel=row["channel"],
        store_id=row["store_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        approved_by=row["approved_by"],
        approved_at=row["approved_at"],
        consumed_at=row["consumed_at"],
    )


class DeviceSessionStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, device_session: d.DeviceSession, device_code_hash: bytes) -> bool:
        """False on a user-code collision (the caller draws another code)."""
        result = await self.session.execute(
            pg.insert(device_sessions)
            .values(
                id=device_session.id,
                client_id=device_session.client_id,
                device_code_hash=device_code_hash,
                user_code=device_session.user_code,
                channel=device_session.channel,
                store_id=device_session.store_id,
                created_at=device_session.created_at,
                expires_at=device_session.expires_at,
            )
            .on_conflict_do_nothing(index_elements=[device_sessions.c.user_code])
            .returning(device_sessions.c.id)
        )
        return result.first() is not None

    async def live_count(self, client_id: str, now: datetime) -> int:
        return int(
            (
                await self.session.execute(
                    sa.select(sa.func.count())
                    .select_from(device_sessions)
                    .where(
                        device_sessions.c.client_id == client_id,
                        device_sessions.c.expires_at > now,
                        device_sessions.c.consumed_at.is_(None),
                    )
                )
            ).scalar_one()
        )

    async def purge_expired(self, client_id: str, before: datetime) -> None:
        # Old hand-offs are worth nothing; dropping them keeps codes free for reuse.
        await self.session.execute(
            sa.delete(device_sessions).where(
                device_sessions.c.client_id == client_id, device_sessions.c.expires_at < before
            )
        )

    async def by_user_code(self, user_code: str) -> d.DeviceSession | None:
        row = (
            (
                await self.session.execute(
                    sa.select(device_sessions)
                    .where(device_sessions.c.user_code == user_code)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return _device_session(row) if row else None

    async def by_device_code(self, device_code_hash: bytes) -> d.DeviceSession | None:
        row = (
            (
                await self.session.execute(
                    sa.select(device_sessions)
                    .where(device_sessions.c.device_code_hash == device_code_hash)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return _device_session(row) if row else None

    async def approve(self, session_id: uuid.UUID, customer_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(device_sessions)
            .where(device_sessions.c.id == session_id)
            .values(approved_by=customer_id, approved_at=now)
        )

    async def consume(self, session_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(device_sessions)
            .where(device_sessions.c.id == session_id)
            .values(consumed_at=now)
        )


# ------------------------------------------------------------------------ housekeeping


async def purge_expired(session: AsyncSession, before: datetime) -> dict[str, int]:
    """Delete what expired before ``before``: spent or stale credentials and lockout
    counters nobody has touched since. Returns rows deleted per table."""
    statements = {
        "refresh_tokens": sa.delete(refresh_tokens).where(refresh_tokens.c.expires_at < before),
        "one_time_tokens": sa.delete(one_time_tokens).where(one_time_tokens.c.expires_at < before),
        "device_sessions": sa.delete(device_sessions).where(device_sessions.c.expires_at < before),
        "sign_in_attempts": sa.delete(sign_in_attempts).where(
            sa.func.coalesce(sign_in_attempts.c.locked_until, sign_in_attempts.c.last_failure_at)
            < before
        ),
    }
    deleted = {}
    for name, statement in statements.items():
        result = await session.execute(statement)
        deleted[name] = int(getattr(result, "rowcount", 0) or 0)
    return deleted


# ------------------------------------------------------------------------------- GDPR


class PrivacyStore:
    """Export and erasure across every table that holds something about a customer."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _events_about(customer_id: uuid.UUID, event_types: Sequence[str]) -> sa.ColumnElement[bool]:
        # Every event of this service names its customer's id; the payload is protobuf bytes,
        # so the id's text is looked for inside them.
        return sa.and_(
            outbox_table.c.event_type.in_(list(event_types)),
            sa.text("position(:needle IN outbox.payload) > 0").bindparams(
                sa.bindparam("needle", str(customer_id).encode(), type_=sa.LargeBinary)
            ),
        )

    @staticmethod
    def _idempotency_of(customer_id: uuid.UUID) -> sa.ColumnElement[bool]:
        # Scopes of calls on a customer end in their id (e.g. "CreateAddress:<id>").
        return idempotency_table.c.scope.like(f"%:{customer_id}")

    async def export(
        self, customer_id: uuid.UUID, throttle_key: bytes | None, event_types: Sequence[str]
    ) -> dict[str, Any]:
        """Rows about the customer, table by table, without credential hashes. Outbox rows
        keep their raw ``payload`` for the caller to decode."""
        document: dict[str, Any] = {}
        for name, column in CUSTOMER_TABLES.items():
            table = column.table
            assert isinstance(table, sa.Table)
            visible = [c for c in table.c if c.name not in SECRET_COLUMNS]
            query = sa.select(*visible).where(column == customer_id)
            if "seq" in table.c:
                query = query.order_by(table.c.seq)
            elif "created_at" in table.c:
                query = query.order_by(table.c.created_at)
            if table is refresh_tokens:
                query = query.where(refresh_tokens.c.subject_kind == int(d.SubjectKind.CUSTOMER))
            rows = (await self.session.execute(query)).mappings().all()
            document[name] = [d.json_ready(dict(row)) for row in rows]
        attempts = None
        if throttle_key is not None:
            attempts = await ThrottleStore(self.session).get(throttle_key)
        document["sign_in_attempts"] = [d.json_ready(attempts)] if attempts else []
        events = await self.session.execute(
            sa.select(
                outbox_table.c.id,
                outbox_table.c.subject,
                outbox_table.c.event_type,
                outbox_table.c.occurred_at,
                outbox_table.c.published_at,
                outbox_table.c.payload,
            )
            .where(self._events_about(customer_id, event_types))
            .order_by(outbox_table.c.seq)
        )
        document["outbox"] = [
            {
                **d.json_row({k: v for k, v in row.items() if k != "payload"}),
                "payload": row["payload"],
            }
            for row in events.mappings()
        ]
        keys = await self.session.execute(
            sa.select(
                idempotency_table.c.scope,
                idempotency_table.c.request_id,
                idempotency_table.c.created_at,
            )
            .where(self._idempotency_of(customer_id))
            .order_by(idempotency_table.c.created_at)
        )
        document["idempotency_keys"] = [d.json_ready(dict(row)) for row in keys.mappings()]
        return document

    async def erase(
        self,
        customer: d.Customer,
        throttle_key: bytes | None,
        event_types: Sequence[str],
        now: datetime,
    ) -> None:
        customer_id = customer.id
        await self.session.execute(
            sa.delete(addresses).where(addresses.c.customer_id == customer_id)
        )
        await self.session.execute(
            sa.delete(one_time_tokens).where(one_time_tokens.c.customer_id == customer_id)
        )
        if throttle_key is not None:
            await ThrottleStore(self.session).clear(throttle_key)
        await TokenStore(self.session).revoke_subject(d.SubjectKind.CUSTOMER, customer_id, now)
        # Idempotency records keep whole responses (addresses, profiles).
        await self.session.execute(
            sa.delete(idempotency_table).where(self._idempotency_of(customer_id))
        )
        # Earlier events about the customer carry their e-mail and name. Published ones are
        # only kept for the relay's retention window; pending ones would deliver data the
        # CustomerErased that follows them tells everyone to delete. Both go.
        await self.session.execute(
            sa.delete(outbox_table).where(self._events_about(customer_id, event_types))
        )
