"""Catalog use cases: the category tree."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from services.catalog import domain as d
from services.catalog.store import CategoryStore
from services.catalog.usecases.access import require_writer
from services.catalog.usecases.caches import CatalogCaches
from tenpo.kit.auth import Principal
from tenpo.kit.db import Database
from tenpo.kit.errors import AlreadyExists, FailedPrecondition, FieldViolation, NotFound, check_etag


class Categories:
    def __init__(self, db: Database, caches: CatalogCaches) -> None:
        self.db = db
        self.caches = caches

    async def list_categories(self, parent_id: uuid.UUID | None) -> list[d.Category]:
        async with self.db.unit_of_work() as uow:
            everything = await CategoryStore(uow.session).all()
        if parent_id is not None:
            return [c for c in everything if c.parent_id == parent_id]
        return _tree_order(everything)

    async def category_titles(self) -> Mapping[str, Mapping[str, str]]:
        """Titles of every category by id (labels only, so a short TTL is fine)."""
        return await self.caches.category_titles.get()

    async def get_category(self, category_id: uuid.UUID) -> d.Category:
        async with self.db.unit_of_work() as uow:
            category = await CategoryStore(uow.session).get(category_id)
        if category is None:
            raise NotFound("no such category", reason="CATEGORY_NOT_FOUND")
        return category

    async def create_category(self, principal: Principal, category: d.Category) -> d.Category:
        require_writer(principal)
        d.validate_category(category)
        async with self.db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            if category.parent_id and await store.get(category.parent_id) is None:
                raise FailedPrecondition(
                    "parent category not found",
                    reason="CATEGORY_NOT_FOUND",
                    field_violations=[FieldViolation("category.parent_id", "no such category")],
                )
            if await store.slug_taken(category.parent_id, category.slug, None):
                raise AlreadyExists(
                    "a sibling has this slug",
                    reason="CATEGORY_SLUG_TAKEN",
                    field_violations=[FieldViolation("category.slug", "already used by a sibling")],
                )
            await store.insert(category)
            await uow.commit()
        self.caches.category_titles.invalidate()
        return category

    async def update_category(
        self, principal: Principal, category_id: uuid.UUID, changes: Mapping[str, Any], etag: str
    ) -> d.Category:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            current = await store.get(category_id, for_update=True)
            if current is None:
                raise NotFound("no such category", reason="CATEGORY_NOT_FOUND")
            check_etag(etag, current.etag, "category")
            updated = replace(current, **changes, version=current.version + 1)
            d.validate_category(updated)
            if updated.slug != current.slug and await store.slug_taken(
                updated.parent_id, updated.slug, category_id
            ):
                raise AlreadyExists("a sibling has this slug", reason="CATEGORY_SLUG_TAKEN")
            await store.update(updated)
            await uow.commit()
        self.caches.category_titles.invalidate()
        return updated

    async def move_category(
        self, principal: Principal, category_id: uuid.UUID, new_parent: uuid.UUID | None, etag: str
    ) -> d.Category:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            current = await store.get(category_id, for_update=True)
            if current is None:
                raise NotFound("no such category", reason="CATEGORY_NOT_FOUND")
            check_etag(etag, current.etag, "category")
            parents = await store.parents()
            if new_parent is not None and new_parent not in parents:
                raise FailedPrecondition("new parent not found", reason="CATEGORY_NOT_FOUND")
            d.ensure_no_cycle(category_id, new_parent, parents)
            if await store.slug_taken(new_parent, current.slug, category_id):
                raise AlreadyExists(
                    "the new parent already has a child with this slug",
                    reason="CATEGORY_SLUG_TAKEN",
                )
            moved = replace(current, parent_id=new_parent, version=current.version + 1)
            await store.update(moved)
            await uow.commit()
        self.caches.category_titles.invalidate()
        return moved

    async def delete_category(self, principal: Principal, category_id: uuid.UUID) -> None:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = CategoryStore(uow.session)
            if await store.get(category_id, for_update=True) is None:
                raise NotFound("no such category", reason="CATEGORY_NOT_FOUND")
            if await store.is_in_use(category_id):
                raise FailedPrecondition(
                    "the category still has children or products", reason="CATEGORY_NOT_EMPTY"
                )
            await store.delete(category_id)
            await uow.commit()
        self.caches.category_titles.invalidate()


def _tree_order(categories: Sequence[d.Category]) -> list[d.Category]:
    children: dict[uuid.UUID | None, list[d.Category]] = {}
    for c in categories:
        children.setdefault(c.parent_id, []).append(c)
    ordered: list[d.Category] = []

    def walk(parent: uuid.UUID | None) -> None:
        for child in sorted(children.get(parent, []), key=lambda c: (c.position, c.slug)):
            ordered.append(child)
            walk(child.id)

    walk(None)
    return ordered
