"""Inventory use cases: sourcing profiles — versions created as drafts, changed while they
are drafts, activated (retiring the one before, which stays readable), and the active
versions every plan and "anywhere" reservation reads (from a cache)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.inventory import domain as d
from services.inventory.domain import profiles as p
from services.inventory.store import ProfileStore
from services.inventory.usecases.access import (
    actor_of,
    require_sourcing_editor,
    require_sourcing_reader,
)
from services.inventory.usecases.common import Context
from tenpo.kit.auth import Principal
from tenpo.kit.cache import RefreshingValue
from tenpo.kit.db import Database
from tenpo.kit.errors import check_etag
from tenpo.kit.idempotency import idempotent


class ProfileCache:
    """The active version of every profile, re-read at most every ``ttl`` seconds (dropped
    on our own writes): every plan reads it, and profiles change rarely. An activation
    through another replica is seen within ``ttl``. Read it before a transaction takes its
    connection, like the location cache."""

    def __init__(self, db: Database, ttl: float = 2.0) -> None:
        self._db = db
        self._value = RefreshingValue(self._load, ttl)

    async def _load(self) -> dict[str, p.SourcingProfileVersion]:
        async with self._db.unit_of_work() as uow:
            found = await ProfileStore(uow.session).active()
        return {v.profile: v for v in found}

    async def active(self, profile: str) -> p.SourcingProfileVersion:
        found = (await self._value.get()).get(profile)
        if found is None:
            # A profile activated for the first time through another replica a moment ago:
            # no need to wait for the refresh to tell it apart from one that does not exist.
            async with self._db.unit_of_work() as uow:
                found = await ProfileStore(uow.session).get(profile, 0)
        if found is None:
            raise p.profile_not_found(profile)
        return found

    async def default_rules(self) -> tuple[p.SourcingRules, int]:
        """The default profile's rules for reservations sourced anywhere. Migration 0004
        writes its first version; were it gone by hand, the built-in rules (the same) keep
        reservations working."""
        found = (await self._value.get()).get(p.DEFAULT_PROFILE)
        return (found.rules, found.version) if found else (p.BUILT_IN_RULES, 0)

    def invalidate(self) -> None:
        self._value.invalidate()


class Profiles:
    def __init__(self, context: Context, cache: ProfileCache) -> None:
        self.db = context.db
        self.clock = context.clock
        self.cache = cache

    async def create_version(
        self,
        principal: Principal,
        profile: str,
        rules: p.SourcingRules,
        *,
        request_id: str,
        request: Message,
    ) -> p.SourcingProfileVersion:
        require_sourcing_editor(principal)
        p.check_profile_name(profile)
        rules.validate()
        async with self.db.unit_of_work() as uow:
            store = ProfileStore(uow.session)

            async def create() -> wrappers_pb2.Int32Value:
                await store.lock_profile(profile, create=True)
                created = await store.insert_version(profile, rules, actor_of(principal))
                return wrappers_pb2.Int32Value(value=created.version)

            number = await idempotent(
                uow,
                scope="CreateSourcingProfileVersion",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.Int32Value,
                action=create,
            )
            found = await store.get(profile, number.value)
            await uow.commit()
        assert found is not None
        return found

    async def update_version(
        self,
        principal: Principal,
        profile: str,
        version: int,
        changes: Mapping[str, Any],
        *,
        etag: str,
    ) -> p.SourcingProfileVersion:
        require_sourcing_editor(principal)
        p.check_profile_name(profile, "version.profile")
        async with self.db.unit_of_work() as uow:
            store = ProfileStore(uow.session)
            found = await store.get(profile, _number(version, "version.version"), for_update=True)
            if found is None:
                raise p.profile_not_found(profile, version)
            found.require_draft()
            check_etag(etag, found.etag, "version")
            rules = replace(found.rules, **changes).validate()
            saved = await store.update_rules(found, rules)
            await uow.commit()
        return saved

    async def activate(
        self, principal: Principal, profile: str, version: int, *, etag: str
    ) -> p.SourcingProfileVersion:
        require_sourcing_editor(principal)
        p.check_profile_name(profile)
        number = _number(version, "version")
        async with self.db.unit_of_work() as uow:
            store = ProfileStore(uow.session)
            # The profile row serializes activations: two drafts activated at once end with
            # one active version and the other retired, never two active.
            if not await store.lock_profile(profile, create=False):
                raise p.profile_not_found(profile, number)
            found = await store.get(profile, number, for_update=True)
            if found is None:
                raise p.profile_not_found(profile, number)
            if found.state is p.SourcingProfileVersionState.ACTIVE:
                return found  # activating twice (a client's retry) is activating once
            found.require_draft()
            check_etag(etag, found.etag, "version")
            activated = await store.activate(found, actor_of(principal), self.clock())
            await uow.commit()
        self.cache.invalidate()
        return activated

    async def get(
        self, principal: Principal, profile: str, version: int
    ) -> p.SourcingProfileVersion:
        require_sourcing_reader(principal)
        p.check_profile_name(profile)
        if version < 0:
            raise d.invalid("version", "0 (the active one) or a version number", "VERSION_INVALID")
        async with self.db.unit_of_work() as uow:
            found = await ProfileStore(uow.session).get(profile, version)
        if found is None:
            raise p.profile_not_found(profile, version)
        return found

    async def list(
        self, principal: Principal, profile: str, *, cursor: Any, limit: int
    ) -> list[p.SourcingProfileVersion]:
        """Every version of ``profile`` newest first (cursor: the last version number), or
        without a profile the active version of each (cursor: the last profile name)."""
        require_sourcing_reader(principal)
        async with self.db.unit_of_work() as uow:
            store = ProfileStore(uow.session)
            if profile:
                p.check_profile_name(profile)
                return await store.list_versions(
                    profile, before=int(cursor) if cursor is not None else None, limit=limit
                )
            return await store.list_active(after=str(cursor or ""), limit=limit)


def _number(version: int, path: str) -> int:
    if version < 1:
        raise d.invalid(path, "a version number, 1 or more", "VERSION_INVALID")
    return version
