"""Customer use cases: machine clients (in-store devices, back-office tools)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from services.customer import domain as d
from services.customer.security import new_secret, same_secret
from services.customer.security import secret_hash as hash_secret
from services.customer.store.clients import ClientStore
from services.customer.usecases.common import (
    Context,
    IssuedTokens,
    UseCase,
    bounded,
)
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.errors import (
    NotFound,
    Unauthenticated,
)


class StoreDirectory(Protocol):
    """Where store ids are checked (inventory's locations)."""

    async def find(self, location_id: str) -> d.KnownLocation | None: ...


class Clients(UseCase):
    """Machine clients: created by staff, signed in with client credentials."""

    def __init__(self, context: Context, stores: StoreDirectory) -> None:
        super().__init__(context)
        self.stores = stores

    async def create_client(
        self,
        principal: Principal,
        *,
        display_name: str,
        kind: d.ClientKind,
        store_id: str | None,
        scopes: Sequence[str],
    ) -> tuple[d.Client, str]:
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(d.CLIENTS_SCOPE)
        unique_scopes = tuple(dict.fromkeys(scopes))
        d.validate_client(display_name, kind, store_id, unique_scopes, principal.scopes)
        if store_id is not None:
            # Asked before any write: an unknown store or an unreachable inventory changes
            # nothing.
            d.check_client_store(kind, store_id, await self.stores.find(store_id))
        return await self._create_client(
            display_name.strip(), kind, store_id, unique_scopes, principal.subject
        )

    async def _create_client(
        self,
        display_name: str,
        kind: d.ClientKind,
        store_id: str | None,
        scopes: Sequence[str],
        created_by: str,
    ) -> tuple[d.Client, str]:
        client = d.Client(
            id=f"cl_{secrets.token_hex(10)}",
            display_name=display_name,
            kind=kind,
            store_id=store_id,
            scopes=tuple(scopes),
            created_by=created_by,
            created_at=self.clock(),
        )
        secret = f"cs_{new_secret()}"
        async with self.db.unit_of_work() as uow:
            await ClientStore(uow.session).insert(client, hash_secret(secret))
            await uow.commit()
        return client, secret

    async def ensure_client(
        self, display_name: str, kind: d.ClientKind, store_id: str | None, scopes: Sequence[str]
    ) -> tuple[d.Client, str]:
        """Seed helper (development): the named client with a fresh secret and the seed's
        scopes (an older data directory's devices get what the demo needs now). The seed runs
        before the services start, so its store ids (inventory's demo locations) are not
        asked for; a test holds them to inventory's demo data."""
        async with self.db.unit_of_work() as uow:
            store = ClientStore(uow.session)
            existing = await store.find(kind, store_id, display_name)
            if existing is not None:
                secret = f"cs_{new_secret()}"
                await store.set_secret(existing.id, hash_secret(secret), scopes)
                await uow.commit()
                return replace(existing, scopes=tuple(scopes)), secret
        return await self._create_client(display_name, kind, store_id, scopes, "seed")

    async def retire_seed_clients(self, *, keep: Sequence[str]) -> int:
        """Seed helper (development): revoke the seed's clients not in ``keep``."""
        async with self.db.unit_of_work() as uow:
            retired = await ClientStore(uow.session).revoke_created_by(
                "seed", keep=keep, now=self.clock()
            )
            await uow.commit()
        return retired

    async def list_clients(
        self,
        principal: Principal,
        *,
        store_id: str | None,
        show_revoked: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[d.Client]:
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(d.CLIENTS_SCOPE)
        async with self.db.unit_of_work() as uow:
            return await ClientStore(uow.session).list_page(
                store_id=store_id, show_revoked=show_revoked, after=after, limit=limit
            )

    async def revoke_client(self, principal: Principal, client_id: str) -> d.Client:
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(d.CLIENTS_SCOPE)
        bounded(client_id, "client_id", 64)
        async with self.db.unit_of_work() as uow:
            store = ClientStore(uow.session)
            client = await store.get(client_id, for_update=True)
            if client is None:
                raise NotFound("no such client", reason="CLIENT_NOT_FOUND")
            if client.revoked_at is None:
                client = replace(client, revoked_at=self.clock())
                await store.revoke(client_id, client.revoked_at)  # type: ignore[arg-type]
            await uow.commit()
        return client

    async def sign_in_client(self, client_id: str, client_secret: str) -> IssuedTokens:
        bounded(client_id, "client_id", 64)
        bounded(client_secret, "client_secret", 128)
        async with self.db.unit_of_work() as uow:
            found = await ClientStore(uow.session).with_secret(client_id)
        # Compared even for unknown ids, so timing does not tell which ids exist.
        stored = found[1] if found else hash_secret(new_secret())
        if not same_secret(stored, client_secret) or found is None or found[0].revoked_at:
            raise Unauthenticated(
                "the client id or secret is wrong", reason="INVALID_CLIENT_CREDENTIALS"
            )
        client = found[0]
        access = self.keys.sign(
            subject=client.id,
            kind=client.kind.token_kind,
            now=self.clock(),
            ttl=self.policy.client_ttl,
            scopes=client.scopes,
            channel=d.CHANNEL_NAMES[client.channel],
            store_id=client.store_id,
        )
        return IssuedTokens(access, client.id)
