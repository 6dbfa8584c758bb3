"""Customer persistence: machine clients (devices, back-office tools)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    clients,
)


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

    async def set_secret(
        self, client_id: str, secret_hash: bytes, scopes: Sequence[str] | None = None
    ) -> None:
        values: dict[str, object] = {"secret_hash": secret_hash}
        if scopes is not None:
            values["scopes"] = list(scopes)
        await self.session.execute(
            sa.update(clients).where(clients.c.id == client_id).values(**values)
        )

    async def revoke(self, client_id: str, now: datetime) -> None:
        await self.session.execute(
            sa.update(clients).where(clients.c.id == client_id).values(revoked_at=now)
        )

    async def revoke_created_by(
        self, created_by: str, *, keep: Sequence[str], now: datetime
    ) -> int:
        result = await self.session.execute(
            sa.update(clients)
            .where(
                clients.c.created_by == created_by,
                clients.c.id.not_in(list(keep)),
                clients.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

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
