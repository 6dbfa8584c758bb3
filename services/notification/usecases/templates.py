"""Template use cases: create, update (a new version), delete, preview."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.notification.domain import templates as td
from services.notification.store import TemplateStore
from tenpo.kit.db import Database
from tenpo.kit.errors import AlreadyExists, NotFound
from tenpo.kit.idempotency import idempotent

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

    async def create(
        self, caller: str, template: td.Template, *, request_id: str, request: Message
    ) -> td.Template:
        """Version 1 of a new template; a retried request_id answers the same template."""
        td.validate(template)
        async with self.db.unit_of_work() as uow:
            store = TemplateStore(uow.session)

            async def create() -> wrappers_pb2.StringValue:
                created = await store.insert(
                    dataclasses.replace(template, id=uuid.uuid4(), version=1)
                )
                if created is None:
                    raise AlreadyExists(
                        "a template with this key, channel and language exists",
                        reason="TEMPLATE_EXISTS",
                    )
                return wrappers_pb2.StringValue(value=str(created.id))

            created_id = await idempotent(
                uow,
                scope=f"CreateTemplate:{caller}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=create,
            )
            found = await store.get(uuid.UUID(created_id.value))
            await uow.commit()
        if found is None:  # deleted since the first attempt
            raise _not_found()
        return found

    async def update(
        self,
        caller: str,
        template_id: uuid.UUID,
        changes: td.Template,
        paths: Sequence[str],
        *,
        request_id: str,
        request: Message,
    ) -> td.Template:
        """A new version with the named fields changed; a retried request_id changes nothing
        more."""
        async with self.db.unit_of_work() as uow:
            store = TemplateStore(uow.session)

            async def update() -> wrappers_pb2.Int32Value:
                current = await store.get(template_id, for_update=True)
                if current is None:
                    raise _not_found()
                updated = dataclasses.replace(
                    current,
                    **{p: getattr(changes, p) for p in paths},
                    version=current.version + 1,
                )
                saved = await store.update(td.validate(updated))
                return wrappers_pb2.Int32Value(value=saved.version)

            await idempotent(
                uow,
                scope=f"UpdateTemplate:{caller}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.Int32Value,
                action=update,
            )
            found = await store.get(template_id)
            await uow.commit()
        if found is None:
            raise _not_found()
        return found

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
