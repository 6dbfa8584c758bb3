"""Idempotent mutations: a retried request_id returns the first result; a reused one with
different parameters is rejected."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.dialects import postgresql as pg

from tenpo.kit.db import UnitOfWork, idempotency_table
from tenpo.kit.errors import FieldViolation, InvalidArgument

R = TypeVar("R", bound=Message)

MAX_REQUEST_ID_LENGTH = 128


def request_fingerprint(request: Message, request_id_field: str = "request_id") -> bytes:
    """Hash of the request without its request_id: what "the same parameters" means."""
    copy = type(request)()
    copy.CopyFrom(request)
    if request_id_field in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField(request_id_field)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


async def idempotent(
    uow: UnitOfWork,
    *,
    scope: str,
    request_id: str,
    request: Message,
    response_type: type[R],
    action: Callable[[], Awaitable[R]],
) -> R:
    """Run ``action`` once per (scope, request_id) inside ``uow``'s transaction.

    The key row is inserted first: a concurrent call with the same id blocks on the primary
    key until the first transaction ends, then finds the stored response (or, if the first
    rolled back, runs the action itself). The caller commits ``uow``; the key and the
    action's writes land together or not at all.
    """
    if not request_id:
        return await action()
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument(
            "request_id is too long",
            reason="REQUEST_ID_INVALID",
            field_violations=[
                FieldViolation("request_id", f"at most {MAX_REQUEST_ID_LENGTH} characters")
            ],
        )
    fingerprint = request_fingerprint(request)
    claimed = (
        await uow.session.execute(
            pg.insert(idempotency_table)
            .values(scope=scope, request_id=request_id, request_hash=fingerprint)
            .on_conflict_do_nothing()
            .returning(idempotency_table.c.request_id)
        )
    ).first()
    if claimed is None:
        stored = (
            await uow.session.execute(
                sa.select(idempotency_table.c.request_hash, idempotency_table.c.response).where(
                    idempotency_table.c.scope == scope,
                    idempotency_table.c.request_id == request_id,
                )
            )
        ).one()
        if stored.request_hash != fingerprint:
            raise InvalidArgument(
                "request_id was already used for a different request",
                reason="REQUEST_ID_REUSED",
                field_violations=[
                    FieldViolation("request_id", "already used with other parameters")
                ],
            )
        return response_type.FromString(stored.response or b"")
    response = await action()
    await uow.session.execute(
        sa.update(idempotency_table)
        .where(
            idempotency_table.c.scope == scope,
            idempotency_table.c.request_id == request_id,
        )
        .values(response=response.SerializeToString(deterministic=True))
    )
    return response
