"""Inventory persistence: sourcing profiles and their versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import domain as d
from services.inventory.domain import profiles as p
from services.inventory.models import sourcing_profile_versions as versions
from services.inventory.models import sourcing_profiles


def _version(row: RowMapping) -> p.SourcingProfileVersion:
    return p.SourcingProfileVersion(
        profile=row["profile"],
        version=row["version"],
        state=p.SourcingProfileVersionState(row["state"]),
        rules=p.SourcingRules(
            criteria=tuple(p.SourcingCriterion(c) for c in row["criteria"]),
            max_shipments=row["max_shipments"],
            allowed_types={
                p.FulfillmentMethod(int(method)): tuple(d.LocationType(t) for t in types)
                for method, types in sorted(row["allowed_types"].items(), key=lambda i: int(i[0]))
            },
            fallbacks=tuple(p.SourcingFallback(f) for f in row["fallbacks"]),
            description=row["description"],
        ),
        revision=row["revision"],
        create_actor=row["create_actor"],
        created_at=row["created_at"],
        activate_actor=row["activate_actor"],
        activated_at=row["activated_at"],
        retired_at=row["retired_at"],
    )


def _rules_values(rules: p.SourcingRules) -> dict[str, Any]:
    return {
        "description": rules.description,
        "criteria": [int(c) for c in rules.criteria],
        "max_shipments": rules.max_shipments,
        "allowed_types": {
            str(int(method)): [int(t) for t in types]
            for method, types in rules.allowed_types.items()
        },
        "fallbacks": [int(f) for f in rules.fallbacks],
    }


class ProfileStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_profile(self, name: str, *, create: bool) -> bool:
        """Lock the profile's row (creating it if ``create``): numbering and activating its
        versions are serialized by it. False when there is no such profile."""
        if create:
            await self.session.execute(
                pg.insert(sourcing_profiles).values(name=name).on_conflict_do_nothing()
            )
        found = await self.session.execute(
            sa.select(sourcing_profiles.c.name)
            .where(sourcing_profiles.c.name == name)
            .with_for_update()
        )
        return found.first() is not None

    async def insert_version(
        self, profile: str, rules: p.SourcingRules, actor: str
    ) -> p.SourcingProfileVersion:
        """The next version of a profile whose row the caller holds locked, as a draft."""
        number = (
            await self.session.execute(
                sa.select(sa.func.coalesce(sa.func.max(versions.c.version), 0)).where(
                    versions.c.profile == profile
                )
            )
        ).scalar_one()
        row = (
            (
                await self.session.execute(
                    sa.insert(versions)
                    .values(
                        profile=profile,
                        version=number + 1,
                        state=int(p.SourcingProfileVersionState.DRAFT),
                        create_actor=actor,
                        **_rules_values(rules),
                    )
                    .returning(versions)
                )
            )
            .mappings()
            .one()
        )
        return _version(row)

    async def get(
        self, profile: str, version: int, *, for_update: bool = False
    ) -> p.SourcingProfileVersion | None:
        query = sa.select(versions).where(versions.c.profile == profile)
        if version:
            query = query.where(versions.c.version == version)
        else:
            query = query.where(versions.c.state == int(p.SourcingProfileVersionState.ACTIVE))
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _version(row) if row else None

    async def active(self) -> list[p.SourcingProfileVersion]:
        rows = await self.session.execute(
            sa.select(versions)
            .where(versions.c.state == int(p.SourcingProfileVersionState.ACTIVE))
            .order_by(versions.c.profile)
        )
        return [_version(r) for r in rows.mappings()]

    async def list_versions(
        self, profile: str, *, before: int | None, limit: int
    ) -> list[p.SourcingProfileVersion]:
        query = sa.select(versions).where(versions.c.profile == profile)
        if before is not None:
            query = query.where(versions.c.version < before)
        rows = await self.session.execute(query.order_by(versions.c.version.desc()).limit(limit))
        return [_version(r) for r in rows.mappings()]

    async def list_active(self, *, after: str, limit: int) -> list[p.SourcingProfileVersion]:
        rows = await self.session.execute(
            sa.select(versions)
            .where(
                versions.c.state == int(p.SourcingProfileVersionState.ACTIVE),
                versions.c.profile > after,
            )
            .order_by(versions.c.profile)
            .limit(limit)
        )
        return [_version(r) for r in rows.mappings()]

    async def update_rules(
        self, found: p.SourcingProfileVersion, rules: p.SourcingRules
    ) -> p.SourcingProfileVersion:
        row = (
            (
                await self.session.execute(
                    sa.update(versions)
                    .where(versions.c.profile == found.profile, versions.c.version == found.version)
                    .values(revision=found.revision + 1, **_rules_values(rules))
                    .returning(versions)
                )
            )
            .mappings()
            .one()
        )
        return _version(row)

    async def activate(
        self, found: p.SourcingProfileVersion, actor: str, now: datetime
    ) -> p.SourcingProfileVersion:
        """Retire the profile's active version (if any) and activate ``found``; the caller
        holds the profile row locked."""
        await self.session.execute(
            sa.update(versions)
            .where(
                versions.c.profile == found.profile,
                versions.c.state == int(p.SourcingProfileVersionState.ACTIVE),
            )
            .values(state=int(p.SourcingProfileVersionState.RETIRED), retired_at=now)
        )
        row = (
            (
                await self.session.execute(
                    sa.update(versions)
                    .where(versions.c.profile == found.profile, versions.c.version == found.version)
                    .values(
                        state=int(p.SourcingProfileVersionState.ACTIVE),
                        activate_actor=actor,
                        activated_at=now,
                    )
                    .returning(versions)
                )
            )
            .mappings()
            .one()
        )
        return _version(row)
