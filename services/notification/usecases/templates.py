"""Template use cases: create, update (a new version), delete, preview."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from services.notification.domain import templates as td
from services.notification.store import TemplateStore
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import AlreadyExists, NotFound

UPDATABLE = (
    "category",
    "subject",
    "text_body",
    "html_body",
    "segment_budget",
    "cap_policy",
    "sample_data",
)


def _not_found() -> NotFound:
    return NotFound("no such template", reason="TEMPLATE_NOT_FOUND")


class Templates:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, uow: UnitOfWork, template: td.Template) -> td.Template:
        td.validate(template)
        created = await TemplateStore(uow.session).insert(
            dataclasses.replace(template, id=uuid.uuid4(), version=1)
        )
        if created is None:
            raise AlreadyExists(
                "a template with this key, channel and language exists",
                reason="TEMPLATE_EXISTS",
            )
        return created

    async def update(
        self, uow: UnitOfWork, template_id: uuid.UUID, changes: td.Template, paths: Sequence[str]
    ) -> td.Template:
        store = TemplateStore(uow.session)
        current = await store.get(template_id, for_update=True)
        if current is None:
            raise _not_found()
        updated = dataclasses.replace(
            current,
            **{p: getattr(changes, p) for p in paths},
            version=current.version + 1,
        )
        td.validate(updated)
        return await store.update(updated)

    async def get(self, template_id: uuid.UUID) -> td.Template:
        async with self.db.unit_of_work() as uow:
            found = await TemplateStore(uow.session).get(template_id)
        if found is None:
            raise _not_found()
        return found

    async def list(
        self, key: str, after: tuple[str, int, str] | None, limit: int
    ) -> list[td.Template]:
        async with self.db.unit_of_work() as uow:
            return await TemplateStore(uow.session).list_page(key, after, limit)

    async def delete(self, template_id: uuid.UUID) -> None:
        async with self.db.unit_of_work() as uow:
            if not await TemplateStore(uow.session).delete(template_id):
                raise _not_found()
            await uow.commit()

    async def preview(
        self, template_id: uuid.UUID | None, inline: td.Template | None, data: dict[str, Any] | None
    ) -> td.Rendered:
        """Render with the given or sample data; an SMS over its budget is refused here, as
        it would be at send time."""
        if template_id is not None:
            template = await self.get(template_id)
        else:
            assert inline is not None
            template = td.validate(inline)
        return td.render(template, template.sample_data if data is None else data)
